"""A file that truly cannot be deleted for a while, for tests of removals that cannot finish (as on NFS, a file
held open elsewhere)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def unremovable(path: Path, root: Path):
    """``path`` (a file under ``root``) made truly impossible to delete for a while: its folder read-only, or for
    root, who ignores permissions, the file immutable (``chattr +i``; skipped where that is not allowed). Given back
    wherever under ``root`` it was moved meanwhile (its folder renamed)."""
    as_root = os.geteuid() == 0
    if not as_root:
        path.parent.chmod(0o500)
    elif shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], check=False,
                                                          capture_output=True).returncode:
        pytest.skip("as root, a file that cannot be removed needs chattr +i, which is not available here")
    try:
        yield
    finally:
        for moved in root.rglob(path.name):
            if as_root:
                subprocess.run(["chattr", "-i", str(moved)], check=True)
            else:
                moved.parent.chmod(0o700)
