"""The motion engine's representation of two-hand motion, and its conversions to and from the rigs.

A documented variant of HandDiffuse's global representation (arXiv 2312.04867, "Motion
Representations for Interacting Hands"): rotations instead of joint positions, so that a sample
lands on the rigs without inverse kinematics, and joint positions computed from the hand model
for the losses (``kinematics.py``).

Per frame, per hand (left then right, ``HAND_AXIS``), 99 numbers:

    wrist rotation      6   6D rotation (Zhou et al., CVPR 2019) of ``global_orient``
    finger rotations   90   15 × 6D of ``hand_pose``, MANO joint order
    wrist translation   3   where the wrist joint is, relative to the clip's ``origin``, in
                            the open hand's ``transl`` at its mean shape (below), metres

so a frame is ``FRAME_DIM`` = 198 numbers and a motion (T, 198). ``betas`` are never generated: they
come with the keys (or the training clip) and are carried through unchanged, so the open hand and
MANO, which share the pose space, use one model.

The translation channels are model-independent. ``transl`` alone does not say where a hand is: the
wrist joint sits at ``rest wrist(model, side, betas) + transl`` (``handforge.hands.wrists``), and the
rest wrist is some 1.6 cm from the origin on the open hand, some 9.6 cm on MANO (x mirrored between
the sides), and moves with the betas; the same ``transl`` put two MANO hands' wrists some 19 cm
further apart than two open hands'. So each hand's channels hold its wrist joint, expressed as the
``transl`` the open hand at mean shape would need to put its wrist there:

    channel = transl + wrist_shift − origin,   wrist_shift = rest wrist(model, side, betas)
                                                             − rest wrist(open hand, side, 0)

and ``decode`` subtracts the same shift, so a motion lands on any hand model and betas with its
wrists at the same places. The open hand at mean shape has a zero shift: its channels are its
``transl`` minus the origin, as the shipped checkpoint was trained (on open-hand ``transl``), so one
model serves both hand models and the checkpoint stays valid without retraining. ``origin`` (3,) is
where the canonical frame sits, in the same terms: the mean of the keyed ``transl + wrist_shift``
when there are keys (the jobs), else the midpoint of the first frame's (training windows). There is
no yaw normalisation: the corpus and the rigs share one up axis and the keys fix the heading anyway.

Keys are masked per *part*: ``PARTS`` = 17 per hand (0 wrist rotation, 1..15 finger joints, 16
wrist translation); ``part_mask_to_channels`` expands a (..., 2, 17) part mask to the 198 channels.

Conversions are exact up to float error: axis-angle → matrix → 6D keeps the first two rows of the
matrix, and 6D → matrix → axis-angle recovers the same rotation (angles in [0, π]; an axis-angle
with angle above π comes back as the equivalent one below it).
"""

from __future__ import annotations

from functools import lru_cache
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


def encode(global_orient: Any, hand_pose: Any, transl: Any, origin: Any, wrist_shift: Any) -> Any:
    """Rig parameters → motion.

    ``global_orient`` (..., 2, 3), ``hand_pose`` (..., 2, 45), ``transl`` (..., 2, 3) (numpy or
    torch, e.g. (T, 2, ...)), ``origin`` broadcastable to (..., 3), ``wrist_shift`` to (..., 2, 3)
    (``wrist_shift``: zeros for the open hand at mean shape) → (..., 198)."""
    lead = global_orient.shape[:-1]
    rotations = _cat([global_orient[..., None, :], hand_pose.reshape(*lead, NUM_FINGER_JOINTS, 3)], -2)
    rot6d = axis_angle_to_rot6d(rotations).reshape(*lead, 6 * NUM_ROTATIONS)
    origin = origin[..., None, :] if hasattr(origin, "shape") and origin.ndim >= 1 else origin
    per_hand = _cat([rot6d, transl + wrist_shift - origin], -1)          # (..., 2, 99)
    return per_hand.reshape(*lead[:-1], FRAME_DIM)


