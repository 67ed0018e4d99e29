"""Motion buttons in real Blender, through a real backend (started by the add-on), refusing what they cannot
use with what was wrong and how to fix it: nothing sent, the scene as it was."""

from __future__ import annotations

import math
import re

import pytest

from handforge.engines.motion.settings import SHIPPED_CHECKPOINT
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_refusals")
    args = {"checkpoint": str(SHIPPED_CHECKPOINT), "work": str(work)}
    return run_with_backend("motion_refusals_session.py", addon_zip, work / "blender", args)


def test_a_wrist_path_that_is_not_a_curve_and_stands_still_is_refused(session):
    # before: sent and keyed, the wrist held at the object's origin over the whole range
    session.no_error("start", "static_paths")
    found = session["static_paths"]
    for what, name, kind in (("mesh", "Cube", "a mesh"), ("empty", "Target", "an empty"),
                             ("text", "Label", "a text object"), ("armature", "Character", "an armature")):
        result = found[what]
        assert result["sent"] == [] and result["unchanged"] is True, (what, result)
        message = result["message"]
        assert f"'{name}' is {kind}" in message and "not a curve" in message, message
        assert "Add > Curve" in message and "key its location" in message, message
    # the Motion panel's path pickers offer none of them (they listed every object but the hands)
    assert found["offered"] == {"mesh": False, "empty": True, "text": False, "armature": False}  # (an empty: a target)
    # a still empty as the target of a rig that moves (a character's hand pinned to a point): followed
    assert found["still_target_moving_rig"] == {"result": ["FINISHED"], "sent": ["motion.trajectory"]}, found
    # carried by an animated bone of a character: moving too (bone keys count where they carry the rig)
    assert found["still_target_bone_carried_rig"] == {"result": ["FINISHED"], "sent": ["motion.trajectory"]}, found
    # a hand keyed (bone keys only) does not move as an object: refused too (sent, the wrist pinned)
    keyed = found["keyed_hand"]
    assert keyed["sent"] == [] and "'Target' is an empty" in keyed["message"], keyed
    session.no_error("moving_path")
    assert session["moving_path"] == {"result": ["FINISHED"], "sent": ["motion.trajectory"], "offered": True}


def test_a_curve_of_no_or_several_splines_is_refused_saying_how_to_make_it_one(session):
    session.no_error("spline_counts")
    found = session["spline_counts"]
    assert found["hand"] is False
    for count, needle in ((0, "has no spline: a wrist path is one; draw it in Edit Mode"),
                          (2, "has 2 splines: a wrist path is one; separate the others")):
        result = found[str(count)]
        assert result["sent"] == [] and result["unchanged"] is True and result["offered"] is True, result
        assert needle in result["message"], result["message"]


def test_a_curve_of_no_length_is_refused(session):
    session.no_error("curves_of_no_length")
    for case, name in (("coincide", "Zero coincide"), ("scaled", "Zero scaled")):
        result = session["curves_of_no_length"][case]
        assert result["sent"] == [] and result["unchanged"] is True, (case, result)
        assert f"the curve {name!r} has no length" in result["message"], result["message"]


def test_a_key_that_is_not_a_number_is_named_with_its_bone_and_frame(session):
    session.no_error("not_a_number_keyed")
    found = session["not_a_number_keyed"]
    said = f"the bone 'wrist' of the hand {found['name']!r} has a rotation that is not a number (NaN) on frame 5"
    inbetween = found["inbetween"]
    assert inbetween["sent"] == [] and inbetween["unchanged"] is True, inbetween
    assert said in inbetween["message"] and "Key Pose" in inbetween["message"], inbetween["message"]
    assert said in found["export"] and found["written"] is False, found["export"]
    # Key Pose on that frame: refused (it keyed the NaN again), the keys as they were
    key_pose = found["key_pose"]
    assert f"the bone 'wrist' of the hand {found['name']!r} has a rotation that is not a number" in key_pose["message"]
    assert key_pose["unchanged"] is True and key_pose["still_nan"] is True


def test_a_wrist_path_beyond_reach_is_refused_before_sending(session):
    session.no_error("paths_beyond_reach")
    found = session["paths_beyond_reach"]
    assert found["sent"] == [] and found["unchanged"] is True, found
    assert "the right wrist path 'Far Path' puts the wrist" in found["message"], found["message"]
    assert "beyond the 100 m a hand may go" in found["message"], found["message"]


