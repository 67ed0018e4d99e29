"""Finger sliders in real Blender: offsets on the current pose, keyable, in sync with the bones.

Expected angles come from the shared anatomy module and the open hand's joint frames (the rig the
add-on builds): bone-local L = Fᵀ·R·F, so R = F·L·Fᵀ and its anatomical angles are anatomy's.
"""

from __future__ import annotations

import numpy as np
import pytest

from handforge_shared import anatomy, pose_library
from handforge_shared.poses import MotionClip
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.skeleton import FINGER_JOINTS, FINGERS, JOINT_NAMES
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]

ATOL = 2e-6  # Blender stores channels as float32


def angles_of(local: np.ndarray, side: str = "right") -> np.ndarray:
    """(15, 3) anatomical angles of bone-local rotations (16, 3, 3) on the open hand."""
    f = load_open_hand_rig(side).joint_frames()
    return anatomy.matrix_to_anatomical((f @ local @ np.swapaxes(f, -1, -2))[1:], f, side)


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("sliders_session")
    args = {"joints": list(JOINT_NAMES), "fingers": list(FINGERS), "keyed_clip": str(work / "keyed.npz")}
    result = run_blender("sliders_session.py", addon_zip, work / "blender", args)
    result.keyed_clip = work / "keyed.npz"
    return result


def test_the_slider_handlers_never_fail(session):
    # frame-change and update handlers run on every change (also while hands are built): an error
    # there is only printed by Blender, so the log is read
    assert "Error in bpy.app.handlers" not in session.log, session.log[-3000:]


def test_a_slider_set_to_its_own_value_moves_nothing(session):
    session.no_error("same_value")
    for preset, moved in session["same_value"].items():
        assert moved < ATOL, f"{preset}: a slider set to the value it shows moved a bone by {moved}"


def test_a_thumb_nudge_after_ok_changes_only_the_thumbs_flexion(session):
    session.no_error("nudge")
    before, after = session.arrays["ok_before"], session.arrays["ok_after"]
    thumb = list(FINGER_JOINTS["thumb"])
    others = [j for j in range(16) if j not in thumb]
    np.testing.assert_allclose(after[others], before[others], atol=ATOL)
    change = angles_of(after) - angles_of(before)
    expected = anatomy.slider_angles("thumb", 0.01, 0.0)  # flexion of the thumb's joints only
    np.testing.assert_allclose(change, expected, atol=1e-5)
    assert np.degrees(np.abs(change).max()) < 1.0  # not the 58° the absolute sliders moved it
    result = session["nudge"]
    assert result["curl_after"] == pytest.approx(result["curl_before"] + 0.01, abs=1e-6)
    # the OK ring stays closed: the thumb tip keeps its distance to the index tip within 2 mm
    assert result["gap_after"] < result["gap_before"] + 0.002
    # spreading the index moves only its MCP's abduction
    spread = angles_of(session.arrays["ok_spread"]) - angles_of(after)
    np.testing.assert_allclose(spread, anatomy.slider_angles("index", 0.0, -0.05), atol=1e-5)


def test_a_keyed_slider_drives_the_bones_on_playback(session):
    session.no_error("keyed_slider")
    index = [j - 1 for j in FINGER_JOINTS["index"]]
    full = anatomy.slider_angles("index", 1.0, 0.0)
    for frame, curl in ((1, 0.0), (6, 0.5), (11, 1.0)):
        got = angles_of(session.arrays[f"keyed_{frame}"])
        np.testing.assert_allclose(got[index], curl * full[index], atol=1e-5, err_msg=f"frame {frame}")
        others = np.delete(np.arange(15), index)
        np.testing.assert_allclose(got[others], 0.0, atol=1e-5)
    # what the viewport shows moved with it, and coming back to a frame gives the same pose
    assert np.linalg.norm(session.arrays["keyed_11_tip"] - session.arrays["keyed_1_tip"]) > 0.03
    np.testing.assert_allclose(session.arrays["keyed_again_11"], session.arrays["keyed_11"], atol=ATOL)
    np.testing.assert_allclose(session.arrays["keyed_again_11_tip"], session.arrays["keyed_11_tip"], atol=1e-6)
    # an export samples what playback shows
    clip = MotionClip.load(session.keyed_clip)
    f = load_open_hand_rig("right").joint_frames()
    exported = anatomy.hand_pose_to_anatomical(clip.hands["right"].hand_pose, f, "right")
    curls = [anatomy.curl_spread_of(a)[0]["index"] for a in exported]
    assert curls[0] == pytest.approx(0.0, abs=1e-4) and curls[-1] == pytest.approx(1.0, abs=1e-4)
    assert np.all(np.diff(curls) > 0)


