"""`handforge export` where the bpy module is not installed (the artist's `backend` extra leaves it out)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from handforge.cli import main

SPEC = {"seed": 0, "samples": 1, "width": 64, "height": 64}


def _hide_bpy(monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bpy" else find_spec(name, *a))


def test_workbench_rgb_without_bpy_is_refused_in_one_line_naming_the_fix(tmp_path, monkeypatch, capsys):
    _hide_bpy(monkeypatch)
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "render": {"engine": "workbench"}}))
    out = tmp_path / "renders"
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pip install bpy==4.5.15" in err and "--engine none" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # refused before anything is written


def test_gl_only_export_needs_no_bpy(tmp_path, monkeypatch, capsys):
    _hide_bpy(monkeypatch)
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "gl"), "--engine", "none",
                 "--quiet"]) == 0


def test_without_bpy_a_finished_export_is_rerun_and_a_cluster_is_not_refused_here(tmp_path, monkeypatch, capsys):
    """The refusal is of rendering here: a rerun of a finished export writes the aggregate files alone (no Blender),
    and with a cluster's address the nodes render, each with its own install; both were refused for this machine."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "render": {"engine": "workbench"}}))
    out = tmp_path / "renders"
    assert main(["export", str(spec), "--out", str(out), "--quiet"]) == 0  # (bpy here: rendered)
    capsys.readouterr()
    _hide_bpy(monkeypatch)
    assert main(["export", str(spec), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert "(0 new, 1 already there)" in capsys.readouterr().out
    from handforge.commands.export import _refuse_rgb_without_blender
    from handforge.export.spec import load_spec

    workbench = load_spec(str(spec))
    _refuse_rgb_without_blender(workbench, str(tmp_path / "new"), "ray://head:10001")  # the nodes render
    for ray in (None, ""):  # here, or on a Ray of the run's own on this machine
        with pytest.raises(ValueError, match="bpy"):
            _refuse_rgb_without_blender(workbench, str(tmp_path / "new"), ray)


def test_without_bpy_the_samples_a_cut_short_removal_lists_are_still_to_render(tmp_path, monkeypatch):
    """A removal of samples cut short leaves its list, and the run removes those samples first: the refusal took
    them for finished, and a folder holding every sample passed without Blender, though the run renders them."""
    from handforge.commands.export import _refuse_rgb_without_blender
    from handforge.export.folder import REMOVING, sample_dir
    from handforge.export.spec import load_spec

    _hide_bpy(monkeypatch)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 2, "render": {"engine": "workbench"}}))
    out = tmp_path / "renders"
    for index in range(2):
        sample_dir(out, index).mkdir(parents=True)
        (sample_dir(out, index) / "labels.json").write_text("{}")
    workbench = load_spec(str(spec))
    _refuse_rgb_without_blender(workbench, str(out), None)  # all finished: nothing to render
    (out / REMOVING).write_text("[1]\n")
    with pytest.raises(ValueError, match="bpy"):
        _refuse_rgb_without_blender(workbench, str(out), None)
