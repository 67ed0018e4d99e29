"""Motion buttons in real Blender, through a real backend (started by the add-on), in scene states an animator
has: a frame rate the motion engine cannot take, a finger slider set by a driver."""

from __future__ import annotations

import pytest

from handforge.engines.motion.settings import SHIPPED_CHECKPOINT
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_scene_states")
    args = {"checkpoint": str(SHIPPED_CHECKPOINT), "work": str(work)}
    return run_with_backend("motion_scene_states_session.py", addon_zip, work / "blender", args)


def test_a_frame_rate_under_1_fps_is_refused_in_blender_naming_the_setting(session):
    # before: sent, and the backend's "params.fps: must be between 1.0 and 1000.0, got 0.5" came back
    session.no_error("start", "slow_frame_rate")
    for button, found in session["slow_frame_rate"].items():
        assert found["sent"] == [], (button, found)
        message = found["message"]
        assert "0.5 fps" in message and "Frame Rate 1 / Base 2" in message, message
        assert "1 to 1000 fps" in message and "Output Properties" in message and "params." not in message, message


def test_a_driven_finger_slider_is_said_with_the_motion(session):
    # before: keyed and reported as done; the index finger showed the driver's curl on every frame, unsaid
    session.no_error("driven_slider")
    found = session["driven_slider"]
    assert found["result"] == ["FINISHED"], found
    printed = found["printed"]
    assert "right hand: its index curl slider is driven" in printed, printed
    assert "shows the driver's value, not these keys" in printed and "Delete Driver" in printed, printed
    assert "driven" not in found["left"][1], found["left"]  # the left hand has no driver: nothing said
    bone = found["bone"]  # a driver on a bone's rotation
    assert bone[0] == ["FINISHED"] and "right hand: its middle2 rotation is driven" in bone[1], bone


def test_a_scene_range_the_motion_engine_cannot_take_is_said_to_be_the_scenes(session):
    # before: "the frame range 10-10 has fewer than 2 frames: set End after Start" (the panel's Start and End
    # showed -1), and "split it into shorter ranges", not saying where
    session.no_error("scene_range")
    found = session["scene_range"]
    one, long = found["one_frame"], found["long"]
    assert one["sent"] == [] and long["sent"] == [], found
    assert one["message"].startswith("Error: the scene's frame range 10-10 has fewer than 2 frames"), one
    assert "set End after Start in the Motion panel" in one["message"], one
    assert long["message"].startswith("Error: the scene's frame range 1-600 has 600 frames"), long
    assert "setting Start and End in the Motion panel for each" in long["message"], long
    assert "the frame range 50-600 (End -1: the scene's end) has 551 frames" in found["end_only"], found
    own = found["own"]  # a range of the panel's own: said as before
    assert own.startswith("Error: the frame range 1-600 has 600 frames") and "Motion panel" not in own, own


def test_keys_into_an_action_blended_over_nla_strips_are_refused_before_anything_is_sent(session):
    # before: keyed, the strip's pose added again on the generated frames (the base bend doubled between the keys)
    session.no_error("layered_action")
    found = session["layered_action"]
    for name, needle in (("combine", "Blending Combine and Influence 1"), ("half", "Blending Replace and Influence 0.5")):
        result = found[name]
        assert result["sent"] == [] and result["unchanged"] is True, (name, result)
        message = result["message"]
        assert "the right hand" in message and "over NLA strips" in message and needle in message, message
        assert "set the action's Blending to Replace and Influence to 1" in message, message
    assert found["replace"] == ["FINISHED"] and found["muted"] == ["FINISHED"], found


def test_a_rotation_mode_switched_after_keying_or_while_the_job_runs_is_said(session):
    session.no_error("rotation_mode_changed")
    found = session["rotation_mode_changed"]
    result, printed = found["before"]
    shown = "euler" if found["mode"] == "QUATERNION" else "quaternion"
    keyed = "quaternion" if found["mode"] == "QUATERNION" else "euler"
    assert result == ["FINISHED"], found
    assert f"right hand: index1 (keyed as {keyed}, its mode {shown}): keys on a rotation its rotation mode does " \
           "not show, neither read nor shown: set the mode back" in printed, printed
    result, printed = found["while"]
    assert "the right hand's rotation mode changed while it ran (index1 " in printed, found["while"]
    assert "keys or wrist path changed" not in printed, printed
    result, printed = found["same"]
    assert result == ["FINISHED"] and "rotation mode" not in printed, printed
