"""The conditioning images of hand image generation, with their labels, from hand parameters + a camera.

Everything is drawn by ``handforge.render`` with the labelled export's camera model and label code
(``handforge.export.labels.hand_labels``), so a generated image's labels are the export's labels of
the same scene, pixel for pixel.

Global images are the camera's full view. Local images are AttentionHand's "cropped and resized"
hand box (Park et al., ECCV 2024, arXiv:2407.18034, Sec. 3.1): rather than resampling the global
pixels, we render through the crop's own camera (a crop and resize of a pinhole image is a new K:
u' = (u − x0)·s), which gives the same image at full sharpness and exact labels in crop pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from handforge_shared.poses import HandPose
from handforge_shared.skeleton import SIDES

from handforge.render.camera import Camera

CONTROL_KINDS = ("mesh", "depth", "normals", "skeleton", "openpose")
LOCAL_MARGIN = 0.15  # of the hands' box size on each side: the crop keeps a little context
DEPTH_FAR_LEVEL = 0.25  # the farthest hand pixel's brightness in the depth image (background 0, nearest 1)


@dataclass
class Conditioning:
    """One view: control images (H, W, 3) uint8 by kind, the raw GL buffers, and the export's labels."""

    camera: Camera
    images: dict[str, np.ndarray]
    depth: np.ndarray        # (H, W) float32 camera z in metres, 0 on the background
    normals: np.ndarray      # (H, W, 3) float32 camera-frame unit normals
    hands: dict[str, dict[str, Any]] = field(default_factory=dict)  # side → hand_labels(...)

    @property
    def box(self) -> list[float] | None:
        """The hands' whole projected box [x, y, w, h] (occluded parts too), clipped to the image."""
        from handforge.export.labels import union_box

        return union_box([h["bbox_projected"] for h in self.hands.values()])


def depth_image(depth: np.ndarray) -> np.ndarray:
    """ControlNet-style depth image (as MiDaS gives: brighter is nearer): inverse depth scaled from
    DEPTH_FAR_LEVEL at the farthest hand pixel to 1 at the nearest, black background."""
    hand = depth > 0
    out = np.zeros(depth.shape, np.float32)
    if hand.any():
        inverse = 1.0 / depth[hand]
        lo, hi = inverse.min(), inverse.max()
        scaled = (inverse - lo) / (hi - lo) if hi > lo else np.ones_like(inverse)
        out[hand] = DEPTH_FAR_LEVEL + (1.0 - DEPTH_FAR_LEVEL) * scaled
    return np.repeat(np.round(out * 255).astype(np.uint8)[..., None], 3, axis=2)


def normal_image(normals: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Normal map in the usual image convention (red right, green up, blue towards the viewer; a
    surface facing the camera is (128, 128, 255)), black background. Our camera frame is x right,
    y down, z forward, hence the flips."""
    rgb = (normals * np.array([1.0, -1.0, -1.0], np.float32) + 1.0) * 0.5
    rgb[depth <= 0] = 0.0
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def posed_meshes(model, hands: Mapping[str, HandPose]) -> dict[str, dict[str, Any]]:
    """Each side's vertices, keypoints, joints and faces for one pose, as the export computes them."""
    from handforge.hands.posed import posed_hand

    out = {side: posed_hand(model, side, hands[side]) for side in SIDES if hands.get(side) is not None}
    if not out:
        raise ValueError("no hands to condition on: give the pose parameters of at least one hand")
    return out


def render_view(camera: Camera, meshes: Mapping[str, Mapping[str, Any]], gl=None) -> Conditioning:
    """Render the control images of ``meshes`` (``posed_meshes``) through ``camera`` and label them."""
    from handforge.export.labels import hand_labels
    from handforge.render.gl import renderer
    from handforge.render.overlay import label_keypoints, openpose_hands_image, skeleton_image

    gl = gl or renderer()
    sides = list(meshes)
    images = gl.render(camera, [(meshes[s]["vertices"], meshes[s]["faces"]) for s in sides], normals=True)
    labels = {s: hand_labels(s, k, meshes[s]["pose"], meshes[s]["keypoints"], meshes[s]["root"],
                             meshes[s]["vertices"], camera, images) for k, s in enumerate(sides)}
    keypoints = label_keypoints(labels)
    return Conditioning(camera=camera, depth=images.depth, normals=images.normals, hands=labels,
                        images={"mesh": images.mesh, "depth": depth_image(images.depth),
                                "normals": normal_image(images.normals, images.depth),
                                "skeleton": skeleton_image(camera.width, camera.height, keypoints),
                                "openpose": openpose_hands_image(camera.width, camera.height, keypoints)})


def local_box(box: list[float], width: int, height: int, margin: float = LOCAL_MARGIN) -> list[float]:
    """The crop [x, y, w, h] around ``box``: grown by ``margin`` on each side, then widened to the
    output's aspect ratio (width / height) about its centre, so resizing it does not distort."""
    _, _, w, h = box
    w, h = max(w, 1.0) * (1 + 2 * margin), max(h, 1.0) * (1 + 2 * margin)
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    aspect = width / height
    w, h = max(w, h * aspect), max(h, w / aspect)
    return [cx - w / 2, cy - h / 2, w, h]


def crop_camera(camera: Camera, crop: list[float], width: int, height: int) -> Camera:
    """The camera whose image is ``camera``'s image cropped to ``crop`` and resized to width × height."""
    x0, y0, w, h = crop
    scale = np.diag([width / w, height / h, 1.0])
    shift = np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0], [0.0, 0.0, 1.0]])
    return Camera(scale @ shift @ camera.K, camera.R, camera.t, width, height)


@dataclass
class HandConditioning:
    """The global view and, when hands are in view, the local view of the hands' box."""

    global_view: Conditioning
    local_view: Conditioning | None
    crop: list[float] | None  # the local view's box in global pixels [x, y, w, h]


def condition(model, hands: Mapping[str, HandPose], camera: Camera, local_size: tuple[int, int] | None = None,
              gl=None) -> HandConditioning:
    """Global and local conditioning of ``hands`` (side → HandPose of hand model ``model``) seen by
    ``camera``; the local view is ``local_size`` (default: the camera's size)."""
    meshes = posed_meshes(model, hands)
    view = render_view(camera, meshes, gl)
    box = view.box
    if box is None or box[2] <= 0 or box[3] <= 0:
        return HandConditioning(view, None, None)
    width, height = local_size or (camera.width, camera.height)
    crop = local_box(box, width, height)
    return HandConditioning(view, render_view(crop_camera(camera, crop, width, height), meshes, gl), crop)


__all__ = ["CONTROL_KINDS", "Conditioning", "HandConditioning", "condition", "crop_camera", "depth_image",
           "local_box", "normal_image", "posed_meshes", "render_view"]
