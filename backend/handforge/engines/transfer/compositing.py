"""IHPT's background and source generators (Park, Hwang and Kang, "Diffusion-based Interacting Hand
Pose Transfer", ECCV 2024 HANDS workshop, Sec. 2.1-2.2).

- Background image generator: I_back = BIG(T), Stable Diffusion text-to-image (diffusers'
  ``StableDiffusionPipeline`` on the image engine's SD 1.x components).
- Source image generator: I_source = SIG(I_back, I_hand, I_mesh): pixels whose mesh-image intensity
  is above a threshold take the hand image, the others the background.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

# Above the background (black) and below our mesh image's darkest hand pixel (ambient 0.3 of the base
# colour, render/gl.py: luma ≥ 75 of 255, its darkest channel, blue, 69), so every hand pixel is kept. AttentionHand's code thresholds its
# own renderer's brighter mesh images at 127.
MESH_THRESHOLD = 40
LUMA = (299, 587, 114)  # ITU-R BT.601 in thousandths, as PIL's convert("L")


def hand_mask(mesh: np.ndarray, threshold: float = MESH_THRESHOLD) -> np.ndarray:
    """(H, W) bool: where the mesh image's intensity (BT.601 luma of (H, W, 3), or (H, W) grey) is above ``threshold``."""
    mesh = np.asarray(mesh)
    if mesh.ndim == 3 and mesh.shape[2] in (3, 4):
        # a thousand times the luma, exact in uint32 a channel at a time: float64 copies of a source's 4096² mesh
        # image took 512 MiB
        intensity = np.multiply(mesh[..., 0], LUMA[0], dtype=np.uint32)  # (numpy 1.x: uint16 else, overflowing)
        for channel in (1, 2):
            intensity += np.multiply(mesh[..., channel], LUMA[channel], dtype=np.uint32)
        return intensity > threshold * 1000
    if mesh.ndim == 2:
        return mesh > threshold
    raise ValueError(f"mesh image of shape {mesh.shape}: give (H, W, 3) RGB or (H, W) grey")


def composite(background: np.ndarray, hand: np.ndarray, mesh: np.ndarray,
              threshold: float = MESH_THRESHOLD) -> np.ndarray:
    """SIG: ``hand`` where the thresholded ``mesh`` image is set, ``background`` elsewhere; all (H, W, 3) uint8."""
    shapes = {"background": np.shape(background), "hand": np.shape(hand), "mesh": np.shape(mesh)[:2]}
    if shapes["background"] != shapes["hand"] or shapes["hand"][:2] != shapes["mesh"] or len(shapes["hand"]) != 3:
        raise ValueError(f"the images differ in size: {shapes}; render the mesh image with the hand image's camera "
                         "and resize the background to it")
    return np.where(hand_mask(mesh, threshold)[..., None], hand, background).astype(np.uint8, copy=False)


def background(parts, prompt: str, width: int, height: int, negative_prompt: str = "", steps: int = 20,
               guidance_scale: float = 7.5, seed: int = 0, device: str = "cpu",
               on_step: Callable[[int, int], None] | None = None) -> np.ndarray:
    """BIG: an (H, W, 3) uint8 text-to-image background from SD 1.x's ``parts`` (vae, text_encoder,
    tokenizer, unet, scheduler; a pipeline's ``components`` will do). ``on_step(done, total)`` after
    each denoising step (it may raise to stop, e.g. a job's cancel)."""
    import torch
    from diffusers import StableDiffusionPipeline

    text_to_image = StableDiffusionPipeline(**{k: parts[k] for k in ("vae", "text_encoder", "tokenizer", "unet",
                                                                     "scheduler")},
                                            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    text_to_image.set_progress_bar_config(disable=True)
    def step_end(pipe, step: int, timestep, kwargs: dict) -> dict:
        if on_step is not None:
            on_step(step + 1, steps)
        return kwargs

    out = text_to_image(prompt, negative_prompt=negative_prompt or None, width=width, height=height,
                        num_inference_steps=steps, guidance_scale=guidance_scale, output_type="np",
                        generator=torch.Generator(device=device).manual_seed(seed), callback_on_step_end=step_end)
    return np.round(out.images[0] * 255).astype(np.uint8)


__all__ = ["MESH_THRESHOLD", "background", "composite", "hand_mask"]
