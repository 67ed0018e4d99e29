"""A capped forearm for renders: a tube that continues a posed hand's open wrist up the arm.

Hand models end at the wrist with an open hole; a 2D hand detector misses a hand without an arm in
egocentric views far more often (issue 18). The forearm is render geometry only: it is never part
of a hand model's vertices, keypoints or metrics.

    spec = ForearmSpec(length=0.22, taper=1.25, style="sleeve")
    verts, faces = forearm_mesh(rig, hand_vertices, hand_joints, spec)   # (..., N, 3), (M, 3)

The tube starts at the hand's wrist opening (its boundary loop, ordered around the loop), runs
along the forearm axis (middle MCP → wrist joint, so it follows ``global_orient``) for ``length``
metres, widens linearly to ``taper`` × the opening's size at the far end, and is closed there by a
fan. ``style="skin"`` starts exactly on the opening (a seamless arm); ``"sleeve"`` starts with a
cuff ``sleeve_gap`` wider than the opening, so the hand comes out of a sleeve. numpy only (the
Blender add-on uses it too); batched over any leading axes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .rig import HandRig

STYLES = ("skin", "sleeve")


@dataclass(frozen=True)
class ForearmSpec:
    length: float = 0.22        # m, wrist opening to the far end (an adult forearm is ~25 cm)
    taper: float = 1.25         # far-end size / wrist-opening size (forearms widen towards the elbow)
    style: str = "skin"         # "skin" or "sleeve"
    sleeve_gap: float = 0.006   # m, how much wider than the wrist the sleeve's cuff is
    rings: int = 8              # rings along the tube after the first

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise ValueError(f"unknown forearm style {self.style!r}: use one of {', '.join(STYLES)}")
        if not (0.0 < self.length <= 1.0):
            raise ValueError(f"forearm length must be in (0, 1] metres, got {self.length}")
        if not (0.2 <= self.taper <= 5.0):
            raise ValueError(f"forearm taper must be in [0.2, 5], got {self.taper}")
        if self.rings < 1 or self.sleeve_gap < 0:
            raise ValueError("forearm rings must be ≥ 1 and sleeve_gap ≥ 0")


def wrist_loop(rig: HandRig) -> np.ndarray:
    """The vertex ids of the rig's wrist opening, in order around it (counter-clockwise seen from
    the arm), from the rest mesh. Raises if the mesh has no single opening."""
    return _loop_of(rig.faces)


def _loop_of(faces: np.ndarray) -> np.ndarray:
    faces = np.ascontiguousarray(faces, dtype=np.int64)
    return _wrist_loop(faces.tobytes(), len(faces)).copy()  # per topology: a sort of every edge, 3 ms


@functools.lru_cache(maxsize=8)
def _wrist_loop(face_bytes: bytes, count: int) -> np.ndarray:
    faces = np.frombuffer(face_bytes, dtype=np.int64).reshape(count, 3)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(edges, axis=1)
    _, inverse, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    boundary = edges[counts[inverse.ravel()] == 1]
    if not len(boundary):
        raise ValueError("the hand mesh is closed: it has no wrist opening to attach a forearm to")
    successor = dict(boundary.tolist())
    loop = [int(boundary[0, 0])]
    while successor[loop[-1]] != loop[0]:
        loop.append(successor[loop[-1]])
        if len(loop) > len(boundary):
            raise ValueError("the hand mesh's wrist opening is not a single loop")
    if len(loop) != len(boundary):
        raise ValueError(f"the hand mesh has several openings ({len(boundary)} boundary edges, "
                         f"{len(loop)} in the first loop): a forearm needs exactly one")
    return np.asarray(loop)


def forearm_mesh(rig: HandRig, vertices: np.ndarray, joints: np.ndarray,
                 spec: ForearmSpec = ForearmSpec()) -> tuple[np.ndarray, np.ndarray]:
    """Forearm vertices (..., N, 3) and faces (M, 3) for posed hands.

    ``vertices`` (..., V, 3) and ``joints`` (..., 16, 3) are a hand model's output for this rig's
    side (any pose, shape and translation). Faces are wound counter-clockwise seen from outside."""
    v = np.asarray(vertices, dtype=np.float64)
    if v.shape[-2:] != (rig.num_vertices, 3):
        raise ValueError(f"forearm_mesh needs vertices (..., {rig.num_vertices}, 3), got {v.shape}")
    return forearm_around(rig.faces, v, joints, spec)


def forearm_around(faces: np.ndarray, vertices: np.ndarray, joints: np.ndarray,
                   spec: ForearmSpec = ForearmSpec()) -> tuple[np.ndarray, np.ndarray]:
    """``forearm_mesh`` for a hand mesh given by its triangles (F, 3), e.g. one read from Blender (the
    add-on rebuilds a hand's forearm when Set Shape moves its wrist opening)."""
    v = np.asarray(vertices, dtype=np.float64)
    j = np.asarray(joints, dtype=np.float64)
    if v.shape[-1] != 3 or j.shape[-2:] != (16, 3) or v.shape[:-2] != j.shape[:-2]:
        raise ValueError(f"a forearm needs vertices (..., V, 3) and joints (..., 16, 3) with the same leading axes, "
                         f"got {v.shape} and {j.shape}")
    loop = _loop_of(faces)
    ring = v[..., loop, :]
    centre = ring.mean(-2, keepdims=True)
    axis = j[..., 0, :] - j[..., 4, :]  # middle MCP → wrist: up the arm
    axis = (axis / np.linalg.norm(axis, axis=-1, keepdims=True))[..., None, :]
    offset = ring - centre
    radial = offset - np.sum(offset * axis, -1, keepdims=True) * axis
    radius = np.linalg.norm(radial, axis=-1, keepdims=True)
    direction = radial / np.maximum(radius, 1e-12)
    start = [ring]
    if spec.style == "sleeve":  # the cuff: same place, wider
        start.append(centre + direction * (radius + spec.sleeve_gap))
        radius = radius + spec.sleeve_gap
    tube = []
    for k in range(1, spec.rings + 1):
        s = k / spec.rings
        tube.append(centre + axis * (s * spec.length) + direction * radius * (1 + (spec.taper - 1) * s))
    rings = start + tube
    far_centre = centre + axis * spec.length
    verts = np.concatenate(rings + [far_centre], axis=-2)
    faces = _tube_faces(len(loop), len(rings))
    if _outward_sign(verts.reshape(-1, *verts.shape[-2:])[0], faces) < 0:
        faces = faces[:, ::-1].copy()
    return verts, faces


def _tube_faces(n: int, count: int) -> np.ndarray:
    faces = []
    for r in range(count - 1):
        for i in range(n):
            a, b = r * n + i, r * n + (i + 1) % n
            c, d = a + n, b + n
            faces += [(a, b, d), (a, d, c)]
    tip = count * n
    last = (count - 1) * n
    faces += [(last + i, last + (i + 1) % n, tip) for i in range(n)]
    return np.asarray(faces, dtype=np.int32)


def _outward_sign(verts: np.ndarray, faces: np.ndarray) -> float:
    """+1 if the faces' normals point away from the tube's axis (tested on the middle rings)."""
    tri = verts[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = tri.mean(1) - verts.mean(0)
    return float(np.sign(np.sum(normals * outward)))
