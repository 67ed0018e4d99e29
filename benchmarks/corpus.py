#!/usr/bin/env python3
"""Corpus generation speed: ``handforge corpus`` with worker processes vs one process, same run.

    .venv/bin/python benchmarks/corpus.py [--sequences 1024] [--baseline-sequences 256] [--workers 2]
                                          [--target 20000] [--keep DIR]

Writes two corpora into a temporary directory with the real pipeline (``write_corpus``: chunks,
penetration resolver, clip files, splits; without the figures and the exact-mesh statistics,
which cost the same fixed ~1 minute whatever the corpus size):
  1. the baseline: ``--baseline-sequences`` clips in this process, one worker;
  2. ``--sequences`` clips with ``--workers`` worker processes (pool start-up included);
and prints clips per second for both, their ratio, and the time the ``--target`` corpus would take
at the measured rate, against the 30-minute goal (issue 5). Seeds differ, so the two runs generate
different clips of the same distribution.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
    parser.add_argument("--sequences", type=int, default=1024)
    parser.add_argument("--baseline-sequences", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--target", type=int, default=20000)
    parser.add_argument("--keep", type=Path, help="keep the measured corpus here instead of deleting it")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) before the run")
    with tempfile.TemporaryDirectory(prefix="handforge-bench-corpus-") as tmp:
        base_s, base = timed(Path(tmp) / "baseline", args.baseline_sequences, seed=1, workers=1)
        base_rate = args.baseline_sequences / base_s
        print(f"baseline  1 process : {args.baseline_sequences:6d} clips in {base_s:7.1f} s = {base_rate:6.2f} clips/s "
              f"(resolver {base['resolver']['resolved']}/{base['resolver']['instances']} instances)")
        out = Path(tmp) / "measured"
        run_s, run = timed(out, args.sequences, seed=2, workers=args.workers)
        rate = args.sequences / run_s
        print(f"measured {args.workers} workers : {args.sequences:6d} clips in {run_s:7.1f} s = {rate:6.2f} clips/s "
              f"(resolver {run['resolver']['resolved']}/{run['resolver']['instances']} instances, "
              f"{run['frames']} frames)")
        print(f"ratio vs baseline   : {rate / base_rate:.2f}x")
        projected = args.target / rate
        verdict = "within" if projected < GOAL_SECONDS else "OVER"
        print(f"projected {args.target} clips: {projected / 60:.1f} min at this rate ({verdict} the 30-minute goal)")
        print(f"load average after  : {os.getloadavg()[0]:.2f}")
        if args.keep:
            shutil.copytree(out, args.keep)
            print(f"kept the measured corpus in {args.keep}")
        print(json.dumps({"baseline_clips_per_s": base_rate, "clips_per_s": rate, "ratio": rate / base_rate,
                          "projected_minutes": projected / 60}))


if __name__ == "__main__":
    main()
