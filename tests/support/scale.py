"""Shared by the scale-out export tests: a tiny spec, its single-process dataset, and a byte comparison."""

from __future__ import annotations

from pathlib import Path

from handforge.export.run import export
from handforge.export.spec import parse_spec

# fast enough for the tests, long enough (40 samples) to kill a driver mid-run
SPEC = {"seed": 11, "samples": 40, "width": 48, "height": 40, "render": {"engine": "none"},
        "outputs": ["mesh", "masks", "depth"], "camera": {"distance": [0.3, 0.5]}}
COMMAND = "handforge export spec.json --out data"


def spec():
    return parse_spec(SPEC)


def single_process(out: Path) -> dict[str, bytes]:
    export(spec(), out, command=COMMAND, progress=False)
    return tree(out)


def tree(out: Path) -> dict[str, bytes]:
    """Every file of a dataset folder, path → bytes (hidden leftovers included: there must be none)."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
