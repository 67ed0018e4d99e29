"""What the job kinds that take a Blender scene's objects accept of them, checked alike by each
(``export_renders``, ``image.generate``, ``image.transfer``): each object's ``matrix_world`` (bounded; a
rotation and a translation) and a Blender camera's settings (lens, sensor, shift; bounded)."""

from __future__ import annotations

import numpy as np

from handforge.render.camera import not_rigid
from handforge.server.schema import ArraySpec, invalid

WORLD_LIMIT = 1e6  # m: no matrix_world entry beyond (labels are JSON: 1e300 overflowed only when written)
LENS_MM = (0.01, 10_000.0)
SENSOR_MM = (0.01, 10_000.0)
SHIFT = (-100.0, 100.0)  # fractions of the fitted sensor side

RIG_SCALE_HINT = ("clear its scale (Alt-S) in Blender (applying it to a hand rig resizes its bones, which the "
                  "labels would not follow)")
CAMERA_SCALE_HINT = "clear the camera's scale (Alt-S) in Blender (and of any object it is parented to)"


def camera_arrays(lead: tuple[str, ...], optional: bool = False, whose: str = "Blender camera") -> dict[str, ArraySpec]:
    """A Blender camera's arrays, bounded alike in every kind: ``camera.matrix_world`` (*lead*, 4, 4),
    ``camera.lens`` (*lead*) (or (1,) when there is no lead), ``camera.sensor`` and ``camera.shift`` (*lead*, 2).
    ``optional``: the camera may be left out (another one is given), but not in part; ``whose`` starts each doc."""
    settings = ("camera.lens", "camera.sensor", "camera.shift")

    def spec(name: str, shape: tuple, bounds: tuple[float | None, float | None], doc: str) -> ArraySpec:
        requires = (settings if name == "camera.matrix_world" else ("camera.matrix_world",)) if optional else ()
        return ArraySpec(shape=shape, required=not optional, requires=requires, min=bounds[0], max=bounds[1],
                         doc=f"{whose}: {doc}")

    return {"camera.matrix_world": spec("camera.matrix_world", (*lead, 4, 4), (-WORLD_LIMIT, WORLD_LIMIT),
                                        "its matrix_world (Blender world)"),
            "camera.lens": spec("camera.lens", lead or (1,), LENS_MM, "focal length, mm"),
            "camera.sensor": spec("camera.sensor", (*lead, 2), SENSOR_MM, "sensor width and height, mm"),
            "camera.shift": spec("camera.shift", (*lead, 2), SHIFT, "shift x, y")}


def check_rigid(field: str, matrices: np.ndarray, what, hint: str = RIG_SCALE_HINT) -> None:
    """Every 4×4 in ``matrices`` (..., 4, 4) a rotation and a translation (labels need an unscaled,
    unmirrored, unsheared object), checked at once for the whole request; ``what(*index)`` names the first
    one that is not."""
    # a projective bottom row would be dropped unsaid: every use reads only the upper 3×4
    projective = ~np.isclose(np.asarray(matrices, np.float64)[..., 3, :], (0.0, 0.0, 0.0, 1.0), atol=1e-6).all(axis=-1)
    if projective.any():
        index = tuple(int(i) for i in np.argwhere(projective)[0])
        row = " ".join(f"{v:.4g}" for v in np.asarray(matrices)[index][3])
        raise invalid(field, f"{what(*index)} has the bottom row {row}: a matrix_world's bottom row must be 0 0 0 1",
                      "send the object's matrix_world as Blender gives it (an affine transform)")
    bad = not_rigid(matrices)
    if bad.any():
        index = tuple(int(i) for i in np.argwhere(bad)[0])
        scale = np.linalg.norm(np.asarray(matrices, np.float64)[index][:3, :3], axis=0)
        raise invalid(field, f"{what(*index)} is scaled, mirrored or sheared (axis lengths "
                      f"{', '.join(f'{v:.4g}' for v in scale)})", hint)