def test_sliders_follow_the_bones_when_scrubbing(session):
    session.no_error("scrubbing")
    result = session["scrubbing"]
    fist_curl, _ = anatomy.curl_spread_of(pose_library.anatomical("fist"))
    for key in ("at_1", "again_at_1"):
        assert result[key]["curl_index"] == pytest.approx(fist_curl["index"], abs=1e-5)
    assert result["at_10"]["curl_index"] == pytest.approx(0.0, abs=1e-5)  # flat's value, not the fist's
    # bones turned by hand (Euler x = flexion): the slider shows the new curl at the next update
    turned = pose_library.anatomical("fist").copy()
    turned[[JOINT_NAMES.index("middle1") - 1, JOINT_NAMES.index("middle2") - 1], 0] = (0.8, 0.9)
    expected = anatomy.curl_spread_of(turned)[0]["middle"]
    assert expected != pytest.approx(fist_curl["middle"], abs=0.05)
    assert result["after_hand_turn"]["curl_middle"] == pytest.approx(expected, abs=1e-5)


def test_a_slider_tweak_is_auto_keyed_as_blender_keys_a_transform(session):
    session.no_error("auto_keying")
    keyed = session["auto_keying"]["keyed"]
    for j in FINGER_JOINTS["middle"]:
        path = f'pose.bones["{JOINT_NAMES[j]}"].rotation_euler'
        assert [20.0, "BREAKDOWN"] in keyed[path], f"{path} not keyed at frame 20: {keyed.get(path)}"
    for j in FINGER_JOINTS["ring"]:  # tweaked with auto-keying off
        frames = [frame for frame, _ in keyed.get(f'pose.bones["{JOINT_NAMES[j]}"].rotation_euler', [])]
        assert 25.0 not in frames
    assert not any(path.startswith('pose.bones["index') for path in keyed)  # nothing else keyed


def test_a_slider_tweak_at_a_subframe_is_auto_keyed_at_the_time_shown(session):
    session.no_error("auto_keying_subframe")
    assert session["auto_keying_subframe"] == [pytest.approx(30.5)]


def test_a_rig_that_lost_a_bone_gets_no_traceback_and_no_half_added_limits(session):
    session.no_error("lost_bone")
    out = session["lost_bone"]
    assert out["printed"] == ""  # nothing printed: no traceback from the update callbacks
    fingers = {name for name in JOINT_NAMES if name != JOINT_NAMES[0]}
    assert out["complete_on"] == dict.fromkeys(fingers, False)
    still_there = fingers - {"ring2"}
    assert out["lost_off"] == dict.fromkeys(still_there, True)  # off: HandForge's limits muted, on the bones left
    assert out["lost_on_again"] == out["lost_off"]  # on again: refused as a whole, the rig as it was
    assert out["never_complete_on"] == {}  # not one limit added to a rig that lost a bone
    assert out["index1_moved"] == 0.0  # the slider left the rig alone
    assert out["own_muted"] is False  # the artist's own constraint untouched


def test_a_slider_set_to_nan_leaves_the_bones_and_reset_pose_always_resets(session):
    session.no_error("not_a_number")
    found = session["not_a_number"]
    assert found["bones_unchanged"] and abs(found["slider"] - 0.4) < 1e-3, found  # back to what the bones show
    assert found["nan_in_bones"] and found["reset"] == ["FINISHED"], found
    assert found["finite_after_reset"], found
    assert abs(found["flat_after_reset"]) < 1e-5, found


