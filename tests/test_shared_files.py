"""handforge_shared.files: one way to write a file whole or not at all, with an ordinary file's mode."""

from __future__ import annotations

import errno
import json
import os
import stat

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


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="names a file descriptor's file through /proc")
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX's")
def test_a_pipe_is_written_through_and_a_link_to_a_file_replaced_writing_nothing_outside(tmp_path):
    """``--out`` a FIFO or a device (/dev/null, /dev/stdout): each was replaced by a regular file (run as root, a
    report to /dev/null made it one for the whole machine). A device is written through as a pipe is (not tried here:
    a failure would replace the machine's). A link to a file or to nothing is replaced, its target untouched: a link
    planted in an output folder must not take a secret key elsewhere."""
    import threading

    from handforge.arguments import write_report

    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    read = []
    reader = threading.Thread(target=lambda: read.append(pipe.read_text()), daemon=True)
    reader.start()
    write_report(pipe, {"score": 1})
    reader.join(30)
    assert json.loads(read[0]) == {"handforge_report": 1, "score": 1} and stat.S_ISFIFO(pipe.lstat().st_mode)
    linked = tmp_path / "pipe-link"
    linked.symlink_to(pipe)
    reader = threading.Thread(target=lambda: read.append(pipe.read_text()), daemon=True)
    reader.start()
    write_atomic(linked, "through the link")
    reader.join(30)
    assert read[1:] == ["through the link"] and linked.is_symlink()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    for name, target in (("server.key_secret", "notes.txt"), ("dangling", "none.txt")):
        (out / name).symlink_to(tmp_path / "elsewhere" / target)
        write_atomic(out / name, "secret", private=True)
        assert not (out / name).is_symlink() and (out / name).read_text() == "secret"
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["notes.txt"]
    assert (tmp_path / "elsewhere" / "notes.txt").read_text() == "mine"


def test_a_file_and_its_name_are_on_the_disk_before_the_write_returns(tmp_path, monkeypatch):
    """Renamed without an fsync, a power loss could leave an empty file in place of the old one (the
    export's spec record, a saved motion). The real fsyncs and rename run; the test records their order."""
    calls, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append(("rename", str(src))), replace(src, dst))[1])
    path = tmp_path.resolve() / "spec.json"
    write_atomic(path, "{}")
    assert [kind for kind, _ in calls] == ["fsync", "rename", "fsync"]
    assert calls[0][1] == calls[1][1] and calls[0][1] != str(path)  # the temporary file, synced before its rename
    assert calls[2][1] == str(tmp_path.resolve()) and path.read_text() == "{}"


def test_the_folder_lock_refuses_a_second_holder_but_not_a_file_system_without_locks(tmp_path, monkeypatch):
    import errno
    import fcntl

    from handforge_shared.files import FolderBusy, folder_lock

    with folder_lock(tmp_path):
        with pytest.raises(FolderBusy, match="in use by another process"), folder_lock(tmp_path):
            pass
    # before: a share without a lock service (ENOLCK) was said to be "in use by another process"

    def no_locks(fd, how):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with folder_lock(tmp_path):
        (tmp_path / "written").write_text("ok")
    assert (tmp_path / "written").read_text() == "ok"
    with pytest.raises(KeyError) as raised, folder_lock(tmp_path):  # an error in the block: its own, not the lock's
        raise KeyError("in the block")
    assert raised.value.__context__ is None


