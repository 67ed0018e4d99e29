"""The motion buttons in real Blender through a real backend (started by the add-on): In-between with
the spline and the learned engine (the shipped checkpoint, 3 steps) writes GENERATED keys between
the artist's keys, leaves the artist's keys on the kept parts bit for bit and replaces them on the parts
left free, goes through the keys, and is undone by one undo; Regenerate replaces its own keys; Generate Motion and Follow Wrist Path (an animated empty, a
curve) land on the chosen hands; bad input is reported before anything is sent."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handforge.engines.motion.settings import SHIPPED_CHECKPOINT
from handforge_shared import pose_library
from handforge_shared.poses import side_by_side
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]

ARTIST_FRAMES = [1, 12, 24]
POSES = ["flat", "fist", "point"]
EMPTY_PATH = [[0.10, 0.05, 0.02], [0.25, 0.15, 0.10]]
CURVE_POINTS = [[-0.1, 0.0, 0.0], [-0.2, 0.1, 0.05], [-0.3, 0.1, 0.15]]


def _pose_text(name: str, turn: float, lift: float) -> str:
    placed = side_by_side(pose_library.get(name, side="right"))
    hands = {}
    for side, pose in placed.hands.items():
        pose = pose.replace(hand_pose=pose_library.get(name, side=side).hand_pose,
                            global_orient=pose.global_orient + np.array([turn, 0.0, 0.0]),
                            transl=pose.transl + np.array([0.0, lift, 0.0]))
        hands[side] = pose.to_dict()
    return json.dumps({"format": "handforge.pose", "hands": hands})


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_session")
    args = {"checkpoint": str(SHIPPED_CHECKPOINT), "artist_frames": ARTIST_FRAMES,
            "artist_poses": [_pose_text(n, 0.3 * i, 0.05 * i) for i, n in enumerate(POSES)],
            "empty_path": EMPTY_PATH, "curve_points": CURVE_POINTS}
    return run_with_backend("motion_session.py", addon_zip, work / "blender", args)


def _artist(keys):
    return {k: [p for p in v if p[2] != "GENERATED"] for k, v in keys.items()}


def _generated_frames(keys):
    return {k: sorted(p[0] for p in v if p[2] == "GENERATED") for k, v in keys.items()}


def _between(first: int, last: int) -> list[float]:
    return [float(f) for f in range(first, last + 1) if f not in ARTIST_FRAMES]


def test_without_a_backend_the_buttons_say_why(session):
    session.no_error("no_backend")
    for name, found in session["no_backend"].items():
        assert found["poll"] is False, name
        if name != "motion_regenerate":
            assert "backend" in found["message"].lower(), (name, found["message"])
    assert "no motion yet" in session["no_backend"]["motion_regenerate"]["message"]


def test_without_rigs_the_error_says_to_add_hands(session):
    session.no_error("start", "no_rigs")
    assert session["start"]["inbetween"] is True
    for message in session["no_rigs"].values():
        assert "no hands in the scene" in message and "Add Hands" in message


def test_the_motion_panel_draws_its_buttons_with_the_settings(session):
    session.no_error("panel")
    drawn = session["panel"]
    assert [d[1] for d in drawn if d[0] == "operator"] == [
        "handforge.motion_inbetween", "handforge.motion_follow_path", "handforge.motion_generate",
        "handforge.motion_regenerate"]
    set_on = {(d[1], d[2]) for d in drawn if d[0] == "set"}
    assert {("handforge.motion_inbetween", "engine"), ("handforge.motion_inbetween", "fixed"),
            ("handforge.motion_follow_path", "right_path"), ("handforge.motion_generate", "steps"),
            ("handforge.motion_inbetween", "keep_apart"), ("handforge.motion_generate", "keep_apart"),
            ("handforge.motion_inbetween", "sample"), ("handforge.motion_generate", "sample")} <= set_on
    # the spline engine (drawn so here) ignores Steps, Variation, Samples and Keep Apart: greyed, not hidden;
    # Keyed Sample (not on the panel before: only in the Redo panel) greyed while one sample is asked for
    props = [d[1] for d in drawn if d[0] == "prop"]
    greyed = [i for i, d in enumerate(drawn) if d == ["attr", "active", False]]
    assert len(greyed) == 2 and "sample" in props, drawn
    first, second = greyed
    after = lambda i: [d[1] for d in drawn[i:] if d[0] == "prop"]
    assert after(first)[:3] == ["steps", "variation", "seed"] and "keep_apart" in after(first), drawn
    assert after(second)[0] == "sample", drawn


def test_what_the_motion_was_not_made_from_changed_meanwhile_leaves_its_result_good(session):
    # before: the panel's hands changed, a path renamed or a pair added mid-job refused the result as changed keys
    session.no_error("unrelated_edits")
    for case, found in session["unrelated_edits"].items():
        assert found["result"] == ["FINISHED"], (case, found)
        assert "changed while it ran" not in found["printed"] and "read again" not in found["printed"], (case, found)


def test_keep_apart_asked_of_the_spline_engine_is_said_to_do_nothing(session):
    session.no_error("spline_keep_apart")
    found = session["spline_keep_apart"]
    assert found["result"] == ["FINISHED"], found
    assert "Keep Apart steers the learned engine only" in found["printed"], found


def test_bad_inputs_are_reported_before_sending_and_change_nothing(session):
    session.no_error("bad")
    bad = session["bad"]
    assert "keyed on no frame of 30-40" in bad["no_keys"] and "at least 2 frames" in bad["no_keys"]
    assert "hand ('Hand." in bad["no_keys"]  # the rig named: with two pairs, which one is meant
    assert "only at frame 24 of 15-40" in bad["one_key"]
    assert "fewer than 2 frames" in bad["range"]
    assert "no part is kept" in bad["nothing_kept"]
    assert "no wrist path" in bad["no_path"]
    assert "'Nope' is not an object" in bad["bad_path"]
    assert "no motion yet" in bad["no_last"]
    assert "Keyed Sample 2 does not exist with 2 sample(s)" in bad["no_sample"]
    assert "different hand models (mano, open)" in bad["models"]
    assert bad["unchanged"] is True


def _is_finger(key: str) -> bool:
    return '"wrist"' not in key


def _check_inbetween(result, artist_before, fingers_kept: bool = True):
    """Kept parts: the artist's keys bit for bit, generated keys on every frame between them, none on them,
    the curves through them. Fingers left out of Kept: generated everywhere, the artist's keys there replaced."""
    assert result["result"] == ["FINISHED"], result["printed"]
    keys = result["keys"]
    kept = {key: points for key, points in artist_before.items() if fingers_kept or not _is_finger(key)}
    # bit for bit: frame, value, type, interpolation, handles
    assert _artist(keys) == {key: kept.get(key, []) for key in artist_before}
    between = _between(ARTIST_FRAMES[0], ARTIST_FRAMES[-1])
    for key, frames in _generated_frames(keys).items():
        if key in kept:
            assert frames == between, key  # every frame between the keys, none on them
        else:
            assert frames == [float(f) for f in range(ARTIST_FRAMES[0], ARTIST_FRAMES[-1] + 1)], key
    for key, values in result["at_keys"].items():  # the curves go through the artist's keys they keep
        if key in kept:
            keyed = {p[0]: p[1] for p in artist_before[key]}
            assert values == [keyed[float(f)] for f in ARTIST_FRAMES], key


