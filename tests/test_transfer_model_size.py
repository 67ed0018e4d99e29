"""A target generator whose config.json does not carry its image size under image_size (none at all, or under
sample_size, which the model does not read): the model is built at the default 224. Refused clearly, in the words
of the ihpt engine's status, `models check` and the job's load alike, where that size cannot run one image or does
not fit the weights; before, the first loaded and failed in each job in torch's words ("Expected more than 1 value
per channel"), the second was 'ready' and each job's load refused it as a config edited at random."""

from __future__ import annotations

import json

import pytest
import torch
from handforge.cli import main
from handforge.engines.checkpoints import CheckpointError, checkpoint_problem, load_model, save_model
from handforge.engines.transfer.model import TargetGenerator
from handforge.engines.transfer.model_config import TARGET_GENERATOR

SMALL = {"feature_dim": 16, "num_layers": 1, "num_heads": 2, "num_queries": 2, "pose_tokens": 1}


def saved(folder, size_key: str | None, **sizes):
    """A TargetGenerator saved with ``sizes``, its image_size then moved to ``size_key`` (None: dropped)."""
    torch.manual_seed(0)
    folder = save_model(TargetGenerator(cross_attention_dim=32, **SMALL, **sizes), folder)
    config = json.loads((folder / "config.json").read_text())
    size = config.pop("image_size")
    if size_key is not None:
        config[size_key] = size
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("size_key", [None, "sample_size"])
def test_without_image_size_a_default_size_that_cannot_run_one_image_is_refused_at_status_and_load(tmp_path, size_key):
    # eight blocks of width 8: 224 → 112, 56, 28, 14, 7, 4, 2, 1 (the eighth block sees one value a GroupNorm group)
    folder = saved(tmp_path / "model", size_key, image_size=224, backbone_channels=(8,) * 8)
    with pytest.raises(CheckpointError) as refused:
        load_model(TargetGenerator, folder)
    said = str(refused.value)
    assert "its config.json sets no image_size, so the default 224, which is not a whole number large enough for " \
           "backbone_channels [8, 8, 8, 8, 8, 8, 8, 8] that no block of width 8 or less sees a 1×1 map" in said
    assert checkpoint_problem(folder, TARGET_GENERATOR, finite=True) == said  # the status line's words


def test_with_image_size_set_the_refusal_still_names_image_size_first(tmp_path):
    torch.manual_seed(0)
    folder = save_model(TargetGenerator(cross_attention_dim=32, **SMALL, image_size=64, backbone_channels=(8,) * 3),
                        tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "image_size": 2}))
    assert "sets image_size to 2, not a whole number large enough for backbone_channels [8, 8, 8]" in \
        checkpoint_problem(folder, TARGET_GENERATOR)


@pytest.fixture
def ihpt_settings(tmp_path, monkeypatch):
    from tests.support import tiny_sd

    sd = tiny_sd.build_sd(tmp_path / "sd")
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    for name in ("HANDFORGE_IMAGE_GUIDANCE", "HANDFORGE_CONTROLNETS", "HANDFORGE_SD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("size_key, sets", [
    (None, "sets no image_size, so the default 224, "),
    ("sample_size", "sets no image_size, so the default 224 (its sample_size the model does not read), "),
])
def test_a_size_that_does_not_fit_the_weights_is_refused_by_the_status_naming_image_size(
        tmp_path, ihpt_settings, capsys, size_key, sets):
    from handforge.engines.transfer import jobs

    folder = saved(tmp_path / "model", size_key, image_size=32, backbone_channels=(8, 16))  # trained at 32: 8×8
    ihpt_settings.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(folder))
    status = jobs.IHPT.status()
    assert not status.available
    assert status.reason == (f"{folder}: cannot load the TargetGenerator checkpoint: its config.json {sets}a feature "
                             "map of 56×56 after its 2 backbone blocks, and its weights' feature_position holds one of "
                             "8×8 (image_size 29 to 32); set image_size in config.json to the size it was trained at")
    assert main(["models", "check", str(folder)]) == 1
    assert status.reason in capsys.readouterr().out

    class Context:  # the job's load, as the model cache makes it
        device = "cpu"

        @staticmethod
        def pretrained(cls, where, label):
            return load_model(cls, where)

    from handforge.server.jobs import JobError

    with pytest.raises(JobError) as refused:
        jobs._sample_ihpt(Context(), {}, {}, None, {}, {}, None, None)
    assert refused.value.message == status.reason and refused.value.code == "missing_weights"
    # image_size put back: it loads, and the status says nothing of its size
    config = json.loads((folder / "config.json").read_text())
    config.pop("sample_size", None)
    (folder / "config.json").write_text(json.dumps({**config, "image_size": 32}))
    assert "image_size" not in str(jobs.IHPT.status().reason or "")
    assert load_model(TargetGenerator, folder).config.image_size == 32
