"""The distribution installs every package folder, and the README's commands are what CI runs."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _folders(base: str, name: str) -> set[str]:
    found = set()
    marked = [*(ROOT / base).rglob("__init__.py"), *(ROOT / base).rglob("assets/")]
    for path in marked:
        rel = (path.parent if path.is_file() else path).relative_to(ROOT / base)
        if "__pycache__" in rel.parts:
            continue
        found.add(".".join([name, *rel.parts]))
    return found


def test_every_package_folder_is_listed_in_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(meta["tool"]["setuptools"]["packages"])
    expected = _folders("backend", "handforge") | _folders("shared", "handforge_shared")
    assert listed == expected, f"add to / remove from pyproject packages: {sorted(expected ^ listed)}"


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (ROOT / "README.md").read_text().splitlines()
    commands = [line.strip() for line in readme[:40] if line.strip().startswith("python3 scripts/dev.py")]
    assert commands[:2] == ["python3 scripts/dev.py demo", "python3 scripts/dev.py test"], commands
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_torch_is_pinned_to_the_cpu_build_on_disk():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    backend = meta["project"]["optional-dependencies"]["backend"]
    assert "torch==2.13.0" in backend