def test_spline_inbetween_goes_through_the_keys_and_keeps_them(session):
    session.no_error("spline")
    artist = session["artist"]
    assert artist and all(p[2] == "KEYFRAME" for points in artist.values() for p in points)
    _check_inbetween(session["spline"], artist)
    # a motion, not a jump: mid-range values differ from the keys, and each frame moves a little
    curve = np.array(session["spline"]["curves"]['right|pose.bones["index2"].rotation_euler|0'])
    span = np.abs(np.diff(curve[[0, 11, 23]])).max()
    assert span > 0.3 and np.abs(np.diff(curve)).max() < 0.5 * span


def test_one_undo_step_removes_the_inbetween(session):
    session.no_error("spline", "undo")
    assert session["undo"]["keys"] == session["artist"]  # exactly the artist's keys again, nothing generated


def test_learned_inbetween_generates_free_fingers_and_keeps_the_keys(session):
    session.no_error("learned")
    learned = session["learned"]
    # Kept: the wrists; the fingers' keys were kept before (each a one-frame snap to the keyed pose): replaced
    _check_inbetween(learned, session["artist"], fingers_kept=False)
    assert "learned" in learned["printed"] and "seed 1" in learned["printed"]
    fingers = {side: sum(len(v) for k, v in session["artist"].items() if k.startswith(side) and _is_finger(k))
               for side in ("left", "right")}
    for side, count in fingers.items():
        assert (f"{side} hand: replaced {count} of your keys on the fingers (not kept); Ctrl-Z brings them back"
                in learned["printed"]), learned["printed"]
    # Kept is not remembered for the next call (Blender's last-used values): a script's call without it would have
    # replaced the fingers' keys as this call's narrower choice did
    assert learned["kept_skip_save"] is True
    # Keep Apart: "off" is sent as the job's penetration_guidance; "default" sends nothing (the kind's default)
    assert learned["params"]["penetration_guidance"] == "off"
    assert "penetration_guidance" not in session["spline"]["params"]
    finger = 'right|pose.bones["index2"].rotation_euler|0'
    assert not np.allclose(learned["curves"][finger], session["spline"]["curves"][finger], atol=1e-3)


