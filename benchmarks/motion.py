#!/usr/bin/env python3
"""Motion in-betweening of 200 frames of two hands: the shipped learned model at its default steps
against the spline engine and an MDM-size denoiser (Tevet et al., arXiv 2209.14916: 8 layers,
d 512, ff 1024; random weights, 50 DDIM steps), same process, same keys.

    .venv/bin/python benchmarks/motion.py [--frames 200] [--repeats 3] [--threads 1] [--profile]
                                          [--device cpu|cuda] [--checkpoint DIR]

The keys: both hands fully keyed at five frames (library poses, wrists moving), everything between
generated, as the add-on's *In-between* sends it. Every engine runs through ``synthesize`` (what the
``motion.inbetween`` job runs: sampling, smoothing, joint limits, keys written back). The runs are
interleaved and repeated; min / median per engine and the ratios are printed. ``--profile``
profiles one run of the shipped model (cProfile, by cumulative time) to show where the time goes.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from handforge import config
from handforge.engines.checkpoints import load_model
from handforge.engines.motion.model import MotionDenoiser
from handforge.engines.motion.observation import Observation
from handforge.engines.motion.pipeline import DEFAULT_STEPS, MotionPipeline
from handforge.engines.motion.settings import CHECKPOINT, SHIPPED_CHECKPOINT
from handforge.engines.motion.synthesis import synthesize
from handforge.hands import load_hand_model
from handforge_shared import pose_library
from handforge_shared.poses import side_by_side

KEY_POSES = ("flat", "fist", "point", "pinch", "relaxed")
PARTS = 17
MDM_STEPS = 50
TARGET_FRAMES, TARGET_SECONDS = 200, 2.0  # the motion target (README, Speed)


def keyed_observation(frames: int) -> Observation:
    """Both hands keyed on every part at five evenly spaced frames (first and last included)."""
    keyed = np.linspace(0, frames - 1, len(KEY_POSES)).round().astype(int)
    values = {f: np.zeros((frames, 2, n)) for f, n in (("global_orient", 3), ("hand_pose", 45), ("transl", 3))}
    for i, (frame, name) in enumerate(zip(keyed, KEY_POSES)):
        pair = side_by_side(pose_library.get(name, side="right"))
        for h, side in enumerate(("left", "right")):
            for field in values:
                values[field][frame, h] = getattr(pair.hands[side], field)
            values["transl"][frame, h] += [0.0, 0.03 * i, 0.02 * (i % 2)]  # the wrists move too
    mask = np.zeros((frames, 2, PARTS), bool)
    mask[keyed] = True
    return Observation(**values, part_mask=mask, betas=np.zeros((2, 10)), hand_model="open", fps=30.0)


def target_verdict(frames: int, device: str, checkpoint: str, seconds: float) -> str:
    """The motion target is <= 2 s for 200 frames with the shipped model, as README's Speed measures it (on the
    CPU): a verdict only under those conditions, else which of them this run does not meet."""
    differs = [what for what, off in ((f"--frames {frames}, not 200", frames != TARGET_FRAMES),
                                      (f"--device {device}, not the CPU", torch.device(device).type != "cpu"),
                                      (f"checkpoint {checkpoint}, not the shipped model",
                                       Path(checkpoint).resolve() != SHIPPED_CHECKPOINT)) if off]
    if differs:
        return f"target <= {TARGET_SECONDS:g} s for {TARGET_FRAMES} frames with the shipped model on the CPU: " \
               f"does not apply to this run ({'; '.join(differs)})"
    return (f"target <= {TARGET_SECONDS:g} s for {TARGET_FRAMES} frames with the shipped model on the CPU: "
            f"{'met' if seconds <= TARGET_SECONDS else 'NOT met'} (min {seconds:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None, help="default: motion.checkpoint (the shipped model)")
    parser.add_argument("--profile", action="store_true", help="profile one run of the shipped model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.checkpoint or config.value(CHECKPOINT.key)
    hands = load_hand_model("open", device=args.device)
    shipped = MotionPipeline(load_model(MotionDenoiser, folder, device=args.device), hands)
    torch.manual_seed(0)
    mdm = MotionPipeline(MotionDenoiser(d_model=512, num_layers=8, num_heads=4, ff_size=1024).to(args.device).eval(),
                         hands)
    observation = keyed_observation(args.frames)
    runs = {
        "spline": lambda: synthesize(observation, "spline"),
        f"shipped learned, {DEFAULT_STEPS} steps": lambda: synthesize(observation, "learned", shipped,
                                                                      steps=DEFAULT_STEPS),
        f"MDM-size, {MDM_STEPS} steps": lambda: synthesize(observation, "learned", mdm, steps=MDM_STEPS),
    }
    params = {name: sum(p.numel() for p in pipe.model.parameters()) for name, pipe in
              ((f"shipped learned, {DEFAULT_STEPS} steps", shipped), (f"MDM-size, {MDM_STEPS} steps", mdm))}
    with torch.no_grad():
        for run in runs.values():  # warm-up: first-call allocations and lazy imports are not measured
            run()
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, run in runs.items():  # interleaved: load changes hit every engine alike
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
                # each time as it comes: a run stopped by a time limit (a lent GPU's) still says what it measured
                print(f"repeat {repeat + 1}/{args.repeats}: {name}: {times[name][-1]:.3f} s", flush=True)
        print(f"\n{args.frames} frames, two hands, keys on {len(KEY_POSES)} frames; checkpoint {folder}; "
              f"device {args.device}, torch threads {torch.get_num_threads()}")
        shipped_name = f"shipped learned, {DEFAULT_STEPS} steps"
        best = {name: min(t) for name, t in times.items()}
        for name, t in times.items():
            size = f"{params[name] / 1e6:5.1f} M params" if name in params else " " * 14
            print(f"{name:28s} {size}  min {best[name]:7.3f} s  median {statistics.median(t):7.3f} s  "
                  f"{best[name] / best[shipped_name]:6.2f}x the shipped model")
        print(f"\nshipped vs spline: {best[shipped_name] / best['spline']:.1f}x slower; "
              f"MDM-size vs shipped: {best[f'MDM-size, {MDM_STEPS} steps'] / best[shipped_name]:.1f}x slower")
        print(target_verdict(args.frames, args.device, folder, best[shipped_name]))
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(runs[shipped_name])
            print("\none run of the shipped model, by cumulative time:")
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(18)


if __name__ == "__main__":
    main()
