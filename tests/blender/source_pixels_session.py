"""Blender session: the pixels Transfer Pose sends of a float source image (a script's float buffer, an EXR file)
holding NaN or infinite pixels."""

from __future__ import annotations

import importlib

import bpy
import numpy as np

from session import ADDON_MODULE, Session

s = Session()
s.install()
ops_transfer = importlib.import_module(f"{ADDON_MODULE}.ops_transfer")


def float_image(name: str, pixels: np.ndarray):
    """A float image datablock of ``pixels`` (H, W, 4, top row first)."""
    height, width = pixels.shape[:2]
    image = bpy.data.images.new(name, width, height, alpha=True, float_buffer=True)
    image.pixels.foreach_set(np.ascontiguousarray(pixels[::-1], np.float32).ravel())
    return image


def exr(name: str, pixels: np.ndarray):
    """``pixels`` saved as an OpenEXR file and loaded back, as an artist's file is."""
    image = float_image(name, pixels)
    image.filepath_raw, image.file_format = str(s.work / f"{name}.exr"), "OPEN_EXR"
    image.save()
    bpy.data.images.remove(image)
    return bpy.data.images.load(str(s.work / f"{name}.exr"))


def refusal(image) -> str:
    try:
        sent = ops_transfer.image_pixels(image)
    except ValueError as exc:
        return str(exc)
    return f"sent {sent.reshape(-1, sent.shape[-1]).tolist()}"


def not_finite():
    pixels = np.full((4, 8, 4), 0.5, np.float32)
    pixels[..., 3] = 1.0
    clean = ops_transfer.image_pixels(float_image("clean", pixels))
    pixels[0, 0, 0] = pixels[1, 2, 1] = np.nan
    pixels[3, 7, 3] = np.nan  # its alpha
    in_file = refusal(exr("fireflies", pixels))
    pixels[2, 3, :3] = np.inf  # (a file's goes through the colour transform of its save: finite then)
    return {"clean": list(clean.shape), "buffer": refusal(float_image("Fireflies", pixels)), "file": in_file}


s.check("not_finite", not_finite)
s.finish()
