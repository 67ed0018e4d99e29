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