def test_freed_fingers_move_smoothly_through_the_frames_the_artist_had_keyed(session):
    """Before: the artist's finger keys stayed where the fingers were generated, a 43-57° snap to the old
    pose for one frame. Around the middle key (frame 12) each freed finger curve now changes per frame as
    elsewhere: within a few times its median change over the range."""
    session.no_error("learned")
    middle = ARTIST_FRAMES.index(12)
    at = ARTIST_FRAMES[middle] - ARTIST_FRAMES[0]  # (index of frame 12 in the evaluated frames)
    worst = []
    for key, values in session["learned"]["curves"].items():
        if _is_finger(key) and "rotation" in key:
            steps = np.abs(np.diff(values))
            around = steps[at - 1:at + 1].max()  # into and out of frame 12
            worst.append((around / (np.median(steps) + 1e-3), key, around))
    ratio, key, around = max(worst)
    assert ratio < 6.0, (key, around, sorted(worst)[-5:])


def test_the_replaced_keys_come_back_with_one_undo(session):
    session.no_error("learned", "artist_back")
    learned = session["learned"]
    assert learned["undone"] == session["artist"]  # the artist's finger keys back, exactly, with one undo
    assert learned["redone"] == learned["keys"]
    assert session["artist_back"]["back"], session["artist_back"]  # (for the checks after)


def test_regenerate_replaces_its_own_keys_with_a_new_seed(session):
    session.no_error("learned", "regenerate")
    again, learned = session["regenerate"], session["learned"]
    assert again["result"] == ["FINISHED"] and "seed 2" in again["printed"], again["printed"]
    # the in-between left Variation to the job (0.8); Regenerate asks for a fresh sample
    assert "variation" not in learned["params"] and again["params"]["variation"] == 1.0
    assert _artist(again["keys"]) == _artist(learned["keys"])  # the wrist keys (the fingers' went with learned)
    assert "replaced" not in again["printed"], again["printed"]  # none of the artist's left on the fingers
    assert _generated_frames(again["keys"]) == _generated_frames(learned["keys"])  # replaced, not added
    finger = 'left|pose.bones["middle2"].rotation_euler|0'
    assert not np.allclose(again["curves"][finger], learned["curves"][finger], atol=1e-4)


