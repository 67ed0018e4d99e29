"""``handforge train interaction``: the interaction denoiser on the open corpus's interaction frames
(and/or InterHand2.6M MANO annotations), through the one training loop."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from handforge.arguments import POSITIVE, SEED, at_least, existing_path, given_path, layer_count, multiple_of, number_in, output_folder, torch_thread_count


# a new model's size options (argparse name, as the model's config names them: default)
SIZE_DEFAULTS = {"width": 128, "hidden": 256, "layers": 5}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--corpus", type=given_path("a corpus folder"), help="an open corpus folder (`handforge corpus`)")
    parser.add_argument("--interhand", type=existing_path(folder=True), help="an InterHand2.6M root (annotations/{train,val,test}; needs MANO files)")
    parser.add_argument("--out", type=output_folder, required=True, help="run folder (log, checkpoints, model/)")
    parser.add_argument("--steps", type=at_least(1), default=20_000, help="optimiser steps")
    parser.add_argument("--minutes", type=number_in(0.0, low_open=True), default=None,
                        help="size the run to about this long: a short timed probe picks the step count (at "
                             "most --steps), and the run then finishes with its learning rate decayed")
    parser.add_argument("--batch-size", type=at_least(1), default=256, help="hand pairs a step")
    parser.add_argument("--lr", type=POSITIVE, default=1e-3, help="peak learning rate")
    parser.add_argument("--warmup-steps", type=at_least(0), default=None,
                        help="linear LR warm-up, then cosine decay (default: a tenth of the steps, at most 500)")
    parser.add_argument("--init", type=given_path("a model folder"), help="fine-tune: start from this interaction model folder (its architecture and "
                                       "data normalisation: size options other than its own are refused); an interrupted "
                                       "fine-tune resumes from --out's checkpoints")
    parser.add_argument("--width", type=multiple_of(4), default=SIZE_DEFAULTS["width"],
                        help="attention width (4 heads: a multiple of 4)")
    parser.add_argument("--hidden", type=at_least(1), default=SIZE_DEFAULTS["hidden"], help="MLP width")
    parser.add_argument("--layers", type=layer_count, default=SIZE_DEFAULTS["layers"], help="MLP layers")
    parser.add_argument("--stride", type=at_least(1), default=1, help="use every N-th frame")
    parser.add_argument("--max-clips", type=at_least(1), default=None, help="use only the first N clips of each source (a quick run)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")
    parser.add_argument("--threads", type=torch_thread_count(), default=1,
                        help="torch CPU threads (1 is fastest on a busy machine: 0.36 s/step against 3 s with 2)")
    parser.add_argument("--keep-shapes", action="store_true",
                        help="train on the data's own hand shapes (default: redrawn per frame; see train.py)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def data_fingerprint(anchors, others) -> dict[str, object]:
    """What a resumed run must train on again: the pairs' count and a digest of their vectors (a corpus
    rebuilt in place, same options, same size, would otherwise continue unsaid on other data). A digest, not
    the normalisation statistics, because torch's reductions round differently with another --threads."""
    digest = hashlib.sha256()
    for vectors in (anchors, others):
        digest.update(vectors.contiguous().numpy().tobytes())
    return {"pairs": len(anchors), "sha256": digest.hexdigest()}


