"""Mean squared error of a TinyNet checkpoint on fresh points (``handforge eval --package tests.engines example``)."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="a TinyNet checkpoint folder (RUN/model)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=12345, help="seed of the evaluation points")


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge.engines.checkpoints import CheckpointError, load_model
    from tests.engines.example.model import Points, TinyNet

    try:
        net = load_model(TinyNet, args.checkpoint)
    except CheckpointError as exc:
        print(f"handforge eval example: {exc}", file=sys.stderr)
        return 2
    points = Points(args.samples, seed=args.seed)
    with torch.no_grad():
        mse = float(torch.nn.functional.mse_loss(net(points.x), points.y))
    print(json.dumps({"mse": mse, "samples": args.samples}))
    return 0
