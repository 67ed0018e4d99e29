"""The README's commands are what CI runs, and the install pins what it must (packages: test_imports.py)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in readme[:40] if line.strip().startswith("python3 scripts/dev.py")]
    assert commands[:2] == ["python3 scripts/dev.py demo", "python3 scripts/dev.py test"], commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_dev_script_help_is_a_success_and_a_wrong_command_a_usage_error():
    # (--help printed the usage with exit status 2); neither sets anything up
    helped = subprocess.run([sys.executable, str(ROOT / "scripts/dev.py"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "demo" in helped.stdout and not helped.stderr
    wrong = subprocess.run([sys.executable, str(ROOT / "scripts/dev.py"), "tset"], capture_output=True, text=True)
    assert wrong.returncode == 2 and "demo" in wrong.stderr and not wrong.stdout


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    backend = meta["project"]["optional-dependencies"]["backend"]
    assert "torch==2.13.0" in backend
