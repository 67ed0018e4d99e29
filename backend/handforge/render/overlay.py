"""2D keypoint-skeleton images and overlays (Pillow): one colour per finger, the left hand darker;
and hands drawn as OpenPose's hand annotator draws them, for ControlNets trained on its images.

Keypoints are in the camera module's pixel coordinates (pixel centres at i + 0.5), as Pillow draws.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from PIL import Image, ImageDraw

from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS

FINGER_COLOURS = {"thumb": (255, 64, 64), "index": (255, 200, 0), "middle": (64, 220, 64),
                  "ring": (0, 180, 255), "pinky": (200, 90, 255), "wrist": (255, 255, 255)}
SIDE_SHADE = {"right": 1.0, "left": 0.6}


def _colour(keypoint: int, side: str) -> tuple[int, int, int]:
    name = KEYPOINT_NAMES[keypoint].rstrip("1234")
    return tuple(int(c * SIDE_SHADE.get(side, 1.0)) for c in FINGER_COLOURS[name])


def label_keypoints(hands: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The drawing functions' input from a sample's hand labels (``export.labels.hand_labels``): side →
    ((21, 2) pixels, (21,) visibility), NaN for a keypoint behind the camera (its projection is mirrored
    and may fall inside the image: it was drawn there, bones across the frame)."""
    out = {}
    for side, hand in hands.items():
        points = np.array(hand["keypoints_2d"], np.float64)
        points[np.array(hand["keypoints_camera"], np.float64)[:, 2] <= 0] = np.nan
        out[side] = (points, np.array(hand["visible"], bool))
    return out


def _shown(*points: np.ndarray) -> bool:
    return all(np.isfinite(p).all() for p in points)


def _clipped(a: np.ndarray, b: np.ndarray, size: tuple[int, int], margin: float) -> list[tuple[float, float]] | None:
    """The part of segment a-b inside the image grown by ``margin`` (Liang-Barsky), or None if none is.
    Pillow casts coordinates to C ints: a point near the camera plane (beyond 2^31 px) wrapped around."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = b - a
    lo, hi = 0.0, 1.0
    for axis, extent in enumerate(size):
        for p, q in ((-d[axis], a[axis] + margin), (d[axis], extent + margin - a[axis])):
            if p == 0:
                if q < 0:
                    return None
            elif p < 0:
                lo = max(lo, q / p)
            else:
                hi = min(hi, q / p)
    if lo > hi:
        return None
    return [tuple(a + lo * d), tuple(a + hi * d)]


def _line(draw: ImageDraw.ImageDraw, size: tuple[int, int], a: np.ndarray, b: np.ndarray, fill, width: int) -> None:
    """A bone from a to b, clipped to the image of ``size`` (its square ends outside)."""
    segment = _clipped(a, b, size, width + 2.0)
    if segment is not None:
        draw.line(segment, fill=fill, width=width)


def _on_image(x: float, y: float, r: float, size: tuple[int, int]) -> bool:
    return -r <= x <= size[0] + r and -r <= y <= size[1] + r


def draw_skeletons(image: Image.Image, hands: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   width: float | None = None) -> Image.Image:
    """Draw each hand's bones and keypoints onto ``image`` (changed in place and returned).
    ``hands``: side → ((21, 2) pixel coordinates, (21,) visibility); hidden keypoints are hollow, NaN
    ones (behind the camera) and their bones are not drawn."""
    draw = ImageDraw.Draw(image)
    line = width or max(1.0, min(image.size) / 128)
    for side, (points, visible) in hands.items():
        for k, parent in enumerate(KEYPOINT_PARENTS):
            if parent >= 0 and _shown(points[k], points[parent]):
                _line(draw, image.size, points[k], points[parent], _colour(k, side), round(line))
        r = 1.5 * line
        for k, (x, y) in enumerate(points):
            if not _shown(points[k]) or not _on_image(x, y, r, image.size):
                continue
            box = (x - r, y - r, x + r, y + r)
            draw.ellipse(box, fill=_colour(k, side) if visible[k] else None, outline=_colour(k, side))
    return image


def skeleton_image(width: int, height: int, hands: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(H, W, 3) uint8: the keypoint skeletons on black (a pose-conditioning image)."""
    return np.asarray(draw_skeletons(Image.new("RGB", (width, height)), hands))


# OpenPose's hand keypoints: 0 the wrist, then per finger (thumb..pinky) four joints from the base to the
# tip; ours (InterHand2.6M's) list each finger tip first and the wrist last (handforge_shared.skeleton).
OPENPOSE_FROM_OURS = [20, *(4 * finger + 3 - j for finger in range(5) for j in range(4))]
OPENPOSE_EDGES = [(0 if j == 0 else 1 + 4 * finger + j - 1, 1 + 4 * finger + j) for finger in range(5) for j in range(4)]


def openpose_hands_image(width: int, height: int, hands: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(H, W, 3) uint8: the hands as the OpenPose hand annotator of ControlNet's openpose models draws
    them (Zhang et al., "Adding Conditional Control to Text-to-Image Diffusion Models", ICCV 2023;
    Cao et al., OpenPose, TPAMI 2019): on black, the 20 bones each in its own hue around the colour
    wheel (bone i of 20 at hue i / 20), 2 px at 512², the 21 keypoints as blue dots of radius 4, both
    hands alike. Hidden keypoints are drawn too: the annotator saw whole hands."""
    import colorsys

    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    scale = min(width, height) / 512
    line, radius = max(1, round(2 * scale)), max(1.0, 4 * scale)
    for points, _ in hands.values():
        ordered = np.asarray(points, np.float64)[OPENPOSE_FROM_OURS]
        for i, (a, b) in enumerate(OPENPOSE_EDGES):
            colour = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(i / len(OPENPOSE_EDGES), 1.0, 1.0))
            if _shown(ordered[a], ordered[b]):
                _line(draw, image.size, ordered[a], ordered[b], colour, line)
        for x, y in ordered[np.isfinite(ordered).all(axis=1)]:
            if _on_image(x, y, radius, image.size):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(0, 0, 255))
    return np.asarray(image)
