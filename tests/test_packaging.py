"""The README's commands are what CI runs, and the install pins what it must (packages: test_imports.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


def _dev_script():
    spec = importlib.util.spec_from_file_location("handforge_dev_script", ROOT / "scripts" / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("command", ["demo", "test", "setup"])
def test_dev_script_on_another_python_stops_before_installing_anything(command, tmp_path, capsys, monkeypatch):
    # before: a note, then the setup went on, installed torch and failed at bpy 4.5.15 (no wheels for 3.12)
    dev = _dev_script()
    monkeypatch.setattr(dev, "VENV", tmp_path / "venv")
    assert dev.main([command], python_version=(3, 12, 3, "final", 0)) == 1
    said = capsys.readouterr()
    assert not said.out and not (tmp_path / "venv").exists()
    assert "needs Python 3.11" in said.err and "Python 3.12.3" in said.err
    assert f"python3.11 scripts/dev.py {command}\n" in said.err and "deadsnakes" in said.err
    assert dev.python_version_problem((3, 11, 7)) == "" and dev.python_version_problem((3, 10, 14))


# modules the backend imports that an extra (or Blender) brings, each where it is imported behind its own check
_FROM_ELSEWHERE = {"anny": "anny", "smplx": "mano", "mediapipe": "landmarks", "ray": "cluster",
                   "grpc": "cluster",  # (ray[default]'s; its error type only)
                   "bpy": "Blender", "mathutils": "Blender",  # the demo's and export's Blender side
                   "nltk": "optional (a lexicon fallback when absent)"}


def _imported_modules(folder: Path) -> dict[str, str]:
    """Each third-party top-level module imported anywhere under ``folder``, inside functions too: a file that does."""
    import ast

    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("handforge", "handforge_shared"):
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_module_the_backend_imports_is_installed_by_the_backend_install():
    """pycocotools was in the dev extra only: on the README's artist install (`.[backend]`) every labelled export,
    the demo's included, failed at its end ("No module named 'pycocotools'")."""
    import importlib.metadata
    import re

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = meta["project"]["dependencies"] + meta["project"]["optional-dependencies"]["backend"]
    names = {re.split(r"[<>=~!\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-") for requirement in declared}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for module, where in {**_imported_modules(ROOT / "backend" / "handforge"),
                          **_imported_modules(ROOT / "shared" / "handforge_shared")}.items():
        if module in _FROM_ELSEWHERE:
            continue
        dists = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not dists & names:
            missing[module] = f"{where} (from {sorted(dists)})"
    assert not missing, f"imported but not in the core or backend dependencies of pyproject.toml: {missing}"


def test_the_bpy_pin_the_backend_names_in_its_fixes_is_the_one_installed():
    """The fix said when bpy is missing (the export's refusals, the demo's) names the pin: one constant, the dev
    extra's (it was written out in three places)."""
    from handforge.render.blender import BLENDER_PIN

    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert BLENDER_PIN in meta["project"]["optional-dependencies"]["dev"]
    assert BLENDER_PIN in (ROOT / "README.md").read_text()
