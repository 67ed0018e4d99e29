"""Joint positions of a motion, differentiable, for the losses and the guidance.

The hand model (``handforge.hands``, open hand or MANO) gives each hand's rest joints and rest
fingertips for its ``betas`` (one forward at zero pose, no gradient needed); the motion's rotation
matrices are then chained along the MANO kinematic tree (``handforge.hands.lbs.rigid_transforms``,
the hand models' own forward kinematics), so the 16 joints are exactly the model's. Fingertips
ride rigidly on their distal joint (they are skinned almost wholly to it; MANO's pose correctives
move them by well under a millimetre). Skipping the full skinning of the mesh per frame (1,609
vertices on the open hand, 778 on MANO) makes the loss a few times cheaper on a CPU.

``NUM_POINTS`` = 25 per hand: the 21 keypoints (InterHand2.6M order) and 4 palm points, halfway from
the wrist to the index, middle, ring and pinky knuckles — HandDiffuse's "21 joints with 4 more
sampled in each palm" for its 25 × 25 contact-potential matrix.
"""

from __future__ import annotations

import torch

from handforge.hands.lbs import rigid_transforms
from handforge_shared.skeleton import FINGER_JOINTS, FINGERS, KEYPOINT_FROM_EXTENDED, KEYPOINT_NAMES, SIDES

from handforge.engines.motion import representation as rep

NUM_POINTS = 25
DISTAL_JOINT = [FINGER_JOINTS[f][2] for f in FINGERS]          # the joint each fingertip rides on
PALM_KNUCKLES = [KEYPOINT_NAMES.index(f"{f}1") for f in ("index", "middle", "ring", "pinky")]
WRIST = KEYPOINT_NAMES.index("wrist")


@torch.no_grad()
def rest_skeleton(hand_model, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rest joints (..., 2, 16, 3) and fingertips (..., 2, 5, 3) of ``betas`` (..., 2, 10), no translation."""
    lead = betas.shape[:-2]
    flat = betas.reshape(-1, 2, betas.shape[-1])
    joints, tips = [], []
    for h, side in enumerate(SIDES):
        layer = hand_model.layer(side)
        zeros = flat.new_zeros(len(flat), 3)
        verts, rest = layer.posed_vertices_and_joints(zeros, flat.new_zeros(len(flat), 45), flat[:, h])
        joints.append(rest)
        tips.append(verts[:, layer.tip_vertex_ids])
    return (torch.stack(joints, 1).reshape(*lead, 2, 16, 3), torch.stack(tips, 1).reshape(*lead, 2, 5, 3))


def points(motion: torch.Tensor, rest_joints: torch.Tensor, rest_tips: torch.Tensor,
           origin: torch.Tensor | None = None) -> torch.Tensor:
    """Motion (..., T, 198) → (..., T, 2, 25, 3) points in metres (canonical frame, plus ``origin``).

    ``rest_joints`` (..., 2, 16, 3) and ``rest_tips`` (..., 2, 5, 3) from ``rest_skeleton``, one
    per motion (broadcast over frames). The translation channels place each wrist joint as the open
    hand at mean shape's ``transl`` would (``representation``), so each hand is moved by its own rest
    wrist's offset from that one's: the points are the same on every hand model for the same channels."""
    lead = motion.shape[:-1]                                        # (..., T)
    rot = rep.rotation_matrices(motion)                             # (..., T, 2, 16, 3, 3)
    joints = rest_joints.unsqueeze(-4).expand(*lead, 2, 16, 3)
    tips = rest_tips.unsqueeze(-4).expand(*lead, 2, 5, 3)
    posed, transforms = rigid_transforms(rot.reshape(-1, 16, 3, 3), joints.reshape(-1, 16, 3))
    carrier = transforms[:, DISTAL_JOINT]                           # (N, 5, 3, 4)
    tip_pos = (carrier[..., :3] @ tips.reshape(-1, 5, 3, 1)).squeeze(-1) + carrier[..., 3]
    extended = torch.cat([posed, tip_pos], 1)[:, list(KEYPOINT_FROM_EXTENDED)]   # (N, 21, 3)
    palm = 0.5 * (extended[:, PALM_KNUCKLES] + extended[:, WRIST:WRIST + 1])
    out = torch.cat([extended, palm], 1).reshape(*lead, 2, NUM_POINTS, 3)
    wrist_shift = rest_joints[..., 0, :] - rest_joints.new_tensor(rep.open_rest_wrists())   # (..., 2, 3)
    shift = rep.translations(motion) - wrist_shift.unsqueeze(-3)
    if origin is not None:
        shift = shift + origin.unsqueeze(-2).unsqueeze(-2)
    return out + shift.unsqueeze(-2)


__all__ = ["NUM_POINTS", "points", "rest_skeleton"]
