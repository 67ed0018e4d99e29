"""Keyed two-hand motion for motion jobs: seeded random poses, the first and last frames keyed."""

from __future__ import annotations

import numpy as np

from handforge_shared.poses import KEY_PARTS


def keyed_ends(frames: int) -> dict[str, np.ndarray]:
    """Both hands' pose arrays over ``frames`` frames (seed 0) with the first and last frames keyed."""
    rng = np.random.default_rng(0)
    arrays = {}
    for side, x in (("left", -0.1), ("right", 0.1)):
        arrays[f"{side}.global_orient"] = (0.4 * rng.normal(size=(frames, 3))).astype(np.float32)
        arrays[f"{side}.hand_pose"] = (0.3 * rng.normal(size=(frames, 45))).astype(np.float32)
        arrays[f"{side}.transl"] = (np.array([x, 0.0, 0.0]) + 0.01 * rng.normal(size=(frames, 3))).astype(np.float32)
        mask = np.zeros((frames, KEY_PARTS), dtype=np.uint8)
        mask[[0, frames - 1]] = 1
        arrays[f"{side}.mask"] = mask
        arrays[f"{side}.betas"] = (0.2 * rng.normal(size=10)).astype(np.float32)
    return arrays
