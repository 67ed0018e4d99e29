"""handforge train <engine>: train an engine's models (its ``train`` module, on the one training loop)."""

from __future__ import annotations

import argparse

from handforge.commands import _engine_dispatch

NAME = "train"
HELP = "train an engine's models: handforge train ENGINE [its options] (accelerate launch -m handforge train ... for several GPUs)"
ON_FILE_ERROR = ("run the same command again to resume from the run's newest checkpoint, if it saved one (the steps "
                 "after it are trained again)")  # after a full disk or a chmod'ed file
# said after Ctrl-C (or SIGTERM): the loop saves the step it ends as a checkpoint (``training.loop``)
ON_INTERRUPT = ("run the same command again to resume from the run's newest checkpoint (a run in one process saves the "
                "step a first Ctrl-C or SIGTERM ends; else the steps after its newest checkpoint are trained again)")
ELSEWHERE = "choose another --out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _engine_dispatch.add_arguments(parser, "train")


def run(args: argparse.Namespace) -> int:
    return _engine_dispatch.run(args, "train", NAME)
