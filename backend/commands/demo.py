"""handforge demo: the main job on the embedded defaults (placeholder until the demo lands)."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "build two open hands in named poses and write meshes, parameters and keypoints"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="handforge_out/demo", help="output folder")


def run(args: argparse.Namespace) -> int:
    raise SystemExit("the demo is being written")
