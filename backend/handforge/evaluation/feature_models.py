"""The two feature networks as diffusers models (the one checkpoint format of every engine:
``handforge.engines.checkpoints``). What they compute and why: ``features.py``.

    FrameNet    MLP 126 → 256 → 256 → 128 (LayerNorm, GELU); the 128-d embedding is the feature.
    MotionNet   per-frame Linear 126 → 96, three 1-D convolutions over time (kernel 5, dilations
                1, 2, 4, GELU, residual), mean and max over time → 128-d feature.

Both carry small heads for their training targets (``feature_training.py``); evaluation uses only
the embedding. diffusers takes seconds to import, so ``features.py`` imports this module only when
it loads or builds networks.
"""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn

from handforge.engines.checkpoints import ODD, at_least
from handforge.evaluation.common import INPUT_DIM


class FrameNet(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, hidden: int = 256, feature_dim: int = 128, classes: Sequence[str] = ()) -> None:
        super().__init__()
        self.embed = nn.Sequential(
            nn.Linear(INPUT_DIM, hidden), nn.LayerNorm(hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(),
            nn.Linear(hidden, feature_dim), nn.LayerNorm(feature_dim),
        )
        self.classify = nn.Linear(feature_dim, max(len(classes), 1))
        self.reconstruct = nn.Linear(feature_dim, INPUT_DIM)  # keeps finger detail in the feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 126) canonical frames → (N, feature_dim) features."""
        return self.embed(x)


class MotionNet(ModelMixin, ConfigMixin):
    config_limits = {"kernel": (at_least(1), ODD)}  # what else load_model refuses: an even kernel changes the length

    @register_to_config
    def __init__(self, channels: int = 96, feature_dim: int = 128, kernel: int = 5,
                 dilations: Sequence[int] = (1, 2, 4), classes: Sequence[str] = (),
                 template_names: Sequence[str] = ()) -> None:
        """``classes``: motion kinds (softmax head ``classify``); ``template_names``: interactions present
        (sigmoid head ``templates``; a config key may not share a submodule's name in diffusers)."""
        super().__init__()
        c = channels
        self.inp = nn.Sequential(nn.Linear(INPUT_DIM, c), nn.GELU())
        self.convs = nn.ModuleList(nn.Conv1d(c, c, kernel, dilation=d, padding=d * (kernel // 2)) for d in dilations)
        self.out = nn.Sequential(nn.Linear(2 * c, feature_dim), nn.LayerNorm(feature_dim))
        self.classify = nn.Linear(feature_dim, max(len(classes), 1))
        self.templates = nn.Linear(feature_dim, max(len(template_names), 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 126) canonical motions (``mask`` (B, T) True on real frames) → (B, feature_dim)."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        m = mask[:, None, :].to(x.dtype)
        h = self.inp(x).transpose(1, 2) * m  # (B, C, T); padding kept at zero
        for conv in self.convs:
            h = (h + nn.functional.gelu(conv(h))) * m
        mean = h.sum(-1) / m.sum(-1).clamp_min(1.0)
        peak = h.masked_fill(m == 0, float("-inf")).amax(-1)
        return self.out(torch.cat([mean, peak], dim=-1))


__all__ = ["FrameNet", "MotionNet"]
