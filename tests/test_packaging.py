"""The README's commands are what CI runs, and the install pins what it must (packages: test_imports.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in readme[:40] if line.strip().startswith("python3 scripts/dev.py")]
    assert commands[:2] == ["python3 scripts/dev.py demo", "python3 scripts/dev.py test"], commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    backend = meta["project"]["optional-dependencies"]["backend"]
    assert "torch==2.13.0" in backend
