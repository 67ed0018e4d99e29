"""``handforge models`` for the ihpt engine's target generator: listed with the engine's own status, checked
(config against weights, every value) and imported as the image engines' weights are."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from handforge.cli import main
from handforge.engines.checkpoints import save_model
from handforge.engines.transfer.model import TargetGenerator
from safetensors.torch import load_file, save_file

from tests.support import tiny_sd

TINY = {"image_size": 32, "backbone_channels": (8, 16), "feature_dim": 16, "num_layers": 1, "num_heads": 2}


def _target_generator(folder, cross_attention_dim=32, poison: bool = False):
    torch.manual_seed(0)
    net = TargetGenerator(cross_attention_dim=cross_attention_dim, **TINY)
    if poison:  # a diverged training run's weights
        with torch.no_grad():
            net.feature_proj.weight[0, 0] = float("nan")
    return save_model(net, folder)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("ihpt")
    sd = tiny_sd.build_sd(root / "sd")  # its UNet attends 32-wide text: the target generators' context
    return root, sd, _target_generator(root / "run" / "model")


@pytest.fixture
def settings(weights, monkeypatch):
    root, sd, generator = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(generator))
    for name in ("HANDFORGE_IMAGE_GUIDANCE", "HANDFORGE_CONTROLNETS", "HANDFORGE_SD_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_list_says_whether_ihpt_is_ready_in_the_engines_own_words(weights, settings, tmp_path, capsys):
    # before: `models list` named attentionhand and controlnet only; a trained target generator was not in it
    from handforge.engines.transfer import jobs

    _, sd, generator = weights
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ihpt: ready" in out, out
    assert f"transfer.target_generator = {generator} [ok]" in out and f"image.sd_model = {sd} [ok]" in out, out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["ihpt"]
    assert listed["ready"] is True and [row["setting"] for row in listed["needs"]] == ["image.sd_model",
                                                                                      "transfer.target_generator"]
    # not ready: the reason and hint are the server's status of the engine, word for word
    poisoned = _target_generator(tmp_path / "nan" / "model", poison=True)
    settings.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(poisoned))
    status = jobs.IHPT.status()
    assert not status.available and "not finite" in status.reason
    assert main(["models"]) == 0
    assert f"ihpt: not ready: {status.reason}" in capsys.readouterr().out
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["ihpt"]
    assert (listed["ready"], listed["reason"], listed["hint"]) == (False, status.reason, status.hint)
    settings.delenv("HANDFORGE_TRANSFER_TARGET_GENERATOR")
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"ihpt: not ready: {jobs.IHPT.status().reason}" in out and "transfer.target_generator = - [not set]" in out
    assert "HANDFORGE_TRANSFER_TARGET_GENERATOR" in out  # how to set it


def test_check_takes_a_target_generator_folder_and_names_what_its_load_refuses(weights, settings, tmp_path, capsys):
    # before: a target generator folder was checked as a ControlNet ("holds a model of another class")
    _, sd, generator = weights
    assert main(["models", "check", str(generator), "--hash"]) == 0
    out = capsys.readouterr().out
    assert f"ok  target_generator  {generator}" in out and "tensors, F32, sha256" in out, out
    # config against weights: a context width edited in config.json (the status line, reading no shapes, let it by)
    edited = shutil.copytree(generator, tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "cross_attention_dim": 48}))
    assert main(["models", "check", str(edited)]) == 1
    out = capsys.readouterr().out
    assert "FAILED  target_generator" in out and "wrong shape, e.g. to_context.1" in out, out
    # a tensor missing from the weights
    cut = shutil.copytree(generator, tmp_path / "cut")
    tensors = load_file(cut / "diffusion_pytorch_model.safetensors")
    del tensors["queries"]
    save_file(tensors, cut / "diffusion_pytorch_model.safetensors")
    assert main(["models", "check", str(cut)]) == 1
    assert "1 tensors missing, e.g. queries" in capsys.readouterr().out
    # NaN weights: the words of the engine's status (which the job's load refuses too)
    poisoned = _target_generator(tmp_path / "nan", poison=True)
    assert main(["models", "check", str(poisoned)]) == 1
    assert "not finite (NaN or infinity) in feature_proj.weight" in capsys.readouterr().out
    # a run's folder instead of its model/: taken for what it holds, and the model/ named
    assert main(["models", "check", str(generator.parent)]) == 1
    out = capsys.readouterr().out
    assert "FAILED  target_generator" in out and f"give {generator}, the run's model" in out, out
    # --kind target_generator on something else says so
    assert main(["models", "check", str(sd / "unet"), "--kind", "target_generator"]) == 1
    assert "holds a checkpoint of another model (UNet2DConditionModel, not TargetGenerator)" in \
        capsys.readouterr().out


def test_check_without_a_path_checks_the_configured_target_generator_against_the_sd_model(weights, settings, tmp_path,
                                                                                          capsys):
    _, sd, generator = weights
    assert main(["models", "check", "--kind", "target_generator", "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    assert (found["kind"], found["path"], found["ok"]) == ("target_generator", str(generator), True)
    wider = _target_generator(tmp_path / "wide", cross_attention_dim=48)
    settings.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(wider))
    assert main(["models", "check"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED  target_generator  {wider}" in out and "trained for a 48-wide UNet context" in out, out
    assert f"ok  sd  {sd}" in out
    # given as PATH it is checked alone (no SD model is implied), as a ControlNet is
    assert main(["models", "check", str(wider)]) == 0
    capsys.readouterr()
    settings.delenv("HANDFORGE_TRANSFER_TARGET_GENERATOR")
    assert main(["models", "check", "--kind", "target_generator"]) == 1
    assert "no target generator is configured" in capsys.readouterr().err


def test_import_copies_a_checked_target_generator_and_prints_its_setting(weights, settings, tmp_path, capsys):
    _, _, generator = weights
    models = tmp_path / "models"
    settings.setenv("HANDFORGE_MODELS_DIR", str(models))
    (generator.parent / "checkpoints").mkdir(exist_ok=True)  # the run's other files are not the model
    assert main(["models", "import", str(generator), "--kind", "target_generator"]) == 0
    target = models / "target_generators" / "run"  # a run's model/ takes the run's name, not "model"
    assert sorted(p.name for p in target.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    out = capsys.readouterr().out
    assert f'[transfer]\n    target_generator = "{target}"' in out, out
    assert main(["models", "import", str(generator), "--kind", "target_generator", "--name", "mine", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "imported": str(models / "target_generators" / "mine"), "setting": "transfer.target_generator",
        "value": str(models / "target_generators" / "mine")}
    settings.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(target))
    from handforge.engines.transfer import jobs

    assert jobs.IHPT.status().available
    # one that does not check out is not copied
    poisoned = _target_generator(tmp_path / "nan", poison=True)
    assert main(["models", "import", str(poisoned), "--kind", "target_generator"]) == 2
    assert "does not check out" in capsys.readouterr().err
    assert not (models / "target_generators" / "nan").exists()


def test_importing_a_target_generator_whose_size_only_its_run_records_says_the_copy_loses_it(tmp_path, monkeypatch,
                                                                                             capsys):
    # before: the copy was made silently; out of its run, its training size was unknown and the ihpt engine's
    # warning of images of another size was gone
    from handforge.engines.transfer.jobs import trained_size

    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    old = _target_generator(tmp_path / "old" / "model")  # trained_size None: as before train transfer recorded it
    (tmp_path / "old" / "settings.json").write_text(json.dumps({"model_class": "TargetGenerator",
                                                                "data_options": {"size": 64}}))
    assert trained_size(old) == 64
    assert main(["models", "import", str(old), "--kind", "target_generator"]) == 0
    target = tmp_path / "models" / "target_generators" / "old"
    assert trained_size(target) is None
    err = capsys.readouterr().err
    assert "note: its run's settings.json says it was trained at --size 64" in err and \
        f'add "trained_size": 64 to {target / "config.json"}' in err, err
    # one that records its size in its config.json carries it: nothing to say
    torch.manual_seed(0)
    recorded = save_model(TargetGenerator(**TINY, cross_attention_dim=32, trained_size=64), tmp_path / "new" / "model")
    assert main(["models", "import", str(recorded), "--kind", "target_generator"]) == 0
    assert capsys.readouterr().err == "" and trained_size(tmp_path / "models" / "target_generators" / "new") == 64
