"""`handforge corpus` refused for want of room says the sizes in units that show them."""

from __future__ import annotations

from collections import namedtuple

from handforge.cli import main


def test_a_small_shortfall_is_said_in_megabytes(tmp_path, monkeypatch, capsys):
    """500 clips on a disk with 2 MB free said "500 clips need about 0.0 GB (29 kB a clip on average), and ...
    has 0.0 GB free": the refusal read as if nothing were needed and nothing missing."""
    import handforge.corpus.build as build

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(build.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 2_000_000, 2_000_000))
    out = tmp_path / "corpus"
    assert main(["corpus", "--out", str(out), "--sequences", "500", "--quiet", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "500 clips need about 14.4 MB (29 kB a clip on average)" in err and "has 2.0 MB free" in err, err
    assert not out.exists()
    monkeypatch.setattr(build.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 5 * 10**9, 5 * 10**9))
    assert main(["corpus", "--out", str(out), "--sequences", "1000000", "--quiet", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert "1,000,000 clips need about 28.9 GB" in err and "has 5.0 GB free" in err, err
