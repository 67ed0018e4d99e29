"""Files written whole or not at all, with the mode an ordinary file gets; one writer per folder.

A file is written beside its target (``.<name>.<random>.tmp``, so a reader or a clean-up can tell it
apart) and renamed into place: a crash, a Ctrl-C or a full disk leaves the old file or none, never
half of one, and the file and its name are on the disk before the block returns (fsync: a power loss
after a rename of unsynced data can leave an empty file in place). ``tempfile.mkstemp`` creates owner-only files (0600); the written file gets what the
umask gives new files instead, so shared storage and other users read it as any other.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
import tomllib
import warnings
from pathlib import Path
from typing import IO, Any, Collection, Iterator

TEMPORARY_SUFFIX = ".tmp"
SCRATCH_PREFIX = "handforge-"  # the backend's scratch folders in the temporary folder (handforge.scratch)


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    """One writer at a time in ``folder`` (raises ``FolderBusy`` while another holds it): an advisory lock
    on the folder itself, so nothing is added to it, and the kernel drops it when its holder dies. On Windows
    (no ``fcntl``) a named mutex for the folder's real path, for the same reasons: no file in the folder (a
    lock file could not be deleted while open, so a holder's ``rmtree`` of the folder failed) and Windows
    hands a mutex whose holder died to the next one. No lock where the file system takes none (a network
    share without a lock service: ENOLCK, which was reported as the folder being in use)."""
    if sys.platform == "win32":
        with _windows_folder_lock(folder):
            yield
        return
    try:
        import fcntl
    except ImportError:
        warnings.warn(f"{folder}: this platform has no file locks: nothing stops a second writer in this folder",
                      RuntimeWarning, stacklevel=3)
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusy(f"{folder} is in use by another process") from None
            # else no lock to be had here: as on a platform without locks (outside this handler: an error
            # in the block would show this one as its cause)
        yield
    finally:
        os.close(fd)


# Windows: the mutexes this process holds (a mutex is its owning thread's again without waiting, where a second
# flock of the folder in one process is refused), by name
_held_mutexes: set[str] = set()
_held_mutexes_lock = threading.Lock()
_ERROR_ACCESS_DENIED = 5  # CreateMutexW: another user's process has the mutex open (its default DACL)
_WAIT_OBJECT_0, _WAIT_ABANDONED, _WAIT_TIMEOUT = 0x0, 0x80, 0x102


def _windows_mutex_name(folder: str | os.PathLike) -> str:
    """The folder's mutex: its real path (links and the short 8.3 names resolved), case folded, hashed; in the
    Global namespace, so that another logon session's (another user's) writer sees it too."""
    os.stat(folder)  # (a missing folder raises, as os.open does elsewhere)
    key = os.path.normcase(os.path.realpath(os.fspath(folder)))
    return "Global\\handforge-folder-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class _Kernel32:
    """The four kernel32 calls of a named mutex (ctypes; Windows only)."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ctypes = ctypes
        k32 = ctypes.WinDLL("kernel32", use_last_error=True)
        self._create, self._wait, self._release, self._close = (k32.CreateMutexW, k32.WaitForSingleObject,
                                                                 k32.ReleaseMutex, k32.CloseHandle)
        self._create.argtypes = [wintypes.LPVOID, wintypes.BOOL, wintypes.LPCWSTR]
        self._create.restype = wintypes.HANDLE
        self._wait.argtypes, self._wait.restype = [wintypes.HANDLE, wintypes.DWORD], wintypes.DWORD
        self._release.argtypes, self._release.restype = [wintypes.HANDLE], wintypes.BOOL
        self._close.argtypes, self._close.restype = [wintypes.HANDLE], wintypes.BOOL

    def create(self, name: str) -> tuple[int | None, int]:
        """(handle or None, the last error)."""
        handle = self._create(None, False, name)
        return handle or None, self._ctypes.get_last_error()

    def wait(self, handle: int) -> int:
        return self._wait(handle, 0)

    def release(self, handle: int) -> None:
        self._release(handle)

    def close(self, handle: int) -> None:
        self._close(handle)


def _kernel32() -> _Kernel32:
    return _Kernel32()


@contextlib.contextmanager
def _windows_folder_lock(folder: str | os.PathLike) -> Iterator[None]:
    name = _windows_mutex_name(folder)
    with _held_mutexes_lock:
        if name in _held_mutexes:
            raise FolderBusy(f"{folder} is in use by another process")
        _held_mutexes.add(name)
    try:
        api = _kernel32()
        handle, error = api.create(name)
        if handle is None:
            if error == _ERROR_ACCESS_DENIED:
                raise FolderBusy(f"{folder} is in use by another process")
            yield  # no mutex to be had: as on a file system without locks
            return
        try:
            state = api.wait(handle)
            if state == _WAIT_TIMEOUT:
                raise FolderBusy(f"{folder} is in use by another process")
            if state not in (_WAIT_OBJECT_0, _WAIT_ABANDONED):  # (abandoned: its holder died; now this one's)
                yield  # WAIT_FAILED: no lock to be had
                return
            try:
                yield
            finally:
                api.release(handle)  # (on the thread that took it, as a mutex must be: the with block's)
        finally:
            api.close(handle)
    finally:
        with _held_mutexes_lock:
            _held_mutexes.discard(name)