def decode(motion: Any, origin: Any, wrist_shift: Any) -> dict[str, Any]:
    """Motion (..., 198) → ``global_orient`` (..., 2, 3), ``hand_pose`` (..., 2, 45), ``transl`` (..., 2, 3)
    of the hand model and betas whose ``wrist_shift`` (broadcastable to (..., 2, 3)) is given."""
    per_hand = motion.reshape(*motion.shape[:-1], 2, HAND_DIM)
    lead = per_hand.shape[:-1]
    rot6d = per_hand[..., :6 * NUM_ROTATIONS].reshape(*lead, NUM_ROTATIONS, 6)
    axis_angle = rot6d_to_axis_angle(rot6d)
    origin = origin[..., None, :] if hasattr(origin, "shape") and origin.ndim >= 1 else origin
    return {"global_orient": axis_angle[..., 0, :],
            "hand_pose": axis_angle[..., 1:, :].reshape(*lead, 3 * NUM_FINGER_JOINTS),
            "transl": per_hand[..., 6 * NUM_ROTATIONS:] + origin - wrist_shift}


@lru_cache(maxsize=1)
def open_hand_wrists() -> Any:
    """The open hand's ``WristJoints``, from its shipped rig (no hand model loaded)."""
    from handforge.hands.wrists import WristJoints
    from handforge_shared.rig import load_open_hand_rig

    right = load_open_hand_rig("right")
    return WristJoints.of_rigs({"left": right.mirrored(), "right": right})


def open_rest_wrists() -> np.ndarray:
    """(2, 3) the open hand's rest wrist joints at mean shape (left, right): where the translation
    channels' ``transl`` is measured from."""
    wrists = open_hand_wrists()
    return np.stack([wrists.base[side].numpy() for side in HAND_AXIS])


def wrist_shift(hands: Any, betas: Any) -> Any:
    """(..., 2, 3): each hand's rest wrist joint for ``betas`` (..., 2, 10) minus the open hand's at
    mean shape. ``hands``: a ``HandModel`` or its ``WristJoints``; numpy betas give numpy (float64),
    torch betas torch of their dtype and device."""
    from handforge.hands.wrists import WristJoints

    wrists = hands if isinstance(hands, WristJoints) else WristJoints.of(hands)
    reference = open_rest_wrists()
    shifts = []
    for h, side in enumerate(HAND_AXIS):
        rest = wrists(side, betas[..., h, :])
        shifts.append(rest - (reference[h] if isinstance(rest, np.ndarray) else rest.new_tensor(reference[h])))
    if isinstance(shifts[0], np.ndarray):
        return np.stack(shifts, -2)
    import torch

    return torch.stack(shifts, -2)


def rotation_matrices(motion: Any) -> Any:
    """Motion (..., 198) → per hand the 16 local rotation matrices (..., 2, 16, 3, 3) (torch or numpy)."""
    from handforge_shared.rotations import rot6d_to_matrix

    per_hand = motion.reshape(*motion.shape[:-1], 2, HAND_DIM)
    rot6d = per_hand[..., :6 * NUM_ROTATIONS].reshape(*per_hand.shape[:-1], NUM_ROTATIONS, 6)
    return rot6d_to_matrix(rot6d)


def translations(motion: Any) -> Any:
    """Motion (..., 198) → the translation channels (..., 2, 3): each wrist joint relative to the origin,
    as the open hand at mean shape's ``transl`` (world ``transl`` = these + origin − ``wrist_shift``)."""
    return motion.reshape(*motion.shape[:-1], 2, HAND_DIM)[..., 6 * NUM_ROTATIONS:]


def first_frame_origin(transl: Any, wrist_shift: Any) -> Any:
    """The training windows' origin: the midpoint of the first frame's wrists, ``transl`` (..., T, 2, 3)
    moved by ``wrist_shift`` (broadcastable to (..., T, 2, 3)) → (..., 3)."""
    return (transl + wrist_shift)[..., 0, :, :].mean(-2)


def _cat(parts: list[Any], dim: int) -> Any:
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts, axis=dim)
    import torch

    return torch.cat(parts, dim=dim)


__all__ = ["FRAME_DIM", "HAND_AXIS", "HAND_DIM", "NUM_ROTATIONS", "PARTS", "PART_NAMES", "PART_OF_CHANNEL",
           "TRANSL_PART", "decode", "encode", "first_frame_origin", "open_hand_wrists", "open_rest_wrists",
           "part_mask_to_channels", "rotation_matrices", "translations", "wrist_shift"]
