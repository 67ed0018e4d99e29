"""A guidance training run's folder given where its model/ belongs (``handforge models check`` and ``import``, ``train
guidance --init``): said as the run's, as a pose-transfer run's is."""

from __future__ import annotations

import json

import pytest

from handforge.cli import main
from handforge.engines.image.loading import WeightsError, load_controlnet


@pytest.fixture()
def guidance_run(tmp_path):
    """What `handforge train guidance --out RUN` leaves: RUN/model (a ControlNetModel folder), checkpoints/step-N."""
    run = tmp_path / "guidance"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    (run / "checkpoints" / "step-00000002").mkdir(parents=True)
    (run / "settings.json").write_text("{}")
    return run


def test_models_check_and_import_of_a_guidance_run_folder_name_its_model(guidance_run, tmp_path, capsys, monkeypatch):
    """They said "RUN: no config.json" (`train transfer`'s run folder: "give RUN/model, the run's model")."""
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models", "check", str(guidance_run)]) == 1
    assert f"{guidance_run}: no config.json: give {guidance_run / 'model'}, the run's model" in capsys.readouterr().out
    assert main(["models", "import", "--kind", "guidance", str(guidance_run)]) == 2
    assert f"give {guidance_run / 'model'}, the run's model" in capsys.readouterr().err
    step = guidance_run / "checkpoints" / "step-00000002"
    assert main(["models", "check", "--kind", "controlnet", str(step)]) == 1
    assert ("it is a training checkpoint (the state a run resumes from), not a model; give "
            f"{guidance_run / 'model'}, the run's model") in capsys.readouterr().out
    assert not (tmp_path / "models").exists()


def test_a_guidance_run_folder_as_the_controlnet_to_load_is_not_called_damaged(guidance_run):
    """`train guidance --init RUN` (and image.guidance = RUN): "cannot load the ControlNet RUN: OSError: Error no file
    named config.json found in directory RUN; `handforge models check RUN` names the damaged file: copy or download it
    again": nothing was damaged, and the check named no file."""
    with pytest.raises(WeightsError) as refused:
        load_controlnet(guidance_run)
    said = str(refused.value)
    assert f"{guidance_run}: not a ControlNet folder, it has no config.json: give {guidance_run / 'model'}, the run's " \
           "model" in said and "damaged" not in said, said
