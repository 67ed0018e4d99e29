"""Train a TinyNet on random points (``handforge train --package tests.engines example``), the way every engine's
``train.py`` does: options checked by ``handforge.arguments`` before anything runs, the settings and ``--out`` by
``check_settings`` before the data is made, the model sized by ``new_model`` before it is built."""

from __future__ import annotations

import argparse

from handforge.arguments import at_least, number_in, output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=output_folder, required=True, help="run folder (log, checkpoints, model/)")
    parser.add_argument("--steps", type=at_least(1), default=200, help="optimiser steps")
    parser.add_argument("--samples", type=at_least(1), default=512, help="training points")
    parser.add_argument("--batch-size", type=at_least(1), default=32, help="points a step")
    parser.add_argument("--lr", type=number_in(0), default=1e-2, help="learning rate")
    parser.add_argument("--width", type=at_least(1), default=16, help="the model's hidden width")
    parser.add_argument("--seed", type=at_least(0), default=0, help="data and initial weights")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge.training.loop import TrainSettings, check_settings, new_model, train
    from tests.engines.example.model import Points, TinyNet, loss

    settings = TrainSettings(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             checkpoint_every=max(1, args.steps // 4), progress=not args.quiet)
    check_settings(settings, TinyNet, {"width": args.width})  # a bad --out is said before any data is made
    data = Points(args.samples, seed=args.seed)
    torch.manual_seed(args.seed)  # the initial weights
    result = train(new_model(lambda: TinyNet(width=args.width)), data, loss, settings)
    print(f"wrote {result.model_dir} (last loss {result.last_loss:.4g})")
    return 0
