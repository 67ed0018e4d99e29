"""`handforge demo` on a full disk (or a file it cannot write) names its option and says what it left."""

from __future__ import annotations

import errno

from handforge.cli import main


def test_a_full_disk_names_out_and_says_the_folder_is_refreshed(tmp_path, monkeypatch, capsys):
    """It said "handforge demo: OUT/fist.glb: No space left on device: make room (or choose another folder)":
    not which option to change, nor whether the half-written folder could be used again (it can: a rerun
    refreshes it)."""
    import handforge.demo as demo

    real = demo.write_atomic

    def full(path, data, **kwargs):
        if str(path).endswith("fist.glb"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data, **kwargs)

    monkeypatch.setattr(demo, "write_atomic", full)
    out = tmp_path / "demo"
    assert main(["demo", "--no-blender", "--out", str(out)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"handforge demo: {out / 'fist.glb'}: No space left on device: make room (or choose another --out); the "
        "files written so far stay in --out, a demo's folder, which the same command run again refreshes"]
    monkeypatch.setattr(demo, "write_atomic", real)
    assert main(["demo", "--no-blender", "--out", str(out)]) == 0  # (what the hint says holds)
