"""The harness that runs Blender test sessions (``tests/blender/harness.py``) leaves nothing in the system's
temp folder, even from a session that did not exit cleanly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender]


def test_a_session_leaves_no_blender_temp_dir_behind(tmp_path):
    # before: every session's /tmp/blender_XXXXXX stayed behind when Blender did not remove it itself
    session = run_blender("tempdir_session.py", tmp_path / "unused.zip", tmp_path / "blender")
    tempdir = Path(session["tempdir"])
    left = tempdir.exists()
    if left:  # (only the one this test made)
        shutil.rmtree(tempdir, ignore_errors=True)
    assert tempdir.name.startswith("blender_") and not left, tempdir


def test_a_session_runs_without_the_variables_it_is_told_to_unset(tmp_path, monkeypatch):
    """The Blender sessions that must see the open hand whatever the developer's setup passed a copy of the
    environment without HANDFORGE_MANO_DIR as env, which the harness only added to its own copy: the variable
    reached Blender and its backend all the same."""
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "mano"))
    given = run_blender("tempdir_session.py", tmp_path / "unused.zip", tmp_path / "given")
    unset = run_blender("tempdir_session.py", tmp_path / "unused.zip", tmp_path / "unset",
                        unset=("HANDFORGE_MANO_DIR",))
    assert given["mano_dir"] == str(tmp_path / "mano") and unset["mano_dir"] is None
