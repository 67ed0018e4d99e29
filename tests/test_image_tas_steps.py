"""TAS that runs at no step: said in the result's warning, as TAS with no hand-related word is."""

from __future__ import annotations

import numpy as np
import pytest

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("tas")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd)


@pytest.mark.parametrize("asked, says", [
    ({"steps": 1}, "TAS did nothing: it runs at the first half of the steps by default, 0 of 1;"),
    ({"steps": 2, "tas_steps": 0}, "TAS did nothing: tas_steps is 0"),
])
def test_tas_at_no_step_is_said(weights, monkeypatch, asked, says):
    # before: TAS on with a hand word and 1 step (half of it: 0) or tas_steps 0 moved the latents at no step,
    # and the result listed its hand tokens with no warning (TAS on at strength 0 is refused, and TAS with no
    # hand word is said)
    from handforge.engines.image import jobs
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
    schema = default_registry().kind("image.generate").schema

    def run(**params):
        valid = schema.validate({"prompt": "two hands holding a cup", "width": size, "height": size, **params}, arrays)
        ctx = JobContext("j", "image.generate", lambda fraction, message, previews: None, models=cache)
        return jobs.generate(ctx, valid, arrays).data

    cache = ModelCache()
    data = run(**asked)
    assert data["tas"]["steps"] == 0 and data["tas"]["tokens"]
    assert says in data["warning"] and "set tas off" in data["warning"]
    ran = run(steps=2)  # at one step: nothing to say
    assert ran["tas"]["steps"] == 1 and len(ran["tas"]["losses"]) == 1 and "warning" not in ran