def test_a_slider_set_on_a_finger_beyond_its_range_lands_on_the_value_set(session):
    # before: thumbs_up's thumb (curl -0.11, the slider showing 0) set to curl 0.5 went to 0.39, and the slider
    # then showed 0.39 (spread's index, at -0.02, likewise)
    session.no_error("beyond_range")
    for preset, kind, finger in (("thumbs_up", 0, "thumb"), ("spread", 0, "index")):
        shown = anatomy.curl_spread_of(angles_of(session.arrays[f"beyond_{preset}"]))[kind][finger]
        assert shown == pytest.approx(0.5, abs=1e-5), preset
        assert session["beyond_range"][preset] == pytest.approx(0.5, abs=1e-5), preset


def test_a_keyed_slider_keeps_what_the_pose_tools_key_and_imports_write(session):
    # before: with the index curl slider keyed, Apply Preset then Key Pose came back to the frame with the index
    # straight (the slider's curve took it back); under auto-keying Apply Preset and Paste Pose keyed nothing; an
    # imported clip's index was overridden by the slider (as Key Candidates' and the motion's keys were); and a
    # generated key fixed by hand and keyed with the HandForge Pose keying set stayed GENERATED, for Regenerate
    session.no_error("keyed_slider_tools")
    out, arrays = session["keyed_slider_tools"], session.arrays
    np.testing.assert_allclose(arrays["key_pose_back"], arrays["key_pose_applied"], atol=1e-5)
    np.testing.assert_allclose(arrays["autokey_preset_back"], arrays["autokey_preset_applied"], atol=1e-5)
    np.testing.assert_allclose(arrays["autokey_paste_back"], arrays["autokey_paste_applied"], atol=1e-5)
    assert not np.allclose(arrays["autokey_paste_applied"], arrays["autokey_preset_applied"], atol=1e-3)
    assert out["index2_keys"] == [1.0, 3.0, 10.0, 14.0, 16.0, 20.0], out  # (3: the pinch copied, auto-keyed too)
    clip = MotionClip.load(session.keyed_clip)
    f = load_open_hand_rig("right").joint_frames()
    wanted = anatomy.hand_pose_to_anatomical(clip.hands["right"].hand_pose[3], f, "right")
    np.testing.assert_allclose(angles_of(arrays["imported_43"]), wanted, atol=1e-4)
    assert out["slider_43"] == pytest.approx(anatomy.curl_spread_of(wanted)[0]["index"], abs=1e-5)
    assert out["keying_set"] == ["FINISHED"], out
    assert out["fixed_key"] == [[pytest.approx(0.4), "KEYFRAME"]], out
    assert out["generated_beside"] == ["GENERATED"], out
    assert "muted" not in out["muted"]["printed"] and out["muted"]["keys_added"] == 0, out["muted"]


def test_an_import_onto_a_keyed_slider_keeps_other_objects_moved_by_hand(session):
    # before: the import evaluated the frame for its keyed slider, and an empty moved by hand (its location
    # keyed, the move not) jumped back to its keys
    session.no_error("import_keeps_edits")
    found = session["import_keeps_edits"]
    assert found["prop"] == pytest.approx([0.0, 2.0, 0.0]), found
    # the rig itself shows its animation on this frame, as Blender's frame change does (the slider's finger too)
    assert found["slider"] == pytest.approx(found["slider_evaluated"]) and 0.4 < found["slider"] < 0.6, found
    np.testing.assert_allclose(session.arrays["import_shown"], session.arrays["import_evaluated"], atol=ATOL)


def test_sliders_and_joint_limits_work_on_a_library_override_rig_and_are_kept_through_save_and_reopen(session):
    # before: not overridable (curl, spread, Joint Limits, nor Object.handforge itself): a Joint Limits switched on
    # here was off again after save and reopen, its limit constraints still on the bones
    session.no_error("override_rig")
    result = session["override_rig"]
    assert result["is_override"]
    assert result["overridable"] == {"use_limits": True, "curl_index": True, "spread_thumb": True}
    assert result["curl_moved"] > 0.01  # the slider posed the overridden rig
    expected = {"curl": pytest.approx(0.4), "limits": True, "muted": [False]}
    assert result["set"] == expected
    assert result["reopened"] == expected
