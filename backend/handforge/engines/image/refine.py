"""AttentionHand's optional local refinement: regenerate the hands' box at full resolution and blend
it back (the local branch of Park et al., ECCV 2024, arXiv:2407.18034, used at sampling time).

The box (``HandConditioning.crop``) is cut out of each generated image and resized to the output
size, renoised to ``strength`` and denoised again with the local mesh image (image-to-image), then
resized back and pasted with a feathered edge, so the hands get the whole resolution of the model
while the scene around them stays as it was.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

FEATHER = 0.08  # of the box's side: the width of the blend ramp at its border
# pixels: the hands' box's longer side below which there is nothing to refine: under one cell of the latent image
# (Stable Diffusion's VAE: 8 pixels a side), far from the camera or all but out of its view. A pass there doubled the
# job's time to paint a crop of a few pixels at the full size and shrink it back into those few (it did so from
# boxes of 1-2 pixels, and below one pixel too until 2026-12-06)
MIN_SIDE = 8.0


def refinable(box: list[float] | None) -> bool:
    """Whether the hands' box [x, y, w, h] in the image holds anything to refine."""
    return box is not None and min(box[2], box[3]) > 0 and max(box[2], box[3]) >= MIN_SIDE


def cut(images: np.ndarray, crop: list[float], size: tuple[int, int]) -> np.ndarray:
    """(N, H, W, 3) uint8 → (N, size[1], size[0], 3): the crop box of each, resized (black outside)."""
    box = tuple(round(v) for v in (crop[0], crop[1], crop[0] + crop[2], crop[1] + crop[3]))
    return np.stack([np.asarray(Image.fromarray(im).crop(box).resize(size, Image.BICUBIC)) for im in images])


def paste(images: np.ndarray, patches: np.ndarray, crop: list[float]) -> np.ndarray:
    """Blend ``patches`` (the refined boxes) back into ``images`` at ``crop`` with a feathered mask."""
    x0, y0 = round(crop[0]), round(crop[1])
    w, h = round(crop[0] + crop[2]) - x0, round(crop[1] + crop[3]) - y0
    ramp = max(1, round(FEATHER * min(w, h)))
    mask = Image.new("L", (w, h), 0)
    mask.paste(255, (ramp, ramp, w - ramp, h - ramp))
    mask = mask.filter(ImageFilter.GaussianBlur(ramp / 2))
    out = []
    for image, patch in zip(images, patches):
        canvas = Image.fromarray(image)
        canvas.paste(Image.fromarray(patch).resize((w, h), Image.BICUBIC), (x0, y0), mask)
        out.append(np.asarray(canvas))
    return np.stack(out)


__all__ = ["MIN_SIDE", "cut", "paste", "refinable"]
