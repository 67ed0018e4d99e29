"""Per-finger curl and spread sliders: anatomical angles (``handforge_shared.anatomy``, which also
holds their inverse) onto the finger bones, and back."""

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
    pose_conv.update_correctives(arm_obj)


def sync_sliders(arm_obj) -> None:
    """Set the sliders to the curl and spread that best describe the current finger pose."""
    global _syncing
    props = arm_obj.handforge
    pose = pose_conv.read_pose(arm_obj, visual=False)
    angles = anatomy.hand_pose_to_anatomical(pose.hand_pose, pose_conv.bone_frames(arm_obj), props.side)
    curl, spread = anatomy.curl_spread_of(angles)
    _syncing = True
    try:
        for finger in FINGERS:
            setattr(props, f"curl_{finger}", curl[finger])
            setattr(props, f"spread_{finger}", spread[finger])
    finally:
        _syncing = False
