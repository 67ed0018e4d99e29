"""Smoothness of hand motions and adherence to keyframes, on keypoint trajectories.

Keypoints are (T, K, 3) positions in metres (e.g. the 21 InterHand2.6M keypoints of a hand, or
both hands' 42), sampled at ``fps`` frames per second. Derivatives are finite differences:

    velocity      v_t = (x_{t+1} − x_t) · fps                      m/s
    acceleration  a_t = (x_{t+1} − 2 x_t + x_{t−1}) · fps²          m/s²
    jerk          j_t = (x_{t+2} − 3 x_{t+1} + 3 x_t − x_{t−1}) · fps³   m/s³

``smoothness`` reports the mean and maximum magnitude of acceleration and jerk, per keypoint and
overall. **Jitter** is the mean jerk magnitude, as in pose-estimation work (e.g. TransPose/PIP,
which report it in 10² m/s³ or km/s³); a natural finger motion has a bounded jerk, frame-to-frame
noise of amplitude ε adds about 8 ε·fps³. MDM and HandDiffuse report no smoothness metric; this is
ours. Frames where a hand is absent (``present`` False) are excluded from every difference that
touches them.

``keyframe_error`` is the mean Euclidean keypoint distance (m) between a generated motion and
the keyframes it was asked to pass through, at the keyed frames (the in-betweening and
wrist-path tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from handforge.evaluation.common import as_numpy
from handforge_shared.poses import MotionClip
from handforge_shared.skeleton import Side

# binomial stencils of the forward differences, by order
_STENCILS = {1: (-1.0, 1.0), 2: (1.0, -2.0, 1.0), 3: (-1.0, 3.0, -3.0, 1.0)}


def finite_difference(keypoints: Any, fps: float, order: int, present: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``order``-th time derivative (T − order, K, 3) and its validity mask (T − order,).

    Row t combines frames t..t+order (for order 2 it is the acceleration at frame t + 1).
    """
    x = _trajectory(keypoints)
    if order not in _STENCILS:
        raise ValueError(f"order must be 1, 2 or 3, got {order}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    n = len(x) - order
    if n < 1:
        return np.zeros((0,) + x.shape[1:]), np.zeros(0, dtype=bool)
    diff = sum(c * x[k:k + n] for k, c in enumerate(_STENCILS[order])) * fps ** order
    mask = np.ones(len(x), dtype=bool) if present is None else np.asarray(present, dtype=bool)
    if mask.shape != (len(x),):
        raise ValueError(f"present must be a bool array of shape ({len(x)},), got {mask.shape}")
    valid = np.all([mask[k:k + n] for k in range(order + 1)], axis=0)
    return diff, valid


@dataclass(frozen=True)
class Smoothness:
    mean_acceleration: float           # m/s², over frames and keypoints
    max_acceleration: float            # m/s²
    jitter: float                      # m/s³, mean jerk magnitude
    max_jerk: float                    # m/s³
    per_keypoint_acceleration: np.ndarray  # (K,) mean m/s²
    per_keypoint_jerk: np.ndarray          # (K,) mean m/s³

    def summary(self) -> dict[str, float]:
        return {"mean_acceleration": self.mean_acceleration, "max_acceleration": self.max_acceleration,
                "jitter": self.jitter, "max_jerk": self.max_jerk}


def smoothness(keypoints: Any, fps: float, present: Any = None) -> Smoothness:
    """Acceleration and jerk statistics of one (T, K, 3) trajectory (T ≥ 4 for jerk)."""
    acc, acc_ok = finite_difference(keypoints, fps, 2, present)
    jerk, jerk_ok = finite_difference(keypoints, fps, 3, present)
    if not acc_ok.any() or not jerk_ok.any():
        raise ValueError("smoothness needs at least 4 consecutive frames with the hand present")
    acc_norm = np.linalg.norm(acc[acc_ok], axis=-1)    # (frames, K)
    jerk_norm = np.linalg.norm(jerk[jerk_ok], axis=-1)
    return Smoothness(
        mean_acceleration=float(acc_norm.mean()), max_acceleration=float(acc_norm.max()),
        jitter=float(jerk_norm.mean()), max_jerk=float(jerk_norm.max()),
        per_keypoint_acceleration=acc_norm.mean(0), per_keypoint_jerk=jerk_norm.mean(0),
    )


def keyframe_error(generated: Any, keyframes: Any, key_frames: Any) -> tuple[float, np.ndarray]:
    """Mean keypoint distance (m) at the keyed frames, and the mean per key (N,).

    ``generated`` (T, K, 3); ``keyframes`` (N, K, 3), the targets; ``key_frames`` (N,) their frame
    indices in the generated motion.
    """
    g = _trajectory(generated)
    k = as_numpy(keyframes).astype(np.float64)
    idx = np.asarray(key_frames)
    if k.ndim != 3 or k.shape[1:] != g.shape[1:]:
        raise ValueError(f"keyframes must be (N, {g.shape[1]}, 3) like the motion's frames, got {k.shape}")
    if idx.shape != (len(k),) or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"key_frames must be {len(k)} integer frame indices, got {idx.dtype} {idx.shape}")
    if len(idx) and (idx.min() < 0 or idx.max() >= len(g)):
        raise ValueError(f"key frame indices must lie in 0..{len(g) - 1}, got {idx.min()}..{idx.max()}")
    per_key = np.linalg.norm(g[idx] - k, axis=-1).mean(-1)
    return float(per_key.mean()) if len(per_key) else 0.0, per_key


def clip_keypoints(clip: MotionClip, model: Any) -> dict[Side, np.ndarray]:
    """Per side of ``clip``, its (T, 21, 3) keypoints (InterHand2.6M order, metres) from ``model``."""
    if model.name != clip.hand_model:
        raise ValueError(f"the clip is for the {clip.hand_model!r} hand model, but a {model.name!r} model was given")
    with torch.no_grad():
        return {side: model.forward_pose(side, pose).keypoints.cpu().numpy().astype(np.float64)
                for side, pose in clip.hands.items()}


def _trajectory(keypoints: Any) -> np.ndarray:
    x = as_numpy(keypoints).astype(np.float64)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"a trajectory must be (T, K, 3) keypoints, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("the trajectory contains NaN or inf")
    return x
