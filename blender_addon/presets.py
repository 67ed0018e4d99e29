"""Named hand poses for the preset menu: all of them come from ``shared/pose_library``."""

from __future__ import annotations

import numpy as np

_ITEMS: list = []


def enum_items(self, context):
    return _ITEMS


def hand_pose(name: str, side: str) -> np.ndarray:
    raise ValueError("the pose library is not available in this build")
