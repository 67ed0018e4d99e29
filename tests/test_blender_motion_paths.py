"""Follow Wrist Path and Regenerate as the artist undoes them, in real Blender through a real backend (the add-on
starts it): along a path (spline engine), the parts it generates (the fingers, the wrist rotation unless kept as
animated) have the artist's keys in the range replaced, said, and back with one undo, as In-between's parts left out
of Kept; the wrist location keys and the keys outside the range stay. Regenerate is one undo step of its own. A
scene with one hand goes through In-between, Follow Wrist Path and Regenerate with either engine."""

from __future__ import annotations

import re

import numpy as np
import pytest

from handforge.engines.motion.settings import SHIPPED_CHECKPOINT
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]
START, END = 1, 20
WRIST_LOCATION = 'pose.bones["wrist"].location'
WRIST_ROTATION = 'pose.bones["wrist"].rotation_quaternion'


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_paths_session")
    args = {"checkpoint": str(SHIPPED_CHECKPOINT)}
    return run_with_backend("motion_paths_session.py", addon_zip, work / "blender", args)


def _artist_in_range(points):
    return [p for p in points if p[2] != "GENERATED" and START <= p[0] <= END]


def _check_path(session, name: str, kept_parts: tuple[str, ...], replaced_names: str):
    session.no_error("start", "artist", name)
    artist, found = session["artist"], session[name]
    assert found["result"] == ["FINISHED"], found["printed"]
    keys = found["keys"]
    replaced = 0
    for key, before in artist.items():
        side, path, _ = key.split("|")
        if side != "right":
            assert keys[key] == before, key  # the other hand is not touched
            continue
        after = keys[key]
        assert [p for p in after if p[0] > END] == [p for p in before if p[0] > END], key  # after the range: kept
        if path in kept_parts:  # the artist's keys stay exactly, generated keys between them
            assert _artist_in_range(after) == _artist_in_range(before), key
        else:  # generated on every frame of the range, the artist's keys there gone
            assert _artist_in_range(after) == [], key
            assert [p[0] for p in after if p[2] == "GENERATED"] == [float(f) for f in range(START, END + 1)], key
            replaced += len(_artist_in_range(before))
    said = re.search(r"right hand: replaced (\d+) of your keys on the " + re.escape(replaced_names)
                     + r" \(generated\); Ctrl-Z brings them back", found["printed"])
    assert said, found["printed"]
    assert int(said.group(1)) >= replaced > 0  # (the count also holds the mesh's corrective shape keys)
    assert found["undone"] == artist  # one undo brings every key back, exactly


def test_follow_wrist_path_replaces_the_artists_keys_on_the_parts_it_generates(session):
    """Before: the artist's finger and wrist rotation keys at 1, 10 and 20 stayed among the generated keys, a
    one-frame snap to the old pose at each."""
    _check_path(session, "path", (WRIST_LOCATION,), "wrist rotation and fingers")


def test_a_wrist_rotation_kept_as_animated_keeps_its_keys(session):
    _check_path(session, "path_rotation_kept", (WRIST_LOCATION, WRIST_ROTATION), "fingers")
    # the wrist location keys kept (at 1, 10, 20): the wrist is where they key it there, off its path, said
    assert ("right hand: your keys were kept at frames 1, 10, 20, so the clip was not keyed there: where they key the "
            "wrist, it is where you keyed it, not on its path") in session["path_rotation_kept"]["printed"]


def test_a_call_without_wrist_rotation_generates_it_after_one_that_kept_it(session):
    """Before: Blender gave the call Keep Animation, the last call's choice, so the artist's wrist rotation keys
    stayed where a call without the option (its default: Generate) replaces them."""
    _check_path(session, "path_rotation_not_given", (WRIST_LOCATION,), "wrist rotation and fingers")


def test_the_motion_buttons_options_are_not_remembered_from_call_to_call(session):
    """Each option that changes what a motion button generates or replaces takes its default in a call without it,
    not the last call's value (Blender's last-used values; SKIP_SAVE), as Kept and the frame range already did.
    Before: wrist_rotation, engine, steps, variation, num_samples, keep_apart and sample were remembered (seed: see
    test_a_call_without_a_seed_takes_seed_0_not_the_last_regenerates). (Hands, ``sides``, is not checked here.)"""
    session.no_error("start", "not_remembered")
    for name, options in session["not_remembered"].items():
        remembered = [option for option, skip in options.items() if not skip and option != "sides"]
        assert remembered == [], (name, remembered)