def _remove_probe(folder: Path) -> None:
    """Delete a speed-probe folder, unless another run's probe holds it (its lock): a probe refused because
    another --minutes run into the same --out was probing deleted that run's folder under it, and it failed."""
    import shutil

    from handforge_shared.files import FolderBusy, folder_lock

    if not folder.is_dir():
        return
    try:
        with folder_lock(folder):
            shutil.rmtree(folder, ignore_errors=True)
    except FolderBusy:
        pass


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    import torch

    from handforge.engines.interaction.data import load_pairs
    from handforge.engines.interaction.model import InteractionDenoiser, training_loss
    from handforge.engines.interaction.representation import SHAPE
    from handforge.hands import HandModelError, load_hand_model
    from handforge.hands.wrists import WristJoints
    from handforge.training.loop import (TrainingError, TrainSettings, check_fine_tune_sizes, check_settings,
                                         fine_tune_start, new_model, recorded_settings, train)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.corpus is None and args.interhand is None:
        print("handforge train interaction: give --corpus DIR and/or --interhand ROOT", file=sys.stderr)
        return 2
    warmup = min(500, args.steps // 10) if args.warmup_steps is None else args.warmup_steps
    settings = TrainSettings(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             lr_schedule="cosine", warmup_steps=warmup, ema_decay=0.999,
                             checkpoint_every=max(1, min(1000, args.steps // 4)), progress=not args.quiet,
                             data_options={"stride": args.stride, "max_clips": args.max_clips,
                                           "keep_shapes": args.keep_shapes, "corpus": args.corpus is not None,
                                           "interhand": args.interhand is not None,
                                           "init": os.path.realpath(args.init) if args.init else None})
    try:
        model = fine_tune_start(InteractionDenoiser, args.init, args.out) if args.init else None
        if model is not None:  # (the size options were ignored unsaid)
            check_fine_tune_sizes(model, [(f"--{name}", getattr(args, name), SIZE_DEFAULTS[name], name)
                                          for name in SIZE_DEFAULTS])
        # before the data is read and --minutes' speed probe: a bad --out or --warmup-steps is said at once, and a
        # resume's every difference, a new model's options (``options``) among them
        options = {"width": args.width, "hidden": args.hidden, "layers": args.layers}
        check_settings(settings, InteractionDenoiser, dict(model.config) if model is not None else options)
        vectors = []  # each source encoded on its own hand model (wrist joints differ)
        try:
            if args.corpus is not None:
                pairs = load_pairs(args.corpus, "train", stride=args.stride, max_clips=args.max_clips)
                vectors.append(pairs.vectors(WristJoints.of(load_hand_model("open"))))
            if args.interhand is not None:
                mano = load_hand_model("mano")  # InterHand2.6M poses are MANO's, mean-relative: made flat-relative
                pairs = load_pairs(interhand=args.interhand, split="train", hands_mean=mano.hands_mean_arrays(),
                                   stride=args.stride, max_clips=args.max_clips)
                vectors.append(pairs.vectors(WristJoints.of(mano)))
        except (ValueError, HandModelError) as exc:
            print(f"handforge train interaction: {exc}", file=sys.stderr)
            return 2
        anchors, others = torch.cat([v[0] for v in vectors]), torch.cat([v[1] for v in vectors])
        count = len(anchors)
        if not args.keep_shapes:
            # The corpus has one hand shape per person group, a few dozen in all: a model fitted to
            # them fails on held-out shapes (held-out x0 error 600x the training one, even nearly
            # noise-free). Redrawn per frame from the open hand's whitened shape space, shape stops
            # carrying identity; placement was encoded from the true shape, so contact moves by a few mm.
            generator = torch.Generator().manual_seed(args.seed)
            shapes = torch.randn(len(anchors), 10, generator=generator)
            anchors[:, SHAPE], others[:, SHAPE] = shapes, shapes
        if model is None:
            model = new_model(lambda: InteractionDenoiser(**options))
            model.fit_normalisation(anchors, others)
        scheduler = model.noise_scheduler()
        print(f"{count} training pairs; {sum(p.numel() for p in model.parameters()):,} parameters")
        dataset = torch.utils.data.TensorDataset(anchors, others)
        settings.data_statistics = data_fingerprint(anchors, others)
        started_run = recorded_settings(args.out) if args.minutes is not None else None
        if started_run is not None:  # resumed: the step count --minutes chose at the start (a new probe changed
            # it, and with it the learning-rate schedule, or fell below the steps already done and was refused)
            for name in ("steps", "warmup_steps", "checkpoint_every"):
                setattr(settings, name, started_run[name])
            print(f"continuing the run's {settings.steps} steps, as many as it was given when it started")
        elif args.minutes is not None:  # time a short throwaway run, then size the real one to the time given
            import copy

            probe_dir, probe = Path(args.out) / "speed-probe", 40
            started = time.monotonic()
            try:
                train(copy.deepcopy(model), dataset, lambda m, b: training_loss(m, *b, scheduler),
                      dataclasses.replace(settings, out=probe_dir, steps=probe, warmup_steps=0,
                                          checkpoint_every=probe, resume=False, progress=False))
            finally:  # a failed or interrupted probe too: nothing but a --minutes run removed it
                _remove_probe(probe_dir)
            per_step = (time.monotonic() - started) / probe
            # --steps stays the most (min before int: --minutes 1e308 made inf steps, int() an OverflowError)
            settings.steps = max(1, int(min(args.steps, args.minutes * 60 / per_step)))
            settings.warmup_steps = min(warmup, settings.steps // 10)
            settings.checkpoint_every = max(1, min(1000, settings.steps // 4))
            # (the time those steps take: --minutes alone was printed, "20000 steps in about 1e+308 min" where
            # --steps capped them at 14 minutes)
            print(f"{per_step * 1e3:.0f} ms/step: {settings.steps} steps in about "
                  f"{settings.steps * per_step / 60:.3g} min" + (f" (--steps caps them below --minutes {args.minutes:g})"
                                                                 if settings.steps == args.steps else ""))
        result = train(model, dataset, lambda m, b: training_loss(m, *b, scheduler), settings)
    except TrainingError as exc:
        print(f"handforge train interaction: {exc}", file=sys.stderr)
        return 2
    # with --minutes a resumed run's steps are its record's: a larger --steps given with it changes nothing
    go_on = "rerun without --minutes, with a larger --steps, to go on" if started_run is not None else None
    note = result.note(go_on) if go_on else result.note()
    summary = {"pairs": count, "steps": result.step, "last_loss": result.last_loss,
               "model": str(result.model_dir) if result.model_dir else None, **({"note": note} if note else {})}
    print(json.dumps(summary))
    return 0
