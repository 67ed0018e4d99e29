"""Pose library: enough poses, within the joint limits, recognisable, mirrored for the left hand."""

from __future__ import annotations

import numpy as np
import pytest

from handforge_shared import anatomy as A
from handforge_shared import pose_library as PL
from handforge_shared.poses import HandPose
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.skeleton import KEYPOINT_NAMES

LONG_FINGERS = ("index", "middle", "ring", "pinky")


@pytest.fixture(scope="module")
def keypoints(model):
    """name → (21, 3) keypoints of the right hand in that pose (one batched forward pass)."""
    names = PL.names()
    poses = [PL.get(n) for n in names]
    hp = np.stack([p.hand_pose for p in poses])
    out = model("right", np.zeros((len(names), 3)), hp).keypoints.detach().numpy()
    return dict(zip(names, out))


def kp(points, name):
    return points[KEYPOINT_NAMES.index(name)]


def palm_centre(points):
    return np.mean([kp(points, n) for n in ("wrist", "index1", "middle1", "ring1", "pinky1")], axis=0)


def extension(points, flat, finger):
    """Fingertip distance from the finger's base joint, relative to the flat hand (1 = straight)."""
    tip, base = f"{finger}4", f"{finger}1"
    return np.linalg.norm(kp(points, tip) - kp(points, base)) / np.linalg.norm(kp(flat, tip) - kp(flat, base))


def extended_fingers(points, flat):
    return {f for f in LONG_FINGERS if extension(points, flat, f) > 0.9}


def curled_fingers(points, flat):
    return {f for f in LONG_FINGERS if extension(points, flat, f) < 0.6}


def test_library_size_categories_and_descriptions():
    names = PL.names()
    assert len(names) >= 40 and len(set(names)) == len(names)
    cats = PL.categories()
    assert set(cats) == {"gesture", "counting", "grasp: power", "grasp: intermediate", "grasp: precision"}
    assert sum(len(PL.names(c)) for c in cats) == len(names)
    for required in ("flat", "relaxed", "fist", "point", "ok", "thumbs_up", "victory", "spread", "claw", "pinch",
                     "count_1", "count_2", "count_3", "count_4", "count_5", "large_diameter", "small_diameter",
                     "medium_wrap", "precision_disk", "precision_sphere", "tripod", "lateral_pinch", "fixed_hook",
                     "palmar_pinch"):
        assert required in names
    for n in names:
        assert len(PL.describe(n)) > 10
    grasps = [n for c in cats if c.startswith("grasp") for n in PL.names(c)]
    assert len(grasps) >= 15 and all(PL.spec(n).feix for n in grasps)
    with pytest.raises(KeyError, match="unknown pose 'jazz_hands'"):
        PL.get("jazz_hands")
    with pytest.raises(KeyError, match="unknown pose category"):
        PL.names("dance")


def test_every_pose_is_within_the_joint_limits():
    rig_frames = PL.right_frames()
    for name in PL.names():
        angles = PL.anatomical(name)
        assert A.within_limits(angles), f"{name} violates {np.degrees(A.limit_violation(angles)).max():.2f}°"
        # and measured back from the axis-angles it produces
        v = A.pose_violation(PL.get(name).hand_pose, rig_frames, "right")
        assert np.degrees(v.max()) < 1e-6, name


def test_fist_closes_every_finger(keypoints):
    flat, fist = keypoints["flat"], keypoints["fist"]
    for finger in ("thumb", *LONG_FINGERS):
        tip = f"{finger}4"
        assert np.linalg.norm(kp(fist, tip) - palm_centre(fist)) < np.linalg.norm(kp(flat, tip) - palm_centre(flat))
    assert curled_fingers(fist, flat) == set(LONG_FINGERS)


@pytest.mark.parametrize("name, extended", [
    ("point", {"index"}), ("count_1", {"index"}), ("victory", {"index", "middle"}),
    ("count_2", {"index", "middle"}), ("count_3", {"index", "middle", "ring"}),
    ("count_4", set(LONG_FINGERS)), ("count_5", set(LONG_FINGERS)), ("rock", {"index", "pinky"}),
    ("call_me", {"pinky"}), ("love_you", {"index", "pinky"}), ("thumbs_up", set()), ("fist", set()),
])
def test_extended_fingers_are_the_named_ones(keypoints, name, extended):
    flat = keypoints["flat"]
    points = keypoints[name]
    assert extended_fingers(points, flat) == extended
    assert curled_fingers(points, flat) == set(LONG_FINGERS) - extended


def test_thumb_states(keypoints):
    flat = keypoints["flat"]
    thumb_len = np.linalg.norm(kp(flat, "thumb4") - kp(flat, "thumb1"))
    for name in ("ok", "pinch", "tip_pinch", "palmar_pinch"):  # thumb and index tips touch
        points = keypoints[name]
        assert np.linalg.norm(kp(points, "thumb4") - kp(points, "index4")) < 0.015, name
    # counting 4: the thumb lies across the palm, its tip towards the ring finger's base (its MCP and
    # IP stay nearly straight: bent further, the thickened skin of a skinned thumb sinks into the palm)
    c4 = keypoints["count_4"]
    assert np.linalg.norm(kp(c4, "thumb4") - kp(c4, "ring1")) < 0.5 * np.linalg.norm(kp(flat, "thumb4") - kp(flat, "ring1"))
    # thumbs up and count_5: the thumb stays long and out of the palm
    for name in ("thumbs_up", "count_5", "call_me"):
        points = keypoints[name]
        assert np.linalg.norm(kp(points, "thumb4") - kp(points, "thumb1")) > 0.95 * thumb_len, name
    # spread: fingertips further apart than on the flat hand
    spread = keypoints["spread"]
    span = lambda p: np.linalg.norm(kp(p, "index4") - kp(p, "pinky4"))  # noqa: E731
    assert span(spread) > 1.1 * span(flat) and span(keypoints["blade"]) < span(flat)


def test_left_hand_is_the_mirror_image(model):
    for name in ("ok", "tripod", "count_3"):
        right = PL.get(name, "right")
        left = PL.get(name, "left")
        np.testing.assert_allclose(left.hand_pose, right.mirrored().hand_pose)
        vr = model.forward_pose("right", right).vertices[0].detach().numpy()
        vl = model.forward_pose("left", left).vertices[0].detach().numpy()
        np.testing.assert_allclose(vl, vr * np.array([-1.0, 1.0, 1.0]), atol=1e-5)


def test_rig_argument_accepts_either_side():
    right, left = load_open_hand_rig("right"), load_open_hand_rig("left")
    default = PL.get("medium_wrap")
    for rig in (right, left):
        np.testing.assert_allclose(PL.get("medium_wrap", rig=rig).hand_pose, default.hand_pose, atol=1e-12)
    pose = PL.get("fist", side="left", rig=left)
    assert isinstance(pose, HandPose) and pose.hand_pose.shape == (45,)
    assert not pose.global_orient.any() and not pose.betas.any() and not pose.transl.any()


def test_tight_poses_keep_linear_blend_skinning_folds_small(model):
    """A fist under linear blend skinning folds skin into itself at the knuckles; the library's
    curl stops short of the anatomical maximum to keep that small (it was 14 cm³ at full curl)."""
    from handforge.evaluation.penetration import self_penetration_volume

    for name in ("fist", "thumbs_up"):
        v = model.forward_pose("right", PL.get(name)).vertices[0].detach().numpy()
        assert self_penetration_volume(v, model.faces("right")) * 1e6 < 5.0, name
