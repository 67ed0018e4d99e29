"""2D keypoint-skeleton images and overlays (Pillow): one colour per finger, the left hand darker.

Keypoints are in the camera module's pixel coordinates (pixel centres at i + 0.5), as Pillow draws.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS

FINGER_COLOURS = {"thumb": (255, 64, 64), "index": (255, 200, 0), "middle": (64, 220, 64),
                  "ring": (0, 180, 255), "pinky": (200, 90, 255), "wrist": (255, 255, 255)}
SIDE_SHADE = {"right": 1.0, "left": 0.6}


def _colour(keypoint: int, side: str) -> tuple[int, int, int]:
    name = KEYPOINT_NAMES[keypoint].rstrip("1234")
    return tuple(int(c * SIDE_SHADE.get(side, 1.0)) for c in FINGER_COLOURS[name])


def draw_skeletons(image: Image.Image, hands: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   width: float | None = None) -> Image.Image:
    """Draw each hand's bones and keypoints onto ``image`` (changed in place and returned).
    ``hands``: side → ((21, 2) pixel coordinates, (21,) visibility); hidden keypoints are hollow."""
    draw = ImageDraw.Draw(image)
    line = width or max(1.0, min(image.size) / 128)
    for side, (points, visible) in hands.items():
        for k, parent in enumerate(KEYPOINT_PARENTS):
            if parent >= 0:
                draw.line([tuple(points[k]), tuple(points[parent])], fill=_colour(k, side), width=round(line))
        for k, (x, y) in enumerate(points):
            r = 1.5 * line
            box = (x - r, y - r, x + r, y + r)
            draw.ellipse(box, fill=_colour(k, side) if visible[k] else None, outline=_colour(k, side))
    return image


def skeleton_image(width: int, height: int, hands: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(H, W, 3) uint8: the keypoint skeletons on black (a pose-conditioning image)."""
    return np.asarray(draw_skeletons(Image.new("RGB", (width, height)), hands))
