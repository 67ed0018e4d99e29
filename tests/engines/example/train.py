"""Train a TinyNet on random points (``handforge train --package tests.engines example``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="run folder (log, checkpoints, model/)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--samples", type=int, default=512, help="training points")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge.training.loop import TrainSettings, train
    from tests.engines.example.model import Points, TinyNet, loss

    torch.manual_seed(args.seed)
    result = train(TinyNet(), Points(args.samples, seed=args.seed), loss,
                   TrainSettings(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                 seed=args.seed, checkpoint_every=max(1, args.steps // 4), progress=not args.quiet))
    print(f"wrote {result.model_dir} (last loss {result.last_loss:.4g})")
    return 0