class _FakeMutexes:
    """kernel32's named mutexes as the Windows folder lock uses them (CreateMutexW, WaitForSingleObject with no
    wait, ReleaseMutex, CloseHandle), modelled in Python: a model of the API, not Windows itself."""

    def __init__(self):
        self.owner: dict[str, object] = {}  # name -> the owning thread, "other process", or "died"
        self.handles: dict[int, str] = {}
        self.names: list[str] = []
        self.denied: set[str] = set()

    def create(self, name):
        self.names.append(name)
        if name in self.denied:
            return None, 5
        handle = len(self.names) + 100
        self.handles[handle] = name
        return handle, 0

    def wait(self, handle):
        import threading

        name, me = self.handles[handle], threading.get_ident()
        owner = self.owner.get(name)
        if owner == "died":
            self.owner[name] = me
            return 0x80
        if owner is None or owner == me:
            self.owner[name] = me
            return 0
        return 0x102

    def release(self, handle):
        import threading

        assert self.owner[self.handles[handle]] == threading.get_ident()  # on the thread that took it
        del self.owner[self.handles[handle]]

    def close(self, handle):
        del self.handles[handle]


@pytest.fixture
def windows_locks(monkeypatch):
    import sys

    from handforge_shared import files

    fake = _FakeMutexes()
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setattr(files, "_kernel32", lambda: fake, raising=False)
    return fake


def test_the_folder_lock_on_windows_is_a_named_mutex_that_refuses_a_second_holder(tmp_path, windows_locks):
    """Without fcntl (Windows) folder_lock locked nothing: two exports (or training runs) wrote into one folder.
    Now a named mutex for the folder's real path (Windows's calls faked, as a model of them: not run on Windows):
    nothing is added to the folder, a second holder in this process or another is refused, one whose holder died
    is taken, a mutex another user holds (access denied) is refused, and each is released and closed."""
    from handforge_shared.files import FolderBusy, folder_lock

    folder = tmp_path / "out"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    with folder_lock(folder):
        assert os.listdir(folder) == []  # (a holder can delete the folder: nothing in it is open)
        for alias in (folder, tmp_path / "link", tmp_path / "out" / ".." / "out"):
            with pytest.raises(FolderBusy, match="in use by another process"), folder_lock(alias):
                pass
    assert windows_locks.owner == {} and windows_locks.handles == {}
    name = windows_locks.names[0]
    assert name.startswith("Global\\handforge-folder-") and set(windows_locks.names) == {name}

    with pytest.raises(KeyError), folder_lock(folder):  # an error in the block: released all the same
        raise KeyError("in the block")
    assert windows_locks.owner == {} and windows_locks.handles == {}

    windows_locks.owner[name] = "other process"
    with pytest.raises(FolderBusy), folder_lock(folder):
        pass
    assert windows_locks.handles == {}
    windows_locks.owner[name] = "died"  # its holder was killed: Windows hands the mutex on (WAIT_ABANDONED)
    with folder_lock(folder):
        (folder / "written").write_text("ok")
    assert windows_locks.owner == {} and (folder / "written").read_text() == "ok"
    windows_locks.denied.add(name)  # another user's writer has it open
    with pytest.raises(FolderBusy), folder_lock(folder):
        pass
    windows_locks.denied.clear()
    other = tmp_path / "other"
    other.mkdir()
    with folder_lock(folder), folder_lock(other):  # another folder: its own mutex
        pass
    assert windows_locks.names[-1] != name


def test_the_folder_lock_warns_where_the_platform_has_no_locks(tmp_path, monkeypatch):
    import sys

    from handforge_shared.files import folder_lock

    monkeypatch.setitem(sys.modules, "fcntl", None)
    monkeypatch.setattr(sys, "platform", "emscripten")
    with pytest.warns(RuntimeWarning, match="no file locks: nothing stops a second writer"), folder_lock(tmp_path):
        pass


def test_a_settings_file_far_too_large_is_refused_unread_by_the_spec_and_config_readers(tmp_path, monkeypatch):
    # before: a 127 MB annotation file given as the spec took 973 MB and 12 s to be refused ("unknown keys")
    from handforge import config
    from handforge.export.spec import SpecError, load_spec

    huge = tmp_path / "InterHand2.6M_train_MANO_NeuralAnnot.json"
    with open(huge, "wb") as fh:
        fh.truncate(127 * 2**20)  # (sparse: nothing is written)
    with pytest.raises(SpecError, match=r"the export specification .* is 127\.0 MiB, far more than a settings file "
                                        r"ever is \(at most 16 MiB\): is it the right file\?"):
        load_spec(huge)
    monkeypatch.setenv("HANDFORGE_CONFIG", str(huge))
    with pytest.raises(config.ConfigError, match=r"the HandForge config file .* is 127\.0 MiB"):
        config.check_file()


