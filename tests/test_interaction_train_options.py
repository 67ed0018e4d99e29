"""``handforge train interaction --minutes`` with a huge time."""

from __future__ import annotations

import json

from handforge.cli import main


def test_minutes_past_any_step_count_run_the_given_steps(tmp_path, capsys):
    """--minutes 1e308 (a float argparse accepts, no infinity): the probe's time over it was an infinite step count,
    and `int()` of it an OverflowError traceback after the probe. --steps is the most --minutes runs: it runs them."""
    from handforge.corpus.build import write_corpus
    from handforge.corpus.generator import CorpusSettings

    corpus = tmp_path / "corpus"
    write_corpus(corpus, sequences=6, seed=3, settings=CorpusSettings(chunk_size=6, sequences_per_group=6),
                 stats_sample=0, figures=False, progress=False)
    assert main(["train", "interaction", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--steps", "3",
                 "--batch-size", "8", "--width", "8", "--hidden", "16", "--layers", "1", "--quiet",
                 "--minutes", "1e308"]) == 0
    out = capsys.readouterr().out
    assert ": 3 steps in about 1e+308 min" in out, out
    assert json.loads(out.splitlines()[-1])["steps"] == 3
