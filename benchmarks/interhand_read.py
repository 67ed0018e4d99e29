#!/usr/bin/env python3
"""Reading InterHand2.6M's MANO annotations: peak memory and time of ``interhand_clips`` against
``json.load`` of the same file, same run.

    .venv/bin/python benchmarks/interhand_read.py [--captures 8] [--frames 5000] [--repeats 3]

Writes a synthetic ``MANO_NeuralAnnot.json`` of the release's shape (``--captures`` captures of
``--frames`` frames, both hands annotated, numbers written as ``json.dumps`` writes floats; the
30 fps train file has about 1.4 million frames in this shape, 2–3 GB of text) into a temporary
folder, then, interleaved and repeated:
  1. the baseline: ``json.load`` of the file alone, where any reader that loads the whole JSON
     starts (the object tree costs several times the text);
  2. ``interhand_clips``: the file read as clips, what training reads.
Peak memory is Python's own allocations (``tracemalloc``, numpy's included), taken in passes of
their own; time in passes without tracing. Prints min / median and the ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from handforge.datasets.interhand import interhand_clips


def write_annotations(path: Path, captures: int, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("{")
        for c in range(captures):
            values = rng.normal(scale=0.3, size=(frames, 2, 61)).tolist()
            body = {str(f): {side: {"pose": hand[:48], "shape": hand[48:58], "trans": hand[58:]}
                             for side, hand in zip(("right", "left"), values[f])} for f in range(frames)}
            fh.write(("," if c else "") + json.dumps(str(c)) + ": " + json.dumps(body))
        fh.write("}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captures", type=int, default=8)
    parser.add_argument("--frames", type=int, default=5000, help="frames per capture")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "InterHand2.6M_train_MANO_NeuralAnnot.json"
        write_annotations(path, args.captures, args.frames)
        size = path.stat().st_size
        runs = {"json.load (baseline)": lambda: json.loads(path.read_text(encoding="utf-8")),
                "interhand_clips": lambda: interhand_clips(path, "train")}
        peaks: dict[str, list[float]] = {name: [] for name in runs}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for repeat in range(args.repeats):
            for name, run in runs.items():  # interleaved: load changes hit both alike
                tracemalloc.start()
                result = run()
                peaks[name].append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
                del result
                started = time.perf_counter()
                result = run()
                times[name].append(time.perf_counter() - started)
                del result
            print(f"repeat {repeat + 1}/{args.repeats} done", flush=True)
    mib = 1 << 20
    frames = args.captures * args.frames
    print(f"\n{frames} frames in {args.captures} captures, {size / mib:.0f} MiB of JSON")
    for name in runs:
        print(f"{name:22s} peak min {min(peaks[name]) / mib:8.0f} MiB median {statistics.median(peaks[name]) / mib:8.0f}"
              f" MiB ({min(peaks[name]) / size:4.1f}x the file)   time min {min(times[name]):6.2f} s median "
              f"{statistics.median(times[name]):6.2f} s")
    base, ours = "json.load (baseline)", "interhand_clips"
    print(f"\ninterhand_clips' peak memory: {min(peaks[ours]) / min(peaks[base]):.2f}x json.load's; "
          f"its time: {min(times[ours]) / min(times[base]):.2f}x")


if __name__ == "__main__":
    main()
