"""`handforge export` where the bpy module is not installed (the artist's `backend` extra leaves it out)."""

from __future__ import annotations

import importlib.util
import json

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
