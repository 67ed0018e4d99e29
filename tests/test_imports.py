"""Every module of ``handforge``, ``handforge_shared`` and the add-on imports, and no two import each other.

The graph is read from the source (``ast``), so an import hidden inside a function counts as much as
one at the top: a cycle is a cycle whether Python happens to tolerate it today or not. The modules
are then really imported (the add-on's under bpy, in a subprocess), which also checks that the
packaging finds every folder: this replaces a hand-written package list.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import handforge
import handforge_shared

ROOT = Path(__file__).resolve().parent.parent
ADDON = "blender_addon"


def _modules(package) -> dict[str, Path]:
    found = {package.__name__: Path(package.__file__)}
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        spec = importlib.util.find_spec(info.name)
        found[info.name] = Path(spec.origin)
    return found


def _addon_modules() -> dict[str, Path]:
    return {ADDON if p.stem == "__init__" else f"{ADDON}.{p.stem}": p for p in (ROOT / ADDON).glob("*.py")}


ALL = {**_modules(handforge), **_modules(handforge_shared), **_addon_modules()}


def _imports(name: str, path: Path) -> set[str]:
    """The project modules that ``name`` imports anywhere in its source."""
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import mod` names a module when pkg.mod is one, else an attribute of pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in ALL else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t in ALL and t != name)
    return out


def test_every_module_is_found_and_has_a_home():
    assert "handforge.server.app" in ALL and "handforge_shared.rotations" in ALL and "blender_addon.rig" in ALL
    # the packaging finds every folder with code: none is left without an __init__.py
    for base in (ROOT / "backend" / "handforge", ROOT / "shared" / "handforge_shared"):
        for folder in base.rglob("*"):
            if folder.is_dir() and "__pycache__" not in folder.parts and list(folder.glob("*.py")):
                assert (folder / "__init__.py").is_file(), f"{folder} holds code but is not a package"


def test_no_import_cycle_anywhere():
    graph = {name: _imports(name, path) for name, path in ALL.items()}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_the_renderer_builds_on_nothing_of_the_export():
    """``handforge.render`` draws every image the backend makes; the export (and the image engines) build on it,
    never the other way: its modules once imported the export's spec and samples for a constant and for the
    disk-write verdicts, now in ``handforge.render.blender`` and ``handforge.disk``."""
    uses = {name: sorted(t for t in _imports(name, path) if t.startswith("handforge.export"))
            for name, path in ALL.items() if name.startswith("handforge.render")}
    assert len(uses) > 3 and not any(uses.values()), {name: found for name, found in uses.items() if found}


@pytest.mark.parametrize("package", ["handforge", "handforge_shared"])
def test_every_backend_and_shared_module_imports(package):
    for name in sorted(n for n in ALL if n.split(".")[0] == package):
        if name.endswith("blender_demo_scene"):
            continue  # runs inside Blender only: imported by the add-on check below
        importlib.import_module(name)


def test_every_addon_module_imports_under_bpy():
    probe = ("import importlib, sys; sys.path.insert(0, sys.argv[1]); import bpy; "
             "[importlib.import_module(m) for m in sys.argv[2:]]; import handforge.blender_demo_scene; print('ok')")
    names = sorted(n for n in ALL if n.split(".")[0] == ADDON)
    proc = subprocess.run([sys.executable, "-c", probe, str(ROOT), *names], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-3000:]