def test_a_folder_that_refuses_the_file_is_said_of_the_file_asked_for(tmp_path):
    """/sys/x.npz said "Permission denied: '/sys/.x.npz.pf4c9sgl.tmp'": a temporary name nobody chose."""
    import errno

    target = "/proc/handforge_x.npz"  # (refuses new files, to root too)
    with pytest.raises(OSError) as refused:
        write_atomic(target, b"x")
    assert refused.value.filename == target and refused.value.errno in (errno.ENOENT, errno.EACCES, errno.EPERM)
    assert ".tmp" not in str(refused.value)


@pytest.mark.parametrize("how", ["write_atomic", "atomic_file"])
def test_a_write_that_fails_mid_file_is_said_of_the_file_asked_for(tmp_path, how):
    """A full disk or a file-size limit fails a write with no file name: a settings, checkpoint or motion file
    written through ``atomic_file`` was said as "File too large" (or "No space left on device"), no file
    named, unless its caller had wrapped it to name it. A real process under a file-size limit (RLIMIT_FSIZE)
    writes 100 kB there; an error in the block that names another file stays as it is."""
    import resource
    import subprocess
    import sys
    from pathlib import Path

    target, other = tmp_path / "settings.toml", tmp_path / "absent" / "other.npz"
    write = {"write_atomic": "files.write_atomic(target, b'x' * 100_000)",
             "atomic_file": "with files.atomic_file(target, 'wb') as fh:\n    fh.write(b'x' * 100_000)"}[how]
    script = (f"import sys\nfrom handforge_shared import files\ntarget = {str(target)!r}\n"
              f"try:\n    {write.replace(chr(10), chr(10) + '    ')}\n"
              "except OSError as exc:\n    print(exc.errno, exc.filename)\n"
              f"try:\n    with files.atomic_file(target) as fh:\n        open({str(other)!r})\n"
              "except OSError as exc:\n    print(exc.errno, exc.filename)\n")
    shared = Path(__file__).resolve().parents[1] / "shared"
    run = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(shared)},
                         capture_output=True, text=True, timeout=60,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, 10_000)))
    import errno

    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{errno.EFBIG} {target}", f"{errno.ENOENT} {other}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary left, no file half written


def test_an_error_in_the_block_that_is_no_files_is_left_as_it_is(tmp_path):
    """Naming every unnamed OSError in an atomic write as the file gave an encoder's "cannot write mode RGBA as
    JPEG" the file's name and an "[Errno None]", and dropped its traceback."""
    with pytest.raises(OSError) as raised, atomic_file(tmp_path / "x.png", "wb"):
        raise OSError("cannot write mode RGBA as JPEG")
    assert str(raised.value) == "cannot write mode RGBA as JPEG" and raised.value.filename is None
    assert raised.traceback[-1].name == "test_an_error_in_the_block_that_is_no_files_is_left_as_it_is"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError) as raised, atomic_file(tmp_path / "x.png", "wb"):
        raise OSError(5, None)  # (an errno without its words: said by its number's)
    assert str(raised.value) == f"[Errno 5] Input/output error: '{tmp_path / 'x.png'}'"
    with pytest.raises(OSError) as raised, atomic_file(tmp_path / "x.png", "wb"):  # (a rename's: both named)
        raise OSError(18, "Invalid cross-device link", str(tmp_path / ".x.png.ab12.tmp"), None, str(tmp_path / "x.png"))
    assert str(raised.value) == f"[Errno 18] Invalid cross-device link: '{tmp_path / 'x.png'}'"
    # another's failure in the block, unnamed, is not the file's: said as it was, not "...: 'x.png'"
    with pytest.raises(ConnectionResetError) as raised, atomic_file(tmp_path / "x.png", "wb"):
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
    assert raised.value.filename is None and str(raised.value) == "[Errno 104] Connection reset by peer"
    assert list(tmp_path.iterdir()) == []


