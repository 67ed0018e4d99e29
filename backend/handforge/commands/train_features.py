"""handforge train-features: train the evaluation feature networks on a motion corpus."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from handforge.arguments import SEED, at_least, output_folder, torch_thread_count

NAME = "train-features"
HELP = "train the feature networks of the evaluation metrics (Fréchet distance, KID, diversity) on a corpus"
# (a checkpoint is written whole at the end, in the place of the one in --out: "interrupted" alone left a user
# wondering about the one there, and whether the run resumes as `train` does)
ON_INTERRUPT = ("nothing of this run was kept, and a checkpoint already in --out is as it was (training the "
                "features does not resume): run the same command again to train them anew")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", required=True, help="folder written by `handforge corpus` (or any folder of motion .npz clips)")
    parser.add_argument("--out", required=True, help="checkpoint folder to write (frame/, motion/, recipe.json); "
                                                    "an existing one is replaced once the new one is complete")
    parser.add_argument("--epochs", type=at_least(1), default=8, help="epochs for each network")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed (same corpus + seed: same checkpoint)")
    parser.add_argument("--max-clips", type=at_least(1), default=None, help="use only the first N clips (by name)")
    parser.add_argument("--threads", type=torch_thread_count(0), default=0,
                        help="threads that train side by side (default: 0, torch's own count: OMP_NUM_THREADS, "
                             "else one per core); the checkpoint is the same for any count")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge.evaluation.feature_training import TrainSettings, load_corpus, train
    from handforge.evaluation.features import RECIPE, FeatureError
    from handforge_shared.files import foreign_names
    from handforge.runtime import torch_threads

    # (os.path.isfile, not Path.is_file: a name over 255 bytes made that raise, a traceback; output_folder
    # below says it in one line)
    if os.path.isfile(args.out) or args.out.endswith(".safetensors"):
        print(f"handforge train-features: --out is a checkpoint folder (frame/, motion/, recipe.json), not a file: "
              f"got {args.out}", file=sys.stderr)
        return 2
    try:
        args.out = output_folder(args.out)  # (as meant: "a/../b" made a stray "a")
    except argparse.ArgumentTypeError as exc:
        print(f"handforge train-features: --out: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    # a checkpoint is replaced whole: anything else there (the user's notes, or a folder that is no checkpoint)
    # would be deleted with it
    others = foreign_names(out, own=("frame", "motion", RECIPE) if (out / RECIPE).is_file() else ())
    if others:
        print(f"handforge train-features: --out {args.out} holds other files than a feature checkpoint "
              f"(frame/, motion/, recipe.json), which would be deleted when it is replaced: {others}; move them "
              "away or choose a new folder", file=sys.stderr)
        return 2
    if out == Path.cwd().resolve() or out in Path.cwd().resolve().parents:
        print(f"handforge train-features: --out {args.out} is the current folder or holds it: choose a folder "
              "inside it, e.g. --out features_v2", file=sys.stderr)
        return 2
    try:
        with torch_threads(args.threads):
            data = load_corpus(args.corpus, max_clips=args.max_clips, progress=not args.quiet)
        nets = train(data, TrainSettings(epochs_frame=args.epochs, epochs_motion=args.epochs, seed=args.seed),
                     progress=not args.quiet, threads=args.threads or torch.get_num_threads())
        nets.recipe["command"] = (f"handforge train-features --corpus CORPUS --out {Path(args.out).name} "
                                  f"--epochs {args.epochs} --seed {args.seed}"
                                  + (f" --max-clips {args.max_clips}" if args.max_clips else ""))
        path = nets.save(args.out)
    except FeatureError as exc:
        print(f"handforge train-features: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}: trained on {data.source['clips_used']} clips; results "
          f"{json.dumps(nets.recipe['results'], indent=None)}")
    if nets.recipe["results"]["validated_on"] != "validation":
        print("handforge train-features: warning: no clip used is in the validation split, so the results above are "
              "measured on the training clips" + (": use more clips (a larger --max-clips)" if args.max_clips else ""),
              file=sys.stderr)
    return 0
