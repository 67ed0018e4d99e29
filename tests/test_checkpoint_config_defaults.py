"""A config.json that leaves out a key: the model is built with the class's default there, so the limits are checked
on the config as the model sees it (its defaults under the file's keys), the missing key's too. Before, limits ran on
the keys a file set only: a config.json without num_heads (the default not dividing the width it sets) was 'ready'
in the engine's status line, then every load failed in torch's words ("embed_dim must be divisible by num_heads")."""

from __future__ import annotations

import json

import pytest
import torch
from handforge.engines.checkpoints import CheckpointError, checkpoint_problem, load_model, save_model


def _models():
    """(class, its light ModelConfig, a tiny instance whose heads divide its width, the key that leaves it out)."""
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.interaction.model_config import INTERACTION_DENOISER
    from handforge.engines.motion.model import MotionDenoiser
    from handforge.engines.motion.model_config import MOTION_DENOISER
    from handforge.engines.motion.representation import FRAME_DIM
    from handforge.engines.transfer.model import TargetGenerator
    from handforge.engines.transfer.model_config import TARGET_GENERATOR

    # each width divisible by the heads it was saved with, not by the class's default heads (4, 4, 8)
    return {
        "MotionDenoiser": (MOTION_DENOISER, lambda: MotionDenoiser(
            d_model=30, num_layers=1, num_heads=2, ff_size=32, data_mean=[0.0] * FRAME_DIM,
            data_std=[1.0] * FRAME_DIM), "num_heads", "d_model's 30"),
        "InteractionDenoiser": (INTERACTION_DENOISER, lambda: InteractionDenoiser(width=10, hidden=16, layers=1,
                                                                                  heads=2), "heads", "width's 10"),
        "TargetGenerator": (TARGET_GENERATOR, lambda: TargetGenerator(
            cross_attention_dim=16, image_size=32, backbone_channels=(8, 16), feature_dim=12, num_layers=1,
            num_heads=2, num_queries=2, pose_tokens=2), "num_heads", "feature_dim's 12")}


@pytest.mark.parametrize("model", ["MotionDenoiser", "InteractionDenoiser", "TargetGenerator"])
def test_a_missing_key_whose_default_breaks_a_limit_is_refused_at_status_and_load(tmp_path, model):
    spec, build, key, width = _models()[model]
    torch.manual_seed(0)
    folder = save_model(build(), tmp_path / "model")
    assert checkpoint_problem(folder, spec) == ""  # as saved: every key set
    config = json.loads((folder / "config.json").read_text())
    default = config.pop(key) and spec.defaults[key]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as refused:
        load_model(type(build()), folder)
    said = str(refused.value)
    assert said == (f"{folder}: cannot load the {model} checkpoint: its config.json sets no {key}, so the default "
                    f"{default}, which is not a whole number dividing {width}; set {key} in it to the model's value, "
                    "or save or train the model again")
    assert checkpoint_problem(folder, spec) == said  # the status line's words: it said ready before


def test_a_missing_key_whose_default_fits_loads(tmp_path):
    """Leaving out a key is no fault in itself: its default is checked as a value set would be."""
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.interaction.model_config import INTERACTION_DENOISER

    torch.manual_seed(0)
    folder = save_model(InteractionDenoiser(width=16, hidden=16, layers=1, heads=4), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    del config["heads"], config["dropout"], config["beta_schedule"]
    (folder / "config.json").write_text(json.dumps(config))
    assert checkpoint_problem(folder, INTERACTION_DENOISER) == ""
    assert load_model(InteractionDenoiser, folder).config.heads == 4
