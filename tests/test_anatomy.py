"""Anatomy: the anatomical-angle ↔ axis-angle conversion, joint limits, Blender compatibility."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from handforge_shared import anatomy as A
from handforge_shared.poses import HandPose
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.skeleton import FINGER_JOINTS, JOINT_NAMES, KEYPOINT_NAMES

FRAMES = {side: load_open_hand_rig(side).joint_frames() for side in ("left", "right")}


def keypoints(model, side, angles):
    hp = A.anatomical_to_hand_pose(angles, FRAMES[side], side)
    return model(side, np.zeros(3), hp).keypoints[0].detach().numpy()


def kp(name):
    return KEYPOINT_NAMES.index(name)


# Angles up to 1.3× the widest range: covers every joint's limits and beyond, away from the
# |abd| = 90° gimbal lock.
angle_batches = arrays(np.float64, (4, 15, 3), elements=st.floats(-1.2, 1.2, allow_nan=False))


@settings(max_examples=60, deadline=None)
@given(angles=angle_batches, side=st.sampled_from(["left", "right"]))
def test_round_trip_anatomical_axis_angle(angles, side):
    hand_pose = A.anatomical_to_hand_pose(angles, FRAMES[side], side)
    assert hand_pose.shape == (4, 45)
    back = A.hand_pose_to_anatomical(hand_pose, FRAMES[side], side)
    np.testing.assert_allclose(back, angles, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(hand_pose=arrays(np.float64, (45,), elements=st.floats(-1.0, 1.0, allow_nan=False)))
def test_round_trip_axis_angle_anatomical(hand_pose):
    # Any rotation (within |abd| < 90°) has exactly one anatomical decomposition.
    angles = A.hand_pose_to_anatomical(hand_pose, FRAMES["right"], "right")
    assume(np.abs(angles[:, 1]).max() <= np.radians(85))
    again = A.anatomical_to_matrix(angles, FRAMES["right"], "right")
    from handforge_shared.rotations import axis_angle_to_matrix

    np.testing.assert_allclose(again, axis_angle_to_matrix(hand_pose.reshape(15, 3)), atol=1e-9)


def test_torch_matches_numpy_and_is_differentiable():
    rng = np.random.default_rng(3)
    angles = rng.uniform(A.LIMITS_RAD[..., 0], A.LIMITS_RAD[..., 1], size=(8, 15, 3))
    t = torch.tensor(angles, requires_grad=True)
    hp_t = A.anatomical_to_hand_pose(t, FRAMES["left"], "left")
    np.testing.assert_allclose(hp_t.detach().numpy(), A.anatomical_to_hand_pose(angles, FRAMES["left"], "left"),
                               atol=1e-12)
    back = A.hand_pose_to_anatomical(hp_t, FRAMES["left"], "left")
    loss = A.limit_violation(back * 1.5).square().sum()
    loss.backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # float32 on the way in stays float32
    assert A.anatomical_to_hand_pose(t.detach().float(), FRAMES["right"], "right").dtype == torch.float32


def test_left_is_the_mirror_of_right():
    rng = np.random.default_rng(4)
    angles = rng.uniform(A.LIMITS_RAD[..., 0], A.LIMITS_RAD[..., 1], size=(15, 3))
    right = HandPose(np.zeros(3), A.anatomical_to_hand_pose(angles, FRAMES["right"], "right"), np.zeros(10),
                     np.zeros(3))
    left = A.anatomical_to_hand_pose(angles, FRAMES["left"], "left")
    np.testing.assert_allclose(right.mirrored().hand_pose, left, atol=1e-12)


@pytest.mark.parametrize("side", ["left", "right"])
def test_angle_signs_mean_the_same_motion_on_both_hands(model, side):
    rest = keypoints(model, side, np.zeros((15, 3)))
    palm_normal = np.array([0.0, -1.0, 0.0])  # palm faces -Y on both sides
    towards_thumb = rest[kp("thumb4")] - rest[kp("pinky4")]
    i1 = JOINT_NAMES.index("index1") - 1
    angles = np.zeros((15, 3))
    angles[i1, 0] = np.radians(40)  # flexion curls towards the palm
    moved = keypoints(model, side, angles)[kp("index4")] - rest[kp("index4")]
    assert moved @ palm_normal > 0.02
    angles = np.zeros((15, 3))
    angles[i1, 1] = np.radians(15)  # positive abduction moves towards the thumb
    moved = keypoints(model, side, angles)[kp("index4")] - rest[kp("index4")]
    assert moved @ towards_thumb / np.linalg.norm(towards_thumb) > 0.01
    t1 = JOINT_NAMES.index("thumb1") - 1
    angles = np.zeros((15, 3))
    angles[t1, 0] = np.radians(60)  # thumb CMC flexion brings the thumb tip towards the little finger
    before = np.linalg.norm(rest[kp("thumb4")] - rest[kp("pinky1")])
    after = np.linalg.norm(keypoints(model, side, angles)[kp("thumb4")] - rest[kp("pinky1")])
    assert after < before - 0.02


_BLENDER_EULER = """
import json, sys
import bpy, mathutils  # mathutils is importable once bpy is
eulers, mode = json.load(sys.stdin)
print(json.dumps([[list(r) for r in mathutils.Euler(e, mode).to_matrix()] for e in eulers]))
"""


def blender_euler_matrices(eulers: np.ndarray, mode: str) -> np.ndarray:
    """Blender's own Euler → matrix, run in a subprocess (bpy stays out of the test process)."""
    pytest.importorskip("bpy")
    out = subprocess.run([sys.executable, "-c", _BLENDER_EULER], input=json.dumps([eulers.tolist(), mode]),
                         capture_output=True, text=True, timeout=120, check=True)
    return np.array(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_blender_yzx_euler_is_the_same_rotation():
    rng = np.random.default_rng(5)
    angles = {side: rng.uniform(-0.8, 0.8, size=(15, 3)) for side in ("left", "right")}
    euler = {side: A.anatomical_to_blender_euler(a, side) for side, a in angles.items()}
    local = blender_euler_matrices(np.concatenate([euler["left"], euler["right"]]), A.BLENDER_EULER_MODE)
    for i, side in enumerate(("left", "right")):
        expected = A.anatomical_to_matrix(angles[side], FRAMES[side], side)
        frames = FRAMES[side][1:]
        np.testing.assert_allclose(frames @ local[15 * i:15 * (i + 1)] @ np.swapaxes(frames, 1, 2), expected,
                                   atol=1e-6)
        np.testing.assert_allclose(A.blender_euler_to_anatomical(euler[side], side), angles[side], atol=1e-12)


def test_blender_limit_box_matches_the_static_limits():
    rng = np.random.default_rng(6)
    for side in ("left", "right"):
        box = A.blender_rotation_limits(side)
        assert list(box) == list(A.FINGER_JOINT_NAMES)
        angles = rng.uniform(-2.2, 2.2, size=(2000, 15, 3))
        euler = A.anatomical_to_blender_euler(angles, side)
        inside_blender = np.ones(angles.shape[:2], dtype=bool)
        for k, name in enumerate(A.FINGER_JOINT_NAMES):
            for axis, col in (("x", 0), ("y", 1), ("z", 2)):
                lo, hi = box[name][f"min_{axis}"], box[name][f"max_{axis}"]
                assert lo < hi
                inside_blender[:, k] &= (euler[:, k, col] >= lo) & (euler[:, k, col] <= hi)
        lo, hi = A.LIMITS_RAD[..., 0], A.LIMITS_RAD[..., 1]
        inside_static = ((angles >= lo) & (angles <= hi)).all(-1)
        np.testing.assert_array_equal(inside_blender, inside_static)


def test_every_joint_has_documented_limits():
    assert list(A.JOINT_LIMITS) == list(JOINT_NAMES[1:])
    for name, lim in A.JOINT_LIMITS.items():
        arr = lim.as_array()
        assert (arr[:, 0] < arr[:, 1]).all(), name
        assert arr[0, 0] <= 0.0 <= arr[0, 1], f"{name}: the rest pose must be allowed"
        assert len(lim.why) > 20
    # textbook anchors (AAOS 1965 and Kapandji, cited in anatomy's docstring)
    assert A.JOINT_LIMITS["index1"].flex[1] == 90 and A.JOINT_LIMITS["pinky1"].flex[1] == 95
    assert A.JOINT_LIMITS["middle2"].flex[1] >= 100 and A.JOINT_LIMITS["ring3"].flex[1] >= 80


def test_violation_amounts_and_coupling():
    angles = np.zeros((3, 15, 3))
    assert A.limit_violation(angles).max() == 0
    i2 = JOINT_NAMES.index("index2") - 1
    angles[1, i2, 0] = A.LIMITS_RAD[i2, 0, 1] + 0.2  # PIP over-flexed by 0.2 rad
    v = A.limit_violation(angles)
    assert v[1, i2, 0] == pytest.approx(0.2) and v[1].sum() == pytest.approx(0.2)
    # MCP abduction: 18° is fine with a straight finger, too much with the MCP bent 90°
    m1 = FINGER_JOINTS["middle"][0] - 1
    angles[2, m1] = np.radians([0, 12, 0])
    assert A.limit_violation(angles[2]).max() == 0
    angles[2, m1, 0] = np.radians(90)
    expected = np.radians(12) - np.radians(15) * (1 - A.MCP_ABD_COUPLING)
    assert A.limit_violation(angles[2])[m1, 1] == pytest.approx(expected)
    assert A.within_limits(angles).tolist() == [True, False, False]
    # torch gives the same numbers
    np.testing.assert_allclose(A.limit_violation(torch.tensor(angles)).numpy(), A.limit_violation(angles))


@settings(max_examples=40, deadline=None)
@given(angles=angle_batches)
def test_clamp_lands_inside_and_is_idempotent(angles):
    clamped = A.clamp_to_limits(angles)
    assert A.within_limits(clamped, tolerance_deg=1e-9).all()
    np.testing.assert_allclose(A.clamp_to_limits(clamped), clamped)
    inside = A.within_limits(angles, tolerance_deg=0.0)
    np.testing.assert_allclose(clamped[inside], angles[inside])


@pytest.mark.parametrize("side", ["left", "right"])
def test_clamp_pose_moves_only_poses_outside_the_limits_into_them_in_numpy_and_torch(side):
    rng = np.random.default_rng(3)
    inside = A.anatomical_to_hand_pose(A.clamp_to_limits(rng.normal(0, 0.3, (4, 15, 3))), FRAMES[side], side)
    outside = A.anatomical_to_hand_pose(rng.normal(0, 1.5, (4, 15, 3)), FRAMES[side], side)
    poses = np.concatenate([inside, outside])
    assert not A.within_limits(A.hand_pose_to_anatomical(outside, FRAMES[side], side)).any()
    clamped = A.clamp_pose(poses, FRAMES[side], side)
    assert A.within_limits(A.hand_pose_to_anatomical(clamped, FRAMES[side], side), tolerance_deg=1e-6).all()
    np.testing.assert_allclose(clamped[:4], inside, atol=1e-9)
    # torch: the same poses, in the input's dtype
    as_torch = A.clamp_pose(torch.tensor(poses, dtype=torch.float32), FRAMES[side], side)
    assert as_torch.dtype == torch.float32
    np.testing.assert_allclose(as_torch.numpy(), clamped, atol=1e-5)



@pytest.mark.gpu
def test_clamp_pose_of_a_gpu_tensor_stays_on_the_gpu_and_matches_numpy():
    """The rig's frames went through numpy after moving to the pose's device: a CUDA pose failed."""
    poses = A.anatomical_to_hand_pose(np.random.default_rng(4).normal(0, 1.5, (6, 15, 3)), FRAMES["right"], "right")
    on_gpu = A.clamp_pose(torch.tensor(poses, device="cuda"), FRAMES["right"], "right")
    assert on_gpu.device.type == "cuda"
    np.testing.assert_allclose(on_gpu.cpu().numpy(), A.clamp_pose(poses, FRAMES["right"], "right"), atol=1e-9)

def test_pose_violation_from_axis_angles():
    bent_back = np.zeros((15, 3))
    bent_back[JOINT_NAMES.index("ring3") - 1, 0] = np.radians(-40)  # DIP hyperextended 40°
    hp = A.anatomical_to_hand_pose(bent_back, FRAMES["right"], "right")
    v = A.pose_violation(hp, FRAMES["right"], "right")
    assert np.degrees(v.max()) == pytest.approx(30.0, abs=1e-6)


def test_curl_and_spread_sliders(model):
    flat = keypoints(model, "right", A.curl_spread_angles())
    fist = A.curl_spread_angles(curl={f: 1.0 for f in ("thumb", "index", "middle", "ring", "pinky")})
    assert A.within_limits(fist)
    curled = keypoints(model, "right", fist)
    for tip in ("index4", "middle4", "ring4", "pinky4"):
        assert np.linalg.norm(curled[kp(tip)] - curled[kp("wrist")]) < 0.75 * np.linalg.norm(
            flat[kp(tip)] - flat[kp("wrist")])
    spread = A.curl_spread_angles(spread={"index": 1, "pinky": 1, "ring": 1, "thumb": 1}, curl={"index": 5})
    assert A.within_limits(spread)
    s = keypoints(model, "right", spread)
    assert np.linalg.norm(s[kp("pinky4")] - s[kp("ring4")]) > np.linalg.norm(flat[kp("pinky4")] - flat[kp("ring4")])


FINGER_NAMES = ("thumb", "index", "middle", "ring", "pinky")
slider = st.floats(-1.0, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(curl=st.fixed_dictionaries({f: st.floats(0.0, 1.0) for f in FINGER_NAMES}),
       spread=st.fixed_dictionaries({f: slider for f in FINGER_NAMES}))
def test_curl_spread_of_inverts_the_sliders(curl, spread):
    # Curl alone and spread alone come back exactly; together the flexion coupling narrows the
    # MCP abduction, which then reads as less spread.
    got_curl, _ = A.curl_spread_of(A.curl_spread_angles(curl=curl))
    _, got_spread = A.curl_spread_of(A.curl_spread_angles(spread=spread))
    for f in FINGER_NAMES:
        assert got_curl[f] == pytest.approx(curl[f], abs=1e-12)
        assert got_spread[f] == pytest.approx(spread[f], abs=1e-12)
    both_curl, both_spread = A.curl_spread_of(A.curl_spread_angles(curl=curl, spread=spread))
    for f in FINGER_NAMES:
        assert both_curl[f] == pytest.approx(curl[f], abs=1e-12)
        assert abs(both_spread[f]) <= abs(spread[f]) + 1e-12


def test_curl_spread_of_fits_any_pose():
    # A pose off the synergy (only the PIP bent) reads as a partial curl; out-of-range values clip.
    angles = np.zeros((15, 3))
    angles[JOINT_NAMES.index("index2") - 1, 0] = np.radians(110)
    curl, spread = A.curl_spread_of(angles)
    assert 0.2 < curl["index"] < 0.8 and curl["middle"] == 0.0 and spread["index"] == 0.0
    angles[JOINT_NAMES.index("index1") - 1, 1] = np.radians(90)
    assert A.curl_spread_of(angles)[1]["index"] == 1.0
    with pytest.raises(ValueError, match=r"\(15, 3\)"):
        A.curl_spread_of(np.zeros(45))


def test_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match=r"\(\.\.\., 15, 3\)"):
        A.anatomical_to_hand_pose(np.zeros((14, 3)), FRAMES["right"], "right")
    with pytest.raises(ValueError, match="45"):
        A.hand_pose_to_anatomical(np.zeros(44), FRAMES["right"], "right")
    with pytest.raises(ValueError, match="frames"):
        A.anatomical_to_hand_pose(np.zeros((15, 3)), np.zeros((3, 3)), "right")
    with pytest.raises(ValueError, match="side"):
        A.anatomical_to_hand_pose(np.zeros((15, 3)), FRAMES["right"], "middle")
    with pytest.raises(ValueError, match="unknown finger joints"):
        A.anatomical_from_degrees({"index4": (1, 2, 3)})


@settings(max_examples=60, deadline=None)
@given(finger=st.sampled_from(FINGER_NAMES), base=st.integers(0, 2**31 - 1),
       old=st.tuples(st.floats(0.05, 0.95), st.floats(-0.9, 0.9)), new=st.tuples(st.floats(0.05, 0.95), st.floats(-0.9, 0.9)))
def test_slider_offsets_move_only_their_own_reading(finger, base, old, new):
    # Any pose whose finger reads (old curl, old spread): adding the difference of the two slider
    # angles makes it read the new values, and leaves every other finger's reading alone.
    rng = np.random.default_rng(base)
    angles = rng.normal(0.0, 0.2, (15, 3))
    rows = [j - 1 for j in FINGER_JOINTS[finger]]
    full = A.slider_angles(finger, 1.0, 0.0)[rows, 0]
    off_synergy = angles[rows, 0] - (angles[rows, 0] @ full) / (full @ full) * full  # reads as no curl
    angles[rows, 0] = off_synergy
    angles[rows[0], 1] = 0.0
    angles += A.slider_angles(finger, *old)
    before_curl, before_spread = A.curl_spread_of(angles)
    assert before_curl[finger] == pytest.approx(old[0], abs=1e-12)
    assert before_spread[finger] == pytest.approx(old[1], abs=1e-12)
    moved = angles + A.slider_angles(finger, *new) - A.slider_angles(finger, *old)
    got_curl, got_spread = A.curl_spread_of(moved)
    assert got_curl[finger] == pytest.approx(new[0], abs=1e-12)
    assert got_spread[finger] == pytest.approx(new[1], abs=1e-12)
    for f in FINGER_NAMES:
        if f != finger:
            assert (got_curl[f], got_spread[f]) == (before_curl[f], before_spread[f])
    np.testing.assert_array_equal(np.delete(moved, rows, axis=0), np.delete(angles, rows, axis=0))
    np.testing.assert_array_equal(moved[rows, 2], angles[rows, 2])  # twist never moves
    with pytest.raises(ValueError, match="unknown finger"):
        A.slider_angles("toe", 0.0, 0.0)
