"""The labels of one rendered sample, from the hand model's output, the camera and the GL buffers.

Coordinates: "world" is the hand model's frame (metres, where the pose parameters live);
"camera" is the OpenCV camera frame of ``handforge.render.camera``; 2D keypoints and boxes are in
its pixel coordinates (pixel centres at i + 0.5). Boxes are COCO's [x, y, width, height].
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from handforge.render.camera import Camera
from handforge.render.gl import GLImages
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from handforge_shared.poses import HandPose

# A keypoint is visible when the nearest surface at its pixel is its own hand's and lies at most
# this far in front of it: joints sit inside the skin (about 10 mm in a finger, 20 mm at the wrist),
# so a larger gap means another part of the hand (self-occlusion) covers it.
VISIBILITY_TOLERANCE_M = 0.02


def keypoint_pixels(camera: Camera, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``camera.project`` of the keypoints with a finite pixel for each: (0, 0) for one in the camera's plane (depth
    0, a camera placed on a joint), whose projection is infinite (it failed the sample on its JSON)."""
    uv, z = camera.project(keypoints)
    return np.where(np.isfinite(uv), uv, 0.0), z


def keypoint_visibility(camera: Camera, keypoints: np.ndarray, hand_index: int, images: GLImages,
                        tolerance: float = VISIBILITY_TOLERANCE_M) -> np.ndarray:
    """(21,) bool: in the image, in front of the camera, and not hidden (see VISIBILITY_TOLERANCE_M): its
    pixel shows its hand no more than ``tolerance`` in front of it, or, for a point on its hand's outline
    (a fingertip keypoint is a vertex of the tip's skin), its pixel shows nothing in front of it and a pixel
    next to it shows its hand. A tip on the outline falls on the background about half the time: 12–34 %
    of in-image fingertips were labelled hidden, plainly in view."""
    uv, z = keypoint_pixels(camera, keypoints)
    col, row = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)  # the pixel holding the point
    inside = (z > 0) & (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    col, row = np.clip(col, 0, camera.width - 1), np.clip(row, 0, camera.height - 1)
    own = hand_index + 1
    here, depth = images.instance[row, col], images.depth[row, col]
    seen = (here == own) & (depth >= z - tolerance)
    # nothing in front at its pixel: the background, an occluder (e.g. a forearm) or the other hand behind the
    # point (an occluder's pixel is background in the images; its depth is kept apart)
    occluder = images.occluder_depth[row, col] if images.occluder_depth is not None else np.zeros_like(depth)
    clear = ((here == 0) & ((occluder == 0) | (occluder > z))) | ((here != own) & (depth > z))
    beside = np.zeros_like(seen)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            r, c = np.clip(row + dr, 0, camera.height - 1), np.clip(col + dc, 0, camera.width - 1)
            beside |= (images.instance[r, c] == own) & (images.depth[r, c] >= z - tolerance)
    return inside & (seen | (clear & beside))


def mask_box(mask: np.ndarray) -> list[float] | None:
    """The tight [x, y, w, h] box of a mask's pixels (whole pixels), or None when it is empty."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    if rows.size == 0:
        return None
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1 - cols[0]), float(rows[-1] + 1 - rows[0])]


def union_box(boxes: list[list[float] | None]) -> list[float] | None:
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return None
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return [x0, y0, x1 - x0, y1 - y0]


def moved_pose(pose: HandPose, root_rest: np.ndarray, rotation: np.ndarray, translation: np.ndarray) -> HandPose:
    """The same hand moved rigidly by x → rotation·x + translation: the wrist rotation turned and the
    translation set so the wrist (``root_rest`` + transl; rotation is about it) lands where it goes."""
    rot = rotation @ axis_angle_to_matrix(np.asarray(pose.global_orient, dtype=np.float64))
    transl = rotation @ (root_rest + pose.transl) + translation - root_rest
    return pose.replace(global_orient=matrix_to_axis_angle(rot), transl=transl)


def pose_in_camera(pose: HandPose, root_rest: np.ndarray, camera: Camera) -> dict[str, list[float]]:
    """The same hand's parameters in the camera frame."""
    moved = moved_pose(pose, root_rest, camera.R, camera.t)
    return {"global_orient": np.asarray(moved.global_orient).tolist(), "hand_pose": np.asarray(pose.hand_pose).tolist(),
            "betas": np.asarray(pose.betas).tolist(), "transl": np.asarray(moved.transl).tolist()}


def hand_labels(side: str, hand_index: int, pose: HandPose, keypoints: np.ndarray, root: np.ndarray,
                vertices: np.ndarray, camera: Camera, images: GLImages) -> dict[str, Any]:
    """One hand's labels: keypoints (world, camera, pixels, visibility), parameters, boxes. A keypoint in the
    camera's plane has pixel (0, 0), as COCO writes a keypoint not labelled (``keypoint_pixels``); one behind it
    keeps its mirrored pixel. Neither is visible."""
    uv, _ = keypoint_pixels(camera, keypoints)
    visible = keypoint_visibility(camera, keypoints, hand_index, images)
    mask = images.mask(hand_index)
    box = mask_box(mask)
    vuv, vz = camera.project(vertices)
    projected, in_front = None, vuv[vz > 0]
    if len(in_front):
        lo = np.clip(in_front.min(0), 0, [camera.width, camera.height])
        hi = np.clip(in_front.max(0), 0, [camera.width, camera.height])
        if (hi > lo).all():  # else the hand is wholly outside the image: no box, as for bbox
            projected = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
    if (vz <= 0).any():
        # through the camera plane: its part just in front of it projects far out, where no vertex in front does
        # (the vertices' box left out what the mask showed, or was None with 86 pixels in view); it holds them.
        # A hidden part there may still be left out: the vertices alone do not say where the mesh crosses the plane
        projected = union_box([projected, box])
    root_rest = root - pose.transl
    return {
        "side": side,
        "keypoints_world": keypoints.tolist(),
        "keypoints_camera": camera.to_camera(keypoints).tolist(),
        "keypoints_2d": uv.tolist(),
        "visible": visible.astype(int).tolist(),
        "params_world": pose.to_dict(),
        "params_camera": pose_in_camera(pose, root_rest, camera),
        "bbox": box,                       # visible pixels
        "bbox_projected": projected,       # the whole hand (occluded parts too), clipped to the image
        "mask_pixels": int(mask.sum()),
    }


def label_poses(labels: Mapping[str, Any]) -> dict[str, HandPose]:
    """The hands' poses in a sample's labels (each hand's ``params_world``, as ``hand_labels`` writes it; a
    null hand left out): the one reader of them. A ValueError says what in them is wrong."""
    hands = labels.get("hands") if isinstance(labels, Mapping) else None
    if not isinstance(hands, Mapping):
        raise ValueError("the labels have no hands object")
    poses = {}
    for side, hand in hands.items():
        if hand is None:
            continue
        if not isinstance(hand, Mapping) or "params_world" not in hand:
            raise ValueError(f"hands.{side} has no params_world")
        try:
            poses[side] = HandPose.from_dict(hand["params_world"])
        except (ValueError, TypeError) as exc:  # (PoseFormatError is a ValueError)
            raise ValueError(f"hands.{side}.params_world: {exc}") from None
        if poses[side].batch_shape:  # a sample shows one pose per hand: a batch of them failed deep inside its users
            raise ValueError(f"hands.{side}.params_world: holds a batch of poses (global_orient of shape "
                             f"{poses[side].global_orient.shape}); a sample's labels have one pose per hand")
    return poses


def hand_type(hands: Mapping[str, Mapping[str, Any]]) -> str:
    """InterHand2.6M's ``hand_type``: 'interacting' when both hands show, else the one that does."""
    shown = [s for s, h in hands.items() if h["mask_pixels"] > 0]
    return "interacting" if len(shown) == 2 else (shown[0] if shown else "none")
