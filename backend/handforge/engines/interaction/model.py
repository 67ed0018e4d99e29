"""The interaction denoiser: one network for both hands of a pair (InterHandGen, arXiv:2403.17422).

``InteractionDenoiser(x_t, t, condition, mode)`` predicts the clean single-hand vector x0
(normalised, ``representation.VECTOR_DIM``). ``mode`` says what the hand is:

    ANCHOR       the first hand, unconditional (its root and translation are fixed)
    OTHER_FREE   the second hand with its condition dropped (classifier-free guidance's
                 unconditional branch; trained by conditioning dropout)
    OTHER        the second hand conditioned on the (clean) anchor vector

As in the paper's network, three tokens (input, condition, time embeddings) go through a
self-attention encoder, are flattened into an MLP whose every layer also sees the time and
condition embeddings, with skips from the input at some layers, and a linear output. The
reference code feeds zeros as the anchor's condition and as the dropped condition alike; here a
learned role embedding tells the anchor from a second hand whose anchor is unknown, so the
unconditional branch of CFG is a real marginal over second hands.

Normalisation statistics are buffers (saved in the checkpoint): per role, mean and standard
deviation of each vector entry over the training set (InterHandGen divides by the variance, a
quirk we do not copy).
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from handforge.engines.interaction.model_config import INTERACTION_DENOISER
from handforge.engines.interaction.representation import ANCHOR_FREE, VECTOR_DIM

ANCHOR, OTHER_FREE, OTHER = 0, 1, 2


def _mlp(inputs: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, out))


_D = INTERACTION_DENOISER.defaults  # the defaults' one home: the status line reads them without torch


class InteractionDenoiser(ModelMixin, ConfigMixin):
    config_limits = INTERACTION_DENOISER.limits  # (there, light, for the engine's status line, as the defaults below)
    config_counts = INTERACTION_DENOISER.counts

    @register_to_config
    def __init__(self, vector_dim: int = _D["vector_dim"], width: int = _D["width"], hidden: int = _D["hidden"],
                 layers: int = _D["layers"], heads: int = _D["heads"], attention_layers: int = _D["attention_layers"],
                 dropout: float = _D["dropout"], skips: tuple = _D["skips"],
                 num_train_timesteps: int = _D["num_train_timesteps"], beta_schedule: str = _D["beta_schedule"],
                 condition_dropout: float = _D["condition_dropout"]) -> None:
        super().__init__()
        # the pipeline decodes vectors of the representation's layout: another size (a damaged or foreign
        # config) loaded, then failed inside sampling with a reshape error; load_model now names the folder
        if vector_dim != VECTOR_DIM:
            raise ValueError(f"vector_dim must be the representation's {VECTOR_DIM}, got {vector_dim}")
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(width, hidden, out_dim=width)
        self.input_embedding = _mlp(vector_dim, hidden, width)
        self.condition_embedding = _mlp(vector_dim, hidden, width)
        self.role_embedding = nn.Embedding(3, width)
        layer = nn.TransformerEncoderLayer(width, heads, dim_feedforward=2 * width, dropout=dropout,
                                           batch_first=True, norm_first=True)
        # nested tensors do not apply to three dense tokens; saying so silences a warning
        self.attention = nn.TransformerEncoder(layer, attention_layers, enable_nested_tensor=False)
        self.flatten = nn.Linear(3 * width, hidden)
        self.skip_layers = tuple(int(s) for s in skips)
        self.input_skip = nn.Linear(vector_dim, hidden)
        self.mlp = nn.ModuleList(
            nn.Linear(hidden + 2 * width + (hidden if i in self.skip_layers else 0), hidden) for i in range(layers))
        self.mlp_dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, vector_dim)
        # rows: anchor, other hand. Identity until the training data sets them.
        self.register_buffer("mean", torch.zeros(2, vector_dim))
        self.register_buffer("std", torch.ones(2, vector_dim))

    def forward(self, x: torch.Tensor, timestep: torch.Tensor, condition: torch.Tensor,
                mode: torch.Tensor) -> torch.Tensor:
        t = self.time_embedding(self.time_proj(timestep.reshape(-1).expand(x.shape[0])).to(x.dtype))
        conditioned = (mode == OTHER).to(x.dtype)[:, None]
        c = self.role_embedding(mode) + conditioned * self.condition_embedding(condition)
        tokens = torch.stack([self.input_embedding(x), c, t], dim=1)
        h = self.flatten(self.attention(tokens).flatten(1))
        skip = self.input_skip(x)
        for i, linear in enumerate(self.mlp):
            parts = [h, t, c] + ([skip] if i in self.skip_layers else [])
            h = self.mlp_dropout(nn.functional.silu(linear(torch.cat(parts, dim=-1))))
        return self.out(h)

    # ------------------------------------------------------------------ normalisation
    def normalise(self, vector: torch.Tensor, role: int) -> torch.Tensor:
        return (vector - self.mean[role]) / self.std[role]

    def denormalise(self, vector: torch.Tensor, role: int) -> torch.Tensor:
        return vector * self.std[role] + self.mean[role]

    @torch.no_grad()
    def fit_normalisation(self, anchors: torch.Tensor, others: torch.Tensor) -> None:
        """Set the statistics from training vectors (N, 64) of each role; constant entries (the
        anchor's fixed root and translation) keep std 1 so that they normalise to 0."""
        for role, data in enumerate((anchors, others)):
            std = data.std(0)
            std[std < 1e-6] = 1.0
            self.mean[role] = data.mean(0)
            self.std[role] = std

    def noise_scheduler(self, sampling: bool = False):
        """The diffusers scheduler this model was trained with (x0 prediction); DDIM for sampling."""
        from diffusers import DDIMScheduler, DDPMScheduler

        kwargs = dict(num_train_timesteps=self.config.num_train_timesteps, beta_schedule=self.config.beta_schedule,
                      prediction_type="sample", clip_sample=False)
        return DDIMScheduler(**kwargs, set_alpha_to_one=True) if sampling else DDPMScheduler(**kwargs)


def training_loss(model: InteractionDenoiser, anchor: torch.Tensor, other: torch.Tensor,
                  scheduler) -> tuple[torch.Tensor, dict[str, float]]:
    """x0 MSE of both roles on normalised vectors: the anchor unconditioned (only its free entries),
    the other hand conditioned on the clean anchor, its condition dropped with probability
    ``condition_dropout``."""
    batch = anchor.shape[0]
    a, o = model.normalise(anchor, 0), model.normalise(other, 1)
    half = torch.randint(0, scheduler.config.num_train_timesteps, ((batch + 1) // 2,), device=a.device)
    t = torch.cat([half, scheduler.config.num_train_timesteps - 1 - half])[:batch]  # antithetic, as the paper's code
    x = torch.cat([a, o])
    noisy = scheduler.add_noise(x, torch.randn_like(x), torch.cat([t, t]))
    dropped = torch.rand(batch, device=a.device) < model.config.condition_dropout
    mode = torch.cat([torch.full((batch,), ANCHOR, device=a.device),
                      torch.where(dropped, OTHER_FREE, OTHER)])
    condition = torch.cat([torch.zeros_like(a), a])
    predicted = model(noisy, torch.cat([t, t]), condition, mode)
    loss_anchor = (predicted[:batch, ANCHOR_FREE] - a[:, ANCHOR_FREE]).square().mean()
    loss_other = (predicted[batch:] - o).square().mean()
    return loss_anchor + loss_other, {"loss_anchor": float(loss_anchor.detach()), "loss_other": float(loss_other.detach())}


__all__ = ["ANCHOR", "OTHER", "OTHER_FREE", "InteractionDenoiser", "training_loss"]
