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

from handforge.engines.image.pipeline import image_tensor
from handforge.engines.transfer.reference import inject


# What a source's transparent pixels become: SD reads RGB only, and a cut-out (a hand on transparency)
# is meant as on a plain backdrop; white, as cut-outs are shown. Left as they were, their RGB (often
# black, or whatever the editor kept under alpha 0) would be copied as the source's background.
SOURCE_BACKGROUND = (255, 255, 255)

# The reference engine's source noise has a stream of its own: its seed is the request's + 2**31, while image k of
# a batch is seeded seed + k (``image.pipeline.image_generators``, k < 16). The two differ by 2**31 - k, no multiple
# of 2**32: they never meet, on the GPU (64-bit seeds) nor on the CPU, whose generator keeps a seed's low 32 bits
# only (seeds 2**32 apart draw the same noise there; an offset of 2**63 would be none). (seed + 1, as before, was
# image 1's seed.)
SOURCE_NOISE_OFFSET = 2**31


def source_noise_seed(seed: int) -> int:
    """The seed of the source's noise for a request at ``seed`` (see SOURCE_NOISE_OFFSET)."""
    return (seed + SOURCE_NOISE_OFFSET) % 2**64


def opaque(image: np.ndarray, background=SOURCE_BACKGROUND) -> np.ndarray:
    """(H, W, 3) uint8 as it is; (H, W, 4) uint8 with straight alpha composited over ``background``."""
    if image.shape[-1] != 4:
        return image
    # in uint16, in place (at most 255·255 + 127): float32 copies took 8 times the image, 512 MiB for a 4096² source
    alpha = image[..., 3:].astype(np.uint16)
    mixed = image[..., :3] * alpha
    mixed += (255 - alpha) * np.asarray(background, np.uint16)
    mixed += 127  # (n + 127) // 255 is n / 255 rounded: never halfway, 255 being odd
    mixed //= 255
    return mixed.astype(np.uint8)


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 resized to width × height (bicubic) when its size differs."""
    if image.shape[:2] == (height, width):
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))


@torch.no_grad()
def encode_image(pipe, image: np.ndarray, device) -> torch.Tensor:
    """(1, 4, H/8, W/8) scaled latents of an (H, W, 3) uint8 image (the VAE's mean: deterministic)."""
    pixels = image_tensor(image).permute(2, 0, 1)[None].to(device, pipe.vae.dtype)
    latents = pipe.vae.encode(pixels / 127.5 - 1.0).latent_dist.mode()
    return latents * pipe.vae.config.scaling_factor


def transfer(pipe, source_image: np.ndarray, control_images: Sequence[np.ndarray], prompt: str = "two hands",
             negative_prompt: str = "", num_inference_steps: int = 20, guidance_scale: float = 7.5,
             control_scales: float | Sequence[float] = 1.0, num_images: int = 1,
             generator: torch.Generator | list[torch.Generator] | None = None, reference_scale: float = 1.0,
             reference: bool = True, on_step: Callable[[int, int, torch.Tensor], None] | None = None):
    """Images (``pipeline.Generated``) in the layout of ``control_images`` (the target pose's renders)
    with the appearance of ``source_image`` (resized to their size). ``reference=False``: plain
    ControlNet sampling with the same seed (the comparison the tests make). ``generator``: one, or one per image
    (``image_generators``); the (first) one's seed is the request's, from which the source's noise is seeded."""
    height, width = control_images[0].shape[:2]
    device = pipe._execution_device
    source = encode_image(pipe, fit_image(source_image, width, height), device).to(pipe.unet.dtype)
    # the source's own noise from a generator of its own, so that the sampling noise is the same with
    # the injection on or off; seeded off the images' seeds (SOURCE_NOISE_OFFSET)
    first = generator[0] if isinstance(generator, list) else generator
    seed = source_noise_seed(first.initial_seed() if first is not None else 0)
    noise = randn_tensor(source.shape, generator=torch.Generator(device=first.device if first else "cpu")
                         .manual_seed(seed), device=device, dtype=source.dtype)
    kwargs = {"negative_prompt": negative_prompt, "num_inference_steps": num_inference_steps,
              "guidance_scale": guidance_scale, "control_scales": control_scales, "num_images": num_images,
              "generator": generator, "on_step": on_step}
    if not reference:
        return pipe(prompt, control_images, **kwargs)
    with inject(pipe.unet, pipe.scheduler, source, noise, scale=reference_scale):
        return pipe(prompt, control_images, **kwargs)


@torch.no_grad()
def sample_target(parts: dict, target_generator, source_image: np.ndarray, source_pose: np.ndarray,
                  target_pose: np.ndarray, width: int, height: int, num_inference_steps: int = 50,
                  num_images: int = 1, generator: torch.Generator | list[torch.Generator] | None = None,
                  on_step: Callable[[int, int, torch.Tensor], None] | None = None) -> np.ndarray:
    """IHPT's inference (Eq. 4): DDIM from noise with the UNet attending to the target generator's
    context of (I_source, P_source, P_target); (N, H, W, 3) uint8. ``parts``: SD 1.x's vae, unet,
    scheduler (``loading.load_sd``). No classifier-free guidance: the paper trains no unconditional context.
    ``generator``: one, or one per image (``image_generators``), each image then drawing from its own only."""
    vae, unet, scheduler = parts["vae"], parts["unet"], parts["scheduler"]
    device, dtype = unet.device, unet.dtype
    pixels = image_tensor(fit_image(source_image, width, height)).permute(2, 0, 1)[None]
    pose = [torch.as_tensor(p, dtype=torch.float32, device=device)[None] for p in (source_pose, target_pose)]
    context = target_generator(pixels.to(device, torch.float32) / 127.5 - 1.0, *pose).to(dtype)
    context = context.repeat(num_images, 1, 1)
    scheduler.set_timesteps(num_inference_steps, device=device)
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    latents = randn_tensor((num_images, unet.config.in_channels, height // scale, width // scale),
                           generator=generator, device=device, dtype=dtype) * scheduler.init_noise_sigma
    for i, t in enumerate(scheduler.timesteps):
        noise = unet(scheduler.scale_model_input(latents, t), t, encoder_hidden_states=context, return_dict=False)[0]
        latents = scheduler.step(noise, t, latents, return_dict=False)[0]
        if on_step is not None:
            on_step(i, len(scheduler.timesteps), latents)
    decoded = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    return ((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


__all__ = ["SOURCE_BACKGROUND", "SOURCE_NOISE_OFFSET", "encode_image", "fit_image", "opaque",
           "sample_target", "source_noise_seed", "transfer"]
