"""``engine: auto`` (image.generate) and ``guide: auto`` (image.transfer) passing over weights that are set but
cannot run: the job runs the other engine and its result's warning says which weights were passed over, why, and
the fix (the images came from the other engine without a word)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("auto")
    sd = tiny_sd.build_sd(root / "sd")
    guidance = tiny_sd.build_controlnet(root / "guidance", sd)
    controlnets = root / "controlnets"
    shutil.copytree(guidance, controlnets / "control_sd15_depth")
    return root, sd, guidance, controlnets


def _unreadable(folder):
    """``folder``'s weights cut short (a download stopped half-way)."""
    for file in folder.glob("*.safetensors"):
        data = file.read_bytes()
        file.write_bytes(data[:len(data) // 2])
    return folder


def _misshapen(folder):
    """``folder``'s weights with an input layer of other channels than its config.json makes."""
    for file in folder.glob("*.safetensors"):
        tensors = load_file(file)
        tensors["conv_in.weight"] = tensors["conv_in.weight"][:, :1].contiguous()
        save_file(tensors, file)
    return folder


@pytest.fixture
def job(weights, monkeypatch):
    """``job(kind, params, guidance=..., controlnets=...)``: the job's result data, run in process on the tiny
    weights (one model cache), a fist in view, after the request's checks."""
    from handforge.engines.image import jobs as image_jobs
    from handforge.engines.transfer import jobs as transfer_jobs
    from handforge.render.camera import look_at
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    root, sd, _, _ = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    size = tiny_sd.IMAGE_SIZE
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    arrays = {"camera.K": np.array([[150.0, 0, size / 2], [0, 150.0, size / 2], [0, 0, 1]]), "camera.R": R,
              "camera.t": t, **pose_arrays({"right": pose_library.get("fist", side="right")})}
    cache = ModelCache()

    def run(kind: str, params: dict, guidance, controlnets) -> dict:
        monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
        monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(controlnets))
        given = dict(arrays)
        if kind == "image.transfer":
            given["source.image"] = np.full((size, size, 3), 128, np.uint8)
        handler = image_jobs.generate if kind == "image.generate" else transfer_jobs.transfer_job
        registered = default_registry().kind(kind)
        valid = registered.schema.validate({"width": size, "height": size, "steps": 1, **params}, given)
        registered.check(valid, given)
        ctx = JobContext("j", kind, lambda fraction, message, previews: None, models=cache)
        return handler(ctx, valid, given).data

    return run


def test_auto_passing_over_misshapen_guidance_weights_says_so(job, weights, tmp_path):
    # before: engine auto ran the controlnet engine, and the result said nothing of the guidance module set but
    # broken (the user saw images of another engine than the one set up)
    _, _, guidance, controlnets = weights
    bad = _misshapen(shutil.copytree(guidance, tmp_path / "guidance"))
    data = job("image.generate", {"prompt": "two hands", "tas": False}, bad, controlnets)
    assert data["engine"] == "controlnet"
    warning = data.get("warning", "")
    assert f"engine auto ran controlnet, not attentionhand: image.guidance = {bad}" in warning, warning
    assert "handforge models check" in warning and "or set engine to controlnet)" in warning, warning
    # weights that run: attentionhand, and nothing said
    data = job("image.generate", {"prompt": "two hands", "tas": False}, guidance, controlnets)
    assert data["engine"] == "attentionhand" and "warning" not in data, data.get("warning")
    # the engine named: no fallback to say
    assert "warning" not in job("image.generate", {"prompt": "two hands", "tas": False, "engine": "controlnet"}, bad,
                                controlnets)


def test_guidance_weights_cut_short_are_passed_over_by_auto_and_refused_when_named(job, weights, tmp_path):
    # weights whose data was cut short (a download stopped half-way): the status check reads the file's length
    # against its header, so auto passes them over and says so; named, the engine is refused before the job is
    # queued, naming the file and the fix, and no other engine runs
    from handforge_shared.protocol import ProtocolError

    _, _, guidance, controlnets = weights
    bad = _unreadable(shutil.copytree(guidance, tmp_path / "guidance"))
    data = job("image.generate", {"prompt": "two hands", "tas": False}, bad, controlnets)
    assert data["engine"] == "controlnet"
    warning = data.get("warning", "")
    assert f"engine auto ran controlnet, not attentionhand: image.guidance = {bad}" in warning, warning
    assert "is damaged (cut short" in warning, warning
    with pytest.raises(ProtocolError) as refused:
        job("image.generate", {"prompt": "two hands", "tas": False, "engine": "attentionhand"}, bad, controlnets)
    said = str(refused.value)
    assert f"engine 'attentionhand' cannot run: image.guidance = {bad}" in said and "is damaged (cut short" in said, said
    assert "download it again" in said, said


def test_auto_guide_passing_over_broken_controlnets_says_so(job, weights, tmp_path):
    # image.transfer's guide auto tries the ControlNets first
    _, _, guidance, controlnets = weights
    bad = tmp_path / "controlnets"
    _misshapen(shutil.copytree(controlnets, bad) / "control_sd15_depth")
    data = job("image.transfer", {}, guidance, bad)
    assert data["guide"] == "attentionhand"
    assert "guide auto ran attentionhand, not controlnet: image.controlnets" in data.get("warning", ""), data
    assert "warning" not in job("image.transfer", {}, guidance, controlnets)
