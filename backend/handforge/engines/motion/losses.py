"""The training objective of the motion denoiser.

    reconstruction   MSE of the predicted x0 in normalised units (MDM's simple loss, x0 target)
    positions        MSE of the 25 points per hand (``kinematics``), decimetres
    velocity         MSE of their frame-to-frame velocity, cm per frame (MDM's optional
                     ``lambda_vel``, on positions): penalises jitter the reconstruction term allows
    interaction      HandDiffuse's contact potential (arXiv 2312.04867, eq. 4-5): on the 25 × 25
                     left-right point distances D, P = ½ K relu(τ − D)² with K = 1/τ², and
                     |P_pred − P_gt| weighted by a direction term. The paper writes the direction
                     term as 1 + D̂_pred × D̂_gt with a cross product, whose size cannot tell a
                     flipped direction (a point passed through the other hand) from an agreeing
                     one; we weight by 1 + (1 − D̂_pred · D̂_gt) / 2, in [1, 2], largest when flipped.
    bone length      |BL_pred − BL_gt| over the keypoint bones (HandDiffuse's shape loss, eq. 6). In
                     this representation bone lengths are fixed by the hand model and ``betas``, so
                     this term is zero up to float error; it is kept as a guard against a future
                     position-based representation and logged.

Each training batch is cropped to a random length (``min_length``..window) at a random start and
given a random frame-position offset, so one model serves any clip length up to ``max_frames``.

The observation is the model's curve through the keys (``MotionDenoiser.observe``); with ``spline_observation``
it is the curve the sampler gives the network (``pipeline.with_short_gap_splines``: the spline engine's
in-between across short gaps), so that the network learns to correct what it is shown when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from handforge.engines.motion import kinematics as kin
from handforge.engines.motion import representation as rep
from handforge.engines.motion.keysets import random_key_masks
from handforge.engines.motion.model import MotionDenoiser
from handforge_shared.skeleton import KEYPOINT_PARENTS

BONES = [(i, p) for i, p in enumerate(KEYPOINT_PARENTS) if p >= 0]


@dataclass
class LossWeights:
    reconstruction: float = 1.0
    positions: float = 1.0
    velocity: float = 1.0
    interaction: float = 0.1
    bone_length: float = 1.0
    contact_threshold: float = 0.04   # τ, metres


def origin_from_keys(transl: torch.Tensor, transl_mask: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """The canonical origin (B, 3): mean of the observed wrist positions (B, T, 2, 3; ``transl + wrist_shift``) where
    ``transl_mask`` (B, T, 2) has any, else ``fallback`` (B, 3)."""
    weight = transl_mask.to(transl.dtype).unsqueeze(-1)
    count = weight.sum((1, 2))
    mean = (transl * weight).sum((1, 2)) / count.clamp_min(1.0)
    return torch.where(count > 0, mean, fallback)


def contact_potential(points: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(…, 2, 25, 3) → the potential P (…, 25, 25) and unit directions (…, 25, 25, 3) left → right."""
    diff = points[..., 1, None, :, :] - points[..., 0, :, None, :]
    dist = diff.norm(dim=-1)
    potential = 0.5 / threshold ** 2 * torch.relu(threshold - dist).square()
    return potential, diff / dist.clamp_min(1e-6).unsqueeze(-1)


def interaction_loss(pred: torch.Tensor, target: torch.Tensor, threshold: float) -> torch.Tensor:
    p_pred, d_pred = contact_potential(pred, threshold)
    p_gt, d_gt = contact_potential(target, threshold)
    direction = 1.0 + 0.5 * (1.0 - (d_pred * d_gt).sum(-1))
    return ((p_pred - p_gt).abs() * direction).sum((-1, -2)).mean()


def bone_lengths(points: torch.Tensor) -> torch.Tensor:
    child, parent = zip(*BONES)
    return (points[..., list(child), :] - points[..., list(parent), :]).norm(dim=-1)


