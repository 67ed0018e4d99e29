"""A diffusers folder holding its weights as the fp16 variant only (``diffusion_pytorch_model.fp16.safetensors``, as
``--include "*.fp16.*"`` downloads it): the check and the load say to rename it, and renamed it loads."""

from __future__ import annotations

import re
import shutil

from handforge.cli import main
from handforge.engines.image.loading import WeightsError, load_controlnet, load_sd

from tests.support import tiny_sd

FILES = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model", "text_encoder": "model"}


def test_weights_there_as_the_fp16_variant_only_are_said_with_the_rename(tmp_path, capsys):
    """Before: "…/unet/diffusion_pytorch_model.safetensors: missing (only .safetensors weights are read, never
    pickles)", the safetensors file right there under its variant's name."""
    sd = tiny_sd.build_sd(tmp_path / "sd")
    net = tiny_sd.build_controlnet(tmp_path / "control_sd15_depth", sd)
    for folder, stem in [*((sd / part, stem) for part, stem in FILES.items()), (net, "diffusion_pytorch_model")]:
        (folder / f"{stem}.safetensors").rename(folder / f"{stem}.fp16.safetensors")
    assert main(["models", "check", "--kind", "sd", str(sd)]) == 1
    out = capsys.readouterr().out
    for part, stem in FILES.items():
        assert (f"{sd / part / stem}.safetensors: missing; {stem}.fp16.safetensors there is a variant of it: rename it "
                f"to {stem}.safetensors") in out, out
    assert "never pickles" not in out, out
    said = (f"{sd / 'unet'} has no diffusion_pytorch_model.safetensors (its weights); diffusion_pytorch_model.fp16."
            "safetensors there is a variant of it: rename it to diffusion_pytorch_model.safetensors")
    try:
        load_sd(sd)
        raise AssertionError("loaded")
    except WeightsError as exc:
        assert str(exc).startswith(said), exc
    try:
        load_controlnet(net)
        raise AssertionError("loaded")
    except WeightsError as exc:
        assert re.search(r"diffusion_pytorch_model\.fp16\.safetensors there is a variant of it: rename it", str(exc)), exc
    # the advice holds: renamed, both load
    for folder, stem in [*((sd / part, stem) for part, stem in FILES.items()), (net, "diffusion_pytorch_model")]:
        shutil.move(folder / f"{stem}.fp16.safetensors", folder / f"{stem}.safetensors")
    assert set(load_sd(sd)) >= {"unet", "vae", "text_encoder"}
    load_controlnet(net)
