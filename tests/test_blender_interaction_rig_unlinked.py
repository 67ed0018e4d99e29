"""The hand rig to be sampled taken out of the scene (unlinked, still in the file) while Sample Interaction ran: the
candidates landed on it all the same, reported at INFO as "3 candidates ...: Next/Previous to browse, Apply to keep",
and Next, Apply and Key Candidates then each refused them (the rig is in no scene). The landing now refuses them,
saying which hand left the scene, as the motion buttons refuse a motion for a hand no longer there."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("interaction_rig_unlinked")
    return run_with_backend("interaction_rig_unlinked_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_candidates_for_a_rig_taken_out_of_the_scene_are_refused(session):
    session.no_error("unlinked_mid_job")
    found = session["unlinked_mid_job"]
    assert found["unlinked"] and not found["in_scene"], found
    result, said = found["result"]
    assert result == ["CANCELLED"] and found["count"] == 0, found
    assert "'Hand.R'" in said and "no longer in the scene" in said and "Sample Interaction again" in said, said
