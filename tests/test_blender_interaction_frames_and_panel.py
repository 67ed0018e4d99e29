"""Interaction in real Blender through a real backend (templates engine: no weights).

Key Candidates on frames before 0 keyed them and only said Blender would not play them, while the motion buttons
refuse frames before 0: it now refuses too, before anything is keyed, in the motion buttons' words, naming the frames
and what to do; the candidates stay to browse.

A second Sample Interaction while candidates are browsed takes the candidate off the rig until the new ones land,
but the panel still said "Candidate 2" with its score meanwhile: it now says that new candidates are being sampled,
that the hands show their pose from before the candidates, and which candidate Apply keeps."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("interaction_frames_and_panel")
    return run_with_backend("interaction_frames_and_panel_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_key_candidates_before_frame_0_is_refused_before_anything_is_keyed(session):
    session.no_error("before_zero")
    found = session["before_zero"]
    assert found["frame"] == -3, found
    result, said = found["result"]
    assert result == ["CANCELLED"], found
    assert "frames -3 to -1: frames before 0 cannot be asked for" in said, said
    assert "go to frame 0 or later" in said, said
    assert found["keys_after"] == found["keys_before"], found
    assert found["still_browsed"] == 3, found


def test_key_candidates_partly_before_frame_0_or_one_candidate_before_it_names_the_frames_asked_for(session):
    # one candidate on frame -3 was refused as "frames -3 to -3"; frames -1 to 1 (partly before 0) are refused too
    session.no_error("before_zero_partly_and_one")
    found = session["before_zero_partly_and_one"]
    result, said = found["partly"]["result"]
    assert result == ["CANCELLED"], found
    assert "frames -1 to 1: frames before 0 cannot be asked for" in said, said
    assert found["partly"]["keyed"] == 0 and found["partly"]["still_browsed"] == 3, found
    result, said = found["one"]["result"]
    assert result == ["CANCELLED"], found
    assert "frame -3: frames before 0 cannot be asked for" in said and "-3 to -3" not in said, said
    assert found["one"]["keyed"] == 0 and found["one"]["still_browsed"] == 3, found


def test_one_candidate_keyed_is_said_as_one_on_one_frame(session):
    # said "keyed 1 candidates on frames 4-4"
    session.no_error("one_candidate")
    found = session["one_candidate"]
    result, said = found["result"]
    assert result == ["FINISHED"] and found["keys"] > 0, found
    assert "keyed 1 candidate on frame 4 (" in said, said


def test_the_panel_says_a_new_sampling_runs_instead_of_naming_the_candidate_taken_off(session):
    session.no_error("panel_while_resampling")
    found = session["panel_while_resampling"]
    assert found["resampled"][0] == ["FINISHED"], found
    during = found["while"]
    assert during is not None and during["bad"] == [], found
    assert not any(label.startswith("Score") for label in during["labels"]), during
    assert "index" not in during["props"], during  # (no "Candidate 2 (of 3)" field)
    text = " ".join(during["labels"])
    assert "Sampling new candidates" in text and "pose from before the candidates" in text, text
    assert "Apply keeps candidate 2" in text, text
    after = found["after"]  # the new candidates landed: browsed as before
    assert "index" in after["props"] and any(label.startswith("Score") for label in after["labels"]), after
