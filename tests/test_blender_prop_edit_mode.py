"""The buttons that key or pose the hands with an undo step, pressed while another object (a prop the hand holds)
is in Edit Mode: greyed and refused with the reason, as the pose buttons are (Blender's undo there holds only the
prop's edits: Key Pose keyed the hands, and one Ctrl-Z left the keys), the prop's edit kept."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]

BUTTONS = ("key_pose", "import_motion", "delete_generated_keys", "make_artist_keys", "select_generated_keys",
           "motion_inbetween", "interaction_apply", "interaction_key")
EDITED = [0.0, 0.0, 0.25]  # the cup's vertex as its edit put it
WHY = "is in Edit Mode, where undo holds only its edits (a change to the hands could not be undone): leave it (Tab) first"


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("prop_edit_mode")
    return run_with_backend("prop_edit_mode_session.py", addon_zip, work / "blender", {"clip": str(work / "clip.npz")})


@pytest.mark.parametrize("button", BUTTONS)
def test_a_button_with_an_undo_step_waits_while_a_prop_is_in_edit_mode(session, button):
    session.no_error("probe")
    got = session["probe"][button]
    assert got["poll"] is False, got  # greyed, with the reason
    result, said = got["result"]
    assert result == ["CANCELLED"] and f"'Cup {button}' {WHY}" in said, got
    assert got["changed"] is False, got  # (before: keyed or posed, and one Ctrl-Z undid the prop's edit step alone)
    assert got["mode_after"] == "EDIT" and got["cup_kept"] == EDITED, got  # the prop's edit kept


def test_a_motion_whose_result_comes_while_a_prop_is_in_edit_mode_is_not_keyed(session):
    session.no_error("tab")
    got = session["tab"]
    result, said = got["result"]
    assert result == ["CANCELLED"] and "the result could not be used" in said and f"'Cup tab' {WHY}" in said, got
    assert got["changed"] is False and got["cup"] == EDITED, got


def test_sample_interaction_a_preview_still_runs_while_a_prop_is_in_edit_mode(session):
    session.no_error("preview")
    got = session["preview"]
    assert got["poll"] is True and got["result"][0] == ["FINISHED"], got
    assert got["cancel"][0] == ["FINISHED"] and got["cup"] == EDITED, got
