"""``handforge train <engine>`` and ``handforge eval <engine>``: hand the rest of the command line to
the engine's own ``train`` / ``evaluate`` module (``add_arguments(parser)`` + ``run(args)``, or
``main(argv)``)."""

from __future__ import annotations

import argparse
import importlib
import sys

from handforge.arguments import Parser, nearest_hint, python_package
from handforge.engines import PACKAGE, declare_settings, engines_with, unpackaged_with


def add_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    parser.add_argument("--package", type=python_package, default=PACKAGE, metavar="PACKAGE",
                        help=f"the Python package holding the engines (default {PACKAGE})")
    engines = ", ".join(engines_with(module)) or "none yet"  # (the list an unknown engine is told)
    parser.add_argument("engine", metavar="ENGINE",
                        help=f"the engine: {engines} (those with {_a(module)}.py; with --package, that package's)")
    rest = parser.add_argument("engine_args", nargs=argparse.REMAINDER, metavar="...",
                               help=f"the engine's own options; `handforge {parser.prog.split()[-1]} ENGINE --help` "
                                    "lists them")
    rest.required = False  # (none is fine: a missing ENGINE alone is said, not "required: engine, ...")
    parser.set_defaults(engine_module=module)  # (which module of the engine takes them: read by tests too)


def run(args: argparse.Namespace, module: str, command: str) -> int:
    engines = engines_with(module, args.package)
    bare = unpackaged_with(module, args.package).get(args.engine)
    if args.engine not in engines and bare is not None:  # (as serve and doctor name it)
        print(f"handforge {command}: {bare} has {_a(module)}.py but no __init__.py, so it is no package: add an "
              "empty __init__.py to it", file=sys.stderr)
        return 2
    if args.engine not in engines:
        known = (f"engines with {_a(module)}.py: {', '.join(engines)}" if engines
                 else f"no engine in {args.package} has {_a(module)}.py yet")
        near = nearest_hint(args.engine, engines).removeprefix("; ")  # (`eval interation`)
        print(f"handforge {command}: unknown engine {args.engine!r}; {near + ' ' if near else ''}{known}"
              f"{_package_after(args, command)}",
              file=sys.stderr)
        return 2
    from handforge import config

    try:
        declare_settings(args.package, args.engine)  # its config keys, as serve declares them
    except config.SettingClash as exc:  # (a traceback, while doctor said it in a line)
        print(f"handforge {command}: {args.package}.{args.engine}.settings: {exc}", file=sys.stderr)
        return 2
    target = importlib.import_module(f"{args.package}.{args.engine}.{module}")
    if not callable(getattr(target, "main", None)) and not all(callable(getattr(target, f, None))
                                                               for f in ("add_arguments", "run")):
        # (an outside package's engine: an AttributeError traceback from inside the dispatch)
        print(f"handforge {command}: {target.__name__} defines neither main(argv) nor add_arguments(parser) and "
              "run(args): define them (README.md, 'Adding an engine')", file=sys.stderr)
        return 2
    try:
        if callable(getattr(target, "main", None)):
            return int(target.main(list(args.engine_args)) or 0)
        parser = engine_parser(target, command, args.engine)
        return int(target.run(parser.parse_args(args.engine_args)) or 0)
    except Exception as exc:  # the house's own errors say what to do: one line, as every shipped engine prints them
        from handforge.engines.checkpoints import CheckpointError
        from handforge.evaluation.features import FeatureError  # (evaluation.features setting: a bad folder)
        from handforge.runtime import out_of_memory
        from handforge.training.loop import TrainingError  # (torch: loaded already by the engine that raised)

        if out_of_memory(exc):  # e.g. --hidden 10000000: torch's allocator error was a traceback (one mid-run
            # carries the training loop's note of the checkpoint a rerun resumes from)
            detail = (str(exc).splitlines() or [type(exc).__name__])[0]
            noted = "".join(f"; {note}" for note in getattr(exc, "__notes__", ()))
            print(f"handforge {command} {args.engine}: out of memory ({detail}): lower the model's sizes or the "
                  f"batch size (see --help), or free memory{noted}", file=sys.stderr)
            return 1
        if not isinstance(exc, (CheckpointError, TrainingError, FeatureError)):
            raise
        print(f"handforge {command} {args.engine}: {exc}", file=sys.stderr)
        return 2


def engine_parser(target, command: str, engine: str) -> Parser:
    """The parser of an engine module ``target`` that declares its options (``add_arguments``), as
    ``handforge COMMAND ENGINE`` parses them."""
    parser = Parser(prog=f"handforge {command} {engine}", description=description(target.__doc__))
    target.add_arguments(parser)
    return parser


def _package_after(args: argparse.Namespace, command: str) -> str:
    """A hint when ``--package`` was given after the engine (it went to the engine's own options)."""
    rest = list(args.engine_args)
    given = [rest[i + 1] for i, a in enumerate(rest[:-1]) if a == "--package"]
    given += [a.split("=", 1)[1] for a in rest if a.startswith("--package=")]
    return f" (--package goes before the engine: handforge {command} --package {given[0]} {args.engine})" if given else ""


def description(doc: str | None) -> str:
    """The ``--help`` description from an engine module's docstring: its first paragraph as plain text
    (the RST literal markers, double backticks, dropped)."""
    return " ".join((doc or "").strip().split("\n\n")[0].split()).replace("``", "")


def _a(module: str) -> str:
    return f"{'an' if module[:1] in 'aeiou' else 'a'} {module}"