def test_regenerate_follows_keys_edited_after_the_motion_and_forgets_it_with_the_file(session):
    session.no_error("edited", "new_file")
    found = session["edited"]
    assert found["first"] == ["FINISHED"] and found["result"] == ["FINISHED"], found["printed"]
    assert found["new"] == pytest.approx(found["old"] - 0.6, abs=1e-5)  # the artist's edit stays
    # the new motion arrives at the edited key (the old request headed for the old value)
    assert abs(found["before_key"] - found["new"]) < 0.25 * abs(found["new"] - found["old"]), found
    assert "no keys" in found["refused"] or "keyed" in found["refused"]
    assert found["operator"] == "handforge.motion_inbetween"  # the refused run is not what Regenerate repeats
    assert found["wrapped"] == ["FINISHED"] and "seed 0" in found["wrapped_printed"], found["wrapped_printed"]
    assert "spline engine" not in found["printed"], found["printed"]  # (a learned motion: another take, unsaid)
    assert session["new_file"]["last"] == {} and "no motion yet" in session["new_file"]["message"]


def test_a_frame_rate_changed_mid_job_still_keys_the_frames_asked_for(session):
    session.no_error("fps_changed")
    found = session["fps_changed"]
    assert found["result"] == ["FINISHED"] and found["fps"] == 24, found["printed"]
    assert found["frames"] == [float(f) for f in range(300, 320)]  # whole frames, none lost or stretched
    assert "now at 24 fps" in found["printed"]


def test_a_result_made_from_another_scene_is_not_applied(session):
    session.no_error("scene_switched")
    found = session["scene_switched"]
    assert found["result"] == ["CANCELLED"] and "the scene changed while it ran" in found["printed"]
    assert found["other_scene_keys_after"] == found["before"] and not any(found["before"].values()), found


def test_rigs_moved_as_objects_are_sent_where_blender_shows_them(session):
    session.no_error("placed_apart")
    found = session["placed_apart"]
    assert found["wrist_error_m"] < 1e-5 and found["moved_in_request"] > 0.1 and found["left_unchanged"]
    assert found["round_trip"] < 1e-7  # (the matrices are float32 in Blender)


def test_keys_edited_through_a_moved_nla_strip_are_refused_with_what_to_do(session):
    session.no_error("nla_tweak")
    message = session["nla_tweak"]["message"]
    assert "NLA tweak mode on a strip that is moved or scaled" in message and "Tab in the NLA editor" in message


def test_another_sample_on_one_hand_leaves_the_other_hand_alone(session):
    session.no_error("sample")
    found = session["sample"]
    before = found["before"]
    for sample in ("0", "1"):  # (JSON keys)
        assert found[sample]["result"] == ["FINISHED"], found[sample]["printed"]
        after = found[sample]["keys"]
        assert {k: v for k, v in after.items() if k.startswith("left")} == {
            k: v for k, v in before.items() if k.startswith("left")}
        assert _artist(after) == session["artist"]
        assert _generated_frames(after) == _generated_frames(before)
    finger = 'right|pose.bones["ring2"].rotation_euler|0'
    generated = lambda keys: [p[1] for p in keys[finger] if p[2] == "GENERATED"]  # noqa: E731
    assert not np.allclose(generated(found["1"]["keys"]), generated(found["0"]["keys"]), atol=1e-4)


def test_generate_motion_keys_only_the_chosen_hand(session):
    session.no_error("generate")
    found = session["generate"]
    assert found["result"] == ["FINISHED"], found["printed"]
    assert found["right"] == [float(f) for f in range(100, 130)] and found["left"] == []


def test_follow_wrist_path_puts_the_wrists_on_the_path(session):
    session.no_error("path")
    found = session["path"]
    assert found["result"] == ["FINISHED"], found["printed"]
    right, left = np.array(found["wrists"]["right"]), np.array(found["wrists"]["left"])
    np.testing.assert_allclose(right, found["empty"], atol=1e-4)  # the animated empty, frame by frame
    np.testing.assert_allclose(left[[0, -1]], np.array(CURVE_POINTS)[[0, -1]], atol=1e-4)  # the curve's ends
    steps = np.linalg.norm(np.diff(left, axis=0), axis=1)
    assert steps.std() < 0.05 * steps.mean()  # constant speed along the curve
    assert found["curves_left"] == 0  # the centre line's temporary copy is gone