def test_a_settings_file_nested_too_deeply_is_refused_in_words_by_the_spec_and_config_readers(tmp_path, monkeypatch):
    # before: a RecursionError traceback from tomllib or json, from `handforge export` and from every command
    from handforge import config
    from handforge.export.spec import SpecError, load_spec

    deep = "[" * 100_000 + "]" * 100_000
    for name, text in (("deep.toml", f"samples = {deep}\n"), ("deep.json", deep)):
        (tmp_path / name).write_text(text)
        with pytest.raises(SpecError, match=rf"{name}: nested too deeply: .*: is it the right file\?"):
            load_spec(tmp_path / name)
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "deep.toml"))
    with pytest.raises(config.ConfigError, match=r"the HandForge config file .*deep.toml: nested too deeply"):
        config.check_file()


def test_json_and_toml_nested_too_deeply_are_a_value_error_that_says_so():
    """json's C scanner and tomllib raise RecursionError on text nested thousands deep: every file reader caught
    it by name beside ValueError, and a reader that did not let it out as a traceback."""
    from handforge_shared.files import NestedTooDeeply, parse_json, parse_toml, read_error

    deep = "[" * 100_000 + "]" * 100_000
    for parse, text in ((parse_json, deep), (parse_toml, f"a = {deep}\n")):
        with pytest.raises(ValueError, match="nested too deeply: lists or .* inside one another thousands of times"):
            parse(text)
    with pytest.raises(NestedTooDeeply):
        parse_json("[" * 100_000)
    with pytest.raises(NestedTooDeeply) as deep_error:
        parse_json("[" * 100_000)
    with pytest.raises(ValueError) as plain_error:
        parse_json("x")
    # quoted by a reader: its text alone (it read "NestedTooDeeply: nested too deeply: ..."), other errors' classes
    assert read_error(deep_error.value) == str(deep_error.value)
    assert read_error(plain_error.value).startswith("JSONDecodeError: Expecting value")
    assert parse_json('{"a": [1]}', object_pairs_hook=list) == [("a", [1])]
    assert parse_toml("a = [[1]]\n") == {"a": [[1]]}


@pytest.mark.parametrize("platform", ["win32", "linux"])
def test_a_file_held_a_moment_on_windows_is_replaced_once_free(tmp_path, monkeypatch, platform):
    """On Windows a file cannot replace one another process holds open (a reader of the endpoint file, an
    antivirus scanning a just-written label): PermissionError, for a moment. ``atomic_file`` tries again there
    (``replace_held``, about 1 s in all); elsewhere one try, as before. The old file stays whole and no temporary
    is left when it gives up."""
    from handforge_shared.files import REPLACE_RETRY_DELAYS
    from tests.support.windows import held_replace

    path = tmp_path / "endpoint.json"
    write_atomic(path, "old")
    tries, slept = held_replace(monkeypatch, platform, refusals=2)
    if platform == "linux":
        with pytest.raises(PermissionError):
            write_atomic(path, "new")
        assert len(tries) == 1 and slept == [] and path.read_text() == "old" and os.listdir(tmp_path) == [path.name]
        return
    write_atomic(path, "new")
    assert len(tries) == 3 and len(slept) == 2 and path.read_text() == "new" and os.listdir(tmp_path) == [path.name]
    tries, slept = held_replace(monkeypatch, platform, refusals=None)
    with pytest.raises(PermissionError):
        write_atomic(path, "newer")
    assert len(tries) == len(REPLACE_RETRY_DELAYS) + 1 and path.read_text() == "new"
    assert os.listdir(tmp_path) == [path.name]
