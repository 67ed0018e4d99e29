"""`python3 build_addon.py` with a Python that has no pip (Ubuntu's python3 until python3-pip is installed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.bare_python import bare_python

ROOT = Path(__file__).resolve().parent.parent


def _build(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), str(ROOT / "build_addon.py"), *args], check=False, capture_output=True,
                          text=True, timeout=120)


def test_a_python_without_pip_is_said_not_a_network_problem(tmp_path):
    # before: "could not download the pyzmq 27.3.0 wheel ... No module named pip" and "Connect to PyPI once"
    python = bare_python(tmp_path / "python")
    out = tmp_path / "handforge.zip"
    done = _build(python, "--cache", str(tmp_path / "empty-cache"), "--out", str(out))
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"this Python ({python}) has no pip" in done.stderr and "python3-pip" in done.stderr, done.stderr
    assert ".venv/bin/python build_addon.py" in done.stderr and "Connect to PyPI" not in done.stderr
    assert not out.exists()


def test_a_python_without_pip_builds_from_wheels_it_is_given(tmp_path):
    # the wheels of the default cache (filled once per machine, as test_blender_build's tests do), no pip needed
    import build_addon

    build_addon.fetch_wheels(build_addon.DEFAULT_CACHE)
    python = bare_python(tmp_path / "python")
    out = tmp_path / "handforge.zip"
    done = _build(python, "--cache", str(build_addon.DEFAULT_CACHE), "--out", str(out))
    assert done.returncode == 0 and out.is_file(), done.stderr
