"""A joint of a hand rig renamed (or deleted) while a job runs whose result lands on that rig. In-between and Sample
Interaction with the joint on the anchor failed as a bug ("HandForge failed (KeyError: ...); see the system console",
a traceback); with the joint on the sampled hand, the candidates landed reported at INFO as "3 candidates ...", the
panel saying only "'index3'" and no candidate shown (Next and Apply said only "'index3'" too, for a joint renamed
while candidates are browsed). The result is now refused, naming the hand and the joint lost
(and the renamed bone), as the buttons refuse such a rig before a job is sent; so do Next and Apply."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("lost_bone_mid_job")
    return run_with_backend("lost_bone_mid_job_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def refused_naming_the_joint(found: dict, result_said, side: str) -> None:
    result, said = result_said
    joint = found["renamed"][0]
    assert result == ["CANCELLED"], found
    assert "failed" not in said and "system console" not in said, said
    assert f"the {side} hand" in said and f"lost its bone(s) {joint} (renamed '{joint} renamed'?)" in said, said


def test_inbetween_refuses_a_motion_for_a_rig_that_lost_a_joint_while_it_ran(session):
    session.no_error("inbetween")
    found = session["inbetween"]
    refused_naming_the_joint(found, found["made"], "right")
    assert "Traceback" not in session.log


def test_interaction_refuses_candidates_when_a_rig_lost_a_joint_while_it_ran(session):
    session.no_error("anchor", "sampled")
    for side in ("anchor", "sampled"):
        found = session[side]
        refused_naming_the_joint(found, found["sampled"], "left" if side == "anchor" else "right")
        assert found["count"] == 0, found
    assert "Traceback" not in session.log


def test_next_and_apply_name_a_joint_renamed_while_candidates_are_browsed(session):
    session.no_error("browsing")
    found = session["browsing"]
    refused_naming_the_joint(found, found["next"], "right")
    refused_naming_the_joint(found, found["apply"], "right")
