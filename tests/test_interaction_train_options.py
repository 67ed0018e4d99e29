"""``handforge train interaction --minutes`` with a huge time."""

from __future__ import annotations

import json
import re

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
    # the time the 3 steps take, not --minutes (it said "3 steps in about 1e+308 min")
    assert re.search(r": 3 steps in about [0-9.e-]+ min \(--steps caps them below --minutes 1e\+308\)", out), out
    assert "about 1e+308 min" not in out
    assert json.loads(out.splitlines()[-1])["steps"] == 3


def test_a_size_given_with_init_other_than_the_models_is_refused(tmp_path, capsys):
    """--init keeps its model's size: --hidden 32 given with it was ignored unsaid (the fuzzing of 2026-12-07)."""
    from handforge.corpus.build import write_corpus
    from handforge.corpus.generator import CorpusSettings

    corpus = tmp_path / "corpus"
    write_corpus(corpus, sequences=6, seed=3, settings=CorpusSettings(chunk_size=6, sequences_per_group=6),
                 stats_sample=0, figures=False, progress=False)
    tiny = ["--corpus", str(corpus), "--steps", "2", "--batch-size", "8", "--quiet"]
    assert main(["train", "interaction", *tiny, "--out", str(tmp_path / "run"), "--width", "8", "--hidden", "16",
                 "--layers", "1"]) == 0
    capsys.readouterr()
    init = ["--init", str(tmp_path / "run" / "model")]
    assert main(["train", "interaction", *tiny, "--out", str(tmp_path / "tuned"), *init, "--hidden", "32"]) == 2
    err = capsys.readouterr().err
    assert "--hidden 32 given with --init, whose model keeps its own size (width 8, hidden 16, layers 1)" in err, err
    assert not (tmp_path / "tuned").exists()
    # the model's own size, or the options left at their defaults: fine-tuned
    assert main(["train", "interaction", *tiny, "--out", str(tmp_path / "tuned"), *init, "--hidden", "16"]) == 0
