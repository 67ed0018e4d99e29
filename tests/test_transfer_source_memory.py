"""image.transfer's source handling on a large source: its alpha composited (``opaque``) and the hands' mask of its
mesh image (``hand_mask``) in integers, without float copies of the image (a 4096² RGBA source took 512 MiB in
each), giving the same pixels as the float formulas did."""

from __future__ import annotations

import tracemalloc

import numpy as np
from handforge.engines.transfer.compositing import MESH_THRESHOLD, hand_mask
from handforge.engines.transfer.pipeline import opaque


def peak(call, *args):
    """``call(*args)`` and the most memory it held at once, in bytes."""
    tracemalloc.start()
    try:
        return call(*args), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_opaque_is_the_float_formula_for_every_value_and_alpha():
    value, alpha = np.meshgrid(np.arange(256), np.arange(256))
    image = np.stack([value, value[::-1], value, alpha], axis=-1).astype(np.uint8)
    for background in ((255, 255, 255), (0, 0, 0), (17, 130, 254)):
        share = image[..., 3:] / 255.0
        expected = np.round(image[..., :3] * share + np.array(background) * (1.0 - share)).astype(np.uint8)
        np.testing.assert_array_equal(opaque(image, background), expected)


def test_hand_mask_is_the_luma_threshold_exactly():
    mesh = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    luma = mesh @ np.array([0.299, 0.587, 0.114])
    for threshold in (MESH_THRESHOLD, 40.5, 100, 0):
        np.testing.assert_array_equal(hand_mask(mesh, threshold), luma > threshold)


def test_a_large_source_is_composited_and_masked_without_float_copies():
    # before: opaque held 8 times the source's bytes (float32 copies of its RGB), hand_mask 10.7 times the mesh
    # image's (a float64 copy of it, and its luma in float64)
    source = np.random.default_rng(1).integers(0, 256, (1024, 1024, 4), dtype=np.uint8)
    source.flags.writeable = False  # (as arrays arrive from the wire)
    out, held = peak(opaque, source)
    assert out.dtype == np.uint8 and out.shape == (1024, 1024, 3)
    assert held < 4.5 * source.nbytes, held / source.nbytes  # (uint16 terms: 4 times)
    mesh = source[..., :3]
    _, held = peak(hand_mask, mesh)
    assert held < 4 * mesh.nbytes, held / mesh.nbytes  # (a uint32 luma and one channel's term: 2.7 times)
