"""Interaction candidates and an anchor hand that changes under them.

Posed anew while the job runs (a preset or a turned finger, no undo): before, the candidates made for the pose before
landed around the new pose, reported as "best score 1.000 (max depth ≈ 0.0 mm ...)" at INFO, however deep they went
into it; only Apply warned later. The motion buttons refuse a result whose keys were edited while it ran; Sample
Interaction now does the same for its anchor, said, nothing shown.

Sampled on one frame of an animated anchor and used on another (the artist went to frame 40 to key them there, or
scrubbed while the sampling ran): Key Candidates refused, Apply warned and the sampling's landing refused with "the
left hand was posed anew ... (or undo the change)", though nothing was posed and there was nothing to undo. They now
say the frame is another than the sampling's, where the hand's animation poses it otherwise, and to go back to that
frame or sample again here."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("interaction_anchor_changes")
    return run_with_backend("interaction_anchor_changes_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_candidates_for_an_anchor_posed_anew_mid_job_are_refused(session):
    session.no_error("anchor_posed_mid_job")
    found = session["anchor_posed_mid_job"]
    assert found["posed"], found
    assert found["result"] == ["CANCELLED"], found
    assert "left hand was posed anew while it ran" in found["said"] and "Sample Interaction again" in found["said"], \
        found
    assert found["count"] == 0 and found["right_unchanged"], found


def test_the_sampled_hand_posed_mid_job_still_gets_its_candidates(session):
    session.no_error("posed_other_hand_mid_job")
    found = session["posed_other_hand_mid_job"]
    assert found["result"] == ["FINISHED"] and found["count"] == 2, found


def test_an_anchor_without_animation_posed_on_another_frame_was_posed_anew(session):
    # (said as 'on frame 10 the left hand's animation poses it otherwise ...: go back to frame 1', and going back
    # did not bring its pose back: it has no animation)
    session.no_error("unanimated_posed_on_another_frame")
    found = session["unanimated_posed_on_another_frame"]
    assert found["sampled"] == ["FINISHED"] and not found["animated"], found
    result, said = found["key"]
    assert result == ["CANCELLED"], found
    assert "left hand was posed anew since the candidates were sampled" in said and "on frame" not in said, said


def test_key_and_apply_on_another_frame_say_the_frame_not_a_new_pose(session):
    session.no_error("on_another_frame")
    found = session["on_another_frame"]
    assert found["sampled"] == ["FINISHED"], found
    result, said = found["key"]
    assert result == ["CANCELLED"], found
    assert "on frame 40" in said and "than on frame 5" in said and "go back to frame 5" in said, said
    assert "posed anew" not in said and "undo" not in said, said
    result, said = found["apply"]
    assert result == ["FINISHED"], found
    assert "on frame 40" in said and "go back to frame 5" in said and "posed anew" not in said, said


def test_a_frame_changed_while_sampling_is_said(session):
    session.no_error("frame_changed_mid_job")
    found = session["frame_changed_mid_job"]
    result, said = found["sampled"]
    assert result == ["CANCELLED"] and found["count"] == 0, found
    assert "frame changed from 5 to 12 while it ran" in said and "posed anew" not in said, said
