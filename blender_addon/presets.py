"""The preset menu: every named pose of the shared pose library (``shared/pose_library``).

A preset is a set of anatomical joint angles; it is put onto each rig through that rig's own
joint frames (read from its bones), so it means the same on the open hand and on MANO.
"""

from __future__ import annotations

import numpy as np

from . import pose as pose_conv
from handforge_shared import anatomy, pose_library


def label(name: str) -> str:
    return name.replace("_", " ").title().replace("Ok", "OK")


# Built once: Blender keeps the strings of dynamic enum items only while Python holds them.
_ITEMS = [(name, label(name), f"{pose_library.spec(name).category}: {pose_library.describe(name)}", i)
          for i, name in enumerate(pose_library.names())]


def enum_items(self, context):
    return _ITEMS


def hand_pose(name: str, arm_obj) -> np.ndarray:
    """(45,) hand_pose of preset ``name`` on this rig (its side and its joint frames)."""
    try:
        angles = pose_library.anatomical(name)
    except KeyError as exc:
        raise ValueError(str(exc).strip("'\"")) from None
    return anatomy.anatomical_to_hand_pose(angles, pose_conv.bone_frames(arm_obj), arm_obj.handforge.side)