def usual_mode(folder: bool = False) -> int:
    """The permissions a new file (or folder) gets under this process's umask."""
    umask = os.umask(0)  # the only way to read it: set, then restore at once
    os.umask(umask)
    return (0o777 if folder else 0o666) & ~umask


# what a write, a flush or an fsync fails with, the file unnamed: a full disk or quota, a file-size limit, the device
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


@contextlib.contextmanager
def errors_named(path: str | os.PathLike) -> Iterator[None]:
    """An ``OSError`` while ``path`` is written, named as ``path``: a full disk (or a file-size limit) fails a
    write with no file name, said as "No space left on device" with no file or folder, and a folder that
    refuses new files was said of the hidden temporary file made beside ``path``, a name nobody chose."""
    path = Path(path)
    try:
        yield
    except OSError as exc:
        temporary = isinstance(exc.filename, str) and Path(exc.filename).name.startswith(f".{path.name}.")
        # unnamed, only a write's own failures are the file's: not an error without errno (Pillow's "cannot
        # write mode RGBA as JPEG") nor another's, as a socket's "Connection reset" in the block
        if exc.errno is not None and (temporary or exc.filename is None and exc.errno in _WRITE_ERRNOS):
            exc.filename = str(path)  # (its traceback kept)
            if exc.filename2 is not None:  # (the temporary's rename: one set to None is said "-> None")
                del exc.filename2
            exc.strerror = exc.strerror or os.strerror(exc.errno)  # (else said "[Errno 5] None: ...")
        raise


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w", private: bool = False) -> Iterator[IO]:
    """An open file ("w" text in UTF-8, or "wb") that replaces ``path`` when the block ends without an
    error; on an error the temporary file goes and ``path`` is as it was. ``private``: owner-only (0600,
    from its first byte: a secret key), not the umask's mode. Its write errors are said of ``path``
    (``errors_named``), the block's writes to ``fh`` included: a full disk there named no file.

    A device or a pipe (``--out /dev/null``, ``/dev/stdout``, a FIFO), or a link to one, is written through, as a
    shell's ``>`` does: each was replaced by a file (run as root, a report to /dev/null made it a regular file for the
    whole machine). A link to a file, or to nothing, is replaced as a file is: never written through, so a link
    planted in an output folder (``server.key_secret`` → elsewhere) writes nothing outside it."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        with errors_named(path), open(path, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with errors_named(path):  # (an error the block raises naming another file passes as it is)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        try:
            with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
                yield fh
                fh.flush()
                os.fsync(fh.fileno())
            if not private:
                os.chmod(tmp, usual_mode())
            replace_held(tmp, path)
            sync_folder(path.parent)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def write_atomic(path: str | os.PathLike, data: str | bytes, private: bool = False) -> Path:
    """``data`` (text: UTF-8) into ``path``, whole or not at all (``private``: see ``atomic_file``)."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w", private) as fh:
        fh.write(data)
    return Path(path)


# A settings file people write is kilobytes; parsed, text takes ~8x its size (a 127 MB annotation file given
# as a spec by mistake took 973 MB and 12 s before "unknown keys")
USER_TEXT_MAX_BYTES = 16 * 2**20


class FileTooLarge(ValueError):
    """A file far larger than one of its kind ever is: the wrong file."""


def read_user_text(path: str | os.PathLike) -> str:
    """A text file people edit (a config, a specification): UTF-8 with or without the byte-order mark
    Windows Notepad writes (tomllib and json refused it: "Invalid statement" at line 1, column 1). Another
    encoding raises ``UnicodeDecodeError``, which ``not_utf8`` puts into words; one over
    ``USER_TEXT_MAX_BYTES``, ``FileTooLarge`` (not read)."""
    size = os.path.getsize(path)
    if size > USER_TEXT_MAX_BYTES:
        raise FileTooLarge(f"{path} is {size / 2**20:,.1f} MiB, far more than a settings file ever is (at most "
                           f"{USER_TEXT_MAX_BYTES // 2**20} MiB): is it the right file?")
    return Path(path).read_text(encoding="utf-8-sig")


def not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8"


class NumberTooLong(ValueError):
    """JSON with an integer of more digits than Python converts (``sys.get_int_max_str_digits``): its own ValueError
    advised the reader's programmer to raise that limit."""


