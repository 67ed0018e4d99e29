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
