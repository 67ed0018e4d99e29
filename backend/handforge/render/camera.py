"""The one camera model of every image and label the backend draws.

OpenCV's pinhole model: a world point X (metres) is at ``x_cam = R X + t`` in the camera frame
(x right, y down, z forward) and at pixel ``(u, v) = (fx x/z + cx, fy y/z + cy)``.

Pixel convention (stated here only): (0, 0) is the top-left *corner* of the image and pixel
(column i, row j) covers [i, i+1) × [j, j+1), so its centre is (i + 0.5, j + 0.5). COCO's
keypoints and boxes and Blender's ``world_to_camera_view`` use the same continuous coordinates;
subtract 0.5 for code that puts pixel centres on integers.

Blender's camera (lens, sensor fit, shift, pixel aspect) converts both ways; the formulas follow
``BKE_camera_params_compute_viewplane`` in Blender's source (blender/blender,
source/blender/blenkernel/intern/camera.cc): the view plane is ``winx`` × ``ycor·winy`` pixels,
shifted by ``shift·viewfac`` where ``viewfac`` is the fitted side, and one pixel spans
``sensor / lens / viewfac`` at unit distance.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from handforge_shared.poses import json_flag

PIXEL_CENTRE_OFFSET = 0.5  # pixel (i, j) has its centre at (i + 0.5, j + 0.5)
# OpenCV camera axes (x right, y down, z forward) ↔ Blender's (x right, y up, looking along -z)
OPENCV_FROM_BLENDER_CAMERA = np.diag([1.0, -1.0, -1.0])
SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")


class CameraError(ValueError):
    """A camera that cannot be built or converted; the message says what was wrong, ``value`` which of the
    camera's values it is (K, R, t, matrix_world, sensor_fit, size, pixel_aspect) where one is."""

    def __init__(self, message: str, value: str = "") -> None:
        super().__init__(message)
        self.value = value


