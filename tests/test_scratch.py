"""handforge.scratch: the sweep removes only this user's scratch folders whose owner is provably gone."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile

import pytest

from handforge import scratch


@pytest.fixture
def tmp(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _folder(tmp, name, owner):
    folder = tmp / f"handforge-blender-{name}"
    folder.mkdir()
    (folder / scratch.OWNER).write_text(owner + "\n")
    return folder


def test_only_a_gone_owners_folder_of_this_host_and_pid_namespace_is_removed(tmp, tmp_path):
    host, ns, dead = socket.gethostname(), scratch.pid_namespace(), _dead_pid()
    gone = _folder(tmp, "gone", f"{dead} {host} {ns}")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    os.symlink(outside, gone / "link")  # removed as a link: what it points at stays
    kept = [_folder(tmp, "live", f"{os.getpid()} {host} {ns}"),
            _folder(tmp, "other-host", f"{dead} another-host {ns}"),
            _folder(tmp, "other-namespace", f"{dead} {host} pid:[1]"),
            _folder(tmp, "unknown-namespace", f"{dead} {host} unknown"),

            _folder(tmp, "unrecorded-namespace", f"{dead} {host}")]
    os.symlink(gone, tmp / "handforge-blender-link")  # a link to a gone owner's folder: not followed
    assert scratch.sweep() == [gone]
    assert not gone.exists() and (outside / "keep.txt").read_text() == "mine"
    assert all(folder.is_dir() for folder in kept)


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("unshare") is None, reason="Linux namespaces")
def test_a_live_folder_made_in_another_pid_namespace_is_left_alone(tmp):
    """A container with its own pid namespace sharing the temporary folder and the host name (a pod's
    containers, ``--network host``): its live owner's pid is free here, and the sweep removed its folder."""
    free = next(p for p in range(300, 4_000_000) if not os.path.exists(f"/proc/{p}"))
    paths = [os.path.join(os.path.dirname(scratch.__file__), ".."), *sys.path]
    owner = f"""
import os, sys, time
sys.path[:0] = {paths!r}
import tempfile
tempfile.tempdir = {str(tmp)!r}
while True:  # pids in a new namespace count up from 1: fork until the owner gets the one free outside
    pid = os.fork()
    if pid == 0:
        if os.getpid() == {free}:
            from handforge.scratch import scratch_folder
            print(scratch_folder("blender"), flush=True)
            sys.stdin.read()
        os._exit(0)
    os.waitpid(pid, 0)
    if pid >= {free}:
        break
"""
    try:
        process = subprocess.Popen(["unshare", "--user", "--map-root-user", "--pid", "--fork", sys.executable, "-c",
                                    owner], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
    except OSError as exc:
        pytest.skip(f"unshare: {exc}")
    try:
        folder = process.stdout.readline().strip()
        if not folder:
            pytest.skip(f"no pid namespace here: {process.stderr.read() if process.poll() is not None else ''}")
        assert not os.path.exists(f"/proc/{free}")  # the owner's pid means nothing here
        assert scratch.sweep() == []
        assert os.path.isdir(folder)
    finally:
        process.kill()
        process.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux boot ids")
def test_a_folder_of_another_machine_with_the_same_host_name_is_left_alone(tmp, tmp_path, monkeypatch):
    """Two machines of one host name sharing the folder (cloned VMs, a TMPDIR on NFS): their first pid
    namespaces have the same number, so only the boot tells them apart."""
    dead = _dead_pid()
    boot = tmp_path / "boot_id"
    boot.write_text("another-machine\n")
    with monkeypatch.context() as there:  # the other machine makes a folder; its owner is alive there
        there.setattr(scratch, "BOOT_ID", boot, raising=False)
        there.setattr(scratch.os, "getpid", lambda: dead)
        folder = scratch.scratch_folder("blender")
    assert scratch.sweep() == [] and folder.is_dir()
