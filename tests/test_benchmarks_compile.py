"""Every benchmark script at least compiles: they run by hand, outside the test suite, so a syntax
error would otherwise wait for the next person who measures. And every script a README gives a figure
of is there, and listed: a figure whose script is gone cannot be checked."""

from __future__ import annotations

import py_compile
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert len(BENCHMARKS) >= 5


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_benchmark_compiles(script, tmp_path):
    py_compile.compile(str(script), cfile=str(tmp_path / "out.pyc"), doraise=True)


def test_every_script_the_readmes_give_figures_of_is_there_and_listed():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    listing = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    there = {p.name for p in (ROOT / "benchmarks").iterdir() if p.suffix in (".py", ".sh")}
    named = set(re.findall(r"benchmarks/(\w+\.(?:py|sh))", readme + listing))
    measured = readme.split("\n## Measured", 1)[1].split("\n## ", 1)[0]  # its table names scripts alone
    in_table = set(re.findall(r"\(`(\w+\.py)`", measured))
    listed = set(re.findall(r"^\| `(\w+\.(?:py|sh))` \|", listing, flags=re.MULTILINE))
    assert len(in_table) >= 5 and named and listed, (in_table, named, listed)
    assert (named | in_table) - there == set(), "named in a README, not in benchmarks/"
    assert listed == there, "benchmarks/README.md's table of scripts differs from the folder"


def test_gpu_sh_checks_and_gpu_wheels_fetches_what_its_test_files_import():
    """gpu.sh's opening check names every package its steps import, so that a lent machine lacking one stops in
    seconds: tests/test_mano_model.py imports smplx at module level, which the check and gpu_wheels.sh lacked, and
    the tests step collected with an error and ran nothing."""
    import ast
    import sys

    script = (ROOT / "benchmarks" / "gpu.sh").read_text(encoding="utf-8")
    checked = set(re.findall(r'"(\w+)"', script.split("missing = [m for m in (", 1)[1].split(")", 1)[0]))
    test_files = re.findall(r"tests/test_\w+\.py", script.split("tests=(", 1)[1].split(")", 1)[0])
    ours = {"handforge", "handforge_shared", "tests", "__future__", "torch"}  # torch: the lent image's own
    imported = set()
    for name in test_files:
        for node in ast.parse((ROOT / name).read_text(encoding="utf-8")).body:  # module level: fails collection
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - ours
    assert third_party - checked == set(), "imported at module level by gpu.sh's tests, not in its package check"
    pinned = re.search(r'"smplx==([\d.]+)"', (ROOT / "pyproject.toml").read_text(encoding="utf-8")).group(1)
    assert f'"smplx=={pinned}"' in (ROOT / "benchmarks" / "gpu_wheels.sh").read_text(encoding="utf-8")
