"""``handforge eval motion``'s options."""

from __future__ import annotations

import pytest

from handforge.cli import main


@pytest.mark.parametrize("value", ["1e308", "11", "1e9"])
def test_a_smoothing_past_the_jobs_range_is_refused_by_its_option(value, tmp_path, capsys):
    """--smoothing took any number from 0: 1e308 ended the evaluation in an OverflowError traceback (int(3 * σ) in
    the filter), and 1e9 built a Gaussian of billions of taps. The jobs take 0 to 10: so does the option."""
    with pytest.raises(SystemExit) as exit_:
        main(["eval", "motion", "--corpus", str(tmp_path), "--smoothing", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --smoothing: must be a number at least 0 and at most 10, got '{value}'" in err, err


def test_the_help_says_the_smoothings_range(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "motion", "--help"])
    assert "0 (off) to 10, as the jobs take it" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("splits", ["", ","])
def test_an_empty_split_list_is_refused_before_anything_loads(splits, tmp_path, capsys):
    """--splits "" (or ",") loaded the checkpoint, then said "the split(s)  of DIR hold no clips", naming no split:
    refused as an empty --tasks is, saying which splits there are (the corpus is not even read)."""
    assert main(["eval", "motion", "--corpus", str(tmp_path), "--splits", splits]) == 2
    err = capsys.readouterr().err
    assert "--splits names no split; choose from train, validation, test" in err, err
