"""``engine: auto`` (image.generate) and ``guide: auto`` (image.transfer) passing over weights that are set but
cannot run: the job runs the other engine and its result's warning says which weights were passed over, why, and
the fix (the images came from the other engine without a word)."""

from __future__ import annotations

import shutil

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
    from handforge.server.model_cache import ModelCache

    root, sd, _, _ = weights
    arrays, cache = tiny_sd.fist_in_view(), ModelCache()

    def run(kind: str, params: dict, guidance, controlnets) -> dict:
        tiny_sd.use_weights(monkeypatch, root, sd, guidance=guidance, controlnets=controlnets)
        return tiny_sd.run_image_job(kind, {"steps": 1, **params}, arrays, models=cache).data

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
