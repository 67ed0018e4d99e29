"""`python3 scripts/dev.py setup` on a fresh machine: a Python that cannot put pip into a new environment (Debian's
and Ubuntu's without python3.11-venv), an environment left without pip, and which torch build it asks pip for."""

from __future__ import annotations

import contextlib
import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.support.bare_python import bare_python

ROOT = Path(__file__).resolve().parent.parent
DEV = ROOT / "scripts" / "dev.py"

needs_311 = pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="dev.py sets up on Python 3.11 only")


def _dev_script():
    spec = importlib.util.spec_from_file_location("handforge_dev_script_setup", DEV)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _setup(python: Path, venv: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(python), str(DEV), "setup"], check=False, capture_output=True, text=True, timeout=120,
                          env={**env, "HANDFORGE_VENV": str(venv)})


@pytest.fixture
def python_without_ensurepip(tmp_path) -> Path:
    """Python 3.11 as Debian's is until python3.11-venv is installed: no ensurepip."""
    return bare_python(tmp_path / "python")


@needs_311
def test_a_python_that_cannot_put_pip_in_says_what_to_install_and_leaves_no_environment(python_without_ensurepip,
                                                                                        tmp_path):
    # before: a traceback ending in CalledProcessError (ensurepip), and a .venv without pip that the next run took
    # as made: "No module named pip", "setup failed at: ... -m pip install ..."
    venv = tmp_path / "venv"
    done = _setup(python_without_ensurepip, venv)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "python3.11-venv" in done.stderr and str(venv) in done.stderr, done.stderr
    assert not venv.exists(), "a half-made environment is removed"
    again = _setup(python_without_ensurepip, venv)  # the same words, not "No module named pip"
    assert again.returncode == 1 and "python3.11-venv" in again.stderr and "Traceback" not in again.stderr


@needs_311
def test_a_folder_that_was_there_before_is_left_when_the_environment_cannot_be_made(python_without_ensurepip,
                                                                                    tmp_path):
    venv = tmp_path / "mine"
    venv.mkdir()
    (venv / "notes.txt").write_text("kept")
    done = _setup(python_without_ensurepip, venv)
    assert done.returncode == 1 and "python3.11-venv" in done.stderr, done.stderr
    assert (venv / "notes.txt").read_text() == "kept"


@needs_311
def test_an_environment_without_pip_is_named_with_what_to_do(tmp_path):
    # an earlier run's half-made one, or one made with --without-pip: before, pip's "No module named pip" and
    # "setup failed at: .../python -m pip install --quiet --upgrade pip ..."
    venv = tmp_path / "venv"
    subprocess.run([os.path.realpath(sys._base_executable), "-m", "venv", "--without-pip", str(venv)], check=True)
    done = _setup(Path(os.path.realpath(sys._base_executable)), venv)
    assert done.returncode == 1, done.stderr
    assert f"{venv} has no pip: remove that folder and run this again" in done.stderr, done.stderr
    assert "setup failed at" not in done.stderr


def test_torch_is_the_cpu_build_on_linux_without_an_nvidia_driver():
    # PyPI's Linux torch is the CUDA build (several GB of NVIDIA libraries beyond the README's 3.8 GB): a laptop
    # without an NVIDIA GPU got it from `python3 scripts/dev.py demo`
    dev = _dev_script()
    assert dev.TORCH_CPU_INDEX == "https://download.pytorch.org/whl/cpu"
    with _http_index() as index:
        assert dev.torch_install("linux", nvidia=False, index=index) == [dev.TORCH, "--index-url", index]
        for platform, nvidia in (("linux", True), ("darwin", False), ("win32", False)):
            assert dev.torch_install(platform, nvidia=nvidia, index=index) == [dev.TORCH]


def test_a_cpu_index_that_does_not_answer_is_left_to_pips_own_indexes(capsys):
    # offline mirrors (these machines): pip retried download.pytorch.org for over a minute before falling back to
    # the configured indexes, and with none would have failed
    dev = _dev_script()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    index = f"http://127.0.0.1:{port}/whl/cpu"
    assert dev.torch_install("linux", nvidia=False, index=index) == [dev.TORCH]
    assert f"PyTorch's CPU index {index} does not answer" in capsys.readouterr().out


@contextlib.contextmanager
def _http_index():
    """A local HTTP server answering 404 to everything: an index that answers."""
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("command", ["demo", "test", "setup"])
def test_linux_arm64_stops_before_installing_anything(command, tmp_path, capsys, monkeypatch):
    # bpy 4.5.15 has wheels for Linux x86_64, macOS and Windows only: on Linux aarch64 (Docker on an Apple silicon Mac)
    # the setup installed torch and the rest, then failed at pip's "No matching distribution found for bpy==4.5.15"
    dev = _dev_script()
    monkeypatch.setattr(dev, "VENV", tmp_path / "venv")
    assert dev.main([command], python_version=(3, 11, 7), system=("Linux", "aarch64")) == 1
    said = capsys.readouterr()
    assert not said.out and not (tmp_path / "venv").exists()
    assert "no wheels for Linux aarch64" in said.err and "linux/amd64" in said.err, said.err
    for system in (("Linux", "x86_64"), ("Darwin", "arm64"), ("Darwin", "x86_64"), ("Windows", "AMD64"),
                   ("Windows", "ARM64")):
        assert dev.platform_problem(*system) == "", system


def test_the_whole_suite_runs_in_two_processes_and_an_area_as_asked():
    dev = _dev_script()
    assert dev.pytest_arguments([], cpus=2) == ["-n", "2", "--dist", "loadfile"]
    assert dev.pytest_arguments([], cpus=16) == ["-n", "2", "--dist", "loadfile"]
    assert dev.pytest_arguments([], cpus=1) == []  # one CPU: one process, no workers to start
    assert dev.pytest_arguments(["tests/test_x.py", "-k", "y"], cpus=2) == ["tests/test_x.py", "-k", "y"]
    import xdist  # noqa: F401 - installed by the dev extra, which the whole suite's arguments need
