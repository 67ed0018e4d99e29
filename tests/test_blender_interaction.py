"""Interaction in Blender, end to end: the add-on starts a real backend, *Sample Interaction* sends
the active hand as the anchor, the candidates pose the other rig next to it (also when that rig is
moved as an object), Next/Previous/the index step through them, Cancel restores the channels bit
for bit, Apply is one undo step, Key Candidates keys N consecutive frames on both rigs and leaves
the artist's keys; the learned engine (shipped checkpoint) with both hands free; clear errors
without a backend, hands, an active hand, or MANO files for a MANO rig."""

from __future__ import annotations

import json

import numpy as np
import pytest
from handforge_shared import pose_library

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]
COUNT = 3
TOUCHING_MM = 15.0  # the templates are settled into contact; the rigs start 8 cm apart


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("interaction_session")
    pose = {s: pose_library.get("relaxed", side=s).to_dict() for s in ("left", "right")}
    args = {"count": COUNT,
            "pose": json.dumps({"format": "handforge.pose", "hands": pose})}
    return run_with_backend("interaction_session.py", addon_zip, work / "blender", args,
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_clear_errors_without_backend_hands_or_active_hand(session):
    session.no_error("errors_before_hands", "setup")
    found = session["errors_before_hands"]
    assert found["no_backend_poll"] is False and "Start Local Backend" in found["no_backend"]
    assert "no hands in the scene" in found["no_hands"] and "Add Hands" in found["no_hands"]
    assert found["next_poll"] is False and found["apply_poll"] is False
    assert "active object is not a HandForge hand" in session["setup"]["no_active"]
    assert "Traceback" not in session.log


def test_candidates_pose_the_other_rig_next_to_the_anchor_and_step(session):
    session.no_error("templates")
    found, arrays = session["templates"], session.arrays
    assert found["result"] == ["FINISHED"]
    scores = found["browse"]["scores"]
    assert found["browse"]["count"] == COUNT and scores == sorted(scores, reverse=True) and 0 < scores[-1] <= 1
    assert np.array_equal(arrays["left_after_sample"], arrays["left0"])  # the anchor stays as posed
    assert not np.allclose(arrays["right_c0"], arrays["right0"], atol=1e-3)
    assert session["setup"]["closest_before"] > 50 and found["closest"] < TOUCHING_MM  # moved rig, still in contact
    assert found["after_next"]["index"] == 2 and found["after_previous"]["index"] == 1
    assert not np.allclose(arrays["right_c1"], arrays["right_c0"], atol=1e-3)  # stepping changes the pose
    gap_mm = found["browse"]["gaps"][1] * 1000  # in Blender, the hands are as far apart as the backend measured
    assert abs(found["closest_c1"] - gap_mm) < 2.0 if gap_mm > 2.0 else found["closest_c1"] < 4.0
    assert np.array_equal(arrays["right_c0_again"], arrays["right_c0"])
    assert not np.allclose(arrays["right_c2"], arrays["right_c0"], atol=1e-3)  # the index property poses too
    assert found["past_end"]["index"] == COUNT and np.array_equal(arrays["right_past_end"], arrays["right_c2"])
    # a refused new sampling leaves the browse where it was, the same candidate shown
    assert "active" in found["refused"].lower(), found["refused"]
    assert found["after_refused"] == found["past_end"]
    assert np.array_equal(arrays["right_after_refused"], arrays["right_past_end"])
    # the buttons wrap around (README: "◀ / ▶ ... wrapping"): from the last to the first and back
    assert found["wrapped_next"]["index"] == 1 and np.array_equal(arrays["right_wrapped_next"], arrays["right_c0"])
    assert found["wrapped_previous"]["index"] == COUNT
    assert np.array_equal(arrays["right_wrapped_previous"], arrays["right_past_end"])
    assert found["after_cancel"]["count"] == 0
    assert found["panel_before"]["operators"] == ["handforge.sample_interaction"] and not found["panel_before"]["bad"]
    drawn = found["panel"]
    assert not drawn["bad"] and "handforge.interaction_apply" in drawn["operators"]
    assert any(text.startswith(f"Score {scores[0]:.3f}") for text in drawn["labels"])  # the shown candidate's scores
    assert np.array_equal(arrays["right_cancelled"], arrays["right0"])  # exactly as before the browse


def test_apply_is_one_undo_step(session):
    session.no_error("apply")
    found, arrays = session["apply"], session.arrays
    assert found["apply"] == ["FINISHED"] and found["after_apply"]["count"] == 0
    assert np.allclose(arrays["right_applied"], arrays["right_shown"], atol=1e-6)
    assert np.array_equal(arrays["right_undone"], arrays["right0"])  # one undo: the pose before the browse
    assert np.array_equal(arrays["left_undone"], arrays["left0"])
    assert np.allclose(arrays["right_redone"], arrays["right_shown"], atol=1e-6)


def test_key_candidates_writes_consecutive_frames_and_keeps_the_artist_keys(session):
    session.no_error("key")
    found, arrays = session["key"], session.arrays
    assert found["result"] == ["FINISHED"] and found["after"]["count"] == 0
    for side in ("left", "right"):
        keys, artist = found["keys"][side], found["artist"][side]
        assert artist["frames"] == [5.0, 30.0]
        assert keys["frames"] == [5.0, 10.0, 11.0, 12.0, 30.0]
        assert keys["types"] == ["KEYFRAME", "GENERATED", "GENERATED", "GENERATED", "KEYFRAME"]
        assert [keys["values"][0], keys["values"][-1]] == artist["values"]  # the artist's keys untouched
        assert found["undone"][side]["frames"] == [5.0, 30.0]  # one undo removes them all
    assert np.allclose(arrays["key_keyed"], arrays["key_shown"], atol=1e-4)  # frame i shows candidate i
    assert not np.allclose(arrays["key_keyed"][0], arrays["key_keyed"][1], atol=1e-3)
    assert "No interaction candidates" in found["too_many"]
    assert "only 2 candidates" in found["more_than_sampled"]
    assert "beyond Blender's last frame" in found["no_room"] and found["kept_after_refusal"] == 2


def test_key_candidates_in_another_scene_is_refused_and_names_the_rigs_scene(session):
    # before: it keyed the first scene's rigs at the other scene's frame (40), where the artist did not look
    session.no_error("key_other_scene")
    found = session["key_other_scene"]
    assert found["switched"] == "Other Scene"
    assert f"scene {found['rigs_scene']!r}" in found["refused"] and "Other Scene" in found["refused"], found["refused"]
    assert found["keys"] == {"left": True, "right": True} and found["browse"] == 2
    # before: Next and Previous posed the first scene's rigs and Apply kept a candidate there, "applied candidate 2"
    for refused in found["browsing"]:
        assert f"scene {found['rigs_scene']!r}" in refused and "Other Scene" in refused, refused
    assert found["posed"] == {"left": True, "right": True}
    assert f"scene {found['rigs_scene']!r}" in found["typed"]["message"], found  # the Candidate field, typed


def test_learned_engine_with_both_hands_free(session):
    session.no_error("learned")
    found = session["learned"]
    assert found["result"] == ["FINISHED"] and found["browse"]["count"] == 2
    assert found["moved"] == {"left": True, "right": True}
    assert found["closest"] < 50  # the two sampled hands are placed together, across the moved rig
    assert found["restored"] == {"left": True, "right": True}


def test_both_free_hands_stand_in_blender_as_the_backend_measured_them(session):
    session.no_error("both_free_as_measured")
    for engine, found in session["both_free_as_measured"].items():
        gap_mm, closest = found["gap_mm"], found["closest_mm"]
        assert abs(closest - gap_mm) < 2.0 if gap_mm > 2.0 else closest < 4.0, (engine, found)


def test_mano_rig_on_a_backend_without_mano_files_says_so(session):
    session.no_error("mano")
    found = session["mano"]
    assert "mano" in found["message"] and "HANDFORGE_MANO_DIR" in found["message"]
    assert found["browse"]["count"] == 0


def test_scaled_rig_is_refused_and_a_loaded_file_drops_the_candidates(session):
    session.no_error("scaled_and_load")
    found = session["scaled_and_load"]
    assert "scaled differently" in found["scaled"] and "Clear" in found["scaled"]
    assert found["before_load"] == 1 and found["after_load"]["count"] == 0


def test_cancel_puts_back_a_rig_renamed_while_browsing(session):
    session.no_error("cancel_renamed")
    found = session["cancel_renamed"]
    assert found["moved"] and found["result"] == ["FINISHED"]
    assert found["restored"] and found["browse"]["count"] == 0


def test_cancel_after_a_bone_of_the_preview_was_renamed_ends_the_browse_and_says_so(session):
    session.no_error("cancel_bone_renamed")
    found = session["cancel_bone_renamed"]
    assert found["result"] == ["FINISHED"] and found["browse"]["count"] == 0, found
    assert "has lost its bone(s) index2 (renamed 'idx2'?)" in found["printed"], found["printed"]
    assert "keeps the candidate shown" in found["printed"] and found["kept"]
    assert found["again"] == ["FINISHED"]


def test_an_anchor_whose_wrist_is_not_a_number_is_refused_naming_the_bone(session):
    session.no_error("anchor_not_a_number")
    found = session["anchor_not_a_number"]
    assert "the bone 'wrist' of the hand" in found["message"], found
    assert "has a location that is not a number (NaN)" in found["message"] and found["browse"]["count"] == 0, found


def test_a_rig_in_an_excluded_collection_is_refused(session):
    # before: sampled, and the candidate written onto a rig Blender no longer shows or updates
    session.no_error("hidden")
    found = session["hidden"]
    assert "is in a collection excluded from the view layer" in found["message"], found
    assert found["browse"]["count"] == 0


def test_key_candidates_refuses_a_linked_anchor_rig(session):
    # before: sampling posed only the other rig (checked editable), but Key Candidates keyed both
    session.no_error("linked_anchor")
    found = session["linked_anchor"]
    assert found["editable"] is False and "is linked from" in found["message"], found
    assert found["keys_kept"] and found["browse"] == 2


def test_a_sampling_that_fails_keeps_the_candidates_being_browsed(session):
    session.no_error("failed_keeps_browse")
    found = session["failed_keeps_browse"]
    assert found["message"] and found["before"]["count"] == 2, found
    assert found["after"] == found["before"], found


def test_a_file_saved_while_browsing_holds_the_pose_from_before_the_candidates(session):
    # before: the previewed candidate was saved as the hand's pose; reopened, no Cancel could take it back
    session.no_error("saved_while_browsing")
    found = session["saved_while_browsing"]
    assert found["moved"], found  # the candidate did pose the rig
    assert found["file_holds_before"] and not found["file_holds_preview"], found
    assert found["after_save"] == {"browse": 2, "previewed": True, "failed_save_previewed": True}, found


def test_apply_warns_when_the_hands_changed_and_key_candidates_refuses_frames_holding_the_artists_keys(session):
    # before: Apply said "applied candidate 1 (score 1.000)" with the hands 7 cm apart after the anchor was
    # posed anew; Key Candidates over an artist's key paired a candidate's hand with the artist's other hand
    session.no_error("changed_since_sampling")
    found = session["changed_since_sampling"]
    result, printed = found["posed"]
    assert result == ["FINISHED"] and "the left hand was posed anew" in printed, printed
    assert "Sample Interaction again" in printed, printed
    # the rigs moved apart as objects: the candidate is placed from the anchor where it stands now, and holds
    for change in ("none", "moved"):
        result, printed = found[change]
        assert result == ["FINISHED"] and "since the candidates were sampled" not in printed, (change, printed)
    message = found["in_the_way"]
    assert "frames 200-202 hold your keys (the right hand at 201)" in message and "whole pairs" in message, message
    assert found["kept"] == 3 and found["keys_unchanged"] is True, found
    message = found["posed_then_keyed"]  # before: keyed, the anchor's new pose put back as sampled, unsaid
    assert "the left hand was posed anew since the candidates were sampled" in message, message
    assert "Sample Interaction again" in message and found["posed_kept"] is True, found
    assert found["anchor_keyed"] == ["FINISHED"], found  # the anchor's own key where it was sampled: no refusal


def test_apply_on_a_rig_with_keys_says_they_will_pose_it_again(session):
    session.no_error("apply_on_keyed")
    found = session["apply_on_keyed"]
    result, printed = found["left_keyed"]  # the anchor has keys; the posed right hand none yet
    assert result == ["FINISHED"] and "pose it again" not in printed, printed
    result, printed = found["right_keyed"]
    assert result == ["FINISHED"] and "has keys, which pose it again at the next frame change" in printed, printed


def test_hands_of_two_models_are_named_with_the_fix(session):
    session.no_error("mixed_models")
    message = session["mixed_models"]
    assert "'Hand.L' is open, 'Hand.R' is mano; interaction needs a pair of one model: add a matching pair" in message


def test_an_active_hand_of_another_pair_is_refused_and_nothing_moves(session):
    session.no_error("another_pair")
    found = session["another_pair"]
    assert (f"the active hand {found['anchor']!r} is not one of the pair chosen in "
            "HandForge > Hands") in found["message"], found["message"]
    assert f"whose left hand {found['second_left']!r} would be posed" in found["message"]
    assert found["unmoved"]


def test_a_rig_added_in_place_of_a_deleted_one_under_its_name_is_not_theirs(session):
    session.no_error("deleted_and_renamed")
    found = session["deleted_and_renamed"]
    assert found["named"], found
    assert "is gone: sample again" in found["next"] and found["next_kept"], found
    assert found["cancel"] == ["FINISHED"] and found["cancel_kept"] and found["browse"] == 0, found


def test_the_backends_warning_is_shown_with_the_candidates(session):
    session.no_error("far_out_shape")
    found = session["far_out_shape"]
    assert found["result"] == ["FINISHED"]
    assert "every candidate still goes" in found["printed"] and "betas up to 20" in found["printed"], found["printed"]
    # at WARNING level, in the status bar's warning colour (it was an INFO line, read as a plain success)
    said = [line for line in found["printed"].splitlines() if "every candidate still goes" in line]
    assert len(said) == 1 and said[0].startswith("Warning: "), found["printed"]
    # the other hand shaped unlike the anchor: said as a warning too (its candidates may sink into the anchor)
    assert found["other_result"] == ["FINISHED"]
    said = [line for line in found["other_printed"].splitlines() if "shape differs" in line]
    assert len(said) == 1 and said[0].startswith("Warning: "), found["other_printed"]


def test_an_undo_while_browsing_ends_the_browse_and_cancel_writes_nothing_back(session):
    session.no_error("undo_browsing")
    found = session["undo_browsing"]
    assert found["undone_to_flat"] and found["after_undo"] == 0, found  # the browse ended with the undo
    assert found["still_flat"], found  # (Cancel put the undone fist back on the right hand)


def test_key_candidates_and_apply_place_the_other_hand_from_the_anchor_on_every_frame_under_moving_parents(session):
    # before: the other hand was placed for the rigs as they stood when sampled, so on frames where their
    # parents had moved apart it keyed (and Apply showed) it off the anchor by what the parents moved
    session.no_error("moving_parents")
    found, arrays = session["moving_parents"], session.arrays
    assert found["key"] == ["FINISHED"], found
    for k, (sampled, keyed) in enumerate(zip(arrays["parents_sampled"], arrays["parents_keyed"])):
        np.testing.assert_allclose(keyed, sampled, atol=1e-4, err_msg=f"frame {600 + k}")
    result, printed = found["apply"]
    assert result == ["FINISHED"] and "since the candidates were sampled" not in printed, printed
    np.testing.assert_allclose(arrays["parents_applied"], arrays["parents_shown"], atol=1e-4)


def test_key_candidates_on_rigs_standing_still_keeps_the_scenes_unkeyed_changes(session):
    # before: each keyed frame was evaluated for the rigs' places, even where they cannot move, and another
    # object's location moved but not keyed went back to its key
    session.no_error("key_unkeyed")
    found = session["key_unkeyed"]
    assert found["result"] == ["FINISHED"] and found["frame"] == 400, found
    assert found["location"] == [1.0, 2.0, 3.0], found


def test_set_shape_while_browsing_is_refused_and_cancel_puts_the_pose_back(session):
    # before: Set Shape re-keyed the previewed rig for the new skeleton, Cancel wrote back the old skeleton's
    # channels (the hand off its pose before the candidates) and Apply's undo kept the candidate
    session.no_error("set_shape_while_browsing")
    found = session["set_shape_while_browsing"]
    assert "Apply or Cancel" in found["message"] and "Interaction" in found["message"], found
    assert found["browse"] == 2 and found["shown"], found  # still browsing, the candidate shown
    assert found["betas"] == {"left": True, "right": True}, found
    assert found["restored"] == {"left": True, "right": True}, found


def test_cancel_on_another_frame_than_the_sampling_shows_the_keys_of_that_frame(session):
    # before: the channels read on the sampling's frame were written back on the frame shown, against its keys
    session.no_error("cancel_on_another_frame")
    found = session["cancel_on_another_frame"]
    assert found["moved"] and found["result"] == ["FINISHED"] and found["browse"] == 0, found
    assert found["keys_shown"], found


@pytest.mark.parametrize("where", ["action", "nla"])
def test_cancel_on_another_frame_shows_all_of_its_animation_there(session, where):
    # before: the bone keys of the rig's action only: a keyed slider, keyed corrective shape keys (and, in NLA
    # strips, the bones too) stayed as read on the sampling's frame
    session.no_error(f"cancel_on_another_frame_{where}")
    found = session[f"cancel_on_another_frame_{where}"]
    assert found["moved"] > 1e-3 and found["result"] == ["FINISHED"] and found["browse"] == 0, found
    assert found["off_by"] < 1e-5 and found["keys_kept"], found
    assert found["move_kept"], found  # the rig object moved by hand, not keyed, stays where the artist put it


def test_apply_with_auto_keying_keys_the_candidate(session):
    # before: nothing keyed, and the next frame change put the rig back on its keys ("Key Pose to keep it")
    session.no_error("apply_with_auto_keying")
    found = session["apply_with_auto_keying"]
    assert found["result"] == ["FINISHED"] and "pose it again" not in found["printed"], found
    assert found["frames"] == {"left": [800.0, 820.0], "right": [800.0, 810.0, 820.0]}, found
    assert found["kept"], found


def test_apply_keeps_the_artists_changes_to_the_shown_candidate(session):
    session.no_error("apply_keeps_a_tweak")
    found = session["apply_keeps_a_tweak"]
    assert found["result"] == ["FINISHED"] and "with your changes to the right hand" in found["printed"], found
    assert found["differs"] and found["kept"], found
    assert found["undone"], found
    result, printed = found["plain"]
    assert result == ["FINISHED"] and "applied candidate 1" in printed and "your changes" not in printed, printed
    result, printed = found["next_over_a_change"]  # (Next dropped the change unsaid)
    assert result == ["FINISHED"] and "candidate 2 replaced your changes to the right hand over candidate 1 (to keep " \
                                      "a changed candidate, Apply it before Next or Previous)" in printed, printed
    result, printed = found["next_plain"]
    assert result == ["FINISHED"] and "your changes" not in printed, printed


def test_the_panel_shows_every_option_the_engine_reads_that_its_button_sends(session):
    session.no_error("panel_options")
    for case, found in session["panel_options"].items():
        # (the templates engine reads Separation and Touch around an artist's hand; with both free it reads neither)
        reads = "templates NONE" != case
        assert found["sent"]["separation"] is False, (case, found)
        assert ("separation" in found["drawn"] and "touch" in found["drawn"]) == reads, (case, found)


def test_key_pose_while_browsing_keeps_the_candidate_it_keys(session):
    # before: browsing went on, and Cancel put back the pose from before the candidates over keys holding the
    # candidate: the viewport showed one pose, the keys (and exports) another, 114 px apart in an export's keypoints
    session.no_error("key_pose_while_browsing")
    found = session["key_pose_while_browsing"]
    result, printed = found["keyed"]
    assert result == ["FINISHED"] and "the interaction candidate shown is kept (browsing ended" in printed, printed
    assert found["browsing"] == 0 and found["cancel_poll"] is False, found
    assert found["kept"] and found["keys_hold_it"], found
