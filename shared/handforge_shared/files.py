"""Files written whole or not at all, with the mode an ordinary file gets.

A file is written beside its target (``.<name>.<random>.tmp``, so a reader or a clean-up can tell it
apart) and renamed into place: a crash, a Ctrl-C or a full disk leaves the old file or none, never
half of one. ``tempfile.mkstemp`` creates owner-only files (0600); the written file gets what the
umask gives new files instead, so shared storage and other users read it as any other.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

TEMPORARY_SUFFIX = ".tmp"


def usual_mode(folder: bool = False) -> int:
    """The permissions a new file (or folder) gets under this process's umask."""
    umask = os.umask(0)  # the only way to read it: set, then restore at once
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """An open file ("w" text in UTF-8, or "wb") that replaces ``path`` when the block ends without an
    error; on an error the temporary file goes and ``path`` is as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        os.chmod(tmp, usual_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """``data`` (text: UTF-8) into ``path``, whole or not at all."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    return Path(path)


__all__ = ["TEMPORARY_SUFFIX", "atomic_file", "usual_mode", "write_atomic"]
