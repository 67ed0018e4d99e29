"""handforge train <engine>: train an engine's models (its ``train`` module, on the one training loop)."""

from __future__ import annotations

import argparse

from handforge.commands import _engine_dispatch

NAME = "train"
HELP = "train an engine's models: handforge train ENGINE [its options] (accelerate launch -m handforge train ... for several GPUs)"
ON_INTERRUPT = ("run the same command again to resume from the run's newest checkpoint, if it saved one (the steps "
                "after it are trained again)")  # said after Ctrl-C
ON_FILE_ERROR = ON_INTERRUPT  # after a full disk or a chmod'ed file
ELSEWHERE = "choose another --out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _engine_dispatch.add_arguments(parser, "train")


def run(args: argparse.Namespace) -> int:
    return _engine_dispatch.run(args, "train", NAME)