def test_one_undo_takes_back_a_regenerate_and_no_more(session):
    """Before: Regenerate run as a button from a script made no undo step (its button was called from an operator),
    so Ctrl-Z went back to before the Generate Motion it regenerated, that motion gone too."""
    session.no_error("start", "artist", "regenerate_undone")
    found = session["regenerate_undone"]
    assert found["result"] == ["FINISHED"] and found["again"] == ["FINISHED"], found
    assert found["regenerated"] != found["generated"]  # another motion (seed 1)
    assert found["undone"] == found["generated"]  # one undo: the first motion back, not the keys before it
    assert found["redone"] == found["regenerated"]
    assert found["back"] == session["artist"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_one_hand_in_the_scene_is_inbetweened_and_follows_its_path(session, side):
    """A scene with one rig (the left one moved and turned as an object): In-between and Follow Wrist Path along a
    curve, with each engine, key it, the wrist on the curve's ends, Regenerate too, one undo each; the panel's Both
    and a path for the hand that is not there are refused, saying why."""
    name = f"one_{side}_hand"
    session.no_error("start", name)
    found = session[name]
    for engine in ("spline", "learned"):
        for job in ("inbetween", "inbetween_apart", "path"):  # (Keep Apart with no other hand to keep apart from)
            run = found[f"{engine} {job}"]
            assert run["result"] == ["FINISHED"] and run["generated"] > 0, (engine, job, run["printed"])
            assert run["undone"], (engine, job)
        scene_hands = found[f"{engine} inbetween_scene"]  # the panel's Both in a one-hand scene: refused, saying why
        assert scene_hands["result"] == ["CANCELLED"] and "Add Hands" in scene_hands["printed"], scene_hands
        path = found[f"{engine} path"]
        np.testing.assert_allclose(path["wrist"], found["ends"], atol=1e-3)  # the curve's ends, frames 101 and 120
        assert path["again"] == ["FINISHED"], path["again_printed"]
    other = "left" if side == "right" else "right"
    assert f"a path is set for the {other} hand, which the scene does not have" in found["missing_hand"], found
    assert found["missing_hand_unchanged"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_call_without_a_seed_takes_seed_0_not_the_last_regenerates(session, side):
    """Before: each Follow Wrist Path without a seed after a Regenerate (which runs it with seed 1) reported 'seed 1':
    the learned one after the spline one's Regenerate, and the left hand's spline one after the right hand's."""
    found = session[f"one_{side}_hand"]
    said = found["learned path"]["printed"].strip().splitlines()[-1][:140]  # (its report: "… (learned, seed N")
    assert re.search(r"\(learned, seed 0[,)]", said), said
    said = found["spline path"]["printed"].strip().splitlines()[-1][:140]  # (no seed: the same motion for every one)
    assert re.search(r"\(spline, [\d.]+ s\)", said), said


@pytest.mark.parametrize("side", ["right", "left"])
def test_keep_apart_not_given_is_its_default_not_the_last_calls(session, side):
    """Before: the left hand's spline In-between without Keep Apart, after the right hand's learned one with Always,
    ran with Always (remembered), and said the spline motion was not kept apart."""
    for engine in ("spline", "learned"):
        printed = session[f"one_{side}_hand"][f"{engine} inbetween"]["printed"]
        assert "kept apart" not in printed, (engine, printed)


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_hand_whose_wrist_rotation_keys_alone_were_kept_is_not_said_off_its_path(session, side):
    """The wrist location unkeyed, the rest of the pose keyed at 101, 110, 120, Follow Wrist Path with Keep Animation:
    the rotation keys are kept, said; before, the note went on that where they key the wrist it is off its path,
    which it is not (no location key)."""
    kept = session[f"one_{side}_hand"]["path_rotation_kept"]
    assert kept["result"] == ["FINISHED"], kept["printed"]
    assert f"{side} hand: your keys were kept at frames 101, 110, 120" in kept["printed"], kept["printed"]
    assert "not on its path" not in kept["printed"], kept["printed"]


@pytest.mark.parametrize("side", ["right", "left"])
def test_keep_apart_with_one_hand_in_the_scene_is_said_to_keep_nothing_apart(session, side):
    """Before: the learned engine's In-between of one hand with Keep Apart: Always said nothing of it (the spline
    engine says it steers nothing)."""
    found = session[f"one_{side}_hand"]
    unkept = {"spline": "Keep Apart steers the learned engine only: this spline motion was not kept apart",
              "learned": "Keep Apart steers two hands apart: the scene has one hand, so this motion was not kept apart"}
    for engine, note in unkept.items():
        assert note in found[f"{engine} inbetween_apart"]["printed"], (engine, found[f"{engine} inbetween_apart"])
