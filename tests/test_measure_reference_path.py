"""`handforge measure --reference ""` names --reference, not the clips folder, as the empty path."""

from __future__ import annotations

from handforge.cli import main
from handforge_shared.poses import MotionClip, side_by_side


def test_an_empty_reference_path_is_said_as_the_reference(tmp_path, monkeypatch, capsys):
    """It said "the clips folder is an empty path: give the folder of motion clips", though --clips was given
    and measurable: the user looked for the fault in --clips."""
    monkeypatch.chdir(tmp_path)
    MotionClip.from_frames([side_by_side()] * 4).save(tmp_path / "clips" / "a.npz")
    assert main(["measure", "--clips", str(tmp_path / "clips"), "--reference", "", "--frames", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "handforge measure: --reference is an empty path: give the folder of reference clips (.npz), or leave "
        "--reference out"]
