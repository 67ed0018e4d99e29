"""Engines build on one another one way: an engine folder that imports another's modules is not imported by it,
directly or through a third (read from the source, as ``test_imports`` reads the module graph).

`handforge models`' target generator support once made the image engine's weights.py import the pose-transfer
engine, which builds on the image engine: what each engine checks and imports is dispatched by the command."""

from __future__ import annotations

import graphlib

import pytest

from tests.test_imports import ALL, _imports

ENGINES = "handforge.engines."


def _engine(module: str) -> str | None:
    """The engine folder ``module`` is in (None: not in one, e.g. engines/checkpoints.py)."""
    parts = module.split(".")
    return parts[2] if module.startswith(ENGINES) and len(parts) > 3 else None


def _engine_graph() -> dict[str, dict[str, list[str]]]:
    """Per engine folder, the other engine folders its modules import, each with the imports that do it."""
    graph: dict[str, dict[str, list[str]]] = {}
    for name, path in ALL.items():
        engine = _engine(name)
        if engine is None:
            continue
        graph.setdefault(engine, {})
        for target in sorted(_imports(name, path)):
            other = _engine(target)
            if other is not None and other != engine:
                graph[engine].setdefault(other, []).append(f"{name} -> {target}")
    return graph


def test_no_two_engines_import_each_other():
    graph = _engine_graph()
    assert "transfer" in graph and "image" in graph["transfer"]  # the graph is read: transfer builds on image
    try:
        tuple(graphlib.TopologicalSorter({engine: set(deps) for engine, deps in graph.items()}).static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        imports = [graph[a][b][0] for a, b in zip(cycle, cycle[1:], strict=False)]  # (one import of each step)
        pytest.fail(f"engines import each other: {' -> '.join(cycle)} ({'; '.join(imports)})")