def _matrix(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise CameraError(f"{name} must be a finite array of shape {shape}, got shape {arr.shape}", name)
    if not np.all(np.isfinite(arr)):  # (it said "of shape (3, 3), got shape (3, 3)", the NaN unnamed)
        raise CameraError(f"{name} has non-finite values (NaN or infinity): {arr.tolist()}", name)
    return arr


@dataclass(frozen=True)
class Camera:
    """Intrinsics ``K`` (3, 3), world→camera rotation ``R`` (3, 3) and translation ``t`` (3,), metres,
    and the image size in pixels."""

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        K = _matrix(self.K, (3, 3), "K")
        R = _matrix(self.R, (3, 3), "R")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "R", R)
        object.__setattr__(self, "t", _matrix(self.t, (3,), "t"))
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-6) or np.linalg.det(R) < 0:
            raise CameraError("R must be a rotation matrix (orthonormal, determinant +1)", "R")
        if K[0, 0] <= 0 or K[1, 1] <= 0 or np.any(K[2] != (0.0, 0.0, 1.0)) or K[1, 0] != 0:
            raise CameraError("K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0", "K")
        try:  # whole pixels: int() made 640.7 into 640 unsaid, NaN a plain ValueError, 10**400 an OverflowError
            whole = all(not isinstance(v, (bool, str)) and float(v).is_integer() and v >= 1 for v in (self.width, self.height))
        except (TypeError, ValueError, OverflowError):
            whole = False
        if not whole:
            size = "×".join(reprlib.repr(v) for v in (self.width, self.height))  # (a 400-digit width: shortened)
            raise CameraError(f"image size must be whole numbers of pixels, 1 or more, got {size}", "size")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @classmethod
    def from_fov(cls, R: Any, t: Any, width: int, height: int, focal_px: float,
                 principal: tuple[float, float] | None = None) -> "Camera":
        cx, cy = principal if principal is not None else (width / 2.0, height / 2.0)
        return cls(np.array([[focal_px, 0.0, cx], [0.0, focal_px, cy], [0.0, 0.0, 1.0]]), R, t, width, height)

    @property
    def position(self) -> np.ndarray:
        """The camera centre in world coordinates."""
        return -self.R.T @ self.t

    @property
    def world_to_camera(self) -> np.ndarray:
        """(4, 4) extrinsics."""
        out = np.eye(4)
        out[:3, :3], out[:3, 3] = self.R, self.t
        return out

    def to_camera(self, points: Any) -> np.ndarray:
        """(..., 3) world points → camera frame."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def project(self, points: Any) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points → (..., 2) pixel coordinates (the convention above) and (...) depth z."""
        cam = self.to_camera(points)
        z = cam[..., 2]
        uvw = cam @ self.K.T
        with np.errstate(divide="ignore", invalid="ignore"):
            return uvw[..., :2] / z[..., None], z

    def gl_projection(self, near: float, far: float) -> np.ndarray:
        """(4, 4) OpenGL clip matrix for camera-frame points: NDC x = 2u/W − 1, y = 1 − 2v/H (a GL
        framebuffer read bottom row first is the image flipped upside down)."""
        (fx, s, cx), (_, fy, cy) = self.K[0], self.K[1]
        W, H = self.width, self.height
        return np.array([
            [2 * fx / W, 2 * s / W, 2 * cx / W - 1, 0.0],
            [0.0, -2 * fy / H, 1 - 2 * cy / H, 0.0],
            [0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0.0, 0.0, 1.0, 0.0],
        ])

    def to_dict(self) -> dict[str, Any]:
        return {"K": self.K.tolist(), "R": self.R.tolist(), "t": self.t.tolist(),
                "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Camera":
        if not isinstance(data, Mapping):  # (a number said "argument of type 'int' is not iterable")
            raise CameraError(f"a camera is an object with K, R, t, width and height, got {type(data).__name__} "
                              f"{str(data)[:40]}")
        missing = [k for k in ("K", "R", "t", "width", "height") if k not in data]
        if missing:
            raise CameraError(f"camera is missing {', '.join(missing)}")
        for k in ("K", "R", "t"):  # (a true among numbers was taken as 1; width and height refuse it themselves)
            flag = json_flag(data[k])
            if flag:
                raise CameraError(f"{k}{flag}, not a number: a camera's K, R and t are numbers", k)
        return cls(data["K"], data["R"], data["t"], data["width"], data["height"])


def look_at(eye: Any, target: Any, up: Any = (0.0, 0.0, 1.0), roll: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World→camera ``(R, t)`` of a camera at ``eye`` looking at ``target``, image up towards ``up``,
    then rolled by ``roll`` radians about the viewing axis, right-handed about the direction it looks in:
    a positive roll dips the camera's right side (as an aircraft's right wing), so what it sees turns
    anticlockwise in the image."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    if np.linalg.norm(forward) < 1e-9:
        raise CameraError("look_at: eye and target coincide")
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, up)  # image x is right, image y = z × x is down (−up)
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: any right will do
        x = np.cross(z, [1.0, 0.0, 0.0] if abs(z[0]) < 0.9 else [0.0, 1.0, 0.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    return R, -R @ eye


@dataclass(frozen=True)
class BlenderCamera:
    """The Blender camera settings that reproduce a ``Camera``: the object's ``matrix_world``
    (camera → Blender world) and the camera data and render settings of the same names."""

    matrix_world: np.ndarray
    lens: float
    sensor_width: float
    sensor_height: float
    sensor_fit: str
    shift_x: float
    shift_y: float
    resolution_x: int
    resolution_y: int
    pixel_aspect_x: float = 1.0
    pixel_aspect_y: float = 1.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in ("lens", "sensor_width", "sensor_height", "sensor_fit", "shift_x",
                                             "shift_y", "resolution_x", "resolution_y", "pixel_aspect_x",
                                             "pixel_aspect_y")}
        return {**out, "matrix_world": np.asarray(self.matrix_world).tolist()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BlenderCamera":
        return cls(**{k: v for k, v in data.items() if k != "extra"})


def _fitted(fit: str, width: int, height: int, aspect_x: float, aspect_y: float) -> tuple[str, float]:
    """The resolved fit (HORIZONTAL/VERTICAL) and ``viewfac``, the fitted side in pixels."""
    if fit not in SENSOR_FITS:
        raise CameraError(f"unknown sensor_fit {fit!r}: use one of {', '.join(SENSOR_FITS)}", "sensor_fit")
    ycor = aspect_y / aspect_x
    if fit == "AUTO":
        fit = "HORIZONTAL" if aspect_x * width >= aspect_y * height else "VERTICAL"
    return fit, (float(width) if fit == "HORIZONTAL" else ycor * height)


def from_blender(cam: BlenderCamera, world_to_blender: Any = np.eye(3)) -> Camera:
    """The ``Camera`` Blender renders with these settings (perspective, resolution at 100 %).
    ``world_to_blender``: the rotation from our world frame into Blender's."""
    W, H = int(cam.resolution_x), int(cam.resolution_y)
    ycor = cam.pixel_aspect_y / cam.pixel_aspect_x
    _, viewfac = _fitted(cam.sensor_fit, W, H, cam.pixel_aspect_x, cam.pixel_aspect_y)
    sensor = cam.sensor_height if cam.sensor_fit == "VERTICAL" else cam.sensor_width  # AUTO uses the width
    fx = cam.lens * viewfac / sensor
    K = np.array([[fx, 0.0, W / 2 - cam.shift_x * viewfac],
                  [0.0, fx / ycor, H / 2 + cam.shift_y * viewfac / ycor],
                  [0.0, 0.0, 1.0]])
    mw = _matrix(cam.matrix_world, (4, 4), "matrix_world")
    rot, centre = mw[:3, :3], mw[:3, 3]
    scale = np.linalg.norm(rot, axis=0)
    if not np.allclose(scale, 1.0, atol=1e-5):
        raise CameraError(f"the camera object is scaled ({scale.round(4).tolist()}); apply or clear its scale",
                          "matrix_world")
    wb = _matrix(world_to_blender, (3, 3), "world_to_blender")
    R = OPENCV_FROM_BLENDER_CAMERA @ rot.T @ wb
    return Camera(K, R, -R @ (wb.T @ centre), W, H)


def clip_range(camera: Camera, vertices: Sequence[np.ndarray]) -> tuple[float, float]:
    """The near and far clip distances (m) of every image of these meshes, GL and Blender alike: everything
    from 1 mm in front of the camera is drawn. Blender's 0.01–100 m beside GL's own range clipped a hand
    1–9 mm from the camera out of the RGB only (its mask filled the image, the other hand's was empty)."""
    depths = np.concatenate([camera.to_camera(np.asarray(v, np.float64))[:, 2] for v in vertices])
    near = float(np.clip(depths.min() * 0.5, 1e-3, None)) if np.any(depths > 0) else 1e-3
    return near, float(max(depths.max() * 2.0, near * 10.0))


BLENDER_MIN_MM = 1.0  # Blender's smallest lens and sensor side
BLENDER_MAX_PIXEL_ASPECT = 200.0  # Blender clamps pixel_aspect_x and pixel_aspect_y to 1–200, without a word


def check_pixel_aspect(aspect_x: float, aspect_y: float) -> None:
    """Refuse pixels Blender cannot render: their aspect ratio (the longer side over the shorter; K's fx/fy)
    over 200. Blender clamped it silently, so its images no longer matched the GL masks and the labels (a
    ratio of 300: projections off by up to 502 px)."""
    ratio = max(aspect_x / aspect_y, aspect_y / aspect_x)
    if not ratio <= BLENDER_MAX_PIXEL_ASPECT * (1 + 1e-9):  # (the rounding of a round trip through K)
        raise CameraError(f"pixel aspect {aspect_x:.6g} × {aspect_y:.6g} is a ratio of {ratio:.6g}, more than the "
                          f"{BLENDER_MAX_PIXEL_ASPECT:g} Blender renders (it clamps pixel_aspect_x and _y to 1–"
                          f"{BLENDER_MAX_PIXEL_ASPECT:g}, and its images would not match the masks and labels): "
                          f"bring the pixel aspect's x and y (a camera's fx and fy) within "
                          f"{BLENDER_MAX_PIXEL_ASPECT:g}× of each other", "pixel_aspect")


def to_blender(camera: Camera, sensor_size: float = 36.0, sensor_fit: str = "AUTO",
               world_to_blender: Any = np.eye(3)) -> BlenderCamera:
    """Blender settings rendering exactly ``camera`` (zero skew needed): ``sensor_size`` (mm) is the
    fitted sensor side; the other side is set to the image's aspect for a faithful viewport frame. A
    lens or sensor side that would be under Blender's 1 mm (a tall image of a short focal length) is
    scaled up with the rest of the sensor: the image is the same."""
    (fx, skew, cx), (_, fy, cy) = camera.K[0], camera.K[1]
    if abs(skew) > 1e-9:
        raise CameraError("Blender cameras have no skew: K[0, 1] must be 0")
    W, H = camera.width, camera.height
    ycor = fx / fy  # Blender's pixel aspect y/x; both must be ≥ 1
    aspect_x, aspect_y = (1.0, ycor) if ycor >= 1 else (1.0 / ycor, 1.0)
    check_pixel_aspect(aspect_x, aspect_y)
    fit, viewfac = _fitted(sensor_fit, W, H, aspect_x, aspect_y)
    if fit == "HORIZONTAL":
        sensor_width, sensor_height = sensor_size, sensor_size * aspect_y * H / (aspect_x * W)
    else:
        sensor_height, sensor_width = sensor_size, sensor_size * aspect_x * W / (aspect_y * H)
    # AUTO measures with sensor_width even when it fits vertically
    used = sensor_height if sensor_fit == "VERTICAL" else sensor_width
    wb = _matrix(world_to_blender, (3, 3), "world_to_blender")
    mw = np.eye(4)
    mw[:3, :3] = wb @ camera.R.T @ OPENCV_FROM_BLENDER_CAMERA
    mw[:3, 3] = wb @ camera.position
    lens = fx * used / viewfac
    smallest = min(lens, sensor_width, sensor_height)
    if smallest < BLENDER_MIN_MM:  # Blender raises each to 1 mm, zooming the image: a larger sensor is the same camera
        return to_blender(camera, sensor_size * BLENDER_MIN_MM / smallest * (1 + 1e-9), sensor_fit, world_to_blender)
    return BlenderCamera(matrix_world=mw, lens=float(lens), sensor_width=float(sensor_width),
                         sensor_height=float(sensor_height), sensor_fit=sensor_fit,
                         shift_x=float((W / 2 - cx) / viewfac), shift_y=float((cy - H / 2) * ycor / viewfac),
                         resolution_x=W, resolution_y=H, pixel_aspect_x=aspect_x, pixel_aspect_y=aspect_y)


def not_rigid(matrices: np.ndarray) -> np.ndarray:
    """(...,) bool: which 4×4 ``matrices`` (..., 4, 4) are not a rotation and a translation (scaled,
    mirrored or sheared objects: labels need rigid ones)."""
    rotation = np.asarray(matrices, np.float64)[..., :3, :3]
    gram = np.swapaxes(rotation, -1, -2) @ rotation
    return ~np.isclose(gram, np.eye(3), atol=1e-4).all(axis=(-2, -1)) | (np.linalg.det(rotation) <= 0)
