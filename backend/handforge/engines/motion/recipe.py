"""The shipped checkpoint's training as one command: ``handforge train motion --corpus DIR --out RUN --recipe shipped``.

Its stages run one after the other, each a ``train motion`` run of its own in ``RUN/<stage>`` (its checkpoints,
``log.jsonl`` and ``model/``), each after the first fine-tuning the one before (``--init``). The model lands in
``RUN/<last stage>/model``. Running the command again continues the stage it stopped in and passes over the
stages whose model is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

# (name, options): README 'Motion' lists them as the three commands they are
SHIPPED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("--steps", "3000", "--batch-size", "32", "--max-clips", "16000")),
    ("fine_tune", ("--steps", "3000", "--lr", "1.5e-4", "--warmup-steps", "50", "--batch-size", "32", "--seed", "6")),
    ("hermite", ("--observation-curve", "hermite", "--steps", "3000", "--lr", "2e-4", "--warmup-steps", "50",
                 "--batch-size", "32", "--seed", "8")),
)
RECIPES = {"shipped": SHIPPED}

DATA = ("corpus", "motion_folder", "interhand")
# the caller's own options a recipe passes on to every stage (the rest are the stages' to set)
PASSED_ON = ("threads", "quiet", "checkpoint_every", "hand_model")


def stage_arguments(args: argparse.Namespace, stages: Sequence[tuple[str, Sequence[str]]]) -> list[tuple[str, list[str]]]:
    """Each stage's name and ``train motion`` arguments, the caller's data and ``PASSED_ON`` options added."""
    out = Path(args.out)
    source = next(f"--{name.replace('_', '-')}" for name in DATA if getattr(args, name))
    common = [source, str(getattr(args, source[2:].replace("-", "_")))]
    for name in PASSED_ON:
        value = getattr(args, name)
        if value is True:
            common.append(f"--{name.replace('_', '-')}")
        elif value not in (None, False):
            common += [f"--{name.replace('_', '-')}", str(value)]
    planned, previous = [], None
    for name, options in stages:
        argv = [*common, *options, "--out", str(out / name)]
        if previous is not None:
            argv += ["--init", str(out / previous / "model")]
        planned.append((name, argv))
        previous = name
    return planned


def set_by_caller(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[str]:
    """The options given with ``--recipe`` that a recipe sets itself (each stage its own), as typed."""
    own = set(DATA) | set(PASSED_ON) | {"out", "recipe"}
    return [f"--{name.replace('_', '-')}" for name, value in vars(args).items()
            if name not in own and value != parser.get_default(name)]


def run_recipe(args: argparse.Namespace, run_stage: Callable[[argparse.Namespace], int],
               parser: argparse.ArgumentParser, stages: Sequence[tuple[str, Sequence[str]]] | None = None) -> int:
    """Run the recipe ``args.recipe`` (or ``stages``) stage by stage with ``run_stage`` (``train.run``)."""
    given = set_by_caller(args, parser)
    if given:
        print(f"handforge train motion: --recipe {args.recipe} sets {', '.join(given)} for each of its stages: leave "
              "them out (README 'Motion' lists the stages' options)", file=sys.stderr)
        return 2
    plan = stage_arguments(args, stages if stages is not None else RECIPES[args.recipe])
    for number, (name, argv) in enumerate(plan, 1):
        model = Path(args.out) / name / "model"
        if (model / "config.json").is_file():
            print(f"stage {number}/{len(plan)} {name}: its model is written ({model}), passed over "
                  f"(delete {model.parent} to train it again)", flush=True)
            continue
        print(f"stage {number}/{len(plan)} {name}: handforge train motion {' '.join(argv)}", flush=True)
        code = run_stage(parser.parse_args(argv))
        if code or not (model / "config.json").is_file():  # failed, or stopped early (--stop-after): later stages wait
            return code
    print(f"the recipe's model: {Path(args.out) / plan[-1][0] / 'model'}")
    return 0


__all__ = ["RECIPES", "SHIPPED", "run_recipe", "stage_arguments"]
