"""MANO forward (+ backward) through HandForge's layer vs smplx's MANO called directly.

Prints the min and median time per batch for both (calls interleaved, after a warm-up) and their ratios (the cost of HandForge's input checks, keypoint
selection and reordering), on the CPU and, when present, on CUDA. Uses the MANO files of the
``mano.model_dir`` setting when they load, otherwise the synthetic MANO-format model of the tests
(same sizes, so the same cost).

    .venv/bin/python benchmarks/mano_forward.py [--batch 64 1024] [--repeats 20]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _model_dir(tmp: Path) -> tuple[Path, str]:
    from handforge.hands.mano import unavailable_reason
    from handforge.hands.mano_files import resolve_model_dir

    if not unavailable_reason():
        return resolve_model_dir(), "configured MANO files"
    sys.path.insert(0, str(ROOT))
    from tests.support.synthetic_mano import write_synthetic_mano

    return write_synthetic_mano(tmp, chumpy_shapedirs=False), "synthetic MANO-format model"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _min_median_times(fns, repeats: int, device: torch.device) -> list[tuple[float, float]]:
    """(min, median) seconds per call of each function, calls interleaved (which goes first alternating) so
    load changes hit both alike."""
    times: list[list[float]] = [[] for _ in fns]
    for fn in fns:
        fn()  # warm up
    for r in range(repeats):
        order = list(zip(fns, times))
        for fn, bucket in order if r % 2 == 0 else order[::-1]:
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            bucket.append(time.perf_counter() - start)
    return [(min(bucket), statistics.median(bucket)) for bucket in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import smplx

    from handforge.hands.mano import load_mano

    with tempfile.TemporaryDirectory() as tmp:
        folder, what = _model_dir(Path(tmp))
        ours = load_mano(folder)
        with contextlib.redirect_stdout(io.StringIO()):
            baseline = smplx.MANO(str(ours.right.source), is_rhand=True, use_pca=False, flat_hand_mean=True,
                                  create_global_orient=False, create_body_pose=False, create_hand_pose=False,
                                  create_betas=False, create_transl=False)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"MANO forward+backward, right hand, {what}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    for device in devices:
        ours.to(device)
        baseline.to(device)
        for batch in args.batch:
            g = torch.Generator(device="cpu").manual_seed(0)
            params = {k: torch.randn(batch, n, generator=g).to(device).requires_grad_()
                      for k, n in (("global_orient", 3), ("hand_pose", 45), ("betas", 10), ("transl", 3))}

            def run_ours():
                out = ours("right", **params)
                (out.vertices.sum() + out.keypoints.sum()).backward()

            def run_smplx():
                out = baseline(**params)
                tips = out.vertices[:, list(ours.right.tip_vertex_ids.tolist())]
                (out.vertices.sum() + out.joints.sum() + tips.sum()).backward()

            (low_ours, t_ours), (low_base, t_base) = _min_median_times([run_ours, run_smplx], args.repeats, device)
            print(f"  {device.type:4s} batch {batch:5d}, min / median: HandForge {1e3 * low_ours:8.2f} / "
                  f"{1e3 * t_ours:8.2f} ms   smplx {1e3 * low_base:8.2f} / {1e3 * t_base:8.2f} ms   "
                  f"ratio {low_ours / low_base:5.2f} / {t_ours / t_base:5.2f}   ({batch / t_ours:,.0f} hands/s, median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
