"""Interaction candidates sampled on one frame of an animated anchor hand and used on another (the artist went to
frame 40 to key them there, or scrubbed while the sampling ran): Key Candidates refused, Apply warned and the
sampling's landing refused with "the left hand was posed anew ... (or undo the change)", though nothing was posed
and there was nothing to undo. They now say the frame is another than the sampling's, where the hand's animation
poses it otherwise, and to go back to that frame or sample again here."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("review_c_interaction_frame")
    return run_with_backend("review_c_interaction_frame_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


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
