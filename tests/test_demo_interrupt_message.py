"""Ctrl-C during `handforge demo` says what it left in --out and how to go on."""

from __future__ import annotations

from handforge.cli import main


def test_an_interrupted_demo_says_a_rerun_refreshes_its_folder(tmp_path, monkeypatch, capsys):
    """It said only "interrupted", over a folder holding some of the demo's files and not others: whether it
    could be used again (or had to be removed first) was left to find out."""
    import handforge.commands.demo as command

    def stopped(out):
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_labelled_part", stopped)
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "interrupted: the files written so far stay in --out, a demo's folder, which the same command run again "
        "refreshes")
    monkeypatch.undo()
    assert main(["demo", "--no-blender", "--out", str(out)]) == 0  # (as it says)
