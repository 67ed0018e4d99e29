"""A copy of this Python 3.11 as a fresh Debian or Ubuntu machine has it: the standard library without ensurepip
(Debian ships it in python3.11-venv) and no site-packages, so no pip (python3-pip)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest


def bare_python(folder: Path) -> Path:
    """The interpreter's file copied into ``folder``/bin, its library's entries linked beside it (the copy finds its
    library there, relative to itself); the test is skipped where such a copy cannot run."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the interpreter copy is Linux's")
    stdlib = Path(sysconfig.get_paths(vars={"base": sys.base_prefix, "installed_base": sys.base_prefix})["stdlib"])
    lib = folder / "lib" / stdlib.name
    lib.mkdir(parents=True)
    for entry in stdlib.iterdir():
        if entry.name not in ("ensurepip", "site-packages"):
            (lib / entry.name).symlink_to(entry)
    (folder / "bin").mkdir()
    python = folder / "bin" / Path(os.path.realpath(sys._base_executable)).name
    shutil.copy2(os.path.realpath(sys._base_executable), python)
    probe = "import os, venv, importlib.util as u\nprint(u.find_spec('ensurepip') is None and u.find_spec('pip') is None)"
    check = subprocess.run([str(python), "-I", "-c", probe], check=False, capture_output=True, text=True)
    if check.stdout.strip() != "True":
        pytest.skip(f"this Python cannot run as a bare copy: {check.stdout[-200:]}{check.stderr[-300:]}")
    return python
