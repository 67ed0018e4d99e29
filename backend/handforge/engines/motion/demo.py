"""The demo's motion step (``handforge demo``): two keyed two-hand poses (flat, then fist) in-betweened by the learned
motion engine through its job handler (``motion.inbetween``, the code a backend runs for the
Blender add-on's *In-between* button), written as a motion clip the add-on imports.

The handler runs in this process with a job context of its own (no server, no socket): the same
path as the demo's other steps, which call the engines' code directly.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from handforge_shared import pose_library
from handforge_shared.client import inbetween_arrays
from handforge_shared.poses import MotionClip, hand_array_name, side_by_side

KEYED = ("flat", "fist")
NUM_FRAMES = 30  # one second at 30 fps between the two keys


def keyed_arrays(num_frames: int = NUM_FRAMES) -> dict[str, np.ndarray]:
    """``motion.inbetween`` arrays: both hands keyed (every part) on the first and the last frame."""
    first, last = (side_by_side(pose_library.get(name, side="right")) for name in KEYED)
    return inbetween_arrays({0: first, num_frames - 1: last}, num_frames)


def inbetween_keyed_poses(out_dir: str | os.PathLike, steps: int = 20, seed: int = 0, threads: int = 1) -> dict[str, Any]:
    """Run ``motion.inbetween`` on ``keyed_arrays`` with the learned engine; write ``inbetween.npz``.

    Returns the engine that ran (the spline engine when no checkpoint is configured, with the
    warning), the learned engine's checkpoint in words (``config.said``: the configured one, or the shipped
    one), the seconds (model loading included, and without it), the largest key error and the path.
    ``threads``: torch threads while it runs (restored after); on a shared 2-core machine one thread
    took 0.36 s where two took 7-19 s (README, Motion)."""
    from handforge import config
    from handforge.engines.motion.jobs import inbetween
    from handforge.engines.motion.settings import CHECKPOINT, SHIPPED_CHECKPOINT
    from handforge.runtime import torch_threads
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext

    arrays = keyed_arrays()
    # the job kind's own defaults (as a request that sets only these gets them), checked by its schema
    params = default_registry().kind("motion.inbetween").schema.validate(
        {"engine": "learned", "hand_model": "open", "fps": 30.0, "seed": seed, "steps": steps}, arrays)
    ctx = JobContext("demo-motion", "motion.inbetween", lambda fraction, message, previews: None)
    # the one the job reads (the configured one, if any): "shipped" named the user's own as the shipped one
    checkpoint = config.said(CHECKPOINT.key, f"shipped checkpoint {SHIPPED_CHECKPOINT.name}", "checkpoint ")
    with torch_threads(threads):
        started = time.perf_counter()
        result = inbetween(ctx, params, arrays)
        seconds = time.perf_counter() - started
    clip = MotionClip.from_arrays(result.data["motion"], result.arrays)
    key_error = max(float(np.abs(getattr(clip.hands[side], field)[[0, -1]]  # the result travels as float32
                                 - arrays[hand_array_name(side, field)][[0, -1]].astype(np.float32)).max())
                    for side in ("left", "right") for field in ("global_orient", "hand_pose", "transl"))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = clip.save(out / "inbetween.npz")
    return {"engine": result.data["engine"], "warning": result.data.get("warning", ""), "seconds": seconds,
            "generation_seconds": float(result.data["seconds"]), "loaded": list(ctx.loaded), "steps": steps,
            "checkpoint": checkpoint if result.data["engine"] == "learned" else None,
            "frames": clip.num_frames, "key_error": key_error, "path": str(path)}


def demo(out: Path) -> None:
    """In-between the keyed poses and say how long it took."""
    motion = inbetween_keyed_poses(out)
    engine = (f"the {motion['engine']} engine (fell back: {motion['warning']})" if motion["warning"] else
              f"the {motion['engine']} engine ({motion['checkpoint']}, {motion['steps']} DDIM steps)")
    loading = f" ({motion['seconds']:.2f} s with the first call's imports and model loading)" if motion["loaded"] else ""
    kept = "bit for bit" if motion["key_error"] == 0 else f"to {motion['key_error']:.1g}"
    print(f"motion: two keyed poses ({' → '.join(KEYED)}, both hands) in-betweened over {motion['frames']} frames "
          f"by {engine} in {motion['generation_seconds']:.2f} s{loading}; keys kept {kept}; {motion['path']}")


__all__ = ["demo", "inbetween_keyed_poses", "keyed_arrays"]