def test_stopped_backend_greys_the_buttons_out(session):
    session.no_error("stopped")
    assert session["stopped"]["poll"] is False and session["stopped"]["message"]


def test_regenerate_after_the_hands_are_gone_says_so_in_one_line(session):
    session.no_error("regenerate_gone")
    message = session["regenerate_gone"]["message"]
    assert "Traceback" not in message and "Add Hands" in message, message


def test_the_motion_lands_on_the_rigs_it_was_made_for(session):
    # before: written on whatever rigs were the scene's hands when it ended (a pair added meanwhile took it,
    # the artist's rig got nothing), and with one of its rigs deleted the other was keyed alone
    session.no_error("rigs_changed")
    added, deleted = session["rigs_changed"]["added"], session["rigs_changed"]["deleted"]
    assert added["result"] == ["FINISHED"] and added["first_right"] > 0 and added["new_right"] == 0, added
    assert deleted["result"] == ["CANCELLED"] and deleted["deleted"], deleted
    assert "is no longer in the scene" in deleted["printed"] and "Traceback" not in deleted["printed"], deleted
    assert not any(deleted["keyed"].values()), deleted


def test_a_key_moved_while_the_motion_ran_refuses_the_result(session):
    # before: the in-between landed around the key's old value, a jump at the new one, reported as done
    session.no_error("keys_edited")
    found = session["keys_edited"]
    assert found["moved"] and found["result"] == ["CANCELLED"], found
    assert "the right hand's keys or wrist path changed while it ran" in found["printed"], found
    assert found["generated"] == 0 and found["edited_only"], found  # nothing keyed: only the artist's edit
    assert found["landed"] == ["FINISHED"], found


def test_regenerate_follows_a_path_renamed_since(session):
    # before: Regenerate looked the path up by its old name: another object with that name was followed
    # (here 3 m away), or the renamed path was said not to be in the scene
    session.no_error("regenerate_renamed_path")
    found = session["regenerate_renamed_path"]
    assert found["first"] == ["FINISHED"] and found["result"] == ["FINISHED"], found
    assert max(found["misses"]) < 0.01, found
    assert "the right wrist path the last Follow Wrist Path followed is gone: run Follow Wrist Path again" \
        in found["gone"], found


def test_an_artist_key_between_frames_is_refused_not_passed_by(session):
    session.no_error("subframe_key")
    found = session["subframe_key"]
    assert found["result"] == ["CANCELLED"] and found["unchanged"], found
    assert "keys between frames (at 510.5)" in found["printed"] and "Snap" in found["printed"], found["printed"]
    # Key Pose keyed every part there: leaving them all out of Kept is no way (refused: "no part is kept")
    assert "out of Kept" not in found["printed"], found["printed"]
    # the wrist's location alone: named (it said "leave that part out of Kept")
    assert "(at 510.5)" in found["location_only"], found["location_only"]
    assert found["location_only"].rstrip().endswith("or leave Wrist Location out of Kept"), found["location_only"]


def test_keys_in_a_muted_group_are_constraints_exactly_when_blender_plays_them(session):
    # a group's mute flag alone: Blender 4.5 plays its curves (taken for muted before, its keys no constraints)
    session.no_error("muted_group")
    found = session["muted_group"]
    assert found["index1_at_510"] == found["blender_plays_it"] and found["index2_at_510"] is True, found
    assert found["blender_plays_it"] is True, found  # (Blender 4.5.15: the group's flag alone stops nothing)


def test_motion_buttons_run_one_at_a_time(session):
    session.no_error("one_at_a_time")
    found = session["one_at_a_time"]
    assert found["result"] == ["FINISHED"], found
    assert found["seen"] == {"motion_inbetween": False, "motion_follow_path": False, "motion_generate": False,
                             "after": True}, found


