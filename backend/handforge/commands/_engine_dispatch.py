"""``handforge train <engine>`` and ``handforge eval <engine>``: hand the rest of the command line to
the engine's own ``train`` / ``evaluate`` module (``add_arguments(parser)`` + ``run(args)``, or
``main(argv)``)."""

from __future__ import annotations

import argparse
import importlib
import sys

from handforge.arguments import Parser
from handforge.engines import PACKAGE, engines_with, is_package


def add_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    parser.add_argument("--package", default=PACKAGE, metavar="PACKAGE",
                        help=f"the Python package holding the engines (default {PACKAGE})")
    parser.add_argument("engine", help=f"an engine with {_a(module)}.py (see the list when it is unknown)")
    parser.add_argument("engine_args", nargs=argparse.REMAINDER, metavar="...",
                        help=f"the engine's own options; `handforge {parser.prog.split()[-1]} ENGINE --help` lists them")


def run(args: argparse.Namespace, module: str, command: str) -> int:
    if not is_package(args.package):
        print(f"handforge {command}: no Python package {args.package!r} (is its folder on PYTHONPATH?)", file=sys.stderr)
        return 2
    engines = engines_with(module, args.package)
    if args.engine not in engines:
        known = (f"engines with {_a(module)}.py: {', '.join(engines)}" if engines
                 else f"no engine in {args.package} has {_a(module)}.py yet")
        print(f"handforge {command}: unknown engine {args.engine!r}; {known}", file=sys.stderr)
        return 2
    target = importlib.import_module(f"{args.package}.{args.engine}.{module}")
    if callable(getattr(target, "main", None)):
        return int(target.main(list(args.engine_args)) or 0)
    parser = Parser(prog=f"handforge {command} {args.engine}", description=description(target.__doc__))
    target.add_arguments(parser)
    return int(target.run(parser.parse_args(args.engine_args)) or 0)


def description(doc: str | None) -> str:
    """The ``--help`` description from an engine module's docstring: its first paragraph as plain text
    (the RST literal markers, double backticks, dropped)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "")


def _a(module: str) -> str:
    return f"{'an' if module[:1] in 'aeiou' else 'a'} {module}"
