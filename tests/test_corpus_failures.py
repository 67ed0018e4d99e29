"""`handforge corpus` when it cannot finish: refused for want of room (sizes in units that show them), a full disk
at the figures (the statistics already made are kept), Ctrl-C or SIGTERM while the clips are made (nothing kept,
said, and how to go on)."""

from __future__ import annotations

import errno
import json
from collections import namedtuple

import pytest

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


def test_a_full_disk_at_the_figures_keeps_the_statistics(tmp_path, monkeypatch, capsys):
    """The statistics (minutes of exact meshes) were replaced in summary.json by {"error": "OSError: [Errno 28]
    No space left on device"}, and the command said "its statistics failed", though only histograms.png failed."""
    import handforge.corpus.build as build

    def full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(build, "histograms", full)
    out = tmp_path / "c"
    assert main(["corpus", "--out", str(out), "--sequences", "3", "--stats-sample", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"handforge corpus: the corpus is complete in {out} and its statistics are in summary.json, but its figures "
        "failed: No space left on device: make room (or choose another --out)"], err
    evaluation = json.loads((out / "summary.json").read_text())["evaluation"]
    assert evaluation["sample_clips"] == 2 and "error" not in evaluation
    assert evaluation["figures_error"] == "No space left on device: make room (or choose another --out)"


@pytest.mark.parametrize("stop, first, status", [("ctrl-c", "interrupted", 130), ("sigterm", "stopped by SIGTERM", 143)])
def test_an_interrupted_corpus_says_nothing_was_kept(tmp_path, monkeypatch, capsys, stop, first, status):
    """It said only "interrupted": whether a partial corpus was left in --out, and whether a rerun resumed it,
    the user had to find out by looking."""
    import handforge.corpus.build as build
    from handforge.termination import Terminated

    def stopped(*args, **kwargs):
        raise Terminated() if stop == "sigterm" else KeyboardInterrupt()

    monkeypatch.setattr(build, "_generate", stopped)
    out = tmp_path / "corpus"
    assert main(["corpus", "--out", str(out), "--sequences", "2", "--quiet", "--no-figures"]) == status
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"{first}: nothing of this run was kept (a corpus does not resume): run the same command again to start "
        "it anew")
    assert not out.exists() and not [p for p in tmp_path.iterdir()]  # (what it says holds)
