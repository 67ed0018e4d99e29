"""The training-free pose-transfer engine: ControlNet on the target pose's render + reference
attention from the source image (``reference.py``), on the image engine's pipeline unchanged.

The target pose fixes the layout (the ControlNets / guidance module see its render, as in
``image.generate``); the source image supplies the appearance through the self-attention layers.
Stock SD 1.x weights and a ControlNet suffice: nothing is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from handforge.engines.transfer.reference import inject


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 resized to width × height (bicubic) when its size differs."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


@torch.no_grad()
def encode_image(pipe, image: np.ndarray, device) -> torch.Tensor:
    """(1, 4, H/8, W/8) scaled latents of an (H, W, 3) uint8 image (the VAE's mean: deterministic)."""
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].to(device, pipe.vae.dtype)
    latents = pipe.vae.encode(pixels / 127.5 - 1.0).latent_dist.mode()
    return latents * pipe.vae.config.scaling_factor


def transfer(pipe, source_image: np.ndarray, control_images: Sequence[np.ndarray], prompt: str = "two hands",
             negative_prompt: str = "", num_inference_steps: int = 20, guidance_scale: float = 7.5,
             control_scales: float | Sequence[float] = 1.0, num_images: int = 1,
             generator: torch.Generator | None = None, reference_scale: float = 1.0, reference: bool = True,
             on_step: Callable[[int, int, torch.Tensor], None] | None = None):
    """Images (``pipeline.Generated``) in the layout of ``control_images`` (the target pose's renders)
    with the appearance of ``source_image`` (resized to their size). ``reference=False``: plain
    ControlNet sampling with the same seed (the comparison the tests make)."""
    height, width = control_images[0].shape[:2]
    device = pipe._execution_device
    source = encode_image(pipe, fit_image(source_image, width, height), device).to(pipe.unet.dtype)
    # the source's own noise from a generator of its own, so that the sampling noise is the same with
    # the injection on or off
    seed = (generator.initial_seed() if generator is not None else 0) + 1
    noise = randn_tensor(source.shape, generator=torch.Generator(device=generator.device if generator else "cpu")
                         .manual_seed(seed), device=device, dtype=source.dtype)
    kwargs = dict(negative_prompt=negative_prompt, num_inference_steps=num_inference_steps,
                  guidance_scale=guidance_scale, control_scales=control_scales, num_images=num_images,
                  generator=generator, on_step=on_step)
    if not reference:
        return pipe(prompt, control_images, **kwargs)
    with inject(pipe.unet, pipe.scheduler, source, noise, scale=reference_scale):
        return pipe(prompt, control_images, **kwargs)


__all__ = ["encode_image", "fit_image", "transfer"]
