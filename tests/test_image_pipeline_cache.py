"""The image engines' pipelines in the server's model cache: one entry per SD model, guides, dtype and offload
setting, reloaded when any of their files changed on disk."""

from __future__ import annotations

import shutil

import pytest

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


def test_a_guide_retrained_in_place_replaces_its_cached_pipeline(tmp_path, monkeypatch):
    # before: the guides' file signatures were part of the cache key, so a guidance module (or ControlNet)
    # rewritten in place made a new entry and the old pipeline, a whole SD model with it, stayed cached beside
    # it: the backend's memory grew by one pipeline per retrain (on a GPU, until the budget's evictions or OOM)
    from handforge.engines.image.jobs import cached_pipeline
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache

    sd = tiny_sd.build_sd(tmp_path / "sd")
    guidance = tiny_sd.build_controlnet(tmp_path / "guidance", sd, seed=1)
    retrained = tiny_sd.build_controlnet(tmp_path / "retrained", sd, seed=2)
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    cache = ModelCache()
    params = {"dtype": "float32", "cpu_offload": False}

    def pipeline():
        ctx = JobContext("j", "image.generate", lambda fraction, message, previews: None, models=cache)
        return cached_pipeline(ctx, params, [str(guidance)]), ctx.loaded

    first, loaded = pipeline()
    assert len(loaded) == 1 and pipeline() == (first, [])  # cached
    shutil.rmtree(guidance)
    shutil.copytree(retrained, guidance)
    second, loaded = pipeline()
    assert second is not first and len(loaded) == 1  # the change is seen ...
    assert len(cache.cached()) == 1  # ... and the old pipeline let go
    assert pipeline() == (second, [])
