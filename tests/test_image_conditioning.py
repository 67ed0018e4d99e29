"""Conditioning of hand image generation: the export's images and labels, pixel for pixel, and a
local view that is exactly the hands' box cropped and resized."""

from __future__ import annotations

import numpy as np
import pytest
from handforge.engines.image.conditioning import (
    CONTROL_KINDS,
    condition,
    crop_camera,
    depth_image,
    local_box,
    normal_image,
)
from handforge.export.run import make_sample
from handforge.export.spec import parse_spec
from handforge.hands import load_hand_model
from handforge.render.camera import Camera
from handforge.render.gl import renderer
from handforge_shared.poses import HandPose

SPEC = {"seed": 3, "samples": 2, "width": 160, "height": 120, "render": {"engine": "none"},
        "camera": {"distance": [0.35, 0.5]}, "outputs": ["mesh", "skeleton", "depth", "normals"]}


@pytest.fixture(scope="module")
def sample():
    model = load_hand_model("open")
    record, files = make_sample(parse_spec(SPEC), 1, model, renderer(), None)
    hands = {side: HandPose.from_dict(h["params_world"]) for side, h in record["hands"].items()}
    camera = Camera.from_dict(record["camera"])
    return model, record, files, hands, camera


def test_global_view_is_the_exports_sample(sample):
    model, record, files, hands, camera = sample
    cond = condition(model, hands, camera, local_size=(96, 96))
    view = cond.global_view
    assert np.array_equal(view.images["mesh"], files["mesh.png"])
    assert np.array_equal(view.images["skeleton"], files["skeleton.png"])
    assert np.array_equal(view.depth, files["depth.npy"])
    assert np.array_equal(view.normals, files["normals.npy"])
    for side, labels in record["hands"].items():
        assert np.allclose(view.hands[side]["keypoints_2d"], labels["keypoints_2d"], atol=1e-9)
        assert view.hands[side]["visible"] == labels["visible"]
    assert view.box == pytest.approx(
        [min(h["bbox_projected"][0] for h in record["hands"].values()),
         min(h["bbox_projected"][1] for h in record["hands"].values()),
         *view.box[2:]])


def test_local_view_is_the_hand_box_cropped_and_resized(sample):
    model, _, _, hands, camera = sample
    cond = condition(model, hands, camera, local_size=(96, 64))
    crop, local = cond.crop, cond.local_view
    assert local.camera.width == 96 and local.camera.height == 64
    assert crop[2] / crop[3] == pytest.approx(96 / 64)  # widened to the output's aspect: no distortion
    box = cond.global_view.box
    assert crop[0] <= box[0] and crop[1] <= box[1]
    assert crop[0] + crop[2] >= box[0] + box[2] and crop[1] + crop[3] >= box[1] + box[3]
    scale = 96 / crop[2]
    for side, labels in cond.global_view.hands.items():
        expected = (np.array(labels["keypoints_2d"]) - crop[:2]) * scale
        assert np.allclose(local.hands[side]["keypoints_2d"], expected, atol=1e-6)
    # the hands fill the local view and stay inside it
    hand = local.depth > 0
    rows, cols = np.nonzero(hand.any(1))[0], np.nonzero(hand.any(0))[0]
    assert rows[0] > 0 and cols[0] > 0 and rows[-1] < 63 and cols[-1] < 95
    assert max((cols[-1] - cols[0]) / 96, (rows[-1] - rows[0]) / 64) > 1 / (1 + 2 * 0.15) - 0.05
    # the local image matches the global one resampled at the crop (nearest pixel, where both are hand)
    gl_depth = cond.global_view.depth
    jj, ii = np.nonzero(hand)
    u = crop[0] + (ii + 0.5) / scale
    v = crop[1] + (jj + 0.5) / scale
    gi, gj = np.floor(u).astype(int), np.floor(v).astype(int)
    inside = (gi >= 0) & (gi < camera.width) & (gj >= 0) & (gj < camera.height)
    gi, gj, ii, jj = gi[inside], gj[inside], ii[inside], jj[inside]
    both = gl_depth[gj, gi] > 0
    assert both.mean() > 0.9
    assert np.median(np.abs(gl_depth[gj, gi][both] - local.depth[jj, ii][both])) < 2e-3


def test_crop_camera_and_box_maths():
    camera = Camera.from_fov(np.eye(3), [0, 0, 1.0], 200, 100, 150.0)
    crop = local_box([50, 20, 40, 20], 64, 64, margin=0.0)
    assert crop == pytest.approx([50, 10, 40, 40])  # squared about the centre
    local = crop_camera(camera, crop, 64, 64)
    points = np.array([[0.1, -0.05, 0.0], [-0.2, 0.1, 0.3]])
    uv, _ = camera.project(points)
    luv, _ = local.project(points)
    assert np.allclose(luv, (uv - [50, 10]) * 64 / 40)


