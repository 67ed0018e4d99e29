"""Joint-limit violations of hand poses, against the documented ranges in ``anatomy``.

Each finger joint's world-aligned axis-angle is decomposed into anatomical angles (flexion,
abduction, twist) on the rig's joint frames, and compared with ``anatomy.JOINT_LIMITS`` (with the
MCP abduction range narrowing as the MCP flexes). A violation is the angle by which a joint lies
outside its range, in radians (reported in degrees by ``summary``). The frames are those of the
rig at rest with betas = 0, as the pose library and the corpus use them; hand shape moves the
joints a little, which changes the frames by a degree or two at most.

Neither reference evaluation measures joint limits; the plausibility check here is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from handforge.evaluation.common import as_numpy
from handforge_shared.anatomy import pose_violation
from handforge_shared.rig import HandRig, load_open_hand_rig
from handforge_shared.skeleton import Side, check_side


def joint_frames(side: Side, rig: HandRig | None = None) -> np.ndarray:
    """(16, 3, 3) joint frames of ``side`` of ``rig`` (default: the open hand's, cached read-only)."""
    check_side(side)
    if rig is None:
        return _open_hand_frames(side)
    return (rig if rig.side == side else rig.mirrored()).joint_frames()


@lru_cache(maxsize=2)
def _open_hand_frames(side: Side) -> np.ndarray:
    # Loading the rig is most of the motion engine's joint-limit clamp, which runs on every sample.
    frames = load_open_hand_rig(side).joint_frames()
    frames.setflags(write=False)
    return frames


def joint_limit_violations(hand_pose: Any, side: Side, rig: HandRig | None = None) -> Any:
    """(..., 15, 3) violations (radians, ≥ 0) of (..., 45) ``hand_pose``; numpy or torch (differentiable)."""
    return pose_violation(hand_pose, joint_frames(side, rig), side)


@dataclass(frozen=True)
class LimitMetrics:
    """Per pose (arrays of the input's batch shape), degrees."""

    max_violation_deg: np.ndarray    # worst angle outside its range
    total_violation_deg: np.ndarray  # sum over the 45 angles

    def summary(self, tolerance_deg: float = 1.0) -> dict[str, float]:
        """Means over poses, and the share of poses with a joint more than ``tolerance_deg`` out."""
        return {
            "limit_violation_max_deg": float(np.mean(self.max_violation_deg)),
            "limit_violation_total_deg": float(np.mean(self.total_violation_deg)),
            "limit_violating_fraction": float(np.mean(self.max_violation_deg > tolerance_deg)),
        }


def joint_limit_metrics(hand_pose: Any, side: Side, rig: HandRig | None = None) -> LimitMetrics:
    """Violation statistics of (..., 45) poses of one side."""
    violation = np.degrees(as_numpy(joint_limit_violations(as_numpy(hand_pose).astype(np.float64), side, rig)))
    return LimitMetrics(max_violation_deg=violation.max(axis=(-2, -1)), total_violation_deg=violation.sum(axis=(-2, -1)))
