"""An engine's own buttons are one add-on file, ``blender_addon/ops_<engine>.py``, as README's "Adding an engine"
says: before, such a file was never registered until blender_addon/__init__.py imported and listed it, and its
engine's kinds showed as Run Job buttons too until panels.py named it. One that fails to register leaves nothing
registered (before: the add-on stayed half-registered, and enabling it again was refused)."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_an_engines_own_add_on_file_is_registered_and_unregistered_alone(addon_zip, tmp_path):  # noqa: F811
    session = run_blender("engine_buttons_session.py", addon_zip, tmp_path / "blender")
    session.no_error("broken_file", "no_classes", "register_raises", "class_fails", "enabled_again", "sidebar_alone",
                     "enabled", "sidebar", "run_job_buttons", "ran", "disabled", "disabled_leftovers")
    # one that fails to import: said with its file, nothing left registered, and the next enabling works
    assert "ops_broken.py" in session["broken_file"]["said"] and "no_such_library_anywhere" in \
        session["broken_file"]["said"], session["broken_file"]
    assert not session["broken_file"]["left_registered"], session["broken_file"]
    # one without CLASSES (before: an AttributeError of the module, the add-on half-registered the same way)
    assert "ops_broken.py" in session["no_classes"]["said"] and "CLASSES" in session["no_classes"]["said"], \
        session["no_classes"]
    assert not session["no_classes"]["left_registered"], session["no_classes"]
    assert session["broken_file"]["leftovers"] == session["no_classes"]["leftovers"] == []
    # one whose register() raises (after making a property: taken back too), or one of whose CLASSES Blender refuses
    # (the same file rewritten: before, its first text was still imported): before, the add-on stayed registered up
    # to it and the next enabling, the file removed, was refused
    raised, refused = session["register_raises"], session["class_fails"]
    assert "ops_zzz.py" in raised["said"] and "could not be made" in raised["said"], raised
    assert "ops_zzz.py" in refused["said"] and "NO_SUCH_SPACE" in refused["said"], refused
    assert "remove ops_zzz.py" in raised["said"] and "enable HandForge again" in raised["said"], raised
    assert raised["leftovers"] == refused["leftovers"] == [], (raised, refused)
    assert session["enabled_again"] == ["FINISHED"]
    # the sidebar's panels in the order they always had; an engine's own below Jobs, by file name (ops_tiny.py's)
    top = ["Hands", "Pose", "Pose › Pose Library", "Animation", "Generate Image", "Backend", "Jobs"]
    assert session["sidebar_alone"] == top + ["Interaction", "Motion", "Transfer Pose"], session["sidebar_alone"]
    assert session["sidebar"] == top + ["Interaction", "Motion", "Tiny", "Transfer Pose"], session["sidebar"]
    assert session["enabled"] == {"operator": True, "panel": True, "property": True, "transfer_panel": True}
    # tiny's, transfer's, image's and motion's have their own panels (interaction's kind keeps its button too)
    assert session["run_job_buttons"] == ["interaction.sample"]
    assert session["ran"] == ["FINISHED"]
    assert session["disabled"] == {"operator": False, "panel": False, "property": False, "transfer_panel": False}
    assert session["disabled_leftovers"] == []
