"""A ControlNet lying in ``image.controlnets`` as one file (the original ControlNet 1.1 releases, a web UI's ControlNet
folder) is not read: said, not passed over unsaid."""

from __future__ import annotations

import pytest
from handforge.engines.image.controls import ControlError, controls_left_out, resolve


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "control_sd15_depth").mkdir()
    (tmp_path / "control_sd15_depth" / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    (tmp_path / "control_v11p_sd15_openpose.safetensors").write_bytes(b"\0" * 16)
    (tmp_path / "control_v11p_sd15_openpose.yaml").write_text("model: {}")  # (a web UI's config beside it: no weights)
    return tmp_path


@pytest.mark.parametrize("named", ["control_v11p_sd15_openpose", "control_v11p_sd15_openpose.safetensors",
                                   "control_v11p_sd15_openpose:openpose"])
def test_a_controlnet_named_that_is_one_file_is_refused_saying_so(folder, named):
    """Before: "no ControlNet 'control_v11p_sd15_openpose' in FOLDER; there are: control_sd15_depth", the file
    right there."""
    with pytest.raises(ControlError) as refused:
        resolve([named], folder)
    said = str(refused.value)
    assert said.startswith(f"'control_v11p_sd15_openpose.safetensors' in {folder} is one file, and ControlNets are "
                           "read from diffusers folders (config.json + diffusion_pytorch_model.safetensors"), said
    assert "handforge models fetch" in said and said.endswith("there are: control_sd15_depth"), said


def test_a_job_naming_no_controls_says_the_files_it_left_out(folder, monkeypatch):
    """Before: the depth ControlNet ran alone and nothing said the openpose file beside it was not read."""
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(folder))
    said = [w for w in controls_left_out([]) if "openpose" in w]
    assert len(said) == 1 and said[0].startswith(
        "left out control_v11p_sd15_openpose.safetensors of image.controlnets: it is one file, and ControlNets are "
        "read from diffusers folders"), said
    (folder / "control_v11p_sd15_normalbae.pth").write_bytes(b"\0" * 16)
    said = [w for w in controls_left_out([]) if "openpose" in w]
    assert len(said) == 1 and said[0].startswith(  # (one warning for them all)
        "left out control_v11p_sd15_normalbae.pth, control_v11p_sd15_openpose.safetensors of image.controlnets: each "
        "is one file"), said
    assert controls_left_out(["control_sd15_depth"]) == []  # (named: only what was named runs)
