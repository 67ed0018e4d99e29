"""Numeric options are refused by argparse with the option named (exit status 2), before a command
reads or computes anything."""

from __future__ import annotations

import argparse

import pytest

from handforge.cli import main
from handforge.arguments import POSITIVE, at_least, number_in


def test_argument_types_accept_their_range_and_name_what_is_allowed():
    parser = argparse.ArgumentParser(exit_on_error=False)
    parser.add_argument("--n", type=at_least(1))
    parser.add_argument("--f", type=number_in(0.0, 1.0, low_open=True))
    parser.add_argument("--lr", type=POSITIVE)
    assert vars(parser.parse_args(["--n", "3", "--f", "1", "--lr", "1e-4"])) == {"n": 3, "f": 1.0, "lr": 1e-4}
    for argv, needle in ((["--n", "0"], "must be at least 1, got 0"), (["--n", "2.5"], "whole number"),
                         (["--f", "0"], "above 0 and at most 1"), (["--f", "nan"], "above 0"),
                         (["--lr", "inf"], "above 0"), (["--lr", "x"], "must be a number")):
        with pytest.raises(argparse.ArgumentError, match=needle):
            parser.parse_args(argv)


@pytest.mark.parametrize("argv, needle", [
    (["eval", "motion", "--corpus", ".", "--windows", "0"], "--windows: must be at least 1"),
    (["eval", "motion", "--corpus", ".", "--batch", "0"], "--batch: must be at least 1"),
    (["eval", "motion", "--corpus", ".", "--variation", "5"], "--variation: must be a number above 0"),
    (["eval", "interaction", "--corpus", ".", "--samples", "0"], "--samples: must be at least 6"),
    (["eval", "interaction", "--corpus", ".", "--steps", "0"], "--steps: must be at least 1"),
    (["train", "interaction", "--corpus", ".", "--out", "x", "--threads", "-1"], "--threads: must be at least 1"),
    (["train", "interaction", "--corpus", ".", "--out", "x", "--minutes", "-1"], "--minutes: must be a number above 0"),
    (["bake-open-hand", "--samples", "0"], "--samples: must be at least 1"),
    (["eval", "motion", "--corpus", ".", "--out", "nodir/report.json"], "--out: its folder nodir does not exist"),
    (["eval", "interaction", "--corpus", ".", "--out", "."], "--out: must be a file path, got '.' (a folder)"),
    (["evaluate", "--corpus", ".", "--out", "nodir/r.json"], "its folder nodir does not exist"),
    (["keys", "--out", "afile"], "--out: afile is a file: give a folder"),
    (["demo", "--no-blender", "--out", "afile"], "--out: afile is a file"),
    (["corpus", "--out", "afile/corpus"], "afile is a file: a folder cannot go inside it"),
    (["export", "spec.toml", "--out", ""], "--out: give a folder"),
    (["train", "motion", "--corpus", ".", "--out", "afile"], "--out: afile is a file"),
    (["serve", "--endpoint-file", "."], "--endpoint-file: must be a file path"),
])
def test_commands_refuse_bad_numbers_with_the_option_named(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and needle in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]  # nothing written


def test_help_shows_each_options_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "motion", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--steps STEPS (default: 3000)" in text and "--lr LR (default: 0.0004)" in text
    assert "(default: 200) (default" not in text  # said once where the help already says it
