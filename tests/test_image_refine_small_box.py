"""refine_hands on hands whose box is under 8 pixels, one latent cell (far from the camera): skipped, said in the
result's warning (a second pass regenerated a box of 1-2 pixels, doubling the job's time for nothing, unsaid)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine_small")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd)


def generate(weights, monkeypatch, eye, target) -> dict:
    """image.generate's result data for a fist seen from ``eye`` looking at ``target``, refine_hands on."""
    root, sd, guidance = weights
    tiny_sd.use_weights(monkeypatch, root, sd, guidance=guidance)
    passes = []
    result = tiny_sd.run_image_job("image.generate", {"steps": 1, "prompt": "a hand", "tas": False, "refine_hands": True},
                                   tiny_sd.fist_in_view(eye, target), progress=passes.append)
    assert np.isfinite(result.arrays["images"]).all()
    return {**result.data, "progress": passes}


def test_refine_on_hands_under_a_pixel_is_skipped_and_said(weights, monkeypatch):
    far = generate(weights, monkeypatch, [-0.08, -300.0, 0.06], [-0.08, 0.0, 0.0])  # the fist at 300 m
    assert 0 < max(far["bbox"][2:]) < 1, far["bbox"]
    assert far["refined_box"] is None and not any(m.startswith("hands ") for m in far["progress"]), far["progress"]
    warning = far.get("warning", "")
    assert "refine_hands skipped: the hands' box is 0.063 × 0.053 pixels, under 8 a side (one cell of the latent " \
           "image: the hands are far from the camera, or all but out of its view)" in warning, warning
    assert "move the camera nearer the hands, or set refine_hands off" in warning
    # a few pixels (it was refined: a 512-pixel pass shrunk back into a box of 3, with nothing of it left to see)
    few = generate(weights, monkeypatch, [-0.08, -4.0, 0.06], [-0.08, 0.0, 0.0])
    assert 1 < max(few["bbox"][2:]) < 8 and few["refined_box"] is None, few["bbox"]
    assert "under 8 a side" in few.get("warning", ""), few.get("warning")
    near = generate(weights, monkeypatch, [-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    assert near["refined_box"] is not None and "warning" not in near, near.get("warning")
    assert any(m.startswith("hands ") for m in near["progress"])
