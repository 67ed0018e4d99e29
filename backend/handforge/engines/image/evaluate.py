"""``handforge eval image``: does each image show its labelled hands where the labels put them?

On a folder in the export layout (``samples/*/labels.json`` + ``rgb.png``: ``handforge export``'s
renders or generated images), MediaPipe Hands (``handforge.evaluation.landmarks``) looks for the
hands: detection rate and confidence, and per hand the 2D keypoint error against the labels in
pixels, normalised by the hand's box, AttentionHand's MSE-2D (arXiv:2407.18034) and PCK@0.1.
``--keep-below PX`` lists the samples whose hands are all found within PX pixels (mean keypoint
error): the filter that drops misaligned generations (``image_alignment.passing`` in code).
"""

from __future__ import annotations

import argparse
import sys

from handforge.arguments import number_in, report_file, write_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a folder in the export layout (samples/*/labels.json + rgb.png)")
    parser.add_argument("--out", type=report_file, default=None, help="also write the per-sample results and summary as JSON here")
    parser.add_argument("--keep-below", type=number_in(0.0, low_open=True), default=None, metavar="PX",
                        help="list the samples whose detected hands' mean keypoint error is below PX pixels")
    parser.add_argument("--allow-missing", action="store_true",
                        help="with --keep-below: a sample needs only one of its hands detected, not all")
    parser.add_argument("--min-confidence", type=number_in(0.0, 1.0), default=0.5, help="MediaPipe's detection threshold")


def _cell(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table(report: dict) -> str:
    lines = [f"{'sample':<10} {'hand':<6} {'found':<6} {'conf':>5} {'err px':>7} {'err/diag':>8} {'PCK':>5}"]
    for result in report["samples"]:
        for side, hand in result["hands"].items():
            lines.append(f"{result['sample']:<10} {side:<6} {'yes' if hand['detected'] else 'no':<6} "
                         f"{_cell(hand.get('confidence')):>5} {_cell(hand.get('mean_px'), 1):>7} "
                         f"{_cell(hand.get('mean_normalised'), 3):>8} {_cell(hand.get('pck@0.1')):>5}")
    s = report["summary"]
    lines.append(f"{s['samples']} samples, {s['detected_hands']}/{s['labelled_hands']} hands detected "
                 f"(rate {_cell(s['detection_rate'])}), confidence {_cell(s['confidence'])}, "
                 f"error {_cell(s['mean_px'], 1)} px ({_cell(s['mean_normalised'], 3)} of the box diagonal), "
                 f"MSE-2D {_cell(s['mse_2d'], 1)} px², PCK@0.1 {_cell(s['pck@0.1'])}, "
                 f"handedness agreement {_cell(s['handedness_agreement'])}")
    if report.get("without_labels"):
        names = report["without_labels"]
        lines.append(f"not evaluated: {len(names)} sample folder{'s' * (len(names) != 1)} without labels.json (being "
                     f"written, or its labels deleted: run the export again to redo it): {' '.join(names[:10])}"
                     + (" ..." if len(names) > 10 else ""))
    if "keep_below_px" in report:
        lines.append(f"passing (< {report['keep_below_px']:g} px): {len(report['passing'])} of {s['samples']}"
                     + (": " + " ".join(report["passing"]) if report["passing"] else ""))  # (none: no dangling ":")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from handforge.evaluation.image_alignment import evaluate_folder, passes
    from handforge.evaluation.landmarks import LandmarkError

    if args.allow_missing and args.keep_below is None:
        print("handforge eval image: --allow-missing says how --keep-below treats undetected hands: give "
              "--keep-below PX too", file=sys.stderr)
        return 2
    try:
        report = evaluate_folder(args.folder, args.min_confidence)
    except (ValueError, LandmarkError, OSError) as exc:
        print(f"handforge eval image: {exc}", file=sys.stderr)
        return 2
    if args.keep_below is not None:
        report["keep_below_px"] = args.keep_below
        report["passing"] = [r["sample"] for r in report["samples"]
                             if passes(r, args.keep_below, args.allow_missing)]
    print(_table(report))
    if args.out:
        write_report(args.out, report)
        print(f"wrote {args.out}")
    return 0
