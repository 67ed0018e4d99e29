"""The camera model against Blender's own projection (``bpy_extras.object_utils.world_to_camera_view``).

One Blender subprocess projects hand keypoints for random cameras: cameras made by ``to_blender``
from random intrinsics (non-square images, shifted principal points, non-square pixels), and random
Blender settings (every sensor fit, non-square sensors, shifts) read back with ``from_blender``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handforge.hands import load_hand_model
from handforge.render.camera import BlenderCamera, Camera, from_blender, look_at, to_blender
from handforge_shared.skeleton import MODEL_TO_BLENDER
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]

NUM = 12
TOLERANCE_PX = 1e-3  # the README's figure (labels need 0.5 px): float rounding, not a model difference


def hand_keypoints(rng: np.random.Generator) -> np.ndarray:
    model = load_hand_model("open")
    with torch.no_grad():
        out = model("right", rng.normal(0, 0.8, (NUM, 3)), rng.normal(0, 0.4, (NUM, 45)), None,
                    rng.uniform(-0.05, 0.05, (NUM, 3)))
    return out.keypoints.double().numpy()  # (NUM, 21, 3) model frame


def random_camera(rng: np.random.Generator, target: np.ndarray) -> Camera:
    width, height = int(rng.integers(160, 900)), int(rng.integers(160, 900))
    direction = rng.normal(size=3)
    eye = target + direction / np.linalg.norm(direction) * rng.uniform(0.5, 1.2)
    R, t = look_at(eye, target, up=(0, 1, 0), roll=rng.uniform(-np.pi, np.pi))
    fx = rng.uniform(0.8, 2.0) * max(width, height)
    fy = fx * (1.0 if rng.random() < 0.5 else rng.uniform(0.8, 1.25))
    K = np.array([[fx, 0, width / 2 + rng.uniform(-0.15, 0.15) * width],
                  [0, fy, height / 2 + rng.uniform(-0.15, 0.15) * height], [0, 0, 1]])
    return Camera(K, R, t, width, height)


def random_blender_settings(rng: np.random.Generator, target: np.ndarray) -> BlenderCamera:
    eye = target + rng.normal(size=3) * 0.2 + np.array([0, 0.8, 0])
    R, t = look_at(eye, target, up=(0, 1, 0), roll=rng.uniform(-0.5, 0.5))
    pose = to_blender(Camera.from_fov(R, t, 100, 100, 100.0), world_to_blender=MODEL_TO_BLENDER)
    return BlenderCamera(matrix_world=pose.matrix_world, lens=float(rng.uniform(18, 85)),
                         sensor_width=float(rng.uniform(10, 40)), sensor_height=float(rng.uniform(10, 40)),
                         sensor_fit=str(rng.choice(["AUTO", "HORIZONTAL", "VERTICAL"])),
                         shift_x=float(rng.uniform(-0.3, 0.3)), shift_y=float(rng.uniform(-0.3, 0.3)),
                         resolution_x=int(rng.integers(120, 800)), resolution_y=int(rng.integers(120, 800)))


@pytest.fixture(scope="module")
def projected(tmp_path_factory):
    rng = np.random.default_rng(3)
    keypoints = hand_keypoints(rng)
    cameras = [random_camera(rng, kp.mean(0)) for kp in keypoints[: NUM // 2]]
    # tall images of short focal lengths: a lens (and a sensor side) under Blender's 1 mm, which it raised to
    # 1 mm, zooming the image 12 % against every label
    for k, (width, height, focal) in enumerate(((64, 320, 32.0), (4, 600, 300.0))):
        R, t = look_at(keypoints[k].mean(0) + np.array([0.0, 0.5, 0.0]), keypoints[k].mean(0), up=(0, 0, 1))
        cameras[k] = Camera(np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]), R, t, width, height)
    settings = [to_blender(c, sensor_size=float(rng.uniform(20, 40)), sensor_fit=str(fit),
                           world_to_blender=MODEL_TO_BLENDER)
                for c, fit in zip(cameras, rng.choice(["AUTO", "HORIZONTAL", "VERTICAL"], len(cameras)))]
    for k in (0, 1):  # (AUTO measures the lens against the sensor's width, which is under 1 mm here too)
        settings[k] = to_blender(cameras[k], sensor_fit="AUTO", world_to_blender=MODEL_TO_BLENDER)
    settings += [random_blender_settings(rng, kp.mean(0)) for kp in keypoints[NUM // 2:]]
    points = keypoints @ MODEL_TO_BLENDER.T
    work = tmp_path_factory.mktemp("camera_session")
    session = run_blender("camera_session.py", work / "no-addon.zip", work,
                          {"cameras": [s.to_dict() for s in settings], "points": points.tolist()})
    return keypoints, cameras, settings, session


def blender_pixels(view: np.ndarray, width: int, height: int) -> np.ndarray:
    """``world_to_camera_view`` gives (0, 0) at the bottom-left corner, (1, 1) at the top-right."""
    return np.stack([view[:, 0] * width, (1.0 - view[:, 1]) * height], axis=1)


def test_our_cameras_project_where_blender_does(projected):
    keypoints, cameras, _, session = projected
    views = session.arrays["views"]
    for i, camera in enumerate(cameras):
        ours, depth = camera.project(keypoints[i])
        theirs = blender_pixels(views[i], camera.width, camera.height)
        assert np.all(depth > 0)
        assert np.abs(ours - theirs).max() < TOLERANCE_PX, (i, np.abs(ours - theirs).max())
        assert np.allclose(depth, views[i][:, 2], atol=1e-6)  # Blender's z is the distance along the axis


def test_blender_cameras_read_back_project_where_blender_does(projected):
    keypoints, cameras, settings, session = projected
    views = session.arrays["views"]
    fits = set()
    for i, stored in enumerate(session["stored"]):
        camera = from_blender(BlenderCamera.from_dict(stored), world_to_blender=MODEL_TO_BLENDER)
        fits.add(stored["sensor_fit"])
        ours, _ = camera.project(keypoints[i])
        theirs = blender_pixels(views[i], stored["resolution_x"], stored["resolution_y"])
        assert np.abs(ours - theirs).max() < TOLERANCE_PX, (i, stored, np.abs(ours - theirs).max())
        if i < len(cameras):  # the round trip through Blender gives back our intrinsics and pose
            assert np.allclose(camera.K, cameras[i].K, rtol=1e-4, atol=1e-3)
            assert np.allclose(camera.R, cameras[i].R, atol=1e-5)
    assert fits == {"AUTO", "HORIZONTAL", "VERTICAL"}
