"""Where each hand model's wrist joint sits at rest, as a function of the betas.

Every hand model here rotates ``global_orient`` about the wrist joint and adds ``transl`` after
(smplx's MANO and ``lbs.rigid_transforms``: the root joint is posed in place), so a hand's wrist
joint is ``rest wrist(side, betas) + transl`` whatever its pose. The rest wrist differs between
models (the open hand's some 1.6 cm from the origin, MANO's some 9.6 cm, x mirrored between the
sides), so ``transl`` alone does not say where a hand is; engines that place hands relative to each
other work with wrist joints and convert per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from handforge_shared.rig import HandRig
from handforge_shared.skeleton import SIDES, Side


@dataclass(frozen=True)
class WristJoints:
    """Rest wrist joint of each side as ``base + betas @ basis`` (metres): exact, as every hand model's
    rest joints are linear in the betas (a linear shape space and a linear joint regressor)."""

    base: Mapping[str, torch.Tensor]    # side → (3,)
    basis: Mapping[str, torch.Tensor]   # side → (10, 3)

    @classmethod
    def of(cls, hand_model: Any) -> "WristJoints":
        """From a ``HandModel`` (or anything with ``rig(side)``)."""
        return cls.of_rigs({side: hand_model.rig(side) for side in SIDES})

    @classmethod
    def of_rigs(cls, rigs: Mapping[str, HandRig]) -> "WristJoints":
        base, basis = {}, {}
        for side in SIDES:
            rig = rigs[side]
            zero = np.asarray(rig.shaped(np.zeros(10))[1][0], dtype=np.float64)
            unit = np.stack([np.asarray(rig.shaped(np.eye(10)[k])[1][0], dtype=np.float64) - zero for k in range(10)])
            base[side], basis[side] = torch.tensor(zero), torch.tensor(unit)
        return cls(base, basis)

    def __call__(self, side: Side, betas: Any) -> Any:
        """(..., 10) betas (torch, or numpy: numpy float64 back) → (..., 3) rest wrist joints."""
        if isinstance(betas, np.ndarray):
            return self.base[side].numpy() + np.asarray(betas, dtype=np.float64) @ self.basis[side].numpy()
        base = self.base[side].to(betas)
        return base + betas @ self.basis[side].to(betas)


__all__ = ["WristJoints"]
