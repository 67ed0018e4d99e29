"""Ctrl-C (or SIGTERM) while `handforge corpus` makes its clips says that nothing was kept and how to go on."""

from __future__ import annotations

import pytest

from handforge.cli import main


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