def test_both_hands_asked_for_in_a_scene_with_one_hand_is_refused(session):
    # before: Generate Motion and In-between with Both moved just the right hand, unsaid
    session.no_error("one_hand")
    found = session["one_hand"]
    for button in ("generate", "panel", "inbetween"):
        result = found[button]
        assert result["sent"] == [] and result["unchanged"] is True, (button, result)
        message = result["message"]
        assert "no left hand" in message and "Add Hands" in message and "Right" in message, message
    assert found["path"] == {"result": ["FINISHED"], "sent": ["motion.trajectory"], "offered": True}  # followed


def test_a_wrist_path_in_edit_mode_waits_for_tab_then_is_followed_as_edited(session):
    # before: followed there, its keys out of reach of Ctrl-Z (Edit Mode's undo holds the curve's edits alone);
    # before that, the path as it was before Edit Mode (the copy it was read from had not the edits)
    session.no_error("edited_path")
    found = session["edited_path"]
    assert found["poll"] is False and found["sent"] == 0, found
    assert "'Edited Path' is in Edit Mode, where undo holds only its edits" in found["in_edit_mode"], found
    assert "leave it (Tab) first" in found["in_edit_mode"], found
    assert found["moved"] == pytest.approx(math.hypot(0.2, 0.05), abs=1e-4), found


def test_frames_before_zero_and_hands_sharing_one_action_are_refused_before_anything_is_sent(session):
    # before: -20 to -5 was clamped to -1 to -1, the scene's whole range (250 frames keyed, unsaid); a
    # shared action was refused once the job had run, and with Left chosen the right hand moved too
    session.no_error("before_zero_shared")
    found = session["before_zero_shared"]
    for button in ("inbetween", "export_motion"):
        result = found[button]
        assert result["sent"] == [] and result["unchanged"] is True, (button, result)
        assert "Start -20: frames before 0 cannot be asked for" in result["message"], result["message"]
    for sides in ("LEFT", "BOTH"):
        result = found[sides]
        assert result["sent"] == [] and result["unchanged"] is True, (sides, result)
        assert "share one action" in result["message"] and "Make Single User" in result["message"], result


def test_regenerate_on_a_rig_that_lost_a_bone_blames_its_bones_once_and_changes_nothing(session):
    # before: "... which the panel no longer names as its hands: choose it as the Left/Right Hand", though the
    # panel named that very rig
    session.no_error("regenerate_lost_bone")
    found = session["regenerate_lost_bone"]
    assert found["made"] == ["FINISHED"], found
    assert found["result"] == ["CANCELLED"] and found["sent"] == [] and found["unchanged"] is True, found
    message = found["message"]
    assert f"the right hand {found['rig']!r} has lost its bone(s) index3" in message, message
    assert "no longer names" not in message and "Traceback" not in message, message
    assert message.count("lost its bone(s)") == 1, message
    # printed once: the button's own refusal is not printed as well as Regenerate's
    assert found["printed"].count("lost its bone(s)") == 1, found["printed"]


def test_one_path_for_both_wrists_is_refused_before_anything_is_sent(session):
    # before: sent and keyed, both wrists along one line through each other
    session.no_error("one_path")
    found = session["one_path"]
    assert found["sent"] == [] and found["unchanged"] is True, found
    message = found["message"]
    assert "the left and right wrist paths are the same object, 'Shared Path'" in message, message
    assert "choose a different path for one wrist, or leave one empty" in message, message


def test_regenerate_names_the_rig_and_scene_as_they_are_called_now(session):
    # before: "... keyed the right hand 'Hand.R.002' ... choose it", renamed 'Renamed Right' since
    session.no_error("regenerate_renamed")
    found = session["regenerate_renamed"]
    assert found["made"] == ["FINISHED"], found
    assert "keyed the right hand 'Renamed Right', which the panel no longer names" in found["other_pair"], found
    assert found["old_rig"] not in found["other_pair"], found
    assert "was made in the scene 'Renamed Scene': show that scene" in found["elsewhere"], found


def test_the_learned_engines_fallback_is_reported_as_a_warning(session):
    # before: "Info: In-between: ... (spline, ...); no motion checkpoint at ...", the status bar's plain success
    session.no_error("fallback")
    found = session["fallback"]
    learned, spline = found["learned"], found["spline"]
    assert learned["result"] == ["FINISHED"] and spline["result"] == ["FINISHED"], found
    assert len(learned["reports"]) == 1 and learned["said"] == 1, found  # one report: the fallback said once
    line = learned["reports"][0]
    assert line.startswith("Warning: In-between") and re.search(r"\(spline, [\d.]+ s\)", line), line  # (a seed: not the spline's)
    assert "no motion checkpoint at" in line and "no such checkpoint" in line, line
    assert "HANDFORGE_MOTION_CHECKPOINT" in line, line  # how to set it
    assert len(spline["reports"]) == 1 and spline["reports"][0].startswith("Info: In-between"), found
