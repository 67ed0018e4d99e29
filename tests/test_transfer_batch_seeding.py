"""image.transfer's seeding, both engines: the k-th image of a batch is seeded seed + k, so each image is what it is
alone at its seed, whatever the batch; and no two images share noise, nor any image the reference engine's source
noise (seeded from its own stream, ``pipeline.source_noise_seed``). In process on the tiny weights, each call's noise
kept. Before: the whole batch came from one generator (image 1 changed with the batch size), and the source's noise
was seeded seed + 1, the noise of a request at the next seed."""

from __future__ import annotations


import numpy as np
import pytest
import torch

from tests.support import tiny_sd
from tests.test_transfer_jobs import labels_of, request


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from handforge.engines.checkpoints import save_model
    from handforge.engines.transfer.model import TargetGenerator

    root = tmp_path_factory.mktemp("transfer-seeds")
    sd = tiny_sd.build_sd(root / "sd")
    tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd, seed=2)
    torch.manual_seed(0)
    generator = save_model(TargetGenerator(cross_attention_dim=32, image_size=32, backbone_channels=(8, 16),
                                           feature_dim=16, num_layers=1, num_heads=2), root / "run" / "model")
    return root, sd, generator


@pytest.fixture
def transfer(weights, monkeypatch):
    """``transfer(engine, seed, batch)``: (images, every noise drawn, in order), in process."""
    from handforge.engines.image import pipeline as image_pipeline
    from handforge.engines.transfer import jobs as transfer_jobs
    from handforge.engines.transfer import pipeline as transfer_pipeline
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache

    root, sd, generator = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(root / "controlnets"))
    monkeypatch.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(generator))
    noises = []

    def keeping(module):
        real = module.randn_tensor

        def kept(shape, **kwargs):
            out = real(shape, **kwargs)
            noises.append(out.clone())
            return out

        monkeypatch.setattr(module, "randn_tensor", kept)

    keeping(image_pipeline)  # the reference engine's images
    keeping(transfer_pipeline)  # its source's noise; ihpt's images
    cache = ModelCache()

    def run(engine: str, seed: int, batch: int):
        noises.clear()
        params, arrays = request(engine=engine, seed=seed, batch=batch, source_labels=labels_of("fist"))
        valid = default_registry().kind("image.transfer").schema.validate(params, arrays)
        context = JobContext("j", "image.transfer", lambda *a: None, models=cache)
        result = transfer_jobs.transfer_job(context, valid, arrays)
        return result.arrays["images"], list(noises)

    return run


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal but for a level here and there: the batch's arithmetic rounds otherwise than one image's."""
    return int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1


def per_image(noises: list[torch.Tensor]) -> list[torch.Tensor]:
    return [image for noise in noises for image in noise]


@pytest.mark.parametrize("engine", ["reference", "ihpt"])
def test_each_image_is_what_it_is_alone_at_its_seed(transfer, engine):
    batch, batch_noise = transfer(engine, seed=3, batch=3)
    alone = [transfer(engine, seed=3 + k, batch=1) for k in range(3)]
    for k, (image, _) in enumerate(alone):
        assert close(batch[k], image[0]), (k, int(np.abs(batch[k].astype(int) - image[0].astype(int)).max()))
    again, _ = transfer(engine, seed=3, batch=3)
    np.testing.assert_array_equal(again, batch)  # seeded
    # no two images share noise, nor an image the source's (the reference engine's first draw), this request's or the
    # next seed's: the one noise drawn twice is image 1's, alone at seed + 1 as in the batch
    drawn = per_image(batch_noise) + per_image(alone[1][1])
    shared = [(i, j) for i in range(len(drawn)) for j in range(i) if torch.equal(drawn[i], drawn[j])]
    if engine == "reference":  # [source, image 0, 1, 2] + [source at seed + 1, image 1 alone]
        assert len(batch_noise) == 2 and batch_noise[0].shape[0] == 1 and batch_noise[1].shape[0] == 3
        assert shared == [(5, 2)], shared
    else:  # [image 0, 1, 2] + [image 1 alone]
        assert len(batch_noise) == 1 and batch_noise[0].shape[0] == 3
        assert shared == [(3, 1)], shared


def test_the_source_noise_has_a_stream_of_its_own():
    """Its seed is the request's + 2**31: never seed + k of the same request, not even modulo 2**32 (the CPU
    generator keeps a seed's low 32 bits: an offset of 2**63, tried first, drew each source image 0's noise)."""
    from handforge.engines.transfer.pipeline import source_noise_seed
    from handforge.server.builtin_jobs import default_registry

    schema = default_registry().kind("image.transfer").schema.params
    largest, batch = schema["seed"].max, schema["batch"].max
    for seed in (0, 1, 2**31 - 1, 2**32 - 1, 2**32, largest - batch, largest):
        noise_seed = source_noise_seed(seed)
        assert 0 <= noise_seed < 2**64
        assert all((noise_seed - seed - k) % 2**32 for k in range(batch)), seed
        for device_seed in {noise_seed, noise_seed % 2**32}:
            source = torch.randn(8, generator=torch.Generator().manual_seed(device_seed))
            assert not any(torch.equal(source, torch.randn(8, generator=torch.Generator().manual_seed(seed + k)))
                           for k in range(batch))
