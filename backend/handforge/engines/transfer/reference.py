"""Reference attention: appearance from a source image without training ("reference-only" injection).

At every denoising step the UNet first runs on the source image's latents noised to the same
timestep ("write"); each self-attention layer keeps its input tokens. In the main pass ("read") each
self-attention layer attends to its own tokens *and* the kept source tokens, so the generated image
can copy the source's textures and colours wherever they fit the new layout. This is the
"reference-only" idea of the ControlNet 1.1 release notes (lllyasviel, "Reference-only control",
https://github.com/Mikubill/sd-webui-controlnet/discussions/1236) written against diffusers'
attention-processor API: nothing in the pipeline loop changes; a pre-hook on the UNet runs the
write pass before each call.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class _Bank:
    writing: bool = False
    enabled: bool = True
    scale: float = 1.0  # 1: attend to self + source; 0: plain self-attention; between: a blend of both
    tokens: dict[str, torch.Tensor] = field(default_factory=dict)


class ReferenceAttnProcessor:
    """Wraps one self-attention layer's processor: keeps its input while writing, attends to it while reading."""

    def __init__(self, name: str, inner, bank: _Bank) -> None:
        self.name, self.inner, self.bank = name, inner, bank

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        # kwargs (temb, ...) pass through as given: some processors (e.g. sliced attention) take none
        bank = self.bank
        if bank.writing:
            bank.tokens[self.name] = hidden_states.detach()
        source = bank.tokens.get(self.name)
        if bank.writing or not bank.enabled or source is None or bank.scale == 0:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)
        if source.shape[0] != hidden_states.shape[0]:
            source = source.repeat_interleave(hidden_states.shape[0] // source.shape[0], dim=0)
        both = torch.cat([hidden_states, source.to(hidden_states.dtype)], dim=1)
        out = self.inner(attn, hidden_states, both, attention_mask, **kwargs)
        if bank.scale != 1:
            plain = self.inner(attn, hidden_states, None, attention_mask, **kwargs)
            out = bank.scale * out + (1 - bank.scale) * plain
        return out


class ReferenceInjection:
    """Installed on a UNet by ``inject``: the source latents (clean, in latent space) and the noise that
    takes them to each timestep; ``enabled`` and ``scale`` switch and weigh the injection."""

    def __init__(self, unet, scheduler, source_latents: torch.Tensor, noise: torch.Tensor, scale: float = 1.0) -> None:
        self.unet, self.scheduler = unet, scheduler
        self.source, self.noise = source_latents, noise
        self.bank = _Bank(scale=scale)

    @property
    def enabled(self) -> bool:
        return self.bank.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.bank.enabled = value

    def write(self, timestep, encoder_hidden_states: torch.Tensor) -> None:
        """Run the UNet on the source noised to ``timestep`` and keep every self-attention input."""
        batch = encoder_hidden_states.shape[0]
        t = torch.as_tensor(timestep, device=self.source.device).reshape(-1)[:1]
        noisy = self.scheduler.add_noise(self.source, self.noise, t.to(torch.long))
        noisy = noisy.repeat(batch // noisy.shape[0], 1, 1, 1).to(self.unet.dtype)
        self.bank.writing = True
        try:
            self.unet(noisy, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)
        finally:
            self.bank.writing = False

    def _pre_hook(self, module, args, kwargs):
        if self.bank.writing or not self.bank.enabled:
            return
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        text = args[2] if len(args) > 2 else kwargs["encoder_hidden_states"]
        with torch.no_grad():
            self.write(timestep, text)
        return


def self_attention_names(unet) -> list[str]:
    """The processor names of the UNet's self-attention layers (``attn1`` of each transformer block)."""
    return [name for name in unet.attn_processors if name.endswith("attn1.processor")]


@contextmanager
def inject(unet, scheduler, source_latents: torch.Tensor, noise: torch.Tensor, scale: float = 1.0):
    """Reference attention on ``unet`` inside the block; its own processors are back afterwards (the
    pipeline is shared through the model cache with ``image.generate``)."""
    if source_latents.shape[0] != 1:
        raise ValueError(f"one source image at a time, got {source_latents.shape[0]}")
    injection = ReferenceInjection(unet, scheduler, source_latents, noise, scale)
    saved = dict(unet.attn_processors)
    wrapped = {name: ReferenceAttnProcessor(name, proc, injection.bank) if name.endswith("attn1.processor") else proc
               for name, proc in saved.items()}
    unet.set_attn_processor(wrapped)
    handle = unet.register_forward_pre_hook(injection._pre_hook, with_kwargs=True)
    try:
        yield injection
    finally:
        handle.remove()
        unet.set_attn_processor(saved)
        injection.bank.tokens.clear()


__all__ = ["ReferenceAttnProcessor", "ReferenceInjection", "inject", "self_attention_names"]
