"""refine_hands' cut and paste (engines/image/refine.py) on images whose pixels say where they are: the crop is
[x, y, width, height] in pixels (``HandConditioning.crop``), cut out exactly and pasted back at the same place
with a feathered edge. Before these tests, a crop read as [x0, y0, x1, y1] passed the job-level test, which
only checks that pixels outside the box stay as they were."""

from __future__ import annotations

import numpy as np
from handforge.engines.image.refine import cut, paste

W, H = 64, 48
CROP = [10.0, 5.0, 20.0, 24.0]  # x, y, width, height


def where_images(count: int = 2) -> np.ndarray:
    """(count, H, W, 3) uint8: red is the column, green the row, blue the image's index."""
    images = np.zeros((count, H, W, 3), np.uint8)
    images[..., 0] = np.arange(W)[None, None, :]
    images[..., 1] = np.arange(H)[None, :, None]
    images[..., 2] = np.arange(count)[:, None, None]
    return images


def test_cut_takes_the_box_x_y_width_height_exactly_at_its_own_size():
    images = where_images()
    patches = cut(images, CROP, (20, 24))  # the box's own size: no resampling
    assert patches.shape == (2, 24, 20, 3)
    np.testing.assert_array_equal(patches, images[:, 5:29, 10:30])


def test_cut_resizes_to_the_size_asked_width_first():
    patches = cut(where_images(), CROP, (40, 48))  # twice the box each way
    assert patches.shape == (2, 48, 40, 3)
    red, green = patches[0, ..., 0].astype(int), patches[0, ..., 1].astype(int)
    assert red.min() >= 9 and red.max() <= 30 and green.min() >= 4 and green.max() <= 29  # (bicubic: ±1)
    assert abs(red[:, 20].mean() - 20) <= 1 and abs(green[24].mean() - 17) <= 1  # the box's middle in the middle


def test_paste_puts_the_patch_in_the_box_with_a_feathered_edge_and_nothing_outside():
    images = where_images()
    patches = np.full((2, 32, 32, 3), 200, np.uint8)  # any size: resized to the box
    out = paste(images, patches, CROP)
    inside = np.zeros((H, W), bool)
    inside[5:29, 10:30] = True
    np.testing.assert_array_equal(out[:, ~inside], images[:, ~inside])  # nothing outside the box changes
    np.testing.assert_array_equal(out[:, 12:22, 15:25], 200)  # the box's middle is the patch's
    # feathered: from the box's edge inwards the blue channel (0 in image 0) climbs to the patch's 200
    for ramp in (out[0, 5:12, 20, 2], out[0, 16, 10:17, 2], out[0, 28:21:-1, 20, 2], out[0, 16, 29:22:-1, 2]):
        assert 0 < ramp[0] < 100 and (np.diff(ramp.astype(int)) >= 0).all() and ramp[-1] == 200, ramp


def test_cut_then_paste_at_the_boxs_size_gives_the_image_back():
    images = where_images()
    np.testing.assert_array_equal(paste(images, cut(images, CROP, (20, 24)), CROP), images)
