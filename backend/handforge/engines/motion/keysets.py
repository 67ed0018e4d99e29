"""Random keyframe sets for training: one model for in-betweening, trajectory control and
unconditional generation (the training scheme of Flexible Motion In-betweening, Cohan et al.,
arXiv 2405.11126, extended to hands: joint subsets, one hand, wrist paths).

A key set is a (T, 2, 17) bool *part* mask (``representation.PARTS``): per frame, per hand, which
of wrist rotation, the 15 finger joints and the wrist translation are observed.
"""

from __future__ import annotations

import torch

from handforge.engines.motion.representation import PARTS, TRANSL_PART

# kind → probability; each draws a different kind of observation
KINDS = {
    "none": 0.12,            # unconditional generation
    "ends": 0.18,            # first and last 1-5 frames (HandDiffuse's in-betweening task)
    "frames": 0.22,          # random frames, every part of both hands
    "joints": 0.14,          # random frames, random subsets of joints
    "one_hand": 0.10,        # random frames of one hand only
    "trajectory": 0.18,      # wrist translation (and sometimes rotation) at every frame, fingers free
    "dense": 0.06,           # most frames keyed (short gaps)
}


def random_key_mask(length: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, str]:
    """A (length, 2, 17) part mask drawn from ``KINDS``, and the kind's name."""
    names = list(KINDS)
    kind = names[int(torch.multinomial(torch.tensor(list(KINDS.values())), 1, generator=generator))]
    mask = torch.zeros(length, 2, PARTS, dtype=torch.bool)

    def rand(n: int) -> torch.Tensor:
        return torch.rand(n, generator=generator)

    def frames(count: int) -> torch.Tensor:
        return torch.randperm(length, generator=generator)[:max(1, min(count, length))]

    if kind == "ends":
        k = 1 + int(rand(1) * 5)
        mask[:k] = True
        mask[-k:] = True
    elif kind in ("frames", "joints", "one_hand"):
        keyed = frames(1 + int(rand(1) * min(8, length)))
        if kind == "frames":
            mask[keyed] = True
        elif kind == "joints":
            parts = rand(2 * PARTS).reshape(2, PARTS) < 0.2 + 0.6 * rand(1)
            mask[keyed] = parts
        else:
            mask[keyed, int(rand(1) < 0.5)] = True
    elif kind == "trajectory":
        hands = [0, 1] if rand(1) < 0.7 else [int(rand(1) < 0.5)]
        for h in hands:
            mask[:, h, TRANSL_PART] = True
            if rand(1) < 0.5:
                mask[:, h, 0] = True
    elif kind == "dense":
        mask[rand(length) < 0.5] = True
    return mask, kind


def random_key_masks(batch: int, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, length, 2, 17) part masks, each drawn independently."""
    return torch.stack([random_key_mask(length, generator)[0] for _ in range(batch)])


__all__ = ["KINDS", "random_key_mask", "random_key_masks"]