class NestedTooDeeply(ValueError):
    """JSON or TOML text with lists or objects inside one another thousands of times: json's C scanner and
    tomllib recurse, and raise ``RecursionError``, which no reader of a damaged file expects. A ``ValueError``,
    so the readers' "not valid JSON" handling covers it as the damage it is."""


@contextlib.contextmanager
def _depth_guard(containers: str) -> Iterator[None]:
    """A parser's ``RecursionError`` as ``NestedTooDeeply`` (``containers``: what nests, 'objects' or 'tables')."""
    try:
        yield
    except RecursionError:
        raise NestedTooDeeply(f"nested too deeply: lists or {containers} inside one another thousands of times") from None


def foreign_names(out: str | os.PathLike, own: Collection[str] = (), empty_folders: Collection[str] = ()) -> str:
    """The names in ``out`` that are neither hidden nor ``own`` (a run's own files, which it replaces) nor one of
    ``empty_folders`` left empty, as said in a refusal ("a, b, c and 2 more"); '' when none (or no folder)."""
    out = Path(out)
    if not out.is_dir():
        return ""
    blocking = sorted(p.name for p in out.iterdir() if not p.name.startswith(".") and p.name not in own
                      and not (p.name in empty_folders and p.is_dir() and not any(p.iterdir())))
    return ", ".join(blocking[:3]) + (f" and {len(blocking) - 3} more" if len(blocking) > 3 else "")


def parse_json(text: str | bytes, *, max_depth: int | None = None, **json_kwargs: Any) -> Any:
    """``json.loads(text, **json_kwargs)``, the one reader of JSON from files and records: text nested too
    deeply to parse raises ``NestedTooDeeply`` (a ``ValueError``), not a ``RecursionError``; so does a value
    with lists or objects more than ``max_depth`` deep (one that parsed ~990 deep raised ``RecursionError``
    when ``json.dumps`` wrote it again, from a deeper stack)."""
    with _depth_guard("objects"):
        try:
            value = json.loads(text, **json_kwargs)
        except ValueError as exc:  # (its own advice, sys.set_int_max_str_digits(), is for the reader's programmer)
            if "integer string conversion" not in str(exc):
                raise
            raise NumberTooLong(f"a number of more than {sys.get_int_max_str_digits():,} digits, more than any value "
                                "takes") from None
    if max_depth is not None and nested_deeper_than(value, max_depth):
        raise NestedTooDeeply(f"nested too deeply: lists or objects inside one another more than {max_depth} times")
    return value


