"""A motion button's keys landing on a hand whose interaction candidates are browsed (In-between pressed while one is
shown on it). The browse went on over the new keys: Cancel then put the pose from before the candidates over them,
and the viewport showed one pose (a fist) where the keys, a render and an export gave another (the motion's flat
fingers); Apply kept the candidate over the motion. Import Motion and Run Job (a motion result) did the same. All now
end the browse on the hands they key, as Key Pose does, the rig put back first, and say so."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_over_candidates")
    return run_with_backend("motion_over_candidates_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


# each way keys land on a hand whose interaction candidates are browsed: the motion buttons, Import Motion, Run Job
@pytest.mark.parametrize("check, pressed", [("inbetween_over_candidates", "made"),
                                            ("import_over_candidates", "imported"),
                                            ("run_job_over_candidates", "ran")])
def test_keys_landing_on_a_browsed_hand_end_its_browse(session, check, pressed):
    session.no_error(check)
    found = session[check]
    assert found["sampled"][0] == ["FINISHED"], found
    result, said = found[pressed]
    assert result == ["FINISHED"], found
    assert found["browsed_after"] == 0 and found["cancelled"] is None, found
    assert "interaction candidates" in said and "Hand.R" in said, said
    assert found["shown_is_keyed"], found
