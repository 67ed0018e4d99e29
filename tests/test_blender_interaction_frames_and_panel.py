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
