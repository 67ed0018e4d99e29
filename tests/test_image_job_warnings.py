"""What image.generate and image.transfer say in their result's warning, where a request runs but not as asked:
float16 on the CPU (the slow precision there), TAS that runs at no step (as TAS with no hand-related word is)."""

from __future__ import annotations

import pytest

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("warnings")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd)


@pytest.fixture
def job(weights, monkeypatch):
    """``job(kind, params)``: the job's result data, run in process on the tiny weights (one model cache), a fist
    in view."""
    from handforge.server.model_cache import ModelCache

    root, sd, guidance = weights
    tiny_sd.use_weights(monkeypatch, root, sd, guidance=guidance)
    arrays, cache = tiny_sd.fist_in_view(), ModelCache()
    return lambda kind, params: tiny_sd.run_image_job(kind, params, arrays, models=cache).data


@pytest.mark.parametrize("kind", ["image.generate", "image.transfer"])
def test_float16_on_the_cpu_is_said_to_be_slower(job, kind):
    # before: taken silently (the result had no warning), about 4× slower than float32 with the tests' tiny model
    # on this CPU, and the server's log said, in diffusers' words, that the pipeline "cannot run" on the CPU
    import logging

    def run(dtype):
        return job(kind, {"prompt": "two hands", "steps": 2, "dtype": dtype})

    logged = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: logged.append(record.getMessage())
    diffusers_log = logging.getLogger("diffusers")  # (its records do not reach the root logger's capture)
    diffusers_log.addHandler(handler)
    try:
        half = run("float16")
    finally:
        diffusers_log.removeHandler(handler)
    assert not [line for line in logged if "cannot run" in line], logged  # (it ran: our warning says how)
    assert "dtype float16 on cpu runs slower than float32 there" in half["warning"], half.get("warning")
    assert "dtype auto (float32 on the CPU) or float32 is faster" in half["warning"]
    for other in ("auto", "float32", "bfloat16"):
        assert "float16" not in run(other).get("warning", ""), other


@pytest.mark.parametrize("asked, says", [
    ({"steps": 1}, "TAS did nothing: it runs at the first half of the steps by default, 0 of 1;"),
    ({"steps": 2, "tas_steps": 0}, "TAS did nothing: tas_steps is 0"),
])
def test_tas_at_no_step_is_said(job, asked, says):
    # before: TAS on with a hand word and 1 step (half of it: 0) or tas_steps 0 moved the latents at no step,
    # and the result listed its hand tokens with no warning (TAS on at strength 0 is refused, and TAS with no
    # hand word is said)
    def run(**params):
        return job("image.generate", {"prompt": "two hands holding a cup", **params})

    data = run(**asked)
    assert data["tas"]["steps"] == 0 and data["tas"]["tokens"]
    assert says in data["warning"] and "set tas off" in data["warning"]
    ran = run(steps=2)  # at one step: nothing to say
    assert ran["tas"]["steps"] == 1 and len(ran["tas"]["losses"]) == 1 and "warning" not in ran


def test_tas_updates_skipped_for_an_overflow_are_said_and_the_result_is_json(job, monkeypatch):
    # before: an update skipped (its loss or gradient not finite: float16 overflow) was unsaid, and a NaN loss in
    # the result's tas.losses made the finished job's result unsendable (the protocol's JSON refuses NaN)
    import json

    from handforge.engines.image import tas

    real = tas.attention_scores
    monkeypatch.setattr(tas, "attention_scores", lambda *a, **k: real(*a, **k) * float("nan"))
    data = job("image.generate", {"prompt": "two hands holding a cup", "steps": 4, "batch": 2, "tas_steps": 1})
    assert data["tas"]["losses"] == [[None, None]]
    json.dumps(data["tas"], allow_nan=False)
    assert "TAS skipped 2 of its 2 updates (image × step)" in data["warning"]
    # (float32 here: float16's overflow, and its advice to run float32, were said of it too)
    assert "not finite, in float32, where nothing overflows: the weights or the inputs hold a NaN" in data["warning"]
    assert "float16" not in data["warning"], data["warning"]
    monkeypatch.setattr(tas, "attention_scores", real)
    assert "warning" not in job("image.generate", {"prompt": "two hands holding a cup", "steps": 2})