def test_keys_in_another_slot_of_the_action_are_said(session):
    session.no_error("other_slot")
    message = session["other_slot"]["message"]
    assert "keyed on no frame of 501-520" in message, message
    assert "has no keys in the slot the rig uses, 'Other': choose the rig's slot in the Action editor" in message


def test_a_path_blender_does_not_evaluate_is_refused(session):
    session.no_error("path_not_evaluated")
    found = session["path_not_evaluated"]
    assert "right wrist path 'Hidden Path' is in a collection excluded" in found["excluded"], found
    assert "right wrist path 'Hidden Path' is disabled in viewports" in found["disabled"], found
    assert found["unchanged"], found


def test_what_a_motion_keeps_as_the_artist_had_it_is_said(session):
    """Wrist keys along a wrist path, muted channels and NLA strips overridden were kept or done without a word."""
    session.no_error("kept_said")
    found = session["kept_said"]
    result, printed = found["path"]
    assert result == ["FINISHED"] and ("your keys were kept at frame 1010, so the clip was not keyed there: where "
                                       "they key the wrist, it is where you keyed it, not on its path") in printed
    # (along a path the artist's wrist location keys stay; the parts it generates have theirs replaced: said)
    assert "replaced" in printed and "on the wrist rotation and fingers (generated)" in printed, printed
    # Generate Motion over the artist's keys at 1105: replaced (they were kept, the hand snapping there), but
    # not in the muted channels (left as they are), nor after the range (1111)
    result, printed = found["muted"]
    assert result == ["FINISHED"] and found["muted_keys_added"] == 0
    assert "right hand: index1 is muted, so its channels were left as they are" in printed, printed
    assert found["types_at"] == {"1105": ["GENERATED"], "1111": ["KEYFRAME"]}, found
    assert found["muted_at_1105"] == ["KEYFRAME"], found
    assert (f"right hand: replaced {found['count_at_1105']} of your keys on the wrist rotation, fingers and wrist "
            "location (generated)") in printed, printed
    result, printed = found["strips"]
    assert result == ["FINISHED"] and "was animated by NLA strips alone: its new keys are in a new action" in printed


def test_regenerate_redoes_the_frames_it_repeats_whatever_the_scene_range_is_now(session):
    session.no_error("regenerate_range")
    found = session["regenerate_range"]
    start, end = ARTIST_FRAMES[0], ARTIST_FRAMES[-1]
    assert found["made"] == ["FINISHED"] and found["first"] == [start, end], found
    assert found["again"] == ["FINISHED"] and found["again_range"] == [start, end], found


def test_regenerate_redoes_the_hands_it_keyed_in_their_scene(session):
    # before: the panel's Hands switched to Left after an In-between of the right hand, Regenerate keyed the
    # left hand; shown another scene with hands, it in-betweened those
    session.no_error("regenerate_where")
    where = session["regenerate_where"]
    assert where["made"] == ["FINISHED"] and "on the right hand" in where["made_printed"], where
    assert where["again"] == ["FINISHED"] and "on the right hand" in where["printed"], where
    # a spline motion is the same for every seed: said (Regenerate redid it, unsaid), and sent without a seed
    assert ("Regenerate: the spline engine draws one motion through the keys, the same for every seed: it is made "
            "again on the keys as they are now; choose the Learned engine for another take") in where["printed"], where
    assert where["left_unchanged"], where
    assert ("the last motion (In-between) was made in the scene 'Scene': show that scene to regenerate it, or run "
            "In-between here") in where["elsewhere"], where


def test_regenerate_does_not_move_the_motion_to_another_pair(session):
    session.no_error("regenerate_other_pair")
    found = session["regenerate_other_pair"]
    assert found["made"] == ["FINISHED"] and found["keys_on_added"] == 0, found
    assert "which the panel no longer names as its hands: choose them as the Left/Right Hand" in found["message"], found
    assert found["again"] == ["FINISHED"] and "on the left and right hand" in found["printed"], found
