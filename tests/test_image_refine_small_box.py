"""Hands the image cannot follow, said in the result's warning: a box under 8 pixels, one latent cell (far from the
camera; refine_hands skipped: a second pass regenerated a box of 1-2 pixels, doubling the job's time for nothing,
unsaid), refine_hands on or off (off, it was not said at all); a hand through the camera's plane (unsaid)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine_small")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd)


def generate(weights, monkeypatch, eye, target, refine: bool = True) -> dict:
    """image.generate's result data for a fist seen from ``eye`` looking at ``target``, refine_hands on or off."""
    root, sd, guidance = weights
    tiny_sd.use_weights(monkeypatch, root, sd, guidance=guidance)
    passes = []
    result = tiny_sd.run_image_job("image.generate", {"steps": 1, "prompt": "a hand", "tas": False,
                                                      "refine_hands": refine},
                                   tiny_sd.fist_in_view(eye, target), progress=passes.append)
    assert np.isfinite(result.arrays["images"]).all()
    return {**result.data, "progress": passes}


def test_refine_on_hands_under_a_pixel_is_skipped_and_said(weights, monkeypatch):
    far = generate(weights, monkeypatch, [-0.08, -300.0, 0.06], [-0.08, 0.0, 0.0])  # the fist at 300 m
    assert 0 < max(far["bbox"][2:]) < 1, far["bbox"]
    assert far["refined_box"] is None and not any(m.startswith("hands ") for m in far["progress"]), far["progress"]
    warning = far.get("warning", "")
    assert "the hands' box is 0.063 × 0.053 pixels, under 8 a side (one cell of the latent image: the hands are far " \
           "from the camera, or all but out of its view), too small for the image to follow their pose: move the " \
           "camera nearer the hands" in warning, warning
    assert "refine_hands skipped: nothing to refine in a box under 8 pixels a side" in warning, warning
    # refine_hands off: the box said all the same
    off = generate(weights, monkeypatch, [-0.08, -300.0, 0.06], [-0.08, 0.0, 0.0], refine=False)
    assert "under 8 a side" in off["warning"] and "refine_hands" not in off["warning"], off["warning"]
    # a few pixels (it was refined: a 512-pixel pass shrunk back into a box of 3, with nothing of it left to see)
    few = generate(weights, monkeypatch, [-0.08, -4.0, 0.06], [-0.08, 0.0, 0.0])
    assert 1 < max(few["bbox"][2:]) < 8 and few["refined_box"] is None, few["bbox"]
    assert "under 8 a side" in few.get("warning", ""), few.get("warning")
    near = generate(weights, monkeypatch, [-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    assert near["refined_box"] is not None and "warning" not in near, near.get("warning")
    assert any(m.startswith("hands ") for m in near["progress"])


def test_a_camera_inside_a_hand_is_said(weights, monkeypatch):
    """The camera between the fist's wrist and its knuckles, looking at the fingers: inside the hand, said; beside the
    wrist, not."""
    from handforge.hands.posed import posed_hand
    from handforge.hands.registry import load_hand_model
    from handforge_shared import pose_library

    from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS

    keypoints = posed_hand(load_hand_model("open"), "right", pose_library.get("fist", side="right"))["keypoints"]
    middle = KEYPOINT_NAMES.index("middle1")  # its bone from the wrist (the middle finger's metacarpal)
    wrist, knuckle = (np.asarray(keypoints[k], np.float64) for k in (KEYPOINT_PARENTS[middle], middle))
    inside = generate(weights, monkeypatch, (wrist + knuckle) / 2, knuckle, refine=False)
    warning = inside.get("warning", "")
    assert "the camera is inside the right hand (0 mm from its bones)" in warning, warning
    assert "move the camera out of the hand" in warning, warning
    assert "warning" not in generate(weights, monkeypatch, [-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0], refine=False)
    # 4 cm beside the palm, looking along it: the wrist behind the camera, the knuckles before it, nothing inside
    # (it warned "reaches behind the camera" of such a view: a review)
    side = np.cross(knuckle - wrist, [0.0, 0.0, 1.0])
    beside = (wrist + knuckle) / 2 + 0.04 * side / np.linalg.norm(side)
    seen = generate(weights, monkeypatch, beside, beside + (knuckle - wrist), refine=False)
    depths = np.array(seen["hands"]["right"]["keypoints_camera"])[:, 2]
    assert (depths <= 0).any() and (depths > 0).any(), depths  # (the case: the hand through the camera's plane)
    assert "inside" not in seen.get("warning", ""), seen.get("warning")
