"""handforge_shared.files: one way to write a file whole or not at all, with an ordinary file's mode."""

from __future__ import annotations

import os

import pytest
from handforge_shared.files import atomic_file, usual_mode, write_atomic


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "report.json"
    write_atomic(path, "old")
    assert path.read_text() == "old" and (path.stat().st_mode & 0o777) == usual_mode()  # not mkstemp's 0600
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(path.parent) == ["report.json"]
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    with pytest.raises(ValueError, match="mode"), atomic_file(path, "a"):
        pass
