"""`handforge demo` on a disk without room for its labelled export says so in one line."""

from __future__ import annotations

from collections import namedtuple

from handforge.cli import main


def test_no_room_for_the_labelled_export_is_one_line(tmp_path, monkeypatch, capsys):
    """With about 1.4 MB free the demo wrote its meshes, then ended in a traceback,
    "handforge.export.room.ExportTooLarge: 8 samples of 256×256 need at least 2.1 MB ... lower the resolution,
    or export fewer samples", whose fixes are `handforge export`'s options, not the demo's."""
    import handforge.export.room as room

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(room.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1_400_000, 1_400_000))
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"handforge demo: no room for its labelled export: 8 samples of 256×256 need at least 2.1 MB (their depth "
        f"arrays alone), and {out / 'labelled'} has 1.4 MB free: free space, or choose another --out (the files "
        "written so far stay there, which the same command run again refreshes)"], err
    monkeypatch.undo()
    assert main(["demo", "--no-blender", "--out", str(out)]) == 0  # (refreshed, as it says)
