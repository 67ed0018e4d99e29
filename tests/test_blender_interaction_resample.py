"""Sample Interaction pressed again while candidates are browsed. Its request takes the candidate shown off the rig
(the anchor is read as the artist posed it) and keeps the candidates until the new ones land.

Apply pressed while that sampling ran took the rig, back in the pose from before the candidates, for the artist's
changes to the candidate shown: it kept that pose, reported as "applied candidate 2 ... with your changes to the right
hand". It now keeps candidate 2.

The sampled hand posed by the artist while it ran (a preset): when the new candidates landed, the old browse was
ended by putting back the pose from before the old candidates over the artist's pose, and Cancel on the new ones gave
that old pose back; the artist's was lost. Without candidates browsed before, Cancel gives the artist's pose back;
now it does either way. And where the new sampling was cancelled (or refused), the candidate shown before was posed
over the artist's pose; the pose now stays, Apply keeping it as the artist's change to that candidate."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("interaction_resample")
    return run_with_backend("interaction_resample_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_apply_while_a_new_sampling_runs_keeps_the_candidate_shown(session):
    session.no_error("apply_while_resampling")
    found = session["apply_while_resampling"]
    result, said = found["apply"]
    assert result == ["FINISHED"] and "applied candidate 2" in said, found
    assert "with your changes" not in said, said
    assert found["kept_candidate"] and not found["kept_before"], found
    assert found["resampled"][0] == ["FINISHED"], found  # (the new candidates still land, around the same anchor)


def test_the_sampled_hand_posed_while_a_new_sampling_runs_is_what_cancel_gives_back(session):
    session.no_error("posed_while_resampling")
    found = session["posed_while_resampling"]
    assert found["preset"][0] == ["FINISHED"], found
    assert found["resampled"][0] == ["FINISHED"] and found["landed"] == 3, found
    assert found["cancel_gives_the_artists_pose"], found


def test_the_sampled_hand_posed_while_a_new_sampling_runs_keeps_its_pose_when_it_is_cancelled(session):
    session.no_error("posed_while_a_cancelled_resampling_ran")
    found = session["posed_while_a_cancelled_resampling_ran"]
    assert found["resampled"][0] == ["CANCELLED"] and "cancelled" in found["resampled"][1], found
    assert found["count"] == 3 and found["pose_kept"], found
    # browsing goes on at the candidate shown before, which is not on the hand: said (before: nothing, the panel
    # naming it and its score as if shown), and Apply, keeping the artist's pose, quotes no score of a pose unshown
    # (before: "applied candidate 1 (score …) with your changes to the right hand")
    assert found["message"].startswith("Candidate 1 is not shown: the right hand keeps the pose you gave it"), found
    result, said = found["apply"]
    assert result == ["FINISHED"] and "kept your pose of the right hand: candidate 1 was not shown" in (
        said), found
    assert "score" not in said, found


def test_the_request_read_again_after_an_undo_leaves_a_hand_the_artist_posed_as_it_is(session):
    # read again when the job ends after an Undo or Redo: it took the preview off (the pose from before the
    # candidates over the artist's) and took that for what the add-on wrote, so the new candidates' Cancel and Apply
    # no longer knew the artist's pose. Only the job's start takes the preview off now (``job_prepare``)
    session.no_error("request_read_again")
    found = session["request_read_again"]
    assert found["kind"] == "interaction.sample" and found["posed"], found
    assert found["pose_kept"] and found["shown_kept"], found
    result, said = found["apply"]
    assert result == ["FINISHED"] and "with your changes to the right hand" in said, found


def test_apply_while_a_new_sampling_runs_over_a_hand_the_artist_posed_keeps_the_pose_quoting_no_score(session):
    # the candidate is off the rig while the sampling runs: Apply said "applied candidate 2 (score …) with your
    # changes to the right hand" of a pose candidate 2 never had (as after a cancelled sampling, fixed before)
    session.no_error("posed_then_applied_while_resampling")
    found = session["posed_then_applied_while_resampling"]
    result, said = found["apply"]
    assert result == ["FINISHED"] and "kept your pose of the right hand: candidate 2 was not shown" in said, found
    assert "score" not in said, found
    assert found["resampled"][0] == ["FINISHED"] and found["pose_kept"], found


def test_both_hands_posed_while_a_cancelled_resampling_ran_are_spoken_of_as_two(session):
    # sampled without an anchor: said "the left and right hand keeps the pose you gave it"
    session.no_error("both_posed_while_a_cancelled_resampling_ran")
    found = session["both_posed_while_a_cancelled_resampling_ran"]
    assert found["resampled"][0] == ["CANCELLED"] and found["count"] == 3, found
    assert found["message"].startswith("Candidate 1 is not shown: the left and right hands keep the pose you gave "
                                       "them while the sampling ran"), found
    result, said = found["apply"]
    assert result == ["FINISHED"] and "kept your pose of the left and right hands: candidate 1" in said, found
