"""TinyNet: a two-layer MLP from 3 numbers to 3, small enough to train in a test."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


class TinyNet(ModelMixin, ConfigMixin):
    @register_to_config
    def __init__(self, width: int = 16, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Dropout(dropout), nn.Linear(width, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def target(x: torch.Tensor) -> torch.Tensor:
    """What TinyNet learns in the tests: a fixed smooth map of its input."""
    return torch.stack([x[:, 0] + 0.5 * x[:, 1], torch.sin(x[:, 2]), x[:, 0] * x[:, 1]], dim=1)


class Points(torch.utils.data.Dataset):
    """``count`` random inputs (seeded) and their targets, as (x, y) pairs."""

    def __init__(self, count: int, seed: int = 0) -> None:
        self.x = torch.randn(count, 3, generator=torch.Generator().manual_seed(seed))
        self.y = target(self.x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def loss(model: TinyNet, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The training loss the loop calls: mean squared error, plus input noise so that the global RNG
    matters (exact resume must restore it)."""
    x, y = batch
    return nn.functional.mse_loss(model(x + 0.01 * torch.randn_like(x)), y)
