"""``handforge train transfer``'s backbone options and pair writing, refused in words before any work."""

from __future__ import annotations

from handforge.cli import main


def _train(tmp_path, *options: str) -> int:
    # --sd names a folder that is no SD model: a refusal of the options comes before it is looked at
    return main(["train", "transfer", "--data", str(tmp_path), "--sd", str(tmp_path), "--out", str(tmp_path / "run"),
                 "--size", "64", "--image-size", "32", "--feature-dim", "16", "--layers", "1", "--heads", "2",
                 "--steps", "1", "--batch-size", "1", "--quiet", *options])


def test_a_backbone_width_its_group_norm_cannot_split_is_refused_naming_the_option(tmp_path, capsys):
    """--channels 8 12: each backbone block normalises in min(8, width) groups, so a width above 8 must be a
    multiple of 8. It was refused only once the SD weights were loaded and --write-pairs' pairs written (minutes
    with real ones), by torch's "num_channels (12) must be divisible by num_groups (8)", naming no option."""
    assert _train(tmp_path, "--channels", "8", "12") == 2
    err = capsys.readouterr().err
    assert err.strip() == ("handforge train transfer: --channels 12: a backbone width above 8 must be a multiple of 8 "
                           "(each block's GroupNorm splits its channels into 8 groups)"), err
    assert not (tmp_path / "run").exists()
    assert "--channels" in _help(capsys) and "each at most 8 or a multiple of 8" in _help(capsys)


def _help(capsys) -> str:
    try:
        main(["train", "transfer", "--help"])
    except SystemExit:
        pass
    return " ".join(capsys.readouterr().out.split())


def test_an_image_size_too_small_for_the_backbone_is_refused_before_training(tmp_path, capsys):
    """--image-size 2 --channels 8 16: the first block's map is 1×1 and its GroupNorm has one channel a group, one
    value each, which torch refuses: a traceback ("Expected more than 1 value per channel when training") at the first
    step with --batch-size 1; with 2 the run finished, and `eval transfer` (one image at a time) was the traceback."""
    assert _train(tmp_path, "--channels", "8", "16", "--image-size", "2") == 2
    err = capsys.readouterr().err
    assert err.strip() == ("handforge train transfer: --image-size 2 is too small for --channels 8 16: block 1 (width "
                           "8) would see a 1×1 map, one value in each of its GroupNorm's groups: give --image-size 3 "
                           "or more, or that block a width of 16 or more"), err
    assert not (tmp_path / "run").exists()
    # block 2 of width 8 at --image-size 4 (2×2, then 1×1); --image-size 3 and a 16-wide block are fine
    assert _train(tmp_path, "--channels", "16", "8", "--image-size", "4") == 2
    assert "block 2 (width 8)" in capsys.readouterr().err
    for options in (["--channels", "8", "16", "--image-size", "3"], ["--channels", "16", "--image-size", "1"]):
        assert _train(tmp_path, *options) == 2  # refused for the --sd folder, past the options
        assert "is not a diffusers SD 1.x folder" in capsys.readouterr().err


def test_pairs_to_write_into_the_run_folder_are_refused_before_the_sd_weights_load(tmp_path, capsys):
    """--write-pairs with --data the --out folder (or inside it): the SD weights were loaded and the pairs written
    into the run folder, and only then was the run refused ("holds files that are not a training run's (pairs_spec.json,
    source, target)"), the pairs left there for every rerun to be refused on."""
    import json

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"seed": 5, "samples": 4, "width": 64, "height": 64, "render": {"engine": "none"},
                                "outputs": ["mesh"]}))
    for data in (tmp_path / "run", tmp_path / "run" / "pairs"):
        assert _train(tmp_path, "--channels", "8", "16", "--data", str(data), "--write-pairs", str(spec), "--pairs",
                      "2", "--shading", "gl") == 2
        err = capsys.readouterr().err
        assert err.strip() == (f"handforge train transfer: --data {data} is --out {tmp_path / 'run'} or inside it: "
                               "--write-pairs would write the pairs into the run folder, which holds the run's files "
                               "only: give --data a folder outside it"), err
        assert not (tmp_path / "run").exists()
