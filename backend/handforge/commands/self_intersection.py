"""handforge self-intersection: how far each library pose sinks the hand into itself, per hand model.

For every pose of the pose library (``handforge_shared.pose_library``) on the chosen hand model and
side: buried vertices and faces, the overlap volume, the deepest vertex, and with the rig's skin
weights the split of that depth into the fold of a bent joint's crease (its own or a neighbouring
segment) and a part sinking into a part that is not its neighbour (``max_part_depth``: the figure
the library is tuned to keep within 2 mm on the open hand; ``handforge.evaluation.self_intersection``).
MANO needs your model files (``--model-dir`` or the ``mano.model_dir`` setting).
"""

from __future__ import annotations

import argparse
import json
import sys

from handforge.arguments import EachOnce, given_path

NAME = "self-intersection"
HELP = "measure how far every library pose sinks the hand into itself, on the open hand or your MANO"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", choices=("open", "mano"), default="open", help="hand model (default: open)")
    parser.add_argument("--model-dir", type=given_path("MANO's folder"), default=None,
                        help="MANO only: folder with MANO_RIGHT/MANO_LEFT (default: the mano.model_dir setting)")
    parser.add_argument("--side", choices=("right", "left"), default="right")
    parser.add_argument("--poses", nargs="+", action=EachOnce, default=None,
                        help="only these library poses (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def measure(model, side: str, names: list[str]) -> dict[str, dict]:
    """Pose name → ``SelfIntersection.as_dict()`` of that library pose on ``model``'s ``side`` hand."""
    import torch

    from handforge.evaluation.self_intersection import self_intersection
    from handforge_shared import pose_library

    rows = {}
    for name in names:
        pose = pose_library.get(name, side)
        with torch.no_grad():
            out = model(side, pose.global_orient, pose.hand_pose)
        rows[name] = self_intersection(out.vertices[0].numpy(), model.faces(side).numpy(),
                                       skin_weights=model.rig(side).skin_weights).as_dict()
    return rows


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge.hands import load_hand_model
    from handforge.hands.errors import HandModelError
    from handforge_shared import pose_library

    if args.model_dir is not None and args.model != "mano":  # (measured the open hand, the folder unread)
        print(f"handforge self-intersection: --model-dir is MANO's folder, but --model is {args.model}: add "
              "--model mano, or leave out --model-dir", file=sys.stderr)
        return 2
    names = args.poses or pose_library.names()
    unknown = sorted(set(names) - set(pose_library.names()))
    if unknown:
        split = [part.strip() for name in names for part in name.split(",") if part.strip()]
        if any("," in name for name in unknown) and split and set(split) <= set(pose_library.names()):
            # ("--poses fist,point", as --metrics takes its names, said "no library pose named fist,point")
            print(f"handforge self-intersection: --poses takes the poses separated by spaces, not commas: --poses "
                  f"{' '.join(split)}", file=sys.stderr)
            return 2
        print(f"handforge self-intersection: no library pose named {', '.join(unknown)}; "
              f"the poses are: {', '.join(pose_library.names())}", file=sys.stderr)
        return 2
    try:
        if args.model == "mano":
            from handforge.hands.mano import load_mano

            model = load_mano(args.model_dir).to(dtype=torch.float64)
        else:
            model = load_hand_model("open", dtype=torch.float64)
    except HandModelError as exc:  # its message says which files or setting are missing
        print(f"handforge self-intersection needs MANO's files: {exc}", file=sys.stderr)
        return 2
    rows = measure(model, args.side, names)
    if args.json:
        print(json.dumps({"model": args.model, "side": args.side, "poses": rows}, indent=1))
        return 0
    print(f"{args.model} hand, {args.side}: self-intersection of each library pose (part: a part sunk into a "
          "part that is not its neighbour; fold: a bent joint's crease)")
    print(f"{'pose':20s} {'buried faces':>12s} {'volume cm³':>10s} {'deepest mm':>10s} {'fold mm':>8s} "
          f"{'part mm':>8s}  worst parts")
    for name, row in rows.items():
        print(f"{name:20s} {row['buried_faces']:12d} {row['volume_cm3']:10.3f} {row['max_depth_mm']:10.2f} "
              f"{row['fold_mm']:8.2f} {row['part_mm']:8.2f}  {row['worst_parts']}")
    worst = max(rows, key=lambda n: rows[n]["part_mm"])
    print(f"deepest part into another: {worst} {rows[worst]['part_mm']:.2f} mm; "
          f"buried faces in all {sum(r['buried_faces'] for r in rows.values())}")
    return 0
