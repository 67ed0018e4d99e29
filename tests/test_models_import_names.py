"""``handforge models import --name``."""

from __future__ import annotations

import pytest

from handforge.cli import main


@pytest.mark.parametrize("kind", ["controlnet", "guidance", "sd", "target_generator"])
def test_a_hidden_name_is_refused_before_anything_is_read_or_copied(kind, tmp_path, capsys, monkeypatch):
    """--name .control_depth was imported as asked and its setting printed, but the ControlNets folder's listing leaves
    hidden names out (an interrupted import's .NAME.partial is one): `models check`, `models list` and every job
    passed the ControlNet over, unsaid."""
    models = tmp_path / "models"
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(models))
    source = tmp_path / "weights"
    source.mkdir()
    assert main(["models", "import", "--kind", kind, str(source), "--name", ".control_depth"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == ("handforge models import: --name '.control_depth': one folder name (letters, digits, '.', "
                           "'_' or '-'), not a path, nor a hidden one (starting with '.': the ControlNets folder's "
                           "listing leaves such names out)"), err
    assert not models.exists()


def test_a_source_of_a_hidden_name_imported_without_name_is_refused(tmp_path, capsys, monkeypatch):
    """Without --name the source's own name is taken: /x/.depth_net went in as controlnets/.depth_net, imported as
    asked and passed over by every listing, as --name .x was."""
    import json

    models = tmp_path / "models"
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(models))
    monkeypatch.setattr("handforge.engines.image.weights.check", lambda kind, folder: _Ok())  # (any checked weights)
    source = tmp_path / ".depth_net"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    assert main(["models", "import", "--kind", "controlnet", str(source)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"handforge models import: {source}: its name '.depth_net' is hidden (it starts with '.', "
                           "and the ControlNets folder's listing leaves such names out): give --name NAME to import "
                           "it under another"), err
    assert not (models / "controlnets" / ".depth_net").exists()


class _Ok:
    ok, problems, notes = True, [], []
