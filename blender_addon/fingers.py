"""Per-finger curl and spread sliders: anatomical angles (``shared/anatomy``) onto the finger bones."""

from __future__ import annotations

import numpy as np

from . import pose as pose_conv
from handforge_shared import anatomy
from handforge_shared.skeleton import FINGER_JOINTS, FINGERS

_syncing = False  # set while sliders are written from the pose, so their callbacks do nothing


def apply_finger(arm_obj, finger: str) -> None:
    """Pose one finger from its curl and spread sliders (other fingers and the wrist stay)."""
    if _syncing:
        return
    props = arm_obj.handforge
    angles = anatomy.curl_spread_angles({finger: getattr(props, f"curl_{finger}")},
                                        {finger: getattr(props, f"spread_{finger}")})
    frames = pose_conv.bone_frames(arm_obj)
    world = anatomy.anatomical_to_matrix(angles, frames, props.side)  # (15, 3, 3)
    local = np.concatenate([np.eye(3)[None], pose_conv.local_from_world(frames[1:], world)])
    pose_conv.write_local(arm_obj, local, None, joints=list(FINGER_JOINTS[finger]))
    from . import rig

    rig.update_correctives(arm_obj)


def sync_sliders(arm_obj) -> None:
    """Set the sliders to the curl and spread that best describe the current finger pose."""
    global _syncing
    props = arm_obj.handforge
    pose = pose_conv.read_pose(arm_obj, visual=False)
    angles = anatomy.hand_pose_to_anatomical(pose.hand_pose, pose_conv.bone_frames(arm_obj), props.side)
    _syncing = True
    try:
        for finger in FINGERS:
            rows = [j - 1 for j in FINGER_JOINTS[finger]]
            shares = anatomy.CURL_SHARE["thumb" if finger == "thumb" else "finger"]
            full = np.array([s * anatomy.LIMITS_RAD[r, 0, 1] for r, s in zip(rows, shares)])
            curl = float(np.clip(np.dot(angles[rows, 0], full) / np.dot(full, full), 0.0, 1.0))
            lo, hi = anatomy.LIMITS_RAD[rows[0], 1]
            direction = -1.0 if finger in ("ring", "pinky") else 1.0
            abd = angles[rows[0], 1]  # inverse of curl_spread_angles' abduction mapping
            spread = direction * abd / (hi if abd > 0 else -lo)
            setattr(props, f"curl_{finger}", curl)
            setattr(props, f"spread_{finger}", float(np.clip(spread, -1.0, 1.0)))
    finally:
        _syncing = False
