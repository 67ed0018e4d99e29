"""IHPT's background and source generators: the composite takes the hand image exactly where the
thresholded mesh image (our GL renderer's) is set, and the background everywhere else."""

from __future__ import annotations

import numpy as np
import pytest
from handforge.engines.image.conditioning import condition
from handforge.engines.transfer.compositing import (
    MESH_THRESHOLD,
    background,
    composite,
    hand_mask,
)
from handforge.hands import load_hand_model
from handforge.render.camera import Camera, look_at
from handforge_shared import pose_library

from tests.support import tiny_sd


@pytest.fixture(scope="module")
def view():
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    camera = Camera(np.array([[150.0, 0, 64], [0, 150.0, 48], [0, 0, 1]]), R, t, 128, 96)
    hands = {"right": pose_library.get("fist", side="right"), "left": pose_library.get("spread", side="left")}
    return condition(load_hand_model("open"), hands, camera).global_view


def test_hand_pixels_lie_exactly_inside_the_thresholded_mesh_image(view):
    mesh = view.images["mesh"]
    rng = np.random.default_rng(0)
    hand = rng.integers(0, 256, mesh.shape, dtype=np.uint8)
    back = rng.integers(0, 256, mesh.shape, dtype=np.uint8)
    mask = hand_mask(mesh)
    out = composite(back, hand, mesh)
    assert out.dtype == np.uint8 and out.shape == mesh.shape
    assert np.array_equal(out[mask], hand[mask]) and np.array_equal(out[~mask], back[~mask])
    silhouette = view.depth > 0  # the renderer's own hand pixels
    assert 0.02 < silhouette.mean() < 0.9
    assert np.array_equal(mask, silhouette)  # the threshold keeps every hand pixel and no background one


def test_the_threshold_is_on_the_mesh_images_intensity():
    mesh = np.zeros((2, 3, 3), np.uint8)
    mesh[0, 0] = (255, 0, 0)      # luma 76.2
    mesh[0, 1] = (0, 0, 255)      # luma 29.1
    mesh[0, 2] = (40, 40, 40)     # exactly at the threshold: not a hand pixel
    mesh[1, :] = (41, 41, 41)
    assert hand_mask(mesh, MESH_THRESHOLD).tolist() == [[True, False, False], [True, True, True]]
    assert hand_mask(mesh, 100).sum() == 0


def test_images_of_different_sizes_are_refused(view):
    mesh = view.images["mesh"]
    with pytest.raises(ValueError, match="differ in size"):
        composite(np.zeros((64, 64, 3), np.uint8), np.zeros_like(mesh), mesh)


def test_background_generator_is_seeded_text_to_image(tmp_path):
    from handforge.engines.image.loading import build_pipeline

    sd = tiny_sd.build_sd(tmp_path / "sd")
    pipe = build_pipeline(sd, [tiny_sd.build_controlnet(tmp_path / "cn", sd)])
    a = background(pipe.components, "a kitchen table", 64, 48, steps=2, seed=1)
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, background(pipe.components, "a kitchen table", 64, 48, steps=2, seed=1))
    assert not np.array_equal(a, background(pipe.components, "a kitchen table", 64, 48, steps=2, seed=2))