class MotionObjective:
    """``loss_fn(model, batch)`` for ``handforge.training.loop.train`` over ``WindowDataset`` batches."""

    def __init__(self, hand_model: Any, scheduler: Any, weights: LossWeights | None = None,
                 min_length: int = 24, position_range: int = 256, spline_observation: bool = False) -> None:
        from handforge.hands.wrists import WristJoints

        self.hand_model = hand_model
        self.wrists = WristJoints.of(hand_model)
        self.scheduler = scheduler
        self.weights = weights or LossWeights()
        self.min_length = min_length
        self.position_range = position_range
        self.spline_observation = spline_observation

    def __call__(self, model: MotionDenoiser, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        device = next(model.parameters()).device
        self.hand_model.to(device)  # (in place, once: loaded on the CPU, the model is where accelerate put it)
        window = batch["global_orient"].shape[1]
        length = int(torch.randint(min(self.min_length, window), window + 1, ()))
        start = int(torch.randint(0, window - length + 1, ()))
        crop = {k: batch[k][:, start:start + length].to(device) for k in ("global_orient", "hand_pose", "transl")}
        betas = batch["betas"][:, start].to(device)                                  # (B, 2, 10)
        b = len(betas)

        part_mask = random_key_masks(b, length).to(device)                          # (B, T, 2, 17)
        shift = rep.wrist_shift(self.wrists, betas.to(crop["transl"].dtype))[:, None]   # (B, 1, 2, 3)
        origin = origin_from_keys(crop["transl"] + shift, part_mask[..., rep.TRANSL_PART],
                                  rep.first_frame_origin(crop["transl"], shift))
        target = model.normalise(rep.encode(crop["global_orient"], crop["hand_pose"], crop["transl"], origin[:, None],
                                            shift))
        mask = rep.part_mask_to_channels(part_mask)
        observation = model.observe(target, mask)
        if self.spline_observation:
            observation = self._with_splines(model, observation, mask, crop, part_mask, betas, shift)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (b,), device=device)
        noisy = self.scheduler.add_noise(target, torch.randn_like(target), timesteps)
        offset = torch.randint(0, max(1, self.position_range - length), (b,), device=device)
        pred = model(noisy, timesteps, observation, mask, offset)

        w = self.weights
        terms = {"reconstruction": torch.nn.functional.mse_loss(pred, target)}
        rest_joints, rest_tips = kin.rest_skeleton(self.hand_model, betas)
        pts = kin.points(model.denormalise(pred), rest_joints, rest_tips)
        with torch.no_grad():
            pts_gt = kin.points(model.denormalise(target), rest_joints, rest_tips)
        terms["positions"] = (10 * (pts - pts_gt)).square().mean()
        terms["velocity"] = (100 * (pts.diff(dim=1) - pts_gt.diff(dim=1))).square().mean()
        terms["interaction"] = interaction_loss(pts, pts_gt, w.contact_threshold)
        terms["bone_length"] = 100 * (bone_lengths(pts[..., :21, :]) - bone_lengths(pts_gt[..., :21, :])).abs().mean()
        loss = sum(getattr(w, name) * value for name, value in terms.items())
        return loss, {name: float(value.detach()) for name, value in terms.items()}

    def _with_splines(self, model: MotionDenoiser, observation: torch.Tensor, mask: torch.Tensor,
                      crop: dict[str, torch.Tensor], part_mask: torch.Tensor, betas: torch.Tensor,
                      shift: torch.Tensor) -> torch.Tensor:
        """``observation`` as the sampler mixes it (``pipeline.with_short_gap_splines``), each window's keys an
        ``Observation`` as a job's are. Its motion is encoded about the keyed wrists' mean as the target's is
        (``origin_from_keys``); where no wrist is keyed the two origins differ, but no translation channel is
        then mixed (the spline enters only between keys of the same channel) and rotations have no origin."""
        from handforge.engines.motion.observation import Observation
        from handforge.engines.motion.pipeline import with_short_gap_splines

        # (every window an Observation, cheap next to a spline: with_short_gap_splines draws those of short gaps only)
        values = {k: v.detach().double().cpu().numpy() for k, v in crop.items()}
        keys, betas, shift = part_mask.cpu().numpy(), betas.double().cpu().numpy(), shift[:, 0].double().cpu().numpy()
        observations = [Observation(values["global_orient"][b], values["hand_pose"][b], values["transl"][b], keys[b],
                                    betas[b], hand_model=self.hand_model.name, fps=float(model.config.fps),
                                    wrist_shift=shift[b]) for b in range(len(keys))]
        return with_short_gap_splines(model, observations, mask, observation)[0]


__all__ = ["LossWeights", "MotionObjective", "bone_lengths", "contact_potential", "interaction_loss",
           "origin_from_keys"]
