"""Sample Interaction whose anchor hand is posed anew while the job runs (a preset or a turned finger, no undo):
before, the candidates made for the pose before landed around the new pose, reported as "best score 1.000 (max depth
≈ 0.0 mm ...)" at INFO, however deep they went into it; only Apply warned later. The motion buttons refuse a result
whose keys were edited while it ran; Sample Interaction now does the same for its anchor, said, nothing shown."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("review_c_interaction")
    return run_with_backend("review_c_interaction_session.py", addon_zip, work / "blender",
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