def test_depth_image_is_brighter_nearer_and_black_outside():
    depth = np.array([[0.0, 0.5], [1.0, 0.75]], np.float32)
    image = depth_image(depth)[..., 0]
    assert image[0, 0] == 0 and image[0, 1] == 255 and image[1, 0] == round(0.25 * 255)
    assert image[0, 1] > image[1, 1] > image[1, 0]


def test_normal_image_is_red_right_green_up_blue_towards_the_viewer():
    """The normals image's colours (README: red right, green up, blue towards the viewer; facing the camera is
    (128, 128, 255)) from camera-frame normals, whose axes are OpenCV's: x right, y down, z forward (away from
    the viewer). The directions are read off the camera's own projection, not assumed."""
    camera = Camera.from_fov(np.eye(3), np.zeros(3), 100, 100, focal_px=100.0)
    centre = camera.project(np.array([0.0, 0.0, 1.0]))[0]
    for direction, moves in (((1.0, 0.0, 0.0), (1, 0)), ((0.0, -1.0, 0.0), (0, -1))):  # right; up (row falls)
        moved = camera.project(np.array([0.0, 0.0, 1.0]) + 0.1 * np.array(direction))[0]
        assert np.array_equal(np.sign(np.round(moved - centre, 6)), moves)
    # (0, 0, −1) points from the surface back towards the camera at the origin
    assert camera.project(np.array([0.0, 0.0, 1.0]))[1] > camera.project(np.array([0.0, 0.0, 0.9]))[1]
    normals = np.array([[[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]],
                        [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]]], np.float32)
    depth = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], np.float32)
    image = normal_image(normals, depth)
    assert image.dtype == np.uint8
    # 0 → (0 + 1)/2·255 = 127.5, which rounds (half to even) to 128
    assert image[0, 0].tolist() == [255, 128, 128]  # pointing right: full red
    assert image[0, 1].tolist() == [128, 255, 128]  # pointing up in the image: full green
    assert image[0, 2].tolist() == [128, 128, 255]  # towards the viewer: full blue
    assert image[1, 0].tolist() == [0, 128, 128]  # left: no red
    assert image[1, 1].tolist() == [128, 0, 128]  # down: no green
    assert image[1, 2].tolist() == [0, 0, 0]  # background (no depth): black


def test_openpose_controlnets_get_hands_drawn_as_openpose_draws_them(sample):
    # before: openpose ControlNets got our per-finger colours, not the drawings they were trained on
    from handforge.engines.image.controls import kind_from_name
    from handforge.render.overlay import OPENPOSE_EDGES, OPENPOSE_FROM_OURS
    from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS

    model, record, files, hands, camera = sample
    image = condition(model, hands, camera).global_view.images["openpose"]
    assert kind_from_name("control_v11p_sd15_openpose") == "openpose" and kind_from_name("my-pose-net") == "skeleton"
    # OpenPose's order: the wrist, then each finger from its base to its tip; its bones join those
    names = [KEYPOINT_NAMES[i] for i in OPENPOSE_FROM_OURS]
    assert names[:5] == ["wrist", "thumb1", "thumb2", "thumb3", "thumb4"] and names[-1] == "pinky4"
    ours = {(OPENPOSE_FROM_OURS.index(k), OPENPOSE_FROM_OURS.index(p)) for k, p in enumerate(KEYPOINT_PARENTS) if p >= 0}
    assert {(b, a) for a, b in OPENPOSE_EDGES} == ours
    for side, labels in record["hands"].items():  # a blue dot on every keypoint in view
        for x, y in np.array(labels["keypoints_2d"]):
            if 2 <= x < camera.width - 2 and 2 <= y < camera.height - 2:
                assert tuple(image[int(y), int(x)]) == (0, 0, 255)
    colours = {tuple(c) for c in image.reshape(-1, 3)} - {(0, 0, 0), (0, 0, 255)}
    assert (255, 0, 0) in colours and len(colours) >= 10  # the bones' hues around the wheel, starting at red


def test_the_controls_param_names_every_control_kind_the_engine_takes():
    """The controls doc (welcome.kinds, the add-on's tooltip) listed four kinds; openpose, the fifth, was missing."""
    from handforge.engines.image import jobs as image_jobs
    from handforge.engines.transfer import jobs as transfer_jobs
    from handforge.server.registry import Registry

    registry = Registry()
    image_jobs.register_jobs(registry)
    transfer_jobs.register_jobs(registry)
    for name in ("image.generate", "image.transfer"):
        doc = registry.kind(name).schema.params["controls"].doc
        assert all(kind in doc for kind in CONTROL_KINDS), (name, doc)
