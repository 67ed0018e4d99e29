#!/usr/bin/env python3
"""Interaction sampling: anti-penetration guidance batched (one backward for the whole batch) vs
per sample (one backward per sample, as InterHandGen's code does), and without guidance, same run.

    .venv/bin/python benchmarks/interaction.py [--samples 1000] [--per-sample-samples 1000]
                                               [--repeats 3] [--threads 1] [--device cpu|cuda]

Measured on the configured checkpoint (``interaction.checkpoint``, default the shipped one):
  1. ``--samples`` free two-hand samples without guidance, and with batched guidance;
  2. ``--per-sample-samples`` with the guidance gradient computed per sample (a loop), as the reference
     does (each sample's anchor normals and k-d tree rebuilt at every guided step), and again with them
     built once per sampling as the batched path builds them (``per_sample_anchor_once``);
  3. ``--samples`` with batched guidance and the final rigid separation, then also the touch and
     the redraws of interlocked candidates (the job's defaults);
  4. 16 candidates around a library hand with the job's defaults, the latency an artist waits for
     (separation, touch, redraws and scoring included).
Each is repeated ``--repeats`` times, interleaved, and reported as min / median; samples/s and the
ratios follow. The batched and per-sample runs give the same samples (tests check the gradients).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from handforge import config
from handforge.engines.checkpoints import load_model
from handforge.engines.interaction.model import InteractionDenoiser
from handforge.engines.interaction.pipeline import InteractionPipeline, SampleSettings
from handforge.engines.interaction.settings import CHECKPOINT
from handforge.hands import load_hand_model
from handforge_shared import pose_library


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--per-sample-samples", type=int, default=1000,
                        help="samples for the per-sample guidance (slow: lower it on a busy machine)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.checkpoint or config.value(CHECKPOINT.key)
    pipe = InteractionPipeline(load_model(InteractionDenoiser, folder, device=args.device),
                               load_hand_model("open", device=args.device))
    pose = pose_library.get("relaxed", side="left")
    anchor = {"side": "left", **{f: np.asarray(getattr(pose, f), np.float32)
                                 for f in ("global_orient", "hand_pose", "betas", "transl")}}
    # the guidance compared without the final separation and redraws (the same fixed cost on either side)
    bare = dict(separation=False, touch=False, redraws=0)
    runs = {
        "no guidance": (args.samples, lambda: pipe(SampleSettings(count=args.samples, penetration_guidance=0.0,
                                                                  **bare))),
        "guidance, batched": (args.samples, lambda: pipe(SampleSettings(count=args.samples, **bare))),
        "guidance, per sample": (args.per_sample_samples,
                                 lambda: pipe(SampleSettings(count=args.per_sample_samples, per_sample_guidance=True,
                                                             **bare))),
        "guidance, per sample, anchor once": (args.per_sample_samples,
                                              lambda: pipe(SampleSettings(count=args.per_sample_samples,
                                                                          per_sample_guidance=True,
                                                                          per_sample_anchor_once=True, **bare))),
        "guidance, batched, and separation": (args.samples,
                                              lambda: pipe(SampleSettings(count=args.samples, touch=False, redraws=0))),
        "guidance, separation, touch, redraws": (args.samples, lambda: pipe(SampleSettings(count=args.samples))),
        "16 candidates around a hand, guided": (16, lambda: pipe(SampleSettings(count=16), anchor)),
    }
    # warm-up, untimed: a first call pays one-time costs (CUDA's context and kernels, the allocator, lazy imports)
    # that would otherwise land in the first repeat of whichever variant runs first
    pipe(SampleSettings(count=16))
    pipe(SampleSettings(count=2, per_sample_guidance=True, **bare))
    pipe(SampleSettings(count=2, per_sample_guidance=True, per_sample_anchor_once=True, **bare))
    print("warmed up", flush=True)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name, (_, run) in runs.items():  # interleaved: load changes hit every variant alike
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
            # each time as it comes: a run stopped by a time limit (a lent GPU's) still says what it measured
            print(f"repeat {repeat + 1}/{args.repeats}: {name}: {times[name][-1]:.2f} s", flush=True)
    rate = {}
    print(f"\ncheckpoint {folder}, device {args.device}, torch threads {torch.get_num_threads()}")
    for name, (count, _) in runs.items():
        best, median = min(times[name]), statistics.median(times[name])
        rate[name] = count / best
        print(f"{name:38s} {count:5d} samples  min {best:7.2f} s  median {median:7.2f} s  {rate[name]:8.1f} samples/s")
    per_sample = ("guidance, per sample", "guidance, per sample, anchor once")
    # the guidance's own time per sample: the sampling's minus the unguided sampling's (the same denoiser calls)
    own = {name: 1e3 / rate[name] - 1e3 / rate["no guidance"] for name in ("guidance, batched", *per_sample)}
    for name, how in zip(per_sample, ("anchor rebuilt each step, as the reference", "anchor built once, as batched")):
        print(f"batched vs per-sample guidance ({how}): {rate['guidance, batched'] / rate[name]:.1f}x faster; "
              f"the guidance alone: batched {own['guidance, batched']:.2f} ms a sample, per sample {own[name]:.2f} ms: "
              f"{own[name] / own['guidance, batched']:.1f}x faster")
    print(f"guidance cost: {rate['no guidance'] / rate['guidance, batched']:.2f}x the time of no guidance")
    print(f"separation cost: {rate['guidance, batched'] / rate['guidance, batched, and separation']:.2f}x the time "
          "of guidance alone")
    full = rate["guidance, batched, and separation"] / rate["guidance, separation, touch, redraws"]
    print(f"touch and redraws cost: {full:.2f}x the time of guidance and separation")
    print(f"16 guided candidates: {min(times['16 candidates around a hand, guided']):.2f} s (min)")


if __name__ == "__main__":
    main()
