"""Train the motion denoiser (``handforge train motion --corpus DIR --out RUN``).

Data: a ``handforge corpus`` folder (its train split), any folder of motion ``.npz`` clips
(``--motion-folder``), or InterHand2.6M (``--interhand ROOT``), through ``handforge.datasets``:
windows of ``--window`` frames in which both hands are present, mirrored left↔right to double
them. The optimisation is the one training loop (``handforge.training.loop``): AdamW, EMA,
periodic checkpoints, exact resume; the model lands in ``RUN/model``.
"""

from __future__ import annotations

import argparse
import os
import sys

from handforge.arguments import POSITIVE, SEED, at_least, existing_path, given_path, layer_count, number_in, output_folder, torch_thread_count


# a new model's size options (argparse name: default) and their flags and model config keys
SIZE_DEFAULTS = {"d_model": 192, "layers": 4, "heads": 4, "ff_size": 512, "dropout": 0.1}
SIZE_OPTIONS = (("d-model", "d_model", "d_model"), ("layers", "layers", "num_layers"), ("heads", "heads", "num_heads"),
                ("ff-size", "ff_size", "ff_size"), ("dropout", "dropout", "dropout"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--corpus", type=given_path("a corpus folder"), help="a `handforge corpus` folder (uses its train split)")
    data.add_argument("--motion-folder", type=given_path("a folder of motion clips"), help="any folder of HandForge motion .npz clips")
    data.add_argument("--interhand", type=existing_path(folder=True), help="InterHand2.6M root (annotations/train ...); needs MANO (--hand-model mano)")
    parser.add_argument("--out", type=output_folder, required=True, help="run folder (log.jsonl, checkpoints, model/)")
    parser.add_argument("--steps", type=at_least(1), default=3000,
                        help="optimiser steps, one batch each (not the DDIM steps of `eval motion` and the jobs)")
    parser.add_argument("--batch-size", type=at_least(1), default=16, help="training windows per step")
    parser.add_argument("--lr", type=POSITIVE, default=4e-4,
                        help="peak learning rate (AdamW), reached after the warm-up")
    parser.add_argument("--warmup-steps", type=at_least(0), default=None,
                        help="linear LR warm-up, then cosine decay (default: a tenth of the steps, at most 200)")
    parser.add_argument("--window", type=at_least(2), default=96, help="frames per training window (crops are shorter)")
    parser.add_argument("--min-length", type=at_least(2), default=24, help="shortest random crop of a window")
    parser.add_argument("--d-model", type=at_least(1), default=SIZE_DEFAULTS["d_model"],
                        help="transformer width (HandDiffuse: 512); even, and a multiple of --heads")
    parser.add_argument("--layers", type=layer_count, default=SIZE_DEFAULTS["layers"],
                        help="transformer layers (HandDiffuse: 8)")
    parser.add_argument("--heads", type=at_least(1), default=SIZE_DEFAULTS["heads"], help="attention heads per layer")
    parser.add_argument("--ff-size", type=at_least(1), default=SIZE_DEFAULTS["ff_size"],
                        help="feed-forward width (HandDiffuse: 1024)")
    parser.add_argument("--dropout", type=number_in(0.0, 0.9), default=SIZE_DEFAULTS["dropout"],
                        help="dropout in the transformer layers")
    parser.add_argument("--init", type=given_path("a model folder"), help="fine-tune: start from this motion model folder (its architecture, dropout "
                                       "and data statistics: size and dropout options other than its own are refused); "
                                       "an interrupted fine-tune resumes from --out's checkpoints")
    parser.add_argument("--observation-curve", choices=("linear", "hermite"), default=None,
                        help="the curve through the keys the network sees and corrects (default: linear, as "
                             "motion_v1-v4, for a new model (motion_v5 and the shipped motion_v6 end with a fine-tune onto hermite); "
                             "the --init model's own otherwise; changing it "
                             "re-learns the correction; README 'Motion' has both measured)")
    parser.add_argument("--spline-observation", action="store_true",
                        help="train on the observation the sampler gives: the curve above mixed into the spline "
                             "engine's in-between across short gaps (pipeline.SPLINE_GAPS); the shipped checkpoint "
                             "was trained without it; the splines cost about 20 ms of CPU a window that has such a "
                             "gap, about half the windows: 0.4-0.55 s of CPU a step at batch 32; a 1,200-step run "
                             "took 0.83 s a step on 2 cores)")
    parser.add_argument("--max-clips", type=at_least(1), default=None, help="use only the first N clips (tests)")
    parser.add_argument("--hand-model", default=None, choices=("open", "mano"),
                        help="the hand model of the clips (joint positions for the losses; default open, with "
                             "--interhand mano)")
    parser.add_argument("--checkpoint-every", type=at_least(1), default=250,
                        help="steps between the resumable checkpoints kept in --out")
    parser.add_argument("--stop-after", type=at_least(1), default=None, help="stop (resumably) after this many steps")
    parser.add_argument("--seed", type=SEED, default=0,
                        help="seed of everything drawn: the starting weights, the windows' order and crops, the "
                             "key sets, the noise")
    parser.add_argument("--threads", type=torch_thread_count(), default=None,
                        help="torch CPU threads (default: torch's own, every core; 1 is fastest on a busy machine)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--recipe", choices=("shipped",), default=None,
                        help="run the shipped checkpoint's training stages one after the other, each in --out/<stage>, "
                             "the model in --out/hermite/model (recipe.py; with the data, --threads, --quiet, "
                             "--checkpoint-every and --hand-model only: the stages set the rest)")


def open_training_windows(args: argparse.Namespace):
    """The training windows (a torch Dataset) of the data the arguments name."""
    import numpy as np
    from torch.utils.data import Subset

    from handforge.datasets import (ClipStore, DatasetError, WindowDataset, check_clips, open_corpus, open_interhand,
                                    open_motion_folder, reach_problem)

    if args.corpus:
        source = open_corpus(args.corpus, split="train", max_clips=args.max_clips)
        if not len(source):  # the store's "the source (split, max_clips) selected none" named neither
            raise DatasetError(f"the train split of {args.corpus} holds no clips (a corpus is split by groups of "
                               "sequences: a few sequences may all land in validation or test): make a larger corpus")
    elif args.motion_folder:
        source = open_motion_folder(args.motion_folder, max_clips=args.max_clips)
    else:  # InterHand2.6M poses are relative to MANO's mean pose: made flat with MANO's hands_mean
        from handforge.hands import load_hand_model

        mano = load_hand_model("mano")
        source = open_interhand(args.interhand, split="train", hands_mean=mano.hands_mean_arrays(),
                                max_clips=args.max_clips)
    store = ClipStore.build(source, progress=not args.quiet)
    check_clips(store.clips, args.hand_model)  # e.g. MANO clips through the open hand's joints
    far = reach_problem(store.arrays, store.starts, [f"clip {c.name}" for c in store.clips])
    if far:  # (the loss became inf, said as a learning rate too high)
        raise DatasetError(far)
    windows = WindowDataset(store, length=args.window, stride=max(1, args.window // 4), mirror=True)
    both = store.arrays["present"].all(axis=1)
    complete = np.concatenate([[0], np.cumsum(both)])
    base = len(windows.clip_ids)
    starts = store.starts[windows.clip_ids] + windows.firsts
    keep = np.flatnonzero(complete[starts + args.window] - complete[starts] == args.window)
    keep = np.concatenate([keep, keep + base])  # the mirrored copies
    return Subset(windows, keep.tolist()), store


def clips_fps(clips) -> float:
    """The one frame rate of the training clips (``TrainingError`` for several: the model's motion would be a
    blend of speeds, and its ``fps`` none of them)."""
    from handforge.training.loop import TrainingError

    rates = sorted({float(c.fps) for c in clips})
    if len(rates) != 1:
        raise TrainingError(f"the clips have {len(rates)} frame rates ({', '.join(f'{r:g}' for r in rates[:5])} fps): "
                            "train on clips of one frame rate")
    return rates[0]


def data_statistics(store, wrists, sample_frames: int = 200_000, seed: int = 0) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the representation over the frames training sees: those with both
    hands (an absent hand is zeros at the world origin), each clip's origin its first such frame's
    wrist midpoint (the corpus has both hands everywhere: its first frame's). ``wrists``: the training
    hand model's ``WristJoints`` (the translation channels are wrist joints, ``representation``)."""
    import numpy as np

    from handforge.engines.motion import representation as rep

    from handforge.datasets import mirror_arrays
    from handforge_shared.rotations import mirror_points

    rng = np.random.default_rng(seed)
    both = np.asarray(store.arrays["present"]).all(axis=1)
    firsts = [start + int(np.argmax(both[start:end])) for start, end in zip(store.starts[:-1], store.starts[1:])]
    shifts = rep.wrist_shift(wrists, np.asarray(store.arrays["betas"][firsts], dtype=np.float64))   # (clips, 2, 3)
    origins = np.repeat((store.arrays["transl"][firsts] + shifts).mean(1), np.diff(store.starts), axis=0)
    kept = np.flatnonzero(both)
    if len(kept) == store.num_frames:  # every frame (the corpus): drawn as before, the same statistics
        rows = np.sort(rng.choice(store.num_frames, size=min(sample_frames, store.num_frames), replace=False))
    else:
        rows = np.sort(rng.choice(kept, size=min(sample_frames, len(kept)), replace=False))
    frames = {k: np.asarray(v[rows], dtype=np.float64) if v.dtype != bool else np.asarray(v[rows])
              for k, v in store.arrays.items()}
    mirrored = mirror_arrays(frames)  # the training windows are mirrored too
    both = np.concatenate([
        rep.encode(frames["global_orient"], frames["hand_pose"], frames["transl"], origins[rows],
                   rep.wrist_shift(wrists, frames["betas"])),
        rep.encode(mirrored["global_orient"], mirrored["hand_pose"], mirrored["transl"], mirror_points(origins[rows]),
                   rep.wrist_shift(wrists, mirrored["betas"]))])
    std = np.maximum(both.std(0), 0.02)  # near-constant channels would blow up the noise otherwise
    return both.mean(0).tolist(), std.tolist()


def run(args: argparse.Namespace) -> int:
    if getattr(args, "recipe", None):
        from handforge.engines.motion.recipe import run_recipe

        parser = argparse.ArgumentParser(prog="handforge train motion")
        add_arguments(parser)
        return run_recipe(args, run, parser)
    import torch
    from diffusers import DDPMScheduler

    from handforge.datasets import DatasetError
    from handforge.engines.motion.losses import MotionObjective
    from handforge.engines.motion.model import MAX_FRAMES, MotionDenoiser
    from handforge.engines.motion.pipeline import make_train_scheduler
    from handforge.hands import load_hand_model
    from handforge.hands.wrists import WristJoints
    from handforge.training.loop import (TrainingError, TrainSettings, check_fine_tune_sizes, check_settings,
                                         fine_tune_start, new_model, train)

    if args.d_model % args.heads or args.d_model % 2:
        print(f"handforge train motion: --d-model {args.d_model} must be even (its sinusoidal embeddings) and a "
              f"multiple of --heads {args.heads}", file=sys.stderr)
        return 2
    if args.interhand and args.hand_model == "open":
        print("handforge train motion: InterHand2.6M's poses are MANO's: leave out --hand-model open (--interhand "
              "trains the mano hand)", file=sys.stderr)
        return 2
    args.hand_model = args.hand_model or ("mano" if args.interhand else "open")
    if args.hand_model == "mano":  # checked before the data is read
        from handforge.hands.registry import entry
        from handforge_shared.protocol import with_hint

        status = entry("mano").status()
        if not status["available"]:
            print(f"handforge train motion: {'--interhand needs' if args.interhand else '--hand-model mano needs'} "
                  f"MANO: {with_hint(status['reason'], status['hint'])}", file=sys.stderr)
            return 2
    if args.min_length > args.window:
        print(f"handforge train motion: --min-length {args.min_length} is longer than --window {args.window}",
              file=sys.stderr)
        return 2
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = TrainSettings(  # (data_statistics: the model's, once it is made)
        out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_schedule="cosine",
        warmup_steps=min(200, args.steps // 10) if args.warmup_steps is None else args.warmup_steps,
        seed=args.seed, checkpoint_every=args.checkpoint_every,
        ema_decay=0.995, log_every=10, stop_after=args.stop_after, progress=not args.quiet,
        data_options={"window": args.window, "min_length": args.min_length, "max_clips": args.max_clips,
                      "hand_model": args.hand_model, "init": os.path.realpath(args.init) if args.init else None,
                      # (recorded only when set: a run begun before the option records none, and resumes as one without)
                      **({"spline_observation": True} if args.spline_observation else {})})
    try:
        model = None
        if args.init:  # the checkpoint keeps its own normalisation
            model = fine_tune_start(MotionDenoiser, args.init, args.out)
            check_fine_tune_sizes(model, [(f"--{flag}", getattr(args, name), SIZE_DEFAULTS[name], key)
                                          for flag, name, key in SIZE_OPTIONS])
            if args.observation_curve:
                model.register_to_config(observation_curve=args.observation_curve)
        # before the data is read (minutes on a real corpus): a bad --out or --warmup-steps is said at once, and a
        # resume's every difference, the model's options among them (its statistics and fps come from the data)
        options = {"d_model": args.d_model, "num_layers": args.layers, "num_heads": args.heads,  # a new model's
                   "ff_size": args.ff_size, "dropout": args.dropout, "observation_curve": args.observation_curve or "linear"}
        check_settings(settings, MotionDenoiser, dict(model.config) if model is not None else options)
        # a crop longer than the model's max_frames made its forward raise at whichever step first drew one
        most = model.config.max_frames if model is not None else MAX_FRAMES
        if args.window > most:
            raise TrainingError(f"--window {args.window} is longer than the {most} frames the model takes "
                                f"(max_frames{' of --init' if model is not None else ''}): give at most {most}")
        windows, store = open_training_windows(args)
        if len(windows) < args.batch_size:
            raise TrainingError(f"only {len(windows)} windows of {args.window} frames with both hands; lower "
                                "--window or --batch-size, or give more clips")
        fps = clips_fps(store.clips)  # the model learns motion at this rate and generates at it (retime.py)
        if model is not None and model.config.fps != fps:
            raise TrainingError(f"the clips are at {fps:g} fps and --init's model learnt motion at "
                                f"{model.config.fps:g} fps: fine-tune on clips of its frame rate")
        hands = load_hand_model(args.hand_model)
        if model is None:
            mean, std = data_statistics(store, WristJoints.of(hands), seed=args.seed)
            model = new_model(lambda: MotionDenoiser(**options, data_mean=mean, data_std=std, fps=fps))
        settings.data_statistics = {"mean": model.config.data_mean, "std": model.config.data_std}
        scheduler: DDPMScheduler = make_train_scheduler(model.config.num_train_timesteps)
        objective = MotionObjective(hands, scheduler, min_length=args.min_length,
                                    spline_observation=args.spline_observation)
        print(f"training on {len(windows)} windows of {args.window} frames ({len(store)} clips); "
              f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters", flush=True)
        result = train(model, windows, objective, settings)
    except (TrainingError, DatasetError) as exc:
        print(f"handforge train motion: {exc}", file=sys.stderr)
        return 2
    note = f"; {result.note()}" if result.note() else ""
    if result.model_dir is None:  # (--stop-after: "wrote RUN", which held no model yet)
        print(f"stopped at step {result.step} of {args.steps} with a checkpoint in {args.out}, no model yet: run the "
              f"same command again to continue (last loss {result.last_loss:.4g}{note})")
        return 0
    print(f"wrote {result.model_dir} (last loss {result.last_loss:.4g}{note})")
    return 0
