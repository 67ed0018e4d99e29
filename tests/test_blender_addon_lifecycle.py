"""HandForge disabled, upgraded or reinstalled in a running Blender (real bpy): a browse of interaction candidates
ends with the rigs as they were before them, and the next enabling runs the installed code, the shared package
included."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def browse_session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_with_backend("lifecycle_browse_session.py", addon_zip, tmp_path_factory.mktemp("lifecycle_browse"),
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_disabling_while_browsing_puts_the_rigs_back(browse_session):
    # before: the candidate stayed on the right hand (1.98 off its pose in the bone matrices), and a file saved
    # then held it as the hand's pose, Cancel's copy of the artist's pose gone with the add-on
    browse_session.no_error("setup", "preferences")
    found = browse_session["preferences"]
    assert found["sampled"] == ["FINISHED"] and found["browsing"] == 3 and found["previewed"], found
    assert found["enabled_after"] is False
    assert found["right_off_its_pose"] == 0.0 and found["left_off_its_pose"] == 0.0, found


def test_a_file_saved_after_disabling_while_browsing_holds_the_pose(browse_session):
    browse_session.no_error("reopened")
    assert browse_session["reopened"]["right_off_its_pose"] == 0.0


def test_disabling_while_browsing_in_a_restricted_context_still_unregisters_and_says_so(browse_session):
    """Blender's RestrictBlend (no scene, no bpy.data: an add-on enabling or disabling another): the rigs cannot be
    reached, so the console names them; unregister itself does not fail half way."""
    browse_session.no_error("restricted")
    found = browse_session["restricted"]
    assert found["restricted_data"] is True and found["browsing"] == 3 and found["enabled_after"] is False, found
    assert "Exception in module unregister" not in browse_session.log, browse_session.log[-3000:]
    said = [line for line in browse_session.log.splitlines() if "could not be put back" in line]
    assert said and "'Hand.R'" in said[0], browse_session.log[-3000:]
