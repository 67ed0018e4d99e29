"""handforge measure: every metric for a folder of two-hand motion clips (`handforge eval ENGINE` evaluates a checkpoint)."""

from __future__ import annotations

import argparse
import itertools
import json
import sys

from handforge.arguments import SEED, at_least, comma_list, given_path, marked_report, report_file, write_report

NAME = "measure"
HELP = "measure a folder of motion clips: penetration, contact, joint limits, smoothness, diversity, FD/KID"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clips", required=True, help="folder of motion .npz clips (or a corpus folder)")
    parser.add_argument("--reference", help="folder of reference clips for the Fréchet distance and KID")
    parser.add_argument("--out", type=report_file, help="write the report here (JSON); printed otherwise")
    parser.add_argument("--frames", type=at_least(1), default=200, help="two-hand frames drawn for the mesh metrics and frame features")
    parser.add_argument("--features", type=given_path("a feature checkpoint folder"), help="feature checkpoint (default: the configured one, else the shipped one)")
    parser.add_argument("--max-clips", type=at_least(1), default=None, help="use only the first N clips of each folder")
    parser.add_argument("--seed", type=SEED, default=0)
    parser.add_argument("--metrics", type=comma_list, metavar="NAME,...",
                        help="measure only these, comma-separated: penetration, contact, joint_limits, smoothness, "
                             "diversity_frames, diversity_motions, vs_reference_frames, vs_reference_motions (the "
                             "last two need --reference; default: every one, those two only with --reference)")


def run(args: argparse.Namespace) -> int:
    from handforge.evaluation.features import FeatureError, load_features
    from handforge.evaluation.report import FEATURE_METRICS, check_metrics, evaluate_clips, load_clips
    from handforge.hands import load_hand_model
    from handforge.hands.errors import HandModelError
    from handforge_shared.poses import PoseFormatError

    try:
        # (names checked before any clip is read: a typo was measured as nothing, unsaid)
        metrics = args.metrics  # (each once: comma_list refuses a repeat)
        wanted = check_metrics(metrics, args.reference is not None)
        clips = load_clips(args.clips, args.max_clips)
        if args.reference is not None and not args.reference.strip():  # (load_clips said "the clips folder")
            raise ValueError("--reference is an empty path: give the folder of reference clips (.npz), or leave "
                             "--reference out")
        reference = load_clips(args.reference, args.max_clips) if args.reference is not None else None
        models, rates = set(), set()
        for clip in itertools.chain(clips, reference or ()):  # (one loaded at a time: see load_clips)
            models.add(clip.hand_model)
            rates.add(clip.fps)
        if len(models) != 1:
            raise ValueError(f"all clips must use one hand model, found {sorted(models)}")
        if len(rates) != 1:  # motion features, their Fréchet distance and jitter would compare unlike motions
            found = " and ".join(f"{r:g}" for r in sorted(rates))
            raise ValueError(f"all clips must have one frame rate, found {found} fps in "
                             f"{' and '.join(filter(None, (args.clips, args.reference)))}: measure the clips of each "
                             "frame rate on their own, against a reference of that rate")
        # (only for the metrics that use them, or when named: a broken evaluation.features refused any measure)
        uses = args.features is not None or bool(set(FEATURE_METRICS) & wanted)
        report = evaluate_clips(clips, load_hand_model(models.pop()), reference,
                                load_features(args.features) if uses else None,
                                frames=args.frames, seed=args.seed, progress=True, metrics=metrics)
    except (ValueError, PoseFormatError, FeatureError, HandModelError) as exc:  # (MANO clips without MANO's files)
        print(f"handforge measure: {exc}", file=sys.stderr)
        return 2
    if args.out:
        write_report(args.out, report)
        print(f"wrote {args.out}")
    else:
        print(json.dumps(marked_report(report), indent=1))  # (a report --out may replace)
    for name, why in report["not_measured"].items():  # (also in the report, as "not_measured")
        print(f"handforge measure: left out {name}: {why}", file=sys.stderr)
    if wanted <= set(report["not_measured"]):  # (exit 0 with an empty report: a script took it for a measure)
        print("handforge measure: nothing was measured: every metric asked for was left out (above)", file=sys.stderr)
        return 1
    return 0
