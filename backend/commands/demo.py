"""handforge demo: the main job, on the embedded defaults (no licensed files, no weights)."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "build two open hands in named poses and a two-hand clasp; write glTF meshes and a JSON of labels"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="handforge_out/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--no-blender", action="store_true", help="skip the Blender part (hands, keys, .blend, render)")


def run(args: argparse.Namespace) -> int:
    from handforge.demo import run_demo

    report = run_demo(args.out)
    print(f"HandForge demo: {len(report['scenes'])} scenes of two open hands")
    for name, scene in report["scenes"].items():
        print(f"  {name:8s} {scene['mesh']:14s} {scene['description']}")
    print(f"meshes (glTF binary) and labels written to {args.out}/ ; parameters and 21 keypoints per hand "
          f"in {report['json']}")
    return 0
