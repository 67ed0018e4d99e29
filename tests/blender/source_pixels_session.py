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


def straight(pixels: np.ndarray) -> np.ndarray:
    """What a premultiplied float RGBA buffer (top row first) is sent as: un-premultiplied, sRGB-encoded, its alpha."""
    alpha = pixels[..., 3:]
    rgb = np.clip(np.divide(pixels[..., :3], alpha, out=np.zeros_like(pixels[..., :3]), where=alpha > 0), 0, 1)
    rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * rgb ** (1 / 2.4) - 0.055)
    return np.round(np.concatenate([rgb, np.clip(alpha, 0, 1)], axis=2) * 255).astype(np.uint8)


def large_source():
    """The memory that reading a large float source (and bringing it within a target's size) takes."""
    import tracemalloc

    side = 1024
    pixels = np.random.default_rng(0).random((side, side, 4), np.float32)
    pixels[::7, ::5, 3] = 0.0  # some pixels wholly transparent
    image = float_image("Large", pixels)
    tracemalloc.start()
    sent = ops_transfer.image_pixels(image)
    read = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    reduced = ops_transfer.reduced(sent, 256, 256)
    reducing = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    blocks = sent.reshape(256, 4, 256, 4, 4).astype(np.float64)
    return {"buffer_mib": pixels.nbytes / 2**20, "read_mib": read / 2**20, "reducing_mib": reducing / 2**20,
            "sent_mib": sent.nbytes / 2**20, "as_straight": bool(np.array_equal(sent, straight(pixels))),
            "reduced": bool(np.array_equal(reduced, np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)))}


s.check("large", large_source)


def nothing_to_see():
    """A source transparent everywhere, and a UDIM tiled one: refused, saying why (both ran unsaid: the first on the
    backdrop alone, the second with its tile 1001 only)."""
    pixels = np.full((4, 8, 4), 0.5, np.float32)
    pixels[..., 3] = 0.0
    clear = refusal(float_image("Clear", pixels))
    pixels[0, 0, 3] = 1.0  # one pixel shows: sent
    tiled = bpy.data.images.new("Tiles", 8, 8, tiled=True)
    tiled.tiles.new(tile_number=1002)
    return {"clear": clear, "one_pixel": refusal(float_image("One Pixel", pixels)), "tiled": refusal(tiled)}


s.check("nothing_to_see", nothing_to_see)
s.finish()
