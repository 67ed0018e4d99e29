"""image.generate's seeding with refine_hands: the k-th image of a batch is seeded seed + k, and its refine pass
draws from that image's own generator, so each image, refined, is what it is alone at its seed, whatever the batch;
the same request gives the same images; and no image's refine noise is another's (or another seed's) noise. In
process on the tiny weights, each pipeline call's noise kept. Before: one generator for the batch, another seeded
seed + 1 for the refine pass, whose noise for image 0 came after the whole batch's (on the CPU its first image
changed with the batch size, by up to 157 of 255 here) and was the base noise of the request at seed + 1."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support import tiny_sd
from tests.test_image_jobs import request


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("refine-seeds")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd, seed=1)


@pytest.fixture
def generate(weights, monkeypatch):
    """``generate(seed, batch)``: (images, the noise of each pipeline call: [base, refine]), in process."""
    from handforge.engines.image import jobs as image_jobs
    from handforge.engines.image import pipeline
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache

    root, sd, guidance = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    noises = []
    real = pipeline.randn_tensor

    def kept(shape, **kwargs):  # the pipeline's noise (its first draw each call; the VAE's sample is not this)
        out = real(shape, **kwargs)
        noises.append(out.clone())
        return out

    monkeypatch.setattr(pipeline, "randn_tensor", kept)
    cache = ModelCache()

    def run(seed: int, batch: int):
        noises.clear()
        params, arrays = request(seed=seed, batch=batch, steps=2, tas=False, refine_hands=True, refine_strength=0.5)
        valid = default_registry().kind("image.generate").schema.validate(params, arrays)
        result = image_jobs.generate(JobContext("j", "image.generate", lambda *a: None, models=cache), valid, arrays)
        assert result.data["refined_box"] is not None
        return result.arrays["images"], list(noises)

    return run


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal but for a level here and there: the batch's arithmetic rounds otherwise than one image's."""
    return int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def test_each_refined_image_is_what_it_is_alone_at_its_seed(generate):
    pair, (base, refine) = generate(seed=3, batch=2)
    first, (first_base, first_refine) = generate(seed=3, batch=1)
    second, (second_base, second_refine) = generate(seed=4, batch=1)
    assert close(pair[0], first[0]) and close(pair[1], second[0])  # the second image's seed is seed + 1
    assert torch.equal(refine[0], first_refine[0]) and torch.equal(refine[1], second_refine[0])
    again, _ = generate(seed=3, batch=2)
    np.testing.assert_array_equal(again, pair)  # seeded
    # the two images' refine noise differ, and neither is any image's base noise (seed + 1's, before)
    assert not torch.equal(refine[0], refine[1])
    assert not any(torch.equal(r, b) for r in refine for b in [*base, *second_base])


def test_the_batch_is_documented_as_each_kind_seeds_it():
    """image.transfer takes image.generate's batch setting and seeds its images as it does (tests/
    test_transfer_batch_seeding.py), but for the background a background_prompt draws once: its schema says so."""
    from handforge.server.builtin_jobs import default_registry

    registry = default_registry()
    assert "seeded seed + k" in registry.kind("image.generate").schema.params["batch"].doc
    transfer = registry.kind("image.transfer").schema.params["batch"].doc
    assert "seeded seed + k" in transfer and "background_prompt: on the background drawn at seed" in transfer
