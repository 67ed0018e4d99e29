"""The one hand-model interface every engine, job and exporter uses.

A ``HandModel`` holds both sides of one hand model (``open`` or ``mano``). Its forward pass is
batched, differentiable with respect to every parameter, stays in torch end to end, and runs on
any device and float dtype the model was moved to (``model.to(device, dtype)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from handforge_shared.poses import POSE_FIELDS, HandPose, PoseFormatError
from handforge_shared.rig import HandRig
from handforge_shared.skeleton import KEYPOINT_FROM_EXTENDED, NUM_JOINTS, SIDES, Side, check_side


@dataclass
class HandOutput:
    vertices: torch.Tensor   # (B, V, 3) metres, model frame
    joints: torch.Tensor     # (B, 16, 3) MANO joint order
    keypoints: torch.Tensor  # (B, 21, 3) InterHand2.6M keypoint order


class HandLayer(nn.Module, ABC):
    """One side of one hand model."""

    side: Side
    model_name: str
    faces: torch.Tensor           # (F, 3) long
    tip_vertex_ids: torch.Tensor  # (5,) long, thumb..pinky

    @abstractmethod
    def posed_vertices_and_joints(self, global_orient: torch.Tensor, hand_pose: torch.Tensor,
                                  betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, V, 3) vertices and (B, 16, 3) joints before translation; inputs already checked."""

    @abstractmethod
    def rig(self) -> HandRig:
        """This side's rest rig (numpy), for Blender and the ``hand_model`` job."""

    @property
    def num_betas(self) -> int:
        return 10

    def forward(self, global_orient: Any, hand_pose: Any, betas: Any = None, transl: Any = None) -> HandOutput:
        go, hp, be, tr = self._inputs(global_orient, hand_pose, betas, transl)
        verts, joints = self.posed_vertices_and_joints(go, hp, be)
        verts = verts + tr[:, None]
        joints = joints + tr[:, None]
        extended = torch.cat([joints, verts[:, self.tip_vertex_ids]], dim=1)
        return HandOutput(vertices=verts, joints=joints, keypoints=extended[:, list(KEYPOINT_FROM_EXTENDED)])

    def vertices_at(self, global_orient: Any, hand_pose: Any, betas: Any = None, transl: Any = None, *,
                    pair: torch.Tensor, vertex: torch.Tensor) -> torch.Tensor:
        """``forward(...).vertices[pair, vertex]`` (S, 3), differentiable. A layer that can skin just those
        vertices overrides this: a gradient that reaches only a few vertices (the guidance's: those in
        or near the other hand) then back-propagates through those alone, not the whole mesh."""
        return self(global_orient, hand_pose, betas, transl).vertices[pair, vertex]

    def _inputs(self, global_orient: Any, hand_pose: Any, betas: Any, transl: Any) -> tuple[torch.Tensor, ...]:
        """The parameters checked and coerced to (B, n) tensors on this layer's device and dtype."""
        ref = self.faces  # a buffer: tells the module's device
        dtype = self.float_dtype
        go = _param(global_orient, "global_orient", 3, ref.device, dtype)
        batch = go.shape[0]
        hp = _param(hand_pose, "hand_pose", 45, ref.device, dtype, batch)
        be = _param(betas, "betas", self.num_betas, ref.device, dtype, batch, allow_fewer=True)
        tr = _param(transl, "transl", 3, ref.device, dtype, batch)
        return go, hp, be, tr

    @property
    def float_dtype(self) -> torch.dtype:
        for t in self.buffers():
            if t.is_floating_point():
                return t.dtype
        return torch.float32


def _param(value: Any, name: str, size: int, device: torch.device, dtype: torch.dtype,
           batch: int | None = None, allow_fewer: bool = False) -> torch.Tensor:
    """Coerce one pose parameter to a (B, size) tensor, or raise a clear error."""
    if value is None:
        if batch is None:
            raise PoseFormatError(f"{name} is required")
        return torch.zeros(batch, size, device=device, dtype=dtype)
    if isinstance(value, torch.Tensor):
        t = value
    else:
        try:
            t = torch.tensor(np.array(value, dtype=np.float64))
        except (TypeError, ValueError):
            raise PoseFormatError(f"{name} must be numbers, got {type(value).__name__}") from None
    if not t.is_floating_point():
        t = t.to(dtype)
    if name == "hand_pose" and t.ndim >= 2 and tuple(t.shape[-2:]) == (15, 3):
        t = t.reshape(*t.shape[:-2], 45)
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if t.ndim != 2 or (t.shape[1] != size and not (allow_fewer and t.shape[1] < size)):
        want = f"(B, ≤{size})" if allow_fewer else f"(B, {size})"
        raise PoseFormatError(f"{name} must have shape {want} or ({size},), got {tuple(t.shape)}")
    if batch is not None and t.shape[0] != batch:
        if t.shape[0] == 1:
            t = t.expand(batch, -1)
        else:
            raise PoseFormatError(f"{name} has batch size {t.shape[0]} but global_orient has {batch}")
    if not torch.isfinite(t).all():
        raise PoseFormatError(f"{name} has non-finite values (NaN or inf)")
    t = t.to(device=device, dtype=dtype)
    if t.shape[1] < size:
        t = torch.cat([t, t.new_zeros(t.shape[0], size - t.shape[1])], dim=1)
    return t


class HandModel(nn.Module):
    """Both sides of one hand model."""

    def __init__(self, name: str, left: HandLayer, right: HandLayer) -> None:
        super().__init__()
        self.name = name
        self.left = left
        self.right = right

    def layer(self, side: Side) -> HandLayer:
        return getattr(self, check_side(side))

    def forward(self, side: Side, global_orient: Any, hand_pose: Any, betas: Any = None,
                transl: Any = None) -> HandOutput:
        return self.layer(side)(global_orient, hand_pose, betas, transl)

    def forward_pose(self, side: Side, pose: HandPose) -> HandOutput:
        """Forward a (batched or single) ``HandPose``; the output batch is the flattened batch shape."""
        flat = {k: np.asarray(getattr(pose, k)).reshape(-1, n) for k, n in POSE_FIELDS.items()}
        return self(side, **flat)

    def vertices_at(self, side: Side, global_orient: Any, hand_pose: Any, betas: Any = None, transl: Any = None, *,
                    pair: torch.Tensor, vertex: torch.Tensor) -> torch.Tensor:
        """``self(side, ...).vertices[pair, vertex]`` (S, 3), skinning only those where the layer can."""
        return self.layer(side).vertices_at(global_orient, hand_pose, betas, transl, pair=pair, vertex=vertex)

    def faces(self, side: Side) -> torch.Tensor:
        return self.layer(side).faces

    def rig(self, side: Side) -> HandRig:
        return self.layer(side).rig()


__all__ = ["HandLayer", "HandModel", "HandOutput", "SIDES", "NUM_JOINTS"]
