"""handforge export: labelled synthetic renders of two hands from a batch specification."""

from __future__ import annotations

import argparse
import shlex
import sys

NAME = "export"
HELP = "render a labelled two-hand dataset (RGB, mesh images, masks, keypoints; COCO and InterHand2.6M-style)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the batch specification, .json or .toml (see handforge.export.spec)")
    parser.add_argument("--out", required=True, help="dataset folder; a rerun resumes (finished samples are kept)")
    parser.add_argument("--samples", type=int, help="override the spec's sample count")
    parser.add_argument("--seed", type=int, help="override the spec's seed")
    parser.add_argument("--engine", choices=("workbench", "cycles", "none"), help="override render.engine")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:

    from handforge.export.run import export
    from handforge.export.spec import SpecError, load_spec, parse_spec
    from handforge.render.blender import BlenderRenderError
    from handforge.render.gl import GLUnavailable

    try:
        spec = load_spec(args.spec)
        overrides = {**spec.to_dict(), **{k: v for k, v in (("samples", args.samples), ("seed", args.seed))
                                           if v is not None}}
        if args.engine:
            overrides["render"] = {**overrides["render"], "engine": args.engine}
            if args.engine != "none" and "rgb" not in overrides["outputs"]:
                overrides["outputs"] = ["rgb", *overrides["outputs"]]
        spec = parse_spec(overrides) if overrides != spec.to_dict() else spec
        command = shlex.join(["handforge", "export", *sys.argv[sys.argv.index("export") + 1:]]) \
            if "export" in sys.argv else f"handforge export {args.spec} --out {args.out}"
        summary = export(spec, args.out, command=command, progress=not args.quiet)
    except (SpecError, GLUnavailable, BlenderRenderError, ValueError) as exc:
        print(f"handforge export: {exc}", file=sys.stderr)
        return 2
    print(f"{summary['finished']} samples in {args.out} ({summary['written']} new, {summary['skipped']} already there)"
          f" in {summary['seconds']:.1f} s; see {args.out}/dataset_card.md")
    return 0
