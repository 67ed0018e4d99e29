"""An engine's own buttons are one add-on file, ``blender_addon/ops_<engine>.py``, as README's "Adding an engine"
says: before, such a file was never registered until blender_addon/__init__.py imported and listed it, and its
engine's kinds showed as Run Job buttons too until panels.py named it."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def test_an_engines_own_add_on_file_is_registered_and_unregistered_alone(addon_zip, tmp_path):  # noqa: F811
    session = run_blender("engine_buttons_session.py", addon_zip, tmp_path / "blender")
    session.no_error("broken_file", "no_classes", "enabled", "run_job_buttons", "ran", "disabled")
    # one that fails to import: said with its file, nothing left registered, and the next enabling works
    assert "ops_broken.py" in session["broken_file"]["said"] and "no_such_library_anywhere" in \
        session["broken_file"]["said"], session["broken_file"]
    assert not session["broken_file"]["left_registered"], session["broken_file"]
    # one without CLASSES (before: an AttributeError of the module, the add-on half-registered the same way)
    assert "ops_broken.py" in session["no_classes"]["said"] and "CLASSES" in session["no_classes"]["said"], \
        session["no_classes"]
    assert not session["no_classes"]["left_registered"], session["no_classes"]
    assert session["enabled"] == {"operator": True, "panel": True, "property": True, "transfer_panel": True}
    assert session["run_job_buttons"] == ["interaction.sample"]  # tiny's and transfer's have their own panels
    assert session["ran"] == ["FINISHED"]
    assert session["disabled"] == {"operator": False, "panel": False, "property": False, "transfer_panel": False}
