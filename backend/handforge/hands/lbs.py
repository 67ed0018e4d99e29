"""Linear blend skinning with world-aligned joint rotations (MANO's formulation), in torch.

Used by every hand model we implement ourselves (the open hand); MANO goes through smplx, whose
``lbs`` computes the same thing (the tests check both against each other on the same rig).
"""

from __future__ import annotations

import torch

from handforge_shared.skeleton import JOINT_PARENTS


def _levels(parents: tuple[int, ...]) -> list[list[int]]:
    depth = []
    for p in parents:
        depth.append(0 if p < 0 else depth[p] + 1)
    return [[j for j, d in enumerate(depth) if d == level] for level in range(max(depth) + 1)]


_LEVELS = _levels(JOINT_PARENTS)


def rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor,
                     parents: tuple[int, ...] = JOINT_PARENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed joint positions (B, J, 3) and skinning transforms (B, J, 3, 4).

    rot_mats (B, J, 3, 3) are each joint's rotation relative to its parent in world-aligned axes;
    joints (B, J, 3) the rest joint positions. The skinning transform of joint k maps a rest
    vertex to its position if it were rigidly attached to k.
    """
    levels = _LEVELS if parents == JOINT_PARENTS else _levels(parents)
    batch, count = joints.shape[:2]
    glob_rot: list[torch.Tensor | None] = [None] * count
    glob_pos: list[torch.Tensor | None] = [None] * count
    for level in levels:
        idx = torch.tensor(level, device=joints.device)
        if parents[level[0]] < 0:
            rot = rot_mats[:, idx]
            pos = joints[:, idx]
        else:
            par = [parents[j] for j in level]
            prot = torch.stack([glob_rot[p] for p in par], 1)
            ppos = torch.stack([glob_pos[p] for p in par], 1)
            offset = joints[:, idx] - joints[:, par]
            rot = prot @ rot_mats[:, idx]
            pos = ppos + (prot @ offset.unsqueeze(-1)).squeeze(-1)
        for i, j in enumerate(level):
            glob_rot[j] = rot[:, i]
            glob_pos[j] = pos[:, i]
    rots = torch.stack(glob_rot, 1)  # type: ignore[arg-type]
    posed = torch.stack(glob_pos, 1)  # type: ignore[arg-type]
    trans = posed - (rots @ joints.unsqueeze(-1)).squeeze(-1)
    return posed, torch.cat([rots, trans.unsqueeze(-1)], dim=-1)


def skin(vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor) -> torch.Tensor:
    """Blend per-joint transforms (B, J, 3, 4) with weights (V, J) and apply them to (B, V, 3) (or (V, 3)).
    The rotation part applied by one einsum, not by a batched matmul of (B·V) 3×3 matrices, which copied
    its operands first: the open hand's forward of 300 hands took half the time (15 against 30 ms, two
    threads, 2026-12-07; the same vertices bit for bit on the batches compared then, not a tested promise)."""
    lead, joints = transforms.shape[:-3], transforms.shape[-3]
    blended = (weights @ transforms.reshape(*lead, joints, 12)).view(*lead, weights.shape[0], 3, 4)
    # (batches broadcast as the matmul did: vertices (V, 3) or (1, V, 3) with B transforms, and the other way)
    return torch.einsum("...vrc,...vc->...vr", blended[..., :3], vertices) + blended[..., 3]


def skin_at(vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor, pair: torch.Tensor) -> torch.Tensor:
    """``skin`` for single vertices (S, 3), each with its weights (S, J), of pair ``pair`` (S,) whose
    transforms are ``transforms`` (B, J, 3, 4): the same blend, for the few vertices a sparse gradient
    reaches. Blended per pair in one batched product (the vertices of a pair stacked as the rows of
    its block), not by copying each vertex's pair's transforms (S, J, 3, 4), which took twice as long
    with its backward."""
    batch, joints = transforms.shape[:2]
    counts = torch.bincount(pair, minlength=batch)
    order = torch.argsort(pair, stable=True)
    slot = torch.empty_like(pair)
    slot[order] = torch.arange(len(pair), device=pair.device) - (counts.cumsum(0) - counts)[pair[order]]
    blocks = weights.new_zeros(batch, int(counts.max()) if len(pair) else 0, joints)
    blocks = blocks.index_put((pair, slot), weights)
    blended = torch.bmm(blocks, transforms.reshape(batch, joints, 12))[pair, slot].view(-1, 3, 4)
    return (blended[..., :3] @ vertices.unsqueeze(-1)).squeeze(-1) + blended[..., 3]
