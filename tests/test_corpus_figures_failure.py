"""A corpus whose figures cannot be written (a full disk) keeps the statistics already made."""

from __future__ import annotations

import errno
import json

from handforge.cli import main


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
