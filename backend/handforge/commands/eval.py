"""handforge eval <engine>: evaluate an engine's checkpoint (its ``evaluate`` module)."""

from __future__ import annotations

import argparse

from handforge.commands import _engine_dispatch

NAME = "eval"
HELP = "evaluate an engine's checkpoint: handforge eval ENGINE [its options]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _engine_dispatch.add_arguments(parser, "evaluate")


def run(args: argparse.Namespace) -> int:
    return _engine_dispatch.run(args, "evaluate", NAME)
