"""The motion engine's representation of two-hand motion, and its conversions to and from the rigs.

A documented variant of HandDiffuse's global representation (arXiv 2312.04867, "Motion
Representations for Interacting Hands"): rotations instead of joint positions, so that a sample
lands on the rigs without inverse kinematics, and joint positions computed from the hand model
for the losses (``kinematics.py``).

Per frame, per hand (left then right, ``HAND_AXIS``), 99 numbers:

    wrist rotation      6   6D rotation (Zhou et al., CVPR 2019) of ``global_orient``
    finger rotations   90   15 × 6D of ``hand_pose``, MANO joint order
    wrist translation   3   ``transl`` in metres minus the clip's ``origin``

so a frame is ``FRAME_DIM`` = 198 numbers and a motion (T, 198). ``origin`` (3,) is where the
canonical frame sits in the model frame: the mean of the observed wrist translations when there
are keys (the jobs), else the midpoint of the first frame's wrists (training windows). There is no
yaw normalisation: the corpus and the rigs share one up axis and the keys fix the heading anyway.
``betas`` are never generated: they come with the keys (or the training clip) and are carried
through unchanged, so the open hand and MANO, which share the pose space, use one model.

Keys are masked per *part*: ``PARTS`` = 17 per hand (0 wrist rotation, 1..15 finger joints, 16
wrist translation); ``part_mask_to_channels`` expands a (..., 2, 17) part mask to the 198 channels.

Conversions are exact up to float error: axis-angle → matrix → 6D keeps the first two rows of the
matrix, and 6D → matrix → axis-angle recovers the same rotation (angles in [0, π]; an axis-angle
with angle above π comes back as the equivalent one below it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from handforge_shared.poses import KEY_PARTS
from handforge_shared.rotations import axis_angle_to_rot6d, rot6d_to_axis_angle
from handforge_shared.skeleton import NUM_FINGER_JOINTS, SIDES

HAND_AXIS = SIDES                          # 0 = left, 1 = right
NUM_ROTATIONS = 1 + NUM_FINGER_JOINTS      # wrist + 15 finger joints
HAND_DIM = 6 * NUM_ROTATIONS + 3           # 99
FRAME_DIM = 2 * HAND_DIM                   # 198
PARTS = KEY_PARTS                          # 17 keyable parts per hand: wrist rotation, joints, translation
TRANSL_PART = NUM_ROTATIONS                # part 16 is the wrist translation
PART_NAMES = ("global_orient", *(f"joint{j}" for j in range(1, NUM_FINGER_JOINTS + 1)), "transl")


def part_channels() -> np.ndarray:
    """(198,): the flat part id (hand * 17 + part) of every channel."""
    ids = []
    for hand in range(2):
        for part in range(NUM_ROTATIONS):
            ids += [hand * PARTS + part] * 6
        ids += [hand * PARTS + TRANSL_PART] * 3
    return np.asarray(ids, dtype=np.int64)


PART_OF_CHANNEL = part_channels()
# (32, 6): the channels of each 6D rotation, left hand's wrist and finger joints, then the right's
ROTATION_CHANNELS = np.asarray([[hand * HAND_DIM + 6 * r + i for i in range(6)]
                                for hand in range(2) for r in range(NUM_ROTATIONS)], dtype=np.int64)


def part_mask_to_channels(part_mask: Any) -> Any:
    """A (..., 2, 17) bool part mask (numpy or torch) → the (..., 198) channel mask."""
    flat = part_mask.reshape(*part_mask.shape[:-2], 2 * PARTS)
    index = PART_OF_CHANNEL
    if not isinstance(flat, np.ndarray):
        import torch

        index = torch.as_tensor(index, device=flat.device)
    return flat[..., index]


def encode(global_orient: Any, hand_pose: Any, transl: Any, origin: Any) -> Any:
    """Rig parameters → motion.

    ``global_orient`` (..., 2, 3), ``hand_pose`` (..., 2, 45), ``transl`` (..., 2, 3) (numpy or
    torch, e.g. (T, 2, ...)), ``origin`` broadcastable to (..., 3) → (..., 198)."""
    lead = global_orient.shape[:-1]
    rotations = _cat([global_orient[..., None, :], hand_pose.reshape(*lead, NUM_FINGER_JOINTS, 3)], -2)
    rot6d = axis_angle_to_rot6d(rotations).reshape(*lead, 6 * NUM_ROTATIONS)
    origin = origin[..., None, :] if hasattr(origin, "shape") and origin.ndim >= 1 else origin
    per_hand = _cat([rot6d, transl - origin], -1)          # (..., 2, 99)
    return per_hand.reshape(*lead[:-1], FRAME_DIM)


def decode(motion: Any, origin: Any) -> dict[str, Any]:
    """Motion (..., 198) → ``global_orient`` (..., 2, 3), ``hand_pose`` (..., 2, 45), ``transl`` (..., 2, 3)."""
    per_hand = motion.reshape(*motion.shape[:-1], 2, HAND_DIM)
    lead = per_hand.shape[:-1]
    rot6d = per_hand[..., :6 * NUM_ROTATIONS].reshape(*lead, NUM_ROTATIONS, 6)
    axis_angle = rot6d_to_axis_angle(rot6d)
    origin = origin[..., None, :] if hasattr(origin, "shape") and origin.ndim >= 1 else origin
    return {"global_orient": axis_angle[..., 0, :],
            "hand_pose": axis_angle[..., 1:, :].reshape(*lead, 3 * NUM_FINGER_JOINTS),
            "transl": per_hand[..., 6 * NUM_ROTATIONS:] + origin}


def rotation_matrices(motion: Any) -> Any:
    """Motion (..., 198) → per hand the 16 local rotation matrices (..., 2, 16, 3, 3) (torch or numpy)."""
    from handforge_shared.rotations import rot6d_to_matrix

    per_hand = motion.reshape(*motion.shape[:-1], 2, HAND_DIM)
    rot6d = per_hand[..., :6 * NUM_ROTATIONS].reshape(*per_hand.shape[:-1], NUM_ROTATIONS, 6)
    return rot6d_to_matrix(rot6d)


def translations(motion: Any) -> Any:
    """Motion (..., 198) → the canonical wrist translations (..., 2, 3)."""
    return motion.reshape(*motion.shape[:-1], 2, HAND_DIM)[..., 6 * NUM_ROTATIONS:]


def first_frame_origin(transl: Any) -> Any:
    """The training windows' origin: the midpoint of the first frame's wrists (..., T, 2, 3) → (..., 3)."""
    return transl[..., 0, :, :].mean(-2)


def _cat(parts: list[Any], dim: int) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=dim)
    import torch

    return torch.cat(parts, dim=dim)


__all__ = ["FRAME_DIM", "HAND_AXIS", "HAND_DIM", "NUM_ROTATIONS", "PARTS", "PART_NAMES", "PART_OF_CHANNEL",
           "TRANSL_PART", "decode", "encode", "first_frame_origin", "part_mask_to_channels", "rotation_matrices",
           "translations"]
