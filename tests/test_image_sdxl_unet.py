"""An SD model whose UNet takes more conditioning than SD 1.x's text (SDXL's added time and text embeddings) as
``image.sd_model``: refused by the load, ``handforge models check`` and the engines' status, naming its UNet."""

from __future__ import annotations

import re
import shutil

import pytest
from handforge.cli import main

from tests.support import tiny_sd
from tests.support.light_status import light_statuses


@pytest.fixture(scope="module")
def sdxl_like(tmp_path_factory):
    """The tests' tiny SD with an SDXL-style UNet (addition_embed_type 'text_time'), its widths SD 1.x's tiny ones:
    what the text-width check lets through."""
    from diffusers import UNet2DConditionModel

    root = tmp_path_factory.mktemp("sdxl")
    sd = tiny_sd.build_sd(root / "sd")
    shutil.rmtree(sd / "unet")
    unet = UNet2DConditionModel(**{**tiny_sd.unet_config(), "addition_embed_type": "text_time",
                                   "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 32 + 6 * 8})
    unet.save_pretrained(str(sd / "unet"))
    return sd


def test_an_sdxl_style_unet_is_refused_by_the_load_check_and_status(sdxl_like, tmp_path, capsys):
    """Before: it loaded, checked ok and made both engines ready, and every job failed at its first step as an
    internal error, "TypeError: argument of type 'NoneType' is not iterable", naming no file."""
    from handforge.engines.image.loading import WeightsError, load_sd

    said = (f"{sdxl_like / 'unet'} is an SDXL or other UNet that takes more conditioning than SD 1.x's text "
            "(addition_embed_type 'text_time'): give an SD 1.x text-to-image model")
    with pytest.raises(WeightsError, match=re.escape(said)):
        load_sd(sdxl_like)
    assert main(["models", "check", "--kind", "sd", str(sdxl_like)]) == 1
    assert said in capsys.readouterr().out
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(sdxl_like),
           "HANDFORGE_IMAGE_GUIDANCE": str(sdxl_like / "unet"), "HANDFORGE_CONTROLNETS": str(tmp_path)}
    statuses = light_statuses("from handforge.engines.image import jobs",
                              "{name: jobs.IMAGE_ENGINES[name].status().to_json() for name in jobs.IMAGE_ENGINES}", env)
    for name in ("attentionhand", "controlnet"):
        assert not statuses[name]["available"], statuses
        assert statuses[name]["reason"] == f"image.sd_model = {sdxl_like}: {said}", statuses
