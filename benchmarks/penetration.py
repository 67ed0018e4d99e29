#!/usr/bin/env python3
"""Penetration between two hands: our batched torch loss and exact metrics vs trimesh, same process.

    .venv/bin/python benchmarks/penetration.py [--pairs 256] [--baseline-pairs 16] [--repeats 3] [--threads 1]

Builds ``--pairs`` interpenetrating two-hand configurations of the open hand (poses from the pose
library, the left hand turned and placed randomly over the right palm), then times
  1. ``penetration_loss`` forward + backward on the whole batch;
  2. the baseline: per pair, trimesh's ``signed_distance`` of each hand's vertices against the other
     sealed hand (R-tree closest points + ray containment): exact per-vertex depths and inside verdicts,
     what the loss's fast inside test and depths approximate (they do not agree on every vertex: the
     last lines print on how many they do), on ``--baseline-pairs`` pairs;
  3. our ``penetration_metrics`` (winding-number volume + exact vertex depths) on those pairs;
each once untimed (warm-up: caches, first calls), then all three interleaved ``--repeats`` times (at
least 3; the order rotates), and prints min and median per-pair times, the ratios (of mins and of
medians), and how the loss's fast inside test and depths agree with the exact ones (exact distances,
inside by winding number). Torch runs one thread by default, as trimesh does.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import trimesh

from handforge.evaluation.penetration import penetration_depths, penetration_loss, penetration_metrics
from handforge.evaluation.proximity import SurfaceQuery
from handforge.evaluation.seal import as_sealed
from handforge.hands import load_hand_model
from handforge_shared import pose_library


def random_pairs(model, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    names = pose_library.names()
    pose = lambda side: np.stack([pose_library.get(names[i], side).hand_pose for i in rng.integers(0, len(names), count)])  # noqa: E731
    right = model("right", torch.zeros(count, 3), torch.tensor(pose("right"), dtype=torch.float32)).vertices
    axis = rng.normal(size=(count, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0, np.radians(50), (count, 1))
    orient = axis * angle  # a random turn of up to 50°, as an axis-angle
    transl = np.array([-0.17, 0.025, 0.0]) + rng.normal(0, [0.02, 0.01, 0.02], (count, 3))
    left = model("left", torch.tensor(orient, dtype=torch.float32), torch.tensor(pose("left"), dtype=torch.float32),
                 transl=torch.tensor(transl, dtype=torch.float32)).vertices
    return left.detach(), right.detach()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--baseline-pairs", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: as single-threaded trimesh; 0: torch's default)")
    args = parser.parse_args()
    if args.repeats < 3:
        parser.error(f"--repeats {args.repeats}: give at least 3 (a min and a median of fewer say little)")
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_hand_model("open")
    faces_l, faces_r = model.faces("left"), model.faces("right")
    left, right = random_pairs(model, args.pairs)
    print(f"{args.pairs} pairs of open hands ({left.shape[1]} vertices each), torch threads: {torch.get_num_threads()}")

    def ours() -> None:
        l_var = left.clone().requires_grad_(True)
        penetration_loss(l_var, right, faces_l, faces_r).sum().backward()

    n = min(args.baseline_pairs, args.pairs)
    topo_l, topo_r = as_sealed(faces_l), as_sealed(faces_r)
    exact_l, exact_r = [], []

    def baseline() -> None:
        exact_l.clear()
        exact_r.clear()
        for i in range(n):
            mesh_l, mesh_r = topo_l.mesh(left[i]), topo_r.mesh(right[i])
            exact_l.append(trimesh.proximity.signed_distance(mesh_r, left[i].numpy().astype(np.float64)))
            exact_r.append(trimesh.proximity.signed_distance(mesh_l, right[i].numpy().astype(np.float64)))

    def metrics_of_pairs() -> None:
        penetration_metrics(left[:n], right[:n], faces_l, faces_r)

    timed = {"ours": (ours, args.pairs), "baseline": (baseline, n), "metrics": (metrics_of_pairs, n)}
    for fn, _ in timed.values():  # warm-up, untimed: the sealing cache, first calls
        fn()
    per_pair: dict[str, list[float]] = {name: [] for name in timed}
    names = list(timed)
    for r in range(args.repeats):
        for name in names[r % 3:] + names[:r % 3]:  # each goes first in turn
            fn, pairs = timed[name]
            start = time.perf_counter()
            fn()
            per_pair[name].append((time.perf_counter() - start) / pairs)
    low = {name: min(v) for name, v in per_pair.items()}
    mid = {name: statistics.median(v) for name, v in per_pair.items()}
    metrics = penetration_metrics(left[:n], right[:n], faces_l, faces_r)

    print(f"per pair, min / median of {args.repeats} interleaved repeats:")
    print(f"differentiable loss, batched (forward + backward): {low['ours'] * 1e3:8.2f} / {mid['ours'] * 1e3:8.2f} ms")
    print(f"trimesh signed_distance per pair (baseline):       {low['baseline'] * 1e3:8.2f} / "
          f"{mid['baseline'] * 1e3:8.2f} ms")
    print(f"  ratio baseline / ours: {low['baseline'] / low['ours']:.0f}x (mins), "
          f"{mid['baseline'] / mid['ours']:.0f}x (medians)")
    print(f"penetration_metrics (volume + exact depths):        {low['metrics'] * 1e3:8.2f} / "
          f"{mid['metrics'] * 1e3:8.2f} ms ({low['baseline'] / low['metrics']:.1f}x / "
          f"{mid['baseline'] / mid['metrics']:.1f}x faster than the baseline, which has no volume)")

    # agreement of the fast test with the exact one, per vertex
    fast_l, fast_r = penetration_depths(left[:n], right[:n], faces_l, faces_r)
    fast = np.concatenate([fast_l.numpy().ravel(), fast_r.numpy().ravel()])
    ours_l = [SurfaceQuery(topo_r.mesh(right[i])).signed_distance(left[i].numpy()) for i in range(n)]
    ours_r = [SurfaceQuery(topo_l.mesh(left[i])).signed_distance(right[i].numpy()) for i in range(n)]
    exact = np.maximum(np.concatenate(ours_l + ours_r), 0)
    parity = np.concatenate(exact_l + exact_r) > 0
    print(f"trimesh's ray parity disagrees with the winding number on {np.sum(parity != (exact > 0))} vertices "
          "(inside two overlapping parts of a self-intersecting hand)")
    inside, found = exact > 0, fast > 0
    err = np.abs(fast - exact)
    print(f"on {n} pairs: mean volume {metrics.volume.mean() * 1e6:.1f} cm³, mean max depth "
          f"{metrics.max_depth.mean() * 1e3:.1f} mm; {inside.sum()} of {len(exact)} vertices inside the other hand")
    print(f"fast inside test vs exact: {np.mean(inside == found):.2%} of vertices agree; "
          f"missed {np.sum(inside & ~found)} (deepest {exact[inside & ~found].max(initial=0) * 1e3:.2f} mm), "
          f"extra {np.sum(found & ~inside)} (deepest {fast[found & ~inside].max(initial=0) * 1e3:.2f} mm)")
    print(f"depth error of the fast test: mean {err[inside | found].mean() * 1e3:.2f} mm, "
          f"95th percentile {np.percentile(err[inside | found], 95) * 1e3:.2f} mm, max {err.max() * 1e3:.2f} mm")


if __name__ == "__main__":
    main()
