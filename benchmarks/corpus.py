#!/usr/bin/env python3
"""Corpus generation speed: ``handforge corpus`` with worker processes vs one process, same run.

    .venv/bin/python benchmarks/corpus.py [--sequences 1024] [--workers 2] [--repeats 3] [--seed 1]
                                          [--target 20000] [--keep DIR]

Writes corpora into a temporary directory with the real pipeline (``write_corpus``: chunks,
penetration resolver, clip files, splits; without the figures and the exact-mesh statistics,
which cost the same fixed ~1 minute whatever the corpus size), both sides the same ``--sequences``
clips of the same ``--seed`` (so the same clips), each run into a folder of its own:
  - the baseline: in this process, one worker;
  - ours: with ``--workers`` worker processes (their pool's start-up included: it is part of the cost).
One small corpus written in this process first (not timed) takes the first-call costs (imports, the
hand model) out of both. The two then alternate ``--repeats`` times, which goes first alternating
too, and it prints min and median seconds, clips/s and frames/s of both, their ratio, and the time
the ``--target`` corpus would take at our median rate, against the 30-minute goal (issue 5).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from handforge.corpus.build import write_corpus

GOAL_SECONDS = 30 * 60


def timed(out: Path, sequences: int, seed: int, workers: int) -> tuple[float, dict]:
    start = time.perf_counter()
    summary = write_corpus(out, sequences, seed, workers=workers, stats_sample=0, figures=False, progress=False)
    return time.perf_counter() - start, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=1024, help="clips per corpus, both sides")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each side, interleaved (at least 3)")
    parser.add_argument("--seed", type=int, default=1, help="both sides' seed")
    parser.add_argument("--target", type=int, default=20000)
    parser.add_argument("--keep", type=Path, help="keep the last corpus of ours here instead of deleting it")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats {args.repeats}: give at least 3 (a min and a median of fewer say little)")

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) before the run")
    sides = {"baseline": 1, "ours": args.workers}
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory(prefix="handforge-bench-corpus-") as tmp:
        timed(Path(tmp) / "warm-up", 8, args.seed, workers=1)
        for r in range(args.repeats):
            for side in (("baseline", "ours") if r % 2 == 0 else ("ours", "baseline")):
                out = Path(tmp) / f"{side}-{r}"
                run_s, summary = timed(out, args.sequences, args.seed, workers=sides[side])
                seconds[side].append(run_s)
                frames = summary["frames"]
                print(f"  repeat {r}: {side:8s} ({sides[side]} worker(s)): {args.sequences} clips, {frames} frames "
                      f"in {run_s:7.1f} s (resolver {summary['resolver']['resolved']}/"
                      f"{summary['resolver']['instances']} instances)", flush=True)
                if side == "ours" and args.keep and r == args.repeats - 1:
                    shutil.copytree(out, args.keep)
                    print(f"  kept this corpus in {args.keep}")
                shutil.rmtree(out)  # outside the timing
        median = {side: statistics.median(v) for side, v in seconds.items()}
        for side, v in seconds.items():
            print(f"{side:8s} {sides[side]} worker(s): min {min(v):7.1f} s, median {median[side]:7.1f} s = "
                  f"{args.sequences / median[side]:6.2f} clips/s, {frames / median[side]:7.0f} frames/s (median; "
                  f"best {args.sequences / min(v):.2f} clips/s, {frames / min(v):.0f} frames/s)")
        rate = args.sequences / median["ours"]
        ratio_median = median["baseline"] / median["ours"]
        ratio_min = min(seconds["baseline"]) / min(seconds["ours"])
        print(f"ratio vs baseline   : {ratio_median:.2f}x (medians), {ratio_min:.2f}x (mins)")
        projected = args.target / rate
        verdict = "within" if projected < GOAL_SECONDS else "OVER"
        print(f"projected {args.target} clips: {projected / 60:.1f} min at our median rate ({verdict} the 30-minute goal)")
        print(f"load average after  : {os.getloadavg()[0]:.2f}")
        print(json.dumps({"baseline_clips_per_s": args.sequences / median["baseline"], "clips_per_s": rate,
                          "frames_per_s": frames / median["ours"], "ratio": ratio_median,
                          "projected_minutes": projected / 60}))


if __name__ == "__main__":
    main()
