"""float16 asked for on the CPU: the jobs run, and say that it is the slow precision there."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("dtype")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd)


@pytest.mark.parametrize("kind", ["image.generate", "image.transfer"])
def test_float16_on_the_cpu_is_said_to_be_slower(weights, monkeypatch, kind):
    # before: taken silently (the result had no warning), about 4× slower than float32 with the tests' tiny model
    # on this CPU, and the server's log said, in diffusers' words, that the pipeline "cannot run" on the CPU
    from handforge.engines.image import jobs as image_jobs
    from handforge.engines.transfer import jobs as transfer_jobs
    from handforge.render.camera import look_at
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    root, sd, guidance = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    monkeypatch.delenv("HANDFORGE_CONTROLNETS", raising=False)
    size = tiny_sd.IMAGE_SIZE
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    arrays = {"camera.K": np.array([[150.0, 0, size / 2], [0, 150.0, size / 2], [0, 0, 1]]), "camera.R": R,
              "camera.t": t, **pose_arrays({"right": pose_library.get("fist", side="right")})}
    if kind == "image.transfer":
        arrays["source.image"] = np.full((size, size, 3), 128, np.uint8)
    handler = image_jobs.generate if kind == "image.generate" else transfer_jobs.transfer_job
    schema = default_registry().kind(kind).schema
    cache = ModelCache()

    def run(dtype):
        valid = schema.validate({"prompt": "two hands", "width": size, "height": size, "steps": 2, "dtype": dtype},
                                arrays)
        ctx = JobContext("j", kind, lambda fraction, message, previews: None, models=cache)
        return handler(ctx, valid, arrays).data

    half = run("float16")
    assert "dtype float16 on cpu runs slower than float32 there" in half["warning"], half.get("warning")
    assert "dtype auto (float32 on the CPU) or float32 is faster" in half["warning"]
    for other in ("auto", "float32", "bfloat16"):
        assert "float16" not in run(other).get("warning", ""), other
