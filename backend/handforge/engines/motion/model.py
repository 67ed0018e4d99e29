"""The motion denoiser: an encoder-only transformer predicting the clean motion x0 (MDM, Tevet et al.,
arXiv 2209.14916; HandDiffuse, arXiv 2312.04867), conditioned on keys at any frames and channels.

Input per frame: the noisy motion x_t, the observation and its mask (the conditioning of Flexible
Motion In-betweening, Cohan et al., arXiv 2405.11126: key values plus a per-frame, per-channel mask
beside the noisy motion). Our observation is a curve through the keys along time per channel
(``curves.key_curve``, the config's ``observation_curve``: "linear", the default, or "hermite", as
``motion_v5`` and the shipped ``motion_v6``; zero for a channel without keys) and the network predicts x0 as a correction of it:
with few training steps on a CPU this starts the model at that in-between instead of at the mean
pose. A timestep token (sinusoidal embedding → MLP) is prepended, as in MDM; sinusoidal frame
positions (offset at random in training) let one model take clips of any length up to
``max_frames``.

Everything is in normalised units: ``(motion - data_mean) / data_std`` per channel, statistics of
the training set kept in the config so a checkpoint folder is self-contained; so is ``fps``, the frame
rate of the training clips, at which the model generates whatever the scene's (``retime``).
"""

from __future__ import annotations

import math

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from handforge.engines.motion.curves import CURVES, key_curve, slerp_correction
from handforge.engines.motion.model_config import MOTION_DENOISER, representation_problem
from handforge.engines.motion.representation import FRAME_DIM, ROTATION_CHANNELS
from handforge_shared.poses import MOTION_MAX_FRAMES


def sinusoidal(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """(...,) positions → (..., dim) sinusoidal embedding (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=positions.device, dtype=torch.float32) / half)
    angles = positions.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


MAX_FRAMES = MOTION_MAX_FRAMES  # the default max_frames: the longest clip (and training window) a model takes


_D = MOTION_DENOISER.defaults  # the defaults' one home: the status line reads them without torch


class MotionDenoiser(ModelMixin, ConfigMixin):
    """x0 = f(x_t, t, observation, mask); all (B, T, 198) in normalised units, t (B,) integer steps."""

    config_limits = MOTION_DENOISER.limits  # (there, light, for the engine's status line, as the defaults below)
    config_counts = MOTION_DENOISER.counts

    @register_to_config
    def __init__(self, frame_dim: int = _D["frame_dim"], d_model: int = _D["d_model"],
                 num_layers: int = _D["num_layers"], num_heads: int = _D["num_heads"], ff_size: int = _D["ff_size"],
                 dropout: float = _D["dropout"], max_frames: int = _D["max_frames"],
                 num_train_timesteps: int = _D["num_train_timesteps"],
                 data_mean: list[float] | None = _D["data_mean"], data_std: list[float] | None = _D["data_std"],
                 observation_curve: str = _D["observation_curve"], fps: float = _D["fps"]) -> None:
        super().__init__()
        if observation_curve not in CURVES:
            raise ValueError(f"observation_curve must be one of {', '.join(CURVES)}, got {observation_curve!r}")
        if not (math.isfinite(fps) and fps > 0):  # the frame rate of its training clips (retime.py)
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        # (on the CPU, not the default device: checked below also when the training loop sizes the model on
        # torch's meta device, which holds no values)
        mean = torch.tensor(data_mean if data_mean is not None else [0.0] * frame_dim, dtype=torch.float32, device="cpu")
        std = torch.tensor(data_std if data_std is not None else [1.0] * frame_dim, dtype=torch.float32, device="cpu")
        if mean.shape != (frame_dim,) or std.shape != (frame_dim,) or not bool((std > 0).all()):
            raise ValueError(f"data_mean and data_std need {frame_dim} values each, std positive")
        self.register_buffer("channel_mean", mean, persistent=False)
        self.register_buffer("channel_std", std, persistent=False)
        self.input = nn.Linear(3 * frame_dim, d_model)
        self.time_mlp = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        layer = nn.TransformerEncoderLayer(d_model, num_heads, ff_size, dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, frame_dim)
        nn.init.zeros_(self.output.weight)  # start as the interpolated keys
        nn.init.zeros_(self.output.bias)

    def normalise(self, motion: torch.Tensor) -> torch.Tensor:
        return (motion - self.channel_mean) / self.channel_std

    def denormalise(self, motion: torch.Tensor) -> torch.Tensor:
        return motion * self.channel_std + self.channel_mean

    def observe(self, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The observation: the model's curve through ``keys`` (B, T, C), normalised, each rotation
        brought along its arc (``along_arcs``)."""
        return key_curve(keys, mask, self.config.observation_curve) + self.along_arcs(keys, mask)

    def along_arcs(self, keys: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``curves.slerp_correction`` of normalised ``keys`` (B, T, C), normalised: what makes a curve
        through the keys turn each rotation along its arc. Added after motion_v5 was trained (its
        observations had none): a wrist turned 170° between two keys 40 frames apart then turned
        41° in one frame mid-gap (the even step is 4.2°); with it, 4.4°. The test split's gap metrics
        barely moved (README 'Motion'); applied only to turns above 60° (fading in to 120°) it left
        gap-30 overlapping 1.4× ground truth's, so it applies to every turn."""
        if self.config.frame_dim != FRAME_DIM:  # not the motion representation (small models in tests)
            return torch.zeros_like(keys)
        raw = self.denormalise(keys)
        return slerp_correction(raw, mask.bool(), torch.as_tensor(ROTATION_CHANNELS)) / self.channel_std

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, observation: torch.Tensor,
                mask: torch.Tensor, position_offset: torch.Tensor | int = 0) -> torch.Tensor:
        """``observation``: ``self.observe(keys, mask)`` in normalised units; ``mask`` bool or 0/1."""
        b, t, _ = sample.shape
        if t > self.config.max_frames:
            raise ValueError(f"{t} frames is more than this model's max_frames={self.config.max_frames}")
        mask = mask.to(sample.dtype)
        h = self.input(torch.cat([sample, observation, mask], dim=-1))
        positions = torch.arange(t, device=sample.device).unsqueeze(0) + torch.as_tensor(
            position_offset, device=sample.device).reshape(-1, 1)
        h = h + sinusoidal(positions, self.config.d_model).to(h.dtype)
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(b)
        token = self.time_mlp(sinusoidal(timestep, self.config.d_model).to(h.dtype)).unsqueeze(1)
        h = self.encoder(torch.cat([token, h], dim=1))[:, 1:]
        return observation + self.output(self.norm(h))


def check_representation(model: MotionDenoiser, folder) -> None:
    """``CheckpointError`` unless ``model`` (loaded from ``folder``) denoises the motion representation's
    frames (``model_config.representation_problem``)."""
    from handforge.engines.checkpoints import CheckpointError

    problem = representation_problem(folder, model.config)
    if problem:
        raise CheckpointError(problem)


__all__ = ["MAX_FRAMES", "MotionDenoiser", "check_representation", "sinusoidal"]
