"""`handforge demo` when it cannot finish: a full disk or a file it cannot write (named, with --out and a rerun
that refreshes the folder), its first write (the folder's mark, atomic and named), too little room for its labelled
export (one line), Ctrl-C (what it left in --out and how to go on)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from handforge.cli import main


def test_a_full_disk_names_out_and_says_the_folder_is_refreshed(tmp_path, monkeypatch, capsys):
    """It said "handforge demo: OUT/fist.glb: No space left on device: make room (or choose another folder)":
    not which option to change, nor whether the half-written folder could be used again (it can: a rerun
    refreshes it)."""
    import handforge.demo as demo

    real = demo.write_atomic

    def full(path, data, **kwargs):
        if str(path).endswith("fist.glb"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kwargs)

    monkeypatch.setattr(demo, "write_atomic", full)
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"handforge demo: {out / 'fist.glb'}: No space left on device: make room (or choose another --out); the "
        "files written so far stay in --out, a demo's folder, which the same command run again refreshes"]
    monkeypatch.setattr(demo, "write_atomic", real)
    assert main(["demo", "--no-blender", "--out", str(out)]) == 0  # (what the hint says holds)


ROOT = Path(__file__).resolve().parents[1]


def test_a_failed_first_write_names_the_file(tmp_path):
    """Under a file-size limit (`ulimit -f`, or a full disk) the mark written first failed without a file name:
    "handforge demo: File too large: over this process's file-size limit ..." named nothing in --out, and
    left an empty .handforge-demo behind."""
    out = tmp_path / "demo"
    code = ("import resource, sys\n"
            "from handforge.cli import main\n"
            "import handforge.demo, handforge.commands.demo\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            f"sys.exit(main(['demo', '--no-blender', '--out', {str(out)!r}]))\n")
    paths = [str(ROOT / "backend"), str(ROOT / "shared"), str(ROOT)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"handforge demo: {out / '.handforge-demo'}: File too large"), done.stderr
    assert not (out / ".handforge-demo").exists()  # (written whole or not at all)


def test_no_room_for_the_labelled_export_is_one_line(tmp_path, monkeypatch, capsys):
    """With about 1.4 MB free the demo wrote its meshes, then ended in a traceback,
    "handforge.export.room.ExportTooLarge: 8 samples of 256×256 need at least 2.1 MB ... lower the resolution,
    or export fewer samples", whose fixes are `handforge export`'s options, not the demo's."""
    import handforge.export.room as room

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(room.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1_400_000, 1_400_000))
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"handforge demo: no room for its labelled export: 8 samples of 256×256 need at least 2.1 MB (their depth "
        f"arrays alone), and {out / 'labelled'} has 1.4 MB free: free space, or choose another --out (the files "
        "written so far stay in --out, a demo's folder, which the same command run again refreshes)"], err
    monkeypatch.undo()
    assert main(["demo", "--no-blender", "--out", str(out)]) == 0  # (refreshed, as it says)


def test_an_interrupted_demo_says_a_rerun_refreshes_its_folder(tmp_path, monkeypatch, capsys):
    """It said only "interrupted", over a folder holding some of the demo's files and not others: whether it
    could be used again (or had to be removed first) was left to find out."""
    import handforge.commands.demo as command

    def stopped(out):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_labelled_part", stopped)
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted: the files written so far stay in --out, a demo's folder, which the same command run again "
        "refreshes")
    monkeypatch.undo()
    assert main(["demo", "--no-blender", "--out", str(out)]) == 0  # (as it says)


def test_too_little_memory_for_the_labelled_export_says_to_free_memory_not_space(tmp_path, monkeypatch, capsys):
    """The demo put its disk fixes after the export's memory refusal: "... or free memory: free space, or
    choose another --out"."""
    import psutil

    available = namedtuple("memory", "available")
    monkeypatch.setattr(psutil, "virtual_memory", lambda: available(1_000_000))
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "handforge demo: no room for its labelled export: a sample of 256×256 needs about 4.6 MB of memory, and "
        "this machine has 1.0 MB available: free memory (the files written so far stay in --out, a demo's folder, "
        "which the same command run again refreshes)"], err


@pytest.mark.blender
@pytest.mark.slow
def test_a_failed_blender_part_is_said_on_stderr(tmp_path, capsys):
    """"Blender part failed: ..." went to stdout, among the demo's progress lines: a script reading stderr saw
    nothing. Here the Blender session fails for real: a file stands where its folder goes."""
    from handforge.blender_demo import unavailable_reason
    from handforge.commands.demo import _blender_part

    if unavailable_reason():
        pytest.skip(unavailable_reason())
    taken = tmp_path / "blender"
    taken.write_text("a file where the demo's Blender folder goes\n")
    assert _blender_part(taken, {}) == 1
    said = capsys.readouterr()
    assert "failed" not in said.out
    assert said.err.startswith("handforge demo: Blender part failed: the Blender session failed (exit 1)"), said.err
    assert "FileExistsError" in said.err  # (the session's own last lines say why)
