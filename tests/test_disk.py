"""handforge.disk where the platform lacks Linux's calls (Windows: no ``resource`` module, no ``os.statvfs``)."""

from __future__ import annotations

import errno
import os
import sys

import pytest

from handforge.disk import write_error
from handforge_shared.files import file_error


def _short_write() -> OSError:
    return OSError("196608 requested and 157664 written")  # numpy's short write: no errno


def test_a_short_write_without_resource_is_a_full_disk_said_as_such(tmp_path, monkeypatch):
    """Windows has no ``resource`` module: a short write during an export raised ModuleNotFoundError from
    write_error instead of the 'make room' message."""
    monkeypatch.setitem(sys.modules, "resource", None)
    monkeypatch.delattr(os, "statvfs")
    error = write_error(_short_write(), tmp_path / "sample.npz")
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert error.filename == str(tmp_path / "sample.npz") and "No space left" in file_error(error)


@pytest.mark.skipif(not hasattr(os, "statvfs"), reason="sets an rlimit through resource")
def test_a_short_write_under_a_file_size_limit_without_statvfs_is_said_not_raised(tmp_path, monkeypatch):
    """rlimits but no os.statvfs (the room left unknown): the full-disk message, not an AttributeError."""
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda what: (2**20, resource.RLIM_INFINITY))
    monkeypatch.delattr(os, "statvfs")
    error = write_error(_short_write(), tmp_path)
    assert error.errno == errno.ENOSPC and error.filename == str(tmp_path)


def test_a_short_write_under_a_file_size_limit_is_still_the_limit_on_linux(tmp_path, monkeypatch):
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda what: (2**20, resource.RLIM_INFINITY))
    assert write_error(_short_write(), tmp_path).errno == errno.EFBIG  # (the folder written into: it has room)
