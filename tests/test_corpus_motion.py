"""Corpus motion building blocks: minimum-jerk timing, timelines, overlays, conversion to poses."""

from __future__ import annotations

import numpy as np
import pytest

from handforge.corpus import motion as M
from handforge.corpus.placement import FORWARD, RIGHT, UP, PalmFrame, place, rig_palm
from handforge_shared import pose_library
from handforge_shared.anatomy import hand_pose_to_anatomical, within_limits
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def hands():
    betas = np.random.default_rng(0).normal(size=10)
    return {side: M.ShapedHand.from_rig(load_open_hand_rig(side), betas) for side in ("left", "right")}


def test_minimum_jerk_profile():
    tau = np.linspace(0, 1, 2001)
    s = M.minimum_jerk(tau)
    assert s[0] == 0 and s[-1] == 1 and np.all(np.diff(s) >= 0)
    assert M.minimum_jerk(np.array([-1.0, 2.0])).tolist() == [0.0, 1.0]
    h = tau[1] - tau[0]
    v = np.gradient(s, h)
    a = np.gradient(v, h)
    assert abs(v[0]) < 1e-3 and abs(v[-1]) < 1e-3 and abs(a[0]) < 0.05 and abs(a[-1]) < 0.05
    assert v.max() == pytest.approx(1.875, abs=1e-3)  # the bell's peak: 15/8 of the mean speed
    assert s[1000] == pytest.approx(0.5)


def test_timeline_reaches_keyframes_and_fingers_start_late(hands):
    rest = hands["right"].state(pose_library.anatomical("flat"), PalmFrame(np.zeros(3), FORWARD, -UP))
    fist = rest.with_angles(pose_library.anatomical("fist")).moved(shift=np.array([0.1, 0.0, 0.0]))
    delays = np.zeros(15)
    delays[[0, 1, 2]] = 0.3  # the index (rows 0-2) starts late
    tl = M.Timeline(rest).hold(0.5).move(fist, 1.0, delays).hold(0.5)
    track = tl.render(60)  # 2 s at 30 fps
    np.testing.assert_allclose(track.angles[0], rest.angles)
    np.testing.assert_allclose(track.angles[-1], fist.angles)
    np.testing.assert_allclose(track.centre[45], fist.centre)  # arrived at 1.5 s
    np.testing.assert_allclose(track.centre[:15], np.repeat(rest.centre[None], 15, 0))
    mid = 15 + 9  # 0.3 s into the move
    share = (track.angles[mid] - rest.angles) / np.where(fist.angles != rest.angles, fist.angles - rest.angles, 1)
    assert share[0, 0] == pytest.approx(0.0, abs=1e-9) and share[3, 0] > 0.1  # index waits, middle moves


def test_pair_timeline_keeps_hands_in_step(hands):
    start = {side: hands[side].state(pose_library.anatomical("relaxed"),
                                     PalmFrame(np.array([s * 0.2, 0, 0]), UP, -s * RIGHT))
             for side, s in (("left", -1.0), ("right", 1.0))}
    goal = {side: st.moved(shift=np.array([0, 0.05, 0])) for side, st in start.items()}
    pair = M.PairTimeline(start).hold(0.3).move(goal, 0.7).hold(0.2)
    assert pair.time == pytest.approx(1.2)
    tracks = pair.render(36)
    np.testing.assert_allclose(tracks["left"].centre[:, 1], tracks["right"].centre[:, 1])


def test_state_round_trips_through_pose_parameters(hands):
    for side in ("left", "right"):
        hand = hands[side]
        rng = np.random.default_rng(1)
        go, tr = rng.normal(size=3) * 0.5, rng.normal(size=3) * 0.1
        state = hand.state_from_pose(pose_library.anatomical("ok"), go, tr)
        pose = hand.to_pose(M.HandTrack.still(state, 3))
        np.testing.assert_allclose(axis_angle_to_matrix(pose["global_orient"][0]), axis_angle_to_matrix(go), atol=1e-12)
        np.testing.assert_allclose(pose["transl"][0], tr, atol=1e-12)
        np.testing.assert_allclose(pose["betas"][1], hand.betas)
        back = hand_pose_to_anatomical(pose["hand_pose"][2], hand.frames, side)
        np.testing.assert_allclose(back, pose_library.anatomical("ok"), atol=1e-9)


def test_placing_a_palm_puts_it_there():
    rig = load_open_hand_rig("left")
    betas = np.random.default_rng(2).normal(size=10)
    rest = rig_palm(rig, betas)
    target = PalmFrame(np.array([0.1, 0.2, -0.3]), UP, RIGHT)
    go, tr = place(rest, rig.shaped(betas)[1][0], target)
    rot = axis_angle_to_matrix(go)
    wrist = rig.shaped(betas)[1][0]
    np.testing.assert_allclose(rot @ (rest.centre - wrist) + wrist + tr, target.centre, atol=1e-12)
    np.testing.assert_allclose(rot @ rest.basis(), target.basis(), atol=1e-12)


def test_overlays_stay_smooth_and_in_limits(hands):
    rng = np.random.default_rng(3)
    state = hands["right"].state(pose_library.anatomical("relaxed"), PalmFrame(np.zeros(3), FORWARD, -UP))
    track = M.HandTrack.still(state, 150)
    info = M.add_tapping(track, rng, ("index", "middle", "ring"), 0.5, 4.5)
    assert 2.0 <= info["hz"] <= 6.0
    assert np.ptp(track.angles[:, 0, 0]) > np.radians(5)   # the index moves
    np.testing.assert_allclose(track.angles[:10], np.repeat(state.angles[None], 10, 0))  # before the fade-in
    M.add_waving(track, rng, 0.5, 4.5, hands["right"].palm)
    pose = hands["right"].to_pose(track)
    assert within_limits(hand_pose_to_anatomical(pose["hand_pose"], hands["right"].frames, "right"), 1e-6).all()
    # the overlays fade in and out with minimum-jerk envelopes: no jump in acceleration anywhere
    accel = np.diff(track.centre, n=2, axis=0) * 30 ** 2
    assert np.abs(np.diff(accel, axis=0)).max() * 30 < 500.0  # jerk, m/s³
    path = M.wrist_path(rng, 90, 0.04)
    assert np.abs(path).max() == pytest.approx(0.04) and np.abs(path[[0, -1]]).max() < 1e-9
    sway = M.sway(rng, 90, 10.0)
    angles = np.degrees(np.arccos(np.clip((np.trace(sway, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() == pytest.approx(10.0, abs=0.01) and angles[0] < 1e-6
