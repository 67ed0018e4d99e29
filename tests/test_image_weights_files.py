"""A ControlNet, guidance module or SD part without its safetensors weights file: named as such by the engines'
status and the load, and a pickled .bin beside it never read."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from tests.support import tiny_sd

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd)


def _pickled(folder, file):
    """``folder``'s safetensors ``file`` replaced by the same tensors as a torch pickle (.bin)."""
    tensors = load_file(folder / file)
    (folder / file).unlink()
    torch.save(tensors, folder / file.replace(".safetensors", ".bin"))


def test_a_controlnet_without_its_safetensors_is_not_ready_and_its_pickle_is_never_read(weights, tmp_path,
                                                                                     monkeypatch):
    # before: its status was ready (its header could not be read: nothing said), a job naming no controls took it,
    # and its load unpickled a diffusion_pytorch_model.bin there ("Defaulting to unsafe serialization"), or with none
    # failed saying that no diffusion_pytorch_model.bin was found
    from handforge.engines.image import jobs
    from handforge.engines.image.controls import by_default
    from handforge.engines.image.loading import WeightsError, load_controlnet

    root, sd, depth = weights
    folder = tmp_path / "controlnets"
    shutil.copytree(depth.parent, folder)
    shutil.copytree(depth, folder / "control_sd15_normal")
    _pickled(folder / "control_sd15_normal", "diffusion_pytorch_model.safetensors")
    said = (f"{folder / 'control_sd15_normal'} has no diffusion_pytorch_model.safetensors (its weights); "
            "diffusion_pytorch_model.bin there is a pickle, which HandForge never reads")
    with pytest.raises(WeightsError, match=r"^" + said.replace("(", r"\(").replace(")", r"\)")):
        load_controlnet(folder / "control_sd15_normal")
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(folder))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(folder / "control_sd15_normal"))
    taken, left = by_default(folder)
    assert taken == ["control_sd15_depth"] and said in left["control_sd15_normal"]
    assert said in jobs.IMAGE_ENGINES["controlnet"].status().note
    guidance = jobs.IMAGE_ENGINES["attentionhand"].status()
    assert not guidance.available and said in guidance.reason
    (folder / "control_sd15_normal" / "diffusion_pytorch_model.bin").unlink()  # no weights at all
    with pytest.raises(WeightsError, match="has no diffusion_pytorch_model.safetensors \\(its weights\\): copy or"):
        load_controlnet(folder / "control_sd15_normal")


@pytest.mark.parametrize("part, file", [("unet", "diffusion_pytorch_model.safetensors"),
                                        ("text_encoder", "model.safetensors")])
def test_an_sd_part_without_its_safetensors_is_named_and_its_pickle_never_read(weights, tmp_path, part, file):
    # before: a unet/ holding diffusion_pytorch_model.bin instead was unpickled and sampled with; a part with no
    # safetensors failed saying "no file named diffusion_pytorch_model.bin found in directory" of the SD folder
    from handforge.engines.image.loading import WeightsError, load_sd

    _, sd, _ = weights
    broken = tmp_path / "sd"
    shutil.copytree(sd, broken)
    _pickled(broken / part, file)
    with pytest.raises(WeightsError) as failed:
        load_sd(broken)
    assert str(failed.value).startswith(f"{broken / part} has no {file} (its weights); "
                                        f"{file.replace('.safetensors', '.bin')} there is a pickle")
    assert failed.value.path == broken / part


@pytest.mark.parametrize("part", ["unet", "text_encoder"])
def test_an_sd_model_whose_part_lacks_its_weights_is_not_ready(weights, tmp_path, monkeypatch, capsys, part):
    # before: its status came from its folders alone, so the engines were ready and the first job failed on the file
    from handforge.cli import main

    root, sd, depth = weights
    broken = tmp_path / "sd"
    shutil.copytree(sd, broken)
    name = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
    (broken / part / name).unlink()
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(broken))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(root / "controlnets"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"image.sd_model = {broken} [incomplete: no {part}/{name} (weights)]" in out, out
    assert f"controlnet: not ready: image.sd_model = {broken}: no {part}/{name} (weights)" in out, out


def test_a_guidance_module_without_its_weights_is_not_ready(weights, tmp_path, monkeypatch, capsys):
    from handforge.cli import main

    root, sd, depth = weights
    guidance = tmp_path / "guidance"
    shutil.copytree(depth, guidance)
    (guidance / "diffusion_pytorch_model.safetensors").unlink()
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"image.guidance = {guidance} [incomplete: no diffusion_pytorch_model.safetensors (weights)]" in out, out
