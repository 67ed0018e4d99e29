#!/usr/bin/env python3
"""Labelled export scale-out: samples/s with 1 and 2 workers, local processes and Ray, in the same run.

    .venv/bin/python benchmarks/scale.py [--samples 48] [--rounds 2] [--size 256] [--engine none|workbench]

Each round exports the same spec (a fresh folder each time) in one process (the baseline), then with
1 and 2 local worker processes and 1 and 2 Ray actors (one local Ray, started once), in an order that
alternates between rounds so machine load hits them alike. Two rates per run: end to end (worker
start-up included: spawn, imports, hand model, GL context, Blender when RGB is on) and steady (from
the first finished chunk to the last, i.e. what a long run approaches). Ray's own start (``ray.init``
until a first task has run: its raylet and prestarted worker processes) happens once, before the rounds,
and the actors reuse it, so it is timed on its own and printed; the Ray rows' end-to-end rates are
printed without it and with it added to each run (what a run that starts its own Ray pays), and so are
their ratios. Prints the fastest round (min time) and the median of the rounds, and the ratios (of
medians) 2 workers / 1 worker and workers / one process. Needs ``handforge[cluster]`` for the Ray rows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def timed_export(kind: str, workers: int, spec, out: Path) -> tuple[float, float]:
    """(end-to-end samples/s, steady samples/s) of one export into ``out``."""
    from handforge.export.run import export
    from handforge.export.shards import export_sharded

    marks: list[tuple[float, int]] = []
    progress = lambda done, total: marks.append((time.perf_counter(), done))
    start = time.perf_counter()
    if kind == "process":
        export(spec, out, command="benchmark", progress=progress)
    else:
        if kind == "local":
            from handforge.export.local_pool import LocalPool

            factory = lambda: LocalPool(spec.to_dict(), str(out), workers)
        else:
            from handforge.export.ray_pool import RayPool

            factory = lambda: RayPool(spec.to_dict(), str(out), None, workers)
        export_sharded(spec, out, factory, workers, command="benchmark", progress=progress)
    total = time.perf_counter() - start
    (t0, n0), (t1, n1) = marks[0], marks[-1]
    return spec.samples / total, (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def _ready() -> None:
    """A task for Ray to run: it has run once a worker process is up."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--size", type=int, default=256, help="image width and height")
    parser.add_argument("--engine", choices=("none", "workbench", "cycles"), default="none",
                        help="RGB renderer (none: GL images and labels only)")
    parser.add_argument("--no-ray", action="store_true", help="local processes only")
    args = parser.parse_args()

    from handforge.export.spec import parse_spec

    spec = parse_spec({"seed": 0, "samples": args.samples, "width": args.size, "height": args.size,
                       "render": {"engine": args.engine, "samples": 4}})
    runs = [("process", 1), ("local", 1), ("local", 2)] + ([] if args.no_ray else [("ray", 1), ("ray", 2)])
    ray_start = 0.0
    if not args.no_ray:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
        ray.get(ray.remote(_ready).remote())  # ready: a worker process ran a task
        ray_start = time.perf_counter() - started
    print(f"{args.samples} samples of {args.size}², RGB: {args.engine}, {os.cpu_count()} CPUs, "
          f"{args.rounds} rounds (alternating order)", flush=True)
    if not args.no_ray:
        print(f"Ray's start (ray.init until a first task ran), once before the rounds: {ray_start:.2f} s; "
              "the Ray rows exclude it unless said", flush=True)
    rates: dict[tuple[str, int], list[tuple[float, float]]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for kind, workers in (runs if r % 2 == 0 else runs[::-1]):
                out = Path(tmp) / f"{kind}{workers}-{r}"
                rates[(kind, workers)].append(timed_export(kind, workers, spec, out))
                shutil.rmtree(out)  # outside the timing: deleting thousands of files is slow here
                e2e, steady = rates[(kind, workers)][-1]
                print(f"  round {r}: {kind:7s} × {workers}: {e2e:6.2f} samples/s end to end, {steady:6.2f} steady",
                      flush=True)
    with_start = lambda e2e: args.samples / (args.samples / e2e + ray_start)  # that run's rate had it started Ray
    print("\nsamples/s, fastest round (min time) and median of the rounds: end to end | steady")
    median = {}
    for (kind, workers), v in rates.items():
        e2e, steady = [e for e, _ in v], [s for _, s in v]
        median[(kind, workers)] = (statistics.median(e2e), statistics.median(steady))
        line = (f"  {'one process' if kind == 'process' else kind + ' × ' + str(workers):14s} "
                f"{max(e2e):7.2f} {median[(kind, workers)][0]:7.2f} | {max(steady):7.2f} {median[(kind, workers)][1]:7.2f}")
        if kind == "ray":
            line += (f"   end to end with Ray's {ray_start:.2f} s start added: {with_start(max(e2e)):.2f} "
                     f"{with_start(median[(kind, workers)][0]):.2f}")
        print(line)
    base_e2e, base_steady = median[("process", 1)]
    for kind in ("local", "ray"):
        if (kind, 2) not in median:
            continue
        (e1, s1), (e2, s2) = median[(kind, 1)], median[(kind, 2)]
        line = (f"  {kind}: 2 workers / 1 worker: {e2 / e1:.2f}× end to end, {s2 / s1:.2f}× steady; "
                f"2 workers / one process: {e2 / base_e2e:.2f}× end to end, {s2 / base_steady:.2f}× steady")
        if kind == "ray":
            line += (f" (Ray's start excluded); with it: 1 worker / one process {with_start(e1) / base_e2e:.2f}×, "
                     f"2 workers / one process {with_start(e2) / base_e2e:.2f}× end to end")
        print(line)
    if not args.no_ray:
        ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
