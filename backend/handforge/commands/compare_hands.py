"""handforge compare-hands: the open hand's 21 keypoints beside MANO's, at the flat rest pose.

Both models share one model frame (``handforge_shared.skeleton``), so positions are printed
relative to each model's own wrist; bone lengths and their ratios (open / MANO) say how the two
models' labels differ (see the keypoint conventions in ``handforge_shared.skeleton``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from handforge.arguments import given_path

NAME = "compare-hands"
HELP = "print the open hand's keypoints beside MANO's template keypoints (needs your MANO files)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=given_path("MANO's folder"), default=None,
                        help="folder with MANO_RIGHT/MANO_LEFT (.pkl or converted .npz); default: the mano.model_dir setting")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def compare_keypoints(open_keypoints: np.ndarray, mano_keypoints: np.ndarray) -> dict:
    """Per keypoint (InterHand2.6M order) positions relative to the wrist (mm), their offset, and per
    bone (keypoint → its parent) both lengths and their ratio."""
    from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS

    wrist = KEYPOINT_NAMES.index("wrist")
    ours = (open_keypoints - open_keypoints[wrist]) * 1000
    mano = (mano_keypoints - mano_keypoints[wrist]) * 1000
    keypoints, bones = {}, {}
    for i, name in enumerate(KEYPOINT_NAMES):
        keypoints[name] = {"open_mm": ours[i].round(1).tolist(), "mano_mm": mano[i].round(1).tolist(),
                           "offset_mm": round(float(np.linalg.norm(ours[i] - mano[i])), 1)}
        parent = KEYPOINT_PARENTS[i]
        if parent >= 0:
            a, b = (float(np.linalg.norm(k[i] - k[parent])) for k in (ours, mano))
            bones[f"{KEYPOINT_NAMES[parent]}-{name}"] = {"open_mm": round(a, 1), "mano_mm": round(b, 1),
                                                         "ratio": round(a / b, 3)}
    return {"keypoints": keypoints, "bones": bones}


def run(args: argparse.Namespace) -> int:
    import sys

    from handforge.hands.errors import HandModelError
    from handforge.hands.mano import load_mano
    from handforge_shared.rig import load_open_hand_rig
    from handforge_shared.skeleton import keypoints_from_extended

    try:
        mano_rig = load_mano(args.model_dir).rig(args.side)
    except HandModelError as exc:  # its message says which files or setting are missing
        print(f"handforge compare-hands needs MANO's files: {exc}", file=sys.stderr)
        return 2
    result = compare_keypoints(keypoints_from_extended(load_open_hand_rig(args.side).rest_extended_joints()),
                               keypoints_from_extended(mano_rig.rest_extended_joints()))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{args.side} hand, flat rest pose, mm relative to each model's wrist")
    print(f"{'keypoint':10s} {'open':>24s} {'mano':>24s} {'offset':>7s}")
    for name, row in result["keypoints"].items():
        print(f"{name:10s} {str(row['open_mm']):>24s} {str(row['mano_mm']):>24s} {row['offset_mm']:7.1f}")
    print(f"\n{'bone':18s} {'open':>7s} {'mano':>7s} {'ratio':>6s}")
    for name, row in result["bones"].items():
        print(f"{name:18s} {row['open_mm']:7.1f} {row['mano_mm']:7.1f} {row['ratio']:6.3f}")
    return 0
