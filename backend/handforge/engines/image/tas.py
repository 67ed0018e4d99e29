"""AttentionHand's text attention stage (TAS): push the cross-attention of hand-related tokens.

Park et al., "AttentionHand", ECCV 2024 (arXiv:2407.18034), Sec. 3.3, Eqs. 2-4, after
Attend-and-Excite (Chefer et al., SIGGRAPH 2023, arXiv:2301.13826):

1. run the SD UNet on the noisy latents X_t with the prompt and record its cross-attention maps at
   16×16 (latent size / 4 at 512²: the UNet's middle resolution), averaged over layers and heads;
2. softmax over the prompt's text tokens (start, end and padding tokens excluded; the maps are
   scaled by 100 first, as in Attend-and-Excite, since raw attention probabilities are tiny);
3. smooth each chosen token's map with a fixed Gaussian (3×3; Attend-and-Excite's kernel
   exp(−((x−μ)/(2σ))²) with σ = 0.5, reflect padding) and take its maximum s_n;
4. L = max_n (1 − s_n) and X̂_t = X_t − α_t ∇L, with α_t falling linearly from ``strength`` to
   ``strength``/2 over the sampling steps (the paper's "from 20 to 10", after Attend-and-Excite's
   code, whose schedule also spans every step), applied at the first steps (so over the first half
   it falls from 20 to about 15).

The attention is recorded by a diffusers attention processor installed only for the TAS forward
pass; sampling itself keeps the fast (SDPA) processors.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence

import torch

SOFTMAX_SCALE = 100.0
GAUSSIAN_KERNEL = 3
GAUSSIAN_SIGMA = 0.5
DEFAULT_STRENGTH = 20.0


def map_size(latent_height: int, latent_width: int) -> tuple[int, int]:
    """The attention-map resolution TAS reads: the latent after the UNet's first two downsamplings
    (16×16 for SD 1.x at 512²). Each is a stride-2 convolution padded by 1, ⌈n / 2⌉: a latent of 135
    rows gives 68 then 34 (135 // 4 = 33 matched no layer: TAS failed on 1080-pixel-high images)."""
    def half(n: int) -> int:
        return (n + 1) // 2

    return half(half(latent_height)), half(half(latent_width))


class AttentionStore:
    """Sums the cross-attention probabilities of every layer whose queries are ``size`` pixels."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.total: torch.Tensor | None = None
        self.layers = 0

    def add(self, probabilities: torch.Tensor) -> None:  # (batch, heads, queries, tokens)
        mean = probabilities.float().mean(dim=1)
        self.total = mean if self.total is None else self.total + mean
        self.layers += 1

    def maps(self) -> torch.Tensor:
        """(batch, h, w, tokens): the average over the recorded layers and heads."""
        if self.total is None:
            raise RuntimeError(f"the UNet has no cross-attention at {self.size[0]}×{self.size[1]}; TAS needs an "
                               "SD 1.x UNet (cross-attention at latent size / 4)")
        b, _, n = self.total.shape
        return (self.total / self.layers).reshape(b, *self.size, n)


class RecordingProcessor:
    """Cross-attention that also hands its probabilities to an ``AttentionStore`` (layers at the
    store's resolution); everything else goes to ``fallback``."""

    def __init__(self, store: AttentionStore, fallback) -> None:
        self.store = store
        self.fallback = fallback
        # what the fallback takes besides the tensors: diffusers' Attention filters its keywords by the
        # installed processor's signature, which here takes any; the sliced one takes no ``temb``
        parameters = inspect.signature(fallback.__call__).parameters.values()
        self._takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
        self._takes = {p.name for p in parameters}

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        queries = self.store.size[0] * self.store.size[1]
        plain = attn.spatial_norm is None and attn.group_norm is None and attn.norm_cross is None
        if encoder_hidden_states is None or hidden_states.ndim != 3 or hidden_states.shape[1] != queries or not plain:
            extra = {"temb": temb, **kwargs} if temb is not None else kwargs
            extra = extra if self._takes_any else {k: v for k, v in extra.items() if k in self._takes}
            return self.fallback(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                                 attention_mask=attention_mask, **extra)
        batch = hidden_states.shape[0]
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        mask = attn.prepare_attention_mask(attention_mask, encoder_hidden_states.shape[1], batch)
        probabilities = attn.get_attention_scores(query, key, mask)  # (batch·heads, queries, tokens)
        self.store.add(probabilities.reshape(batch, attn.heads, queries, -1))
        out = attn.batch_to_head_dim(torch.bmm(probabilities, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


@contextlib.contextmanager
def recording(unet, size: tuple[int, int]) -> Iterator[AttentionStore]:
    """Install recording processors on ``unet`` for the block; the previous ones come back after."""
    store = AttentionStore(size)
    previous = dict(unet.attn_processors)
    unet.set_attn_processor({name: RecordingProcessor(store, proc) for name, proc in previous.items()})
    try:
        yield store
    finally:
        unet.set_attn_processor(previous)


def gaussian_kernel(device=None, dtype=torch.float32) -> torch.Tensor:
    """The fixed 3×3 kernel (Attend-and-Excite's formula, normalised to sum 1)."""
    x = torch.arange(GAUSSIAN_KERNEL, dtype=torch.float64) - (GAUSSIAN_KERNEL - 1) / 2
    g = torch.exp(-((x / (2 * GAUSSIAN_SIGMA)) ** 2))
    k = torch.outer(g, g)
    return (k / k.sum()).to(device=device, dtype=dtype)


def token_scores(maps: torch.Tensor, text_length: int, indices: Sequence[int]) -> torch.Tensor:
    """s_n per sample and chosen token: (batch, len(indices)). ``maps``: (batch, h, w, tokens);
    ``text_length``: the prompt's token count (its tokens are 1..text_length; 0 is the start token);
    ``indices``: positions in the encoded prompt."""
    text = torch.softmax(maps[..., 1:text_length + 1] * SOFTMAX_SCALE, dim=-1)
    chosen = text[..., [i - 1 for i in indices]].permute(0, 3, 1, 2)  # (batch, n, h, w)
    b, n, h, w = chosen.shape
    flat = chosen.reshape(b * n, 1, h, w)
    pad = GAUSSIAN_KERNEL // 2
    mode = "reflect" if min(h, w) > pad else "replicate"
    smooth = torch.nn.functional.conv2d(torch.nn.functional.pad(flat, (pad,) * 4, mode=mode),
                                        gaussian_kernel(maps.device, text.dtype)[None, None])
    return smooth.reshape(b, n, -1).amax(dim=-1)


def tas_loss(scores: torch.Tensor) -> torch.Tensor:
    """L = max_n (1 − s_n) per sample: (batch,)."""
    return (1.0 - scores).amax(dim=-1)


def step_size(step: int, total_steps: int, strength: float = DEFAULT_STRENGTH) -> float:
    """α at sampling step ``step`` of ``total_steps``: ``strength`` falling linearly to ``strength``/2."""
    if total_steps <= 1:
        return strength
    return strength * (1.0 - 0.5 * step / (total_steps - 1))


def attention_scores(unet, latents: torch.Tensor, timestep, text_embeddings: torch.Tensor, text_length: int,
                     indices: Sequence[int]) -> torch.Tensor:
    """s_n (batch, n) of the chosen tokens for ``latents`` at ``timestep`` (differentiable in ``latents``)."""
    with recording(unet, map_size(*latents.shape[-2:])) as store:
        unet(latents, timestep, encoder_hidden_states=text_embeddings, return_dict=False)
    return token_scores(store.maps(), text_length, indices)


def tas_update(unet, latents: torch.Tensor, timestep, text_embeddings: torch.Tensor, text_length: int,
               indices: Sequence[int], alpha: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One TAS update X̂_t = X_t − α ∇L (each sample by its own loss); returns it, L before it and which samples
    were skipped ((batch,) bool): one whose loss or gradient is not finite (float16 overflow) is left as it was
    while the others still move, since each sample's update is its own (one overflow held back the whole batch)."""
    none_skipped = torch.zeros(latents.shape[0], dtype=torch.bool, device=latents.device)
    if not indices:
        return latents, torch.zeros(latents.shape[0], device=latents.device), none_skipped
    with torch.enable_grad():
        x = latents.detach().requires_grad_(True)
        loss = tas_loss(attention_scores(unet, x, timestep, text_embeddings, text_length, indices))
        (grad,) = torch.autograd.grad(loss.sum(), x)
    skipped = ~(torch.isfinite(grad).flatten(1).all(dim=1) & torch.isfinite(loss.detach()))
    step = torch.where(skipped.view(-1, *[1] * (grad.ndim - 1)), torch.zeros_like(grad), grad)
    return (latents - alpha * step.to(latents.dtype)).detach(), loss.detach(), skipped


__all__ = [
    "DEFAULT_STRENGTH",
    "AttentionStore",
    "RecordingProcessor",
    "attention_scores",
    "gaussian_kernel",
    "map_size",
    "recording",
    "step_size",
    "tas_loss",
    "tas_update",
    "token_scores",
]
