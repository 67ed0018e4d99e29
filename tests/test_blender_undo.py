"""Ctrl-Z / Ctrl-Shift-Z while a job runs, in real Blender through a real backend: a result made from keys or
a pose that the undo or redo changed is not applied (In-between's keys landed around a key no longer there,
or around a key brought back that they ignored; interaction candidates met an anchor pose no longer shown);
the job ends with a message saying so and to run it again, the button is free and the scene is as the undo
or redo left it. One made from what the undo left as it was is applied."""

from __future__ import annotations


import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]
ARTIST = [1.0, 20.0]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("undo_session")
    return run_with_backend("undo_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def _refused(found, label, what):
    assert found["result"] == ["CANCELLED"], found
    assert f"{label} failed: the scene changed while it ran ({'an' if what == 'Undo' else 'a'} {what} changed the keys or poses it was made from)" in found["printed"], found
    assert "run it again" in found["printed"], found["printed"]
    assert found["running"] == 0 and found["poll"] is True, found  # not left running, its button free


def test_an_inbetween_undone_under_is_not_keyed_and_runs_again(session):
    session.no_error("start", "inbetween_undo")
    found = session["inbetween_undo"]
    _refused(found, "In-between", "Undo")
    # the frame-10 key undone; no generated keys going through it (it was keyed back as a generated key)
    assert found["keys"] == {"left KEYFRAME": ARTIST, "right KEYFRAME": ARTIST}, found["keys"]
    assert found["again"] == ["FINISHED"]
    between = [float(f) for f in range(2, 20)]
    assert found["again_keys"] == {"left KEYFRAME": ARTIST, "right KEYFRAME": ARTIST, "left GENERATED": between,
                                   "right GENERATED": between}, found["again_keys"]
    assert found["again_undone"] == found["keys"]  # one undo step, as always


def test_an_inbetween_redone_under_is_not_keyed(session):
    session.no_error("start", "inbetween_redo")
    found = session["inbetween_redo"]
    _refused(found, "In-between", "Redo")
    # the frame-10 key redone, kept; no generated keys made without it around it
    assert found["keys"] == {"left KEYFRAME": ARTIST, "right KEYFRAME": [1.0, 10.0, 20.0]}, found["keys"]


def test_an_inbetween_is_keyed_after_an_undo_of_something_it_was_not_made_from(session):
    # before: any undo while it ran refused the result, a camera move undone too
    session.no_error("start", "inbetween_unrelated_undo")
    found = session["inbetween_unrelated_undo"]
    assert found["result"] == ["FINISHED"] and found["running"] == 0, found
    assert found["empties"] == 0, found  # the undo did take the empty away
    between = [float(f) for f in range(2, 20)]
    assert found["keys"] == {"left KEYFRAME": ARTIST, "right KEYFRAME": ARTIST, "left GENERATED": between,
                             "right GENERATED": between}, found["keys"]


def test_interaction_candidates_are_shown_after_an_undo_of_something_else(session):
    session.no_error("start", "interaction_unrelated_undo")
    found = session["interaction_unrelated_undo"]
    assert found["result"] == ["FINISHED"] and found["running"] == 0, found
    assert found["empties"] == 0 and found["candidates"] == 2, found


@pytest.mark.parametrize("name", ["interaction_undo", "interaction_redo"])
def test_interaction_candidates_for_an_anchor_undone_or_redone_under_are_not_shown(session, name):
    session.no_error("start", name)
    found = session[name]
    _refused(found, "Sample Interaction", name.split("_")[1].capitalize())
    assert found["candidates"] == 0 and found["right_unchanged"] is True, found


def test_a_hand_tabbed_into_edit_mode_while_inbetween_runs_is_not_keyed(session):
    # before: keyed in Edit Mode, where Ctrl-Z could not take the keys away (only the start checked the mode)
    session.no_error("inbetween_tab")
    found = session["inbetween_tab"]
    assert found["result"] == ["CANCELLED"] and found["unkeyed"] is True and found["running"] == 0, found
    assert "is in Edit Mode: leave it (Tab) first" in found["printed"], found["printed"]


def test_a_request_unreadable_after_an_undo_says_why(session):
    # before: any failure to read the request again was reported as "an Undo changed the keys or poses"
    session.no_error("inbetween_undo_and_tab")
    found = session["inbetween_undo_and_tab"]
    assert found["result"] == ["CANCELLED"] and found["unkeyed"] is True and found["running"] == 0, found
    assert "after an Undo while it ran, its request could not be read again (" in found["printed"], found["printed"]
    assert "is in Edit Mode: leave it (Tab) first" in found["printed"], found["printed"]


def test_a_hand_tabbed_into_edit_mode_while_interaction_runs_is_not_posed(session):
    session.no_error("interaction_tab")
    found = session["interaction_tab"]
    assert found["result"] == ["CANCELLED"] and found["running"] == 0, found
    assert found["candidates"] == 0 and found["right_unchanged"] is True, found
    assert "is in Edit Mode: leave it (Tab) first" in found["printed"], found["printed"]
