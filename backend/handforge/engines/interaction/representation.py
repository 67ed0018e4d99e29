"""Single-hand vectors of a two-hand interaction, and back (InterHandGen, Lee et al., CVPR 2024,
arXiv:2403.17422, §3.1).

A pair is put in its *canonical* form first: the anchor is the left hand. A pair whose anchor is
the right hand is mirrored through x = 0 (``mirror_arrays``), which swaps the sides. Each hand is
then one vector of ``VECTOR_DIM`` = 64 numbers:

    [ pose 45 | shape 10 | root 6D 6 | translation 3 ]

    pose         the 15 finger joints as axis-angles, in right-hand space: the anchor (a left hand)
                 is mirrored, so one denoiser learns one hand's articulation. Axis-angle and not 6D
                 or MANO PCA: finger joints stay well inside ±π (the joint limits), where axis-angle
                 is continuous; it is the rig's own convention (no conversion error); and it works
                 for the open hand, which has no PCA basis (InterHandGen uses MANO PCA).
    shape        the 10 betas
    root 6D      anchor: the identity (it defines the frame); other hand: its wrist rotation in
                 the anchor's wrist frame, R_a⁻¹ R_o, as 6D (continuous over all rotations)
    translation  anchor: 0; other hand: its wrist joint in the anchor's wrist frame,
                 R_a⁻¹ (p_o − p_a), metres. Wrist joints rather than InterHandGen's middle MCP:
                 they do not move with the fingers, and ``transl`` follows from them per hand model.

Wrist joints come from ``WristJoints``: the rest wrist joint is linear in the betas on every hand
model (a linear shape space and a linear joint regressor), so it is two small arrays per side.
"""

from __future__ import annotations

from typing import Mapping

import torch

from handforge.hands.wrists import WristJoints
from handforge_shared.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    mirror_axis_angle,
    mirror_points,
    rot6d_to_matrix,
)
from handforge_shared.skeleton import SIDES, Side

POSE, SHAPE, ROOT, TRANSL = slice(0, 45), slice(45, 55), slice(55, 61), slice(61, 64)
VECTOR_DIM = 64
ANCHOR_FREE = slice(0, 55)      # the anchor's root and translation are fixed: only these are learned
ANCHOR, OTHER = "left", "right"  # sides in the canonical form
IDENTITY_6D = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
FIELDS = ("global_orient", "hand_pose", "betas", "transl")


def canonical(pair: Mapping[str, torch.Tensor], anchor_side: Side) -> dict[str, torch.Tensor]:
    """Per side ``{side: {field: (B, n)}}`` → the canonical pair (anchor on the left)."""
    if anchor_side == ANCHOR:
        return {side: dict(pair[side]) for side in SIDES}
    return {side: mirror_hand(pair[other]) for side, other in zip(SIDES, reversed(SIDES))}


def mirror_hand(hand: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One hand's parameters mirrored through x = 0 (it becomes the other side's hand)."""
    pose = hand["hand_pose"]
    return {"global_orient": mirror_axis_angle(hand["global_orient"]),
            "hand_pose": mirror_axis_angle(pose.reshape(*pose.shape[:-1], 15, 3)).reshape(pose.shape),
            "betas": hand["betas"], "transl": mirror_points(hand["transl"])}


def encode(pair: Mapping[str, Mapping[str, torch.Tensor]], wrists: WristJoints) -> tuple[torch.Tensor, torch.Tensor]:
    """A canonical pair → (anchor, other) vectors (B, 64) each, not normalised."""
    a, o = pair[ANCHOR], pair[OTHER]
    batch = a["global_orient"].shape[0]
    rot_a, rot_o = axis_angle_to_matrix(a["global_orient"]), axis_angle_to_matrix(o["global_orient"])
    wrist_a = wrists(ANCHOR, a["betas"]) + a["transl"]
    wrist_o = wrists(OTHER, o["betas"]) + o["transl"]
    relative = rot_a.transpose(-1, -2) @ rot_o
    offset = (rot_a.transpose(-1, -2) @ (wrist_o - wrist_a)[..., None])[..., 0]
    anchor_pose = mirror_hand(a)["hand_pose"]
    fixed = a["betas"].new_tensor(IDENTITY_6D + (0.0, 0.0, 0.0)).expand(batch, 9)
    anchor = torch.cat([anchor_pose, a["betas"], fixed], dim=-1)
    other = torch.cat([o["hand_pose"], o["betas"], matrix_to_rot6d(relative), offset], dim=-1)
    return anchor, other


def anchor_frame(anchor: Mapping[str, torch.Tensor], wrists: WristJoints) -> tuple[torch.Tensor, torch.Tensor]:
    """The canonical anchor's wrist rotation (B, 3, 3) and wrist joint (B, 3)."""
    return axis_angle_to_matrix(anchor["global_orient"]), wrists(ANCHOR, anchor["betas"]) + anchor["transl"]


def decode_anchor(vector: torch.Tensor, wrists: WristJoints) -> dict[str, torch.Tensor]:
    """A sampled anchor vector → canonical left-hand parameters: identity wrist rotation, wrist at the origin."""
    pose = vector[..., POSE]
    betas = vector[..., SHAPE]
    hand = mirror_hand({"global_orient": torch.zeros_like(vector[..., :3]), "hand_pose": pose, "betas": betas,
                        "transl": torch.zeros_like(vector[..., :3])})
    hand["transl"] = -wrists(ANCHOR, betas)
    return hand


def decode_other(vector: torch.Tensor, rotation: torch.Tensor, wrist: torch.Tensor, wrists: WristJoints,
                 betas: torch.Tensor | None = None, mirror: bool = False) -> dict[str, torch.Tensor]:
    """The other hand's vector → its parameters, placed from the canonical anchor's wrist
    ``rotation`` (B, 3, 3) and ``wrist`` joint (B, 3). ``betas`` replaces the vector's shape (e.g.
    the anchor's, for a MANO hand whose shape space the model never saw). ``mirror``: the pair was
    mirrored into its canonical form, so the hand goes back as a left hand (``transl`` from the
    left side's own wrist joint: MANO's left hand is not exactly the mirrored right one).
    Differentiable."""
    betas = vector[..., SHAPE] if betas is None else betas
    rot = rotation @ rot6d_to_matrix(vector[..., ROOT])
    position = wrist + (rotation @ vector[..., TRANSL][..., None])[..., 0]
    orient, pose = matrix_to_axis_angle(rot), vector[..., POSE]
    if mirror:
        orient, position = mirror_axis_angle(orient), mirror_points(position)
        pose = mirror_axis_angle(pose.reshape(*pose.shape[:-1], 15, 3)).reshape(pose.shape)
    return {"global_orient": orient, "hand_pose": pose, "betas": betas,
            "transl": position - wrists(ANCHOR if mirror else OTHER, betas)}


def pair_from_batch(batch: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """A ``handforge.datasets`` frame batch (fields (B, 2, n), hand axis left, right) → per side dicts."""
    return {side: {f: batch[f][:, h].float() for f in FIELDS} for h, side in enumerate(SIDES)}


__all__ = ["ANCHOR", "ANCHOR_FREE", "FIELDS", "OTHER", "POSE", "ROOT", "SHAPE", "TRANSL", "VECTOR_DIM", "WristJoints",
           "anchor_frame", "canonical", "decode_anchor", "decode_other", "encode", "mirror_hand", "pair_from_batch"]