def nested_deeper_than(value: Any, max_depth: int) -> bool:
    """Whether ``value`` nests lists or dicts more than ``max_depth`` deep (walked without recursion, so any
    depth is measured)."""
    pending = [(value, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, (list, dict)):
            if depth >= max_depth:
                return True
            pending.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return False


def raw_decode_json(decoder: json.JSONDecoder, text: str, at: int = 0) -> tuple[Any, int]:
    """``decoder.raw_decode(text, at)``: the value at ``at`` and where it ends, for a reader that parses a file
    in pieces (too large to hold whole); nested too deeply raises ``NestedTooDeeply`` as ``parse_json`` does."""
    with _depth_guard("objects"):
        return decoder.raw_decode(text, at)


def read_error(exc: BaseException) -> str:
    """A reader's error as its message quotes it: ``JSONDecodeError: Expecting value: ...`` (the class says
    what the text alone may not), but a ``NestedTooDeeply`` by its text, which says so already (it read
    "NestedTooDeeply: nested too deeply: ...")."""
    return str(exc) if isinstance(exc, NestedTooDeeply) else f"{type(exc).__name__}: {exc}"


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads(text)``, nested too deeply raising ``NestedTooDeeply`` as ``parse_json`` does."""
    with _depth_guard("tables"):
        return tomllib.loads(text)


def sync_folder(folder: str | os.PathLike) -> None:
    """A folder's entries (new files, a rename into it) on the disk; nothing where folders cannot be
    opened (Windows: no ``os.O_DIRECTORY``)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def refused_new_files(folder: str | os.PathLike) -> str:
    """Why ``folder`` takes no new file ('' when it does), tried with a nameless temporary file (nothing
    shows in the folder): access() lets root write where the file system refuses (/proc, a read-only mount)."""
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


# A CurveZMQ key file `handforge keys` writes is a few hundred bytes; zmq reads a whole file into memory
KEY_FILE_MAX_BYTES = 64 * 1024


def check_key_file(path: str | os.PathLike) -> None:
    """Raise ``ValueError`` naming ``path`` unless it is a regular file of key size: zmq.auth read /dev/zero until
    memory ran out (a GB a second), waited forever on a FIFO, and took 4 GB for a 2 GB file before refusing it."""
    if not os.path.isfile(path):
        kind = file_kind(path) if os.path.lexists(path) else "missing"
        raise ValueError(f"{path} is {kind}, not a CurveZMQ key file (create one with `handforge keys`)")
    size = os.path.getsize(path)
    if size > KEY_FILE_MAX_BYTES:
        raise ValueError(f"{path} is {size:,} bytes, not a CurveZMQ key file (a few hundred bytes, as `handforge keys` "
                         "writes them): is it the right file?")


def file_kind(path: str | os.PathLike) -> str:
    """What a path that is not a regular file is, in words ("a FIFO", "a folder", "a broken link")."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError:  # a link to nothing
        return "a broken link" if path.is_symlink() else "unreadable"
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return kind
    return "not a file"


def existing_ancestor(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else its nearest parent that does: where a folder about to be made
    would go (a file there is in the way; a relative path ends at ".", which exists)."""
    path = Path(path)
    return next(p for p in (path, *path.parents) if p.exists())


SHOWN_NAME_CHARS = 240  # a longer path is shown cut in its middle


def shown_name(name: str | bytes | os.PathLike) -> str:
    """A path as a message shows it: cut in its middle when longer than ``SHOWN_NAME_CHARS`` (a config value of
    5 MB, a name far over the file system's limit, was repeated whole in the error that refused it)."""
    text = os.fsdecode(name)
    if len(text) <= SHOWN_NAME_CHARS:
        return text
    keep = SHOWN_NAME_CHARS // 2
    return f"{text[:keep]}…({len(text) - 2 * keep:,} characters)…{text[-keep:]}"


def file_error(exc: OSError, elsewhere: str = "choose another folder", out: str | os.PathLike | None = None) -> str:
    """An ``OSError`` of the user's files in words, with its fix: the file named, why, what to do
    (``elsewhere``: how to write somewhere else instead, e.g. "choose another --out"). One home for every
    command: they had each read any failure as a full disk ("make room"), a chmod'ed file included.
    ``out``: the command's output folder; a full disk in a HandForge scratch folder of the temporary folder
    (``SCRATCH_PREFIX``: a renderer's hand-off files) and not under ``out`` says to free space there or move
    TMPDIR, not to choose another ``out``."""
    where = f"{shown_name(exc.filename)}: " if exc.filename else ""
    reason = exc.strerror or str(exc)
    if out is not None and exc.errno in (errno.ENOSPC, errno.EDQUOT) and exc.filename:
        temporary = Path(tempfile.gettempdir()).absolute()
        path = Path(os.fsdecode(exc.filename)).absolute()
        inside = path.relative_to(temporary).parts if path.is_relative_to(temporary) else ()
        if inside and inside[0].startswith(SCRATCH_PREFIX) and not path.is_relative_to(Path(out).absolute()):
            return (f"{where}{reason}: free space in the temporary folder {temporary}, or set TMPDIR to a folder "
                    "on a disk with room")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{where}{reason}: make room (or {elsewhere})"
    if exc.errno == errno.EFBIG:  # (a process's limit far more often than a file system's largest file)
        return (f"{where}{reason}: over this process's file-size limit (`ulimit -f`) or the file system's largest "
                f"file: raise the limit (or {elsewhere})")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"{where}{reason}: let this user read and write it (or {elsewhere})"
    if exc.errno == errno.EROFS:
        return f"{where}{reason}: {elsewhere} on a writable file system"
    if exc.errno == errno.ENAMETOOLONG:
        return f"{where}a name in this path is longer than the file system allows (255 bytes): shorten it"
    return f"{where}{reason}: fix it (or {elsewhere})"


# Windows: how long to wait before each further try of a rename (about 1 s in all)
REPLACE_RETRY_DELAYS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.25)


def replace_held(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """``os.replace(source, target)``; on Windows tried again a few times on PermissionError: a folder cannot be
    renamed there while another process (an antivirus or the search indexer, looking at the files just
    written) holds one of its files open, for a moment, which stopped a whole export as a folder this user
    cannot write (WinError 5); nor can a file replace one that another process has open (a sharing
    violation), which ``atomic_file`` meets when a reader or a scanner holds the file it rewrites.
    Elsewhere at once."""
    import time

    if sys.platform != "win32":
        os.replace(source, target)
        return
    for delay in (*REPLACE_RETRY_DELAYS, None):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if delay is None:
                raise
            time.sleep(delay)


__all__ = ["SCRATCH_PREFIX", "TEMPORARY_SUFFIX", "USER_TEXT_MAX_BYTES", "FileTooLarge", "FolderBusy", "NestedTooDeeply", "atomic_file", "foreign_names",
           "errors_named", "existing_ancestor", "file_error", "file_kind", "folder_lock", "not_utf8", "parse_json",
           "parse_toml", "raw_decode_json", "read_error", "read_user_text", "refused_new_files", "replace_held", "sync_folder",
           "usual_mode",
           "write_atomic"]
