"""What a failed write means: a full disk (or quota, or a file-size limit) or a folder this user cannot write
fails every write after it too, so a run (an export, pose-transfer pairs, a renderer's hand-off files) stops at
once instead of failing each sample alike; numpy's short writes are named as such; a PNG cut short is known by
its missing end chunk. And amounts of disk or memory said in words (``byte_amount``), for the refusals of runs
that would not fit."""

from __future__ import annotations

import errno
import os
from pathlib import Path

FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # EFBIG: a file-size limit (``ulimit -f``) fails every sample too
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)


def stops_the_run(exc: BaseException, writing: bool) -> bool:
    """Whether ``exc`` would fail every sample after it too: a full disk (or quota, or a file-size limit),
    whether making or writing the sample, or a dataset folder this user cannot write (permissions, a read-only
    file system). Such a run stops at once with one line (``handforge_shared.files.file_error``) instead of making every
    sample (all of Cycles' render time) to fail each one, with one line each."""
    return isinstance(exc, OSError) and (exc.errno in FULL or (writing and exc.errno in UNWRITABLE))


def under_file_size_limit(folder: Path) -> bool:
    """Whether a short write into ``folder`` was a file-size limit rather than a full disk: a limit is set
    and the disk still has room (a sample's files are megabytes at most). Windows has neither ``resource`` nor
    ``os.statvfs`` (their ImportError/AttributeError replaced the 'make room' message there): no limit there."""
    try:
        import resource
    except ImportError:
        return False
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit == resource.RLIM_INFINITY:
        return False
    if not hasattr(os, "statvfs"):
        return False
    try:
        disk = os.statvfs(folder)
    except OSError:
        return False
    return disk.f_bavail * disk.f_frsize > 64 * 2**20


def write_error(exc: BaseException, path: str | os.PathLike) -> BaseException:
    """``exc``, raised writing ``path`` (a file, or the folder written into), as the error that stops the run
    (``stops_the_run``) naming ``path`` where it is one, else ``exc`` itself. numpy reports a full disk, or a
    file-size limit, as a short write without an errno ("196608 requested and 157664 written"), which
    ``stops_the_run`` did not recognise: every later sample rendered to fail the same way; and a full disk
    met at a file's close names no file. The one conversion of the samples' files and Blender's hand-off files."""
    if isinstance(exc, OSError) and exc.errno is None and " requested and " in str(exc):
        if under_file_size_limit(Path(path)):
            return OSError(errno.EFBIG, os.strerror(errno.EFBIG), str(path))
        return OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({exc})", str(path))
    if stops_the_run(exc, writing=True):
        return type(exc)(exc.errno, exc.strerror, str(path))
    return exc


PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # every PNG's last 12 bytes: its IEND chunk


def png_cut_short(path: Path) -> bool:
    """Whether the PNG ``path`` lacks its end chunk (``PNG_END``): written only in part (a full disk)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        fh.seek(max(0, size - len(PNG_END)))
        return fh.read() != PNG_END


def byte_amount(count: float) -> str:
    """Bytes in GB, or MB or kB below 1 GB: in GB alone, a small disk's refusal said it needed "0.0 GB" and had
    "0.0 GB free" (the export's, and the corpus's: 500 clips on a nearly full disk)."""
    # the larger unit once the smaller one would show 1000 (999,960,000 bytes was "1000.0 MB", 999,999 "1000 kB")
    if round(count / 1e3) < 1000:
        return f"{count / 1e3:.0f} kB"
    if round(count / 1e6, 1) < 1000:
        return f"{count / 1e6:.1f} MB"
    return f"{count / 1e9:.1f} GB"
