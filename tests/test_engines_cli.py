"""``handforge train <engine>`` and ``handforge eval <engine>`` dispatch to the engine's own modules
(here the example engine of tests/engines), and an unknown engine gets the list of known ones."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from handforge.cli import main

EXAMPLE = ["--package", "tests.engines", "example"]


def test_train_then_eval_the_example_engine(tmp_path, capsys):
    untrained = tmp_path / "untrained"
    assert main(["train", *EXAMPLE, "--out", str(untrained), "--steps", "1", "--lr", "0", "--quiet"]) == 0
    assert main(["train", *EXAMPLE, "--out", str(tmp_path / "run"), "--steps", "150", "--quiet"]) == 0
    assert f"wrote {tmp_path / 'run' / 'model'}" in capsys.readouterr().out
    scores = []
    for run in (untrained, tmp_path / "run"):
        assert main(["eval", *EXAMPLE, "--checkpoint", str(run / "model")]) == 0
        scores.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["mse"])
    assert scores[1] < 0.5 * scores[0], scores
    assert main(["eval", *EXAMPLE, "--checkpoint", str(tmp_path / "nowhere")]) == 2
    assert "no such checkpoint folder" in capsys.readouterr().err


@pytest.mark.parametrize("code, fix", [(errno.ENOSPC, "make room (or choose another --out)"),
                                       (errno.EACCES, "let this user read and write it (or choose another --out)")])
def test_a_file_error_while_training_is_one_line_with_what_to_do(code, fix, tmp_path, capsys, monkeypatch):
    """An OSError of the user's files in any command is said in words, with the fix its errno calls for (a
    traceback before, outside the few commands that caught it, and those read any failure as a full disk)."""
    from diffusers import ModelMixin

    def refused(self, folder, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(Path(folder) / "model.safetensors"))

    monkeypatch.setattr(ModelMixin, "save_pretrained", refused)
    assert main(["train", *EXAMPLE, "--out", str(tmp_path / "run"), "--steps", "2", "--quiet"]) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"handforge train example: {tmp_path / 'run'}")  # (the engine named, as its other errors)
    assert f"model.safetensors: {os.strerror(code)}: {fix}; run the same command again to resume" in line, line


def test_unknown_engines_and_packages_are_named_with_what_exists(capsys):
    assert main(["train", "--package", "tests.engines", "nosuch"]) == 2
    assert "unknown engine 'nosuch'; engines with a train.py: example" in capsys.readouterr().err
    assert main(["eval", "nosuch"]) == 2
    assert "unknown engine 'nosuch'; engines with an evaluate.py: " in capsys.readouterr().err
    # a relative name and a module that is no package gave a TypeError and an AttributeError traceback
    for command, package in (("train", "no.such.package"), ("train", ".engines"), ("eval", "os")):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--package", package, "x"])
        assert exit_.value.code == 2
        assert f"argument --package: no such Python package {package!r}" in capsys.readouterr().err


@pytest.mark.parametrize("command, module", [("train", "train"), ("eval", "evaluate")])
def test_help_lists_the_engines_and_a_missing_one_is_said_alone(command, module, capsys):
    """--help said "see the list when it is unknown" (one had to mistype an engine to learn them), and no
    engine at all said "required: engine, ..."."""
    from handforge.engines import engines_with

    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert ", ".join(engines_with(module)) in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit) as exit_:
        main([command])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (f"handforge {command}: error: the following arguments are required: ENGINE "
                                       f"(see handforge {command} --help)\n")


def test_a_package_holding_an_engines_package_is_refused_with_the_one_meant(capsys):
    """`train --package handforge motion` listed `commands` as an engine (handforge/commands/train.py is the
    train subcommand), and `serve --engine-package handforge` would load handforge/server/jobs.py."""
    for command, package, meant in (("train", "handforge", "handforge.engines"), ("eval", "tests", "tests.engines")):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--package", package, "motion"])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert f"argument --package: {package} holds the engines package {meant}: give {meant}" in err, err
        assert "commands" not in err


def test_engine_options_are_the_engines_own(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", *EXAMPLE, "--help"])
    assert exit_.value.code == 0
    assert "usage: handforge train example" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", *EXAMPLE, "--steps", "x"])
    assert "--steps: must be a whole number, got 'x'" in capsys.readouterr().err


@pytest.mark.parametrize("command, start", [
    (["eval", "image"], "handforge eval image: does each image show its labelled hands"),
    (["train", "motion"], "Train the motion denoiser (handforge train motion --corpus DIR --out RUN)."),
])
def test_engine_help_describes_the_command_in_plain_text(capsys, command, start):
    """The description is the module docstring's first paragraph without its RST double backticks."""
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert start in out and "``" not in out


def test_an_engines_checkpoint_and_training_errors_are_one_line_without_catching_them(tmp_path, monkeypatch, capsys):
    """An engine that calls load_model / train without catching their errors (the README does not say
    it must) gave a traceback for a mistyped checkpoint folder or a changed rerun."""
    import sys
    import textwrap

    root = tmp_path / "bare_engines" / "bare"
    root.mkdir(parents=True)
    (root.parent / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "evaluate.py").write_text(textwrap.dedent("""
        def add_arguments(parser):
            parser.add_argument("--checkpoint")
        def run(args):
            from handforge.engines.checkpoints import load_model
            from tests.engines.example.model import TinyNet
            load_model(TinyNet, args.checkpoint)
        """))
    (root / "train.py").write_text(textwrap.dedent("""
        def add_arguments(parser):
            pass
        def run(args):
            from handforge.training.loop import TrainingError
            raise TrainingError("RUN: the learning rate differs from the run's")
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["eval", "--package", "bare_engines", "bare", "--checkpoint", str(tmp_path / "nowhere")]) == 2
        err = capsys.readouterr().err
        assert err.startswith("handforge eval bare: ") and "no such checkpoint folder" in err and len(err.splitlines()) == 1
        assert main(["train", "--package", "bare_engines", "bare"]) == 2
        assert capsys.readouterr().err == "handforge train bare: RUN: the learning rate differs from the run's\n"
    finally:
        for module in [m for m in sys.modules if m.startswith("bare_engines")]:
            monkeypatch.delitem(sys.modules, module)


def test_an_engine_module_without_its_functions_is_said_so(tmp_path, monkeypatch, capsys):
    """An outside engine's train.py with neither main nor add_arguments + run was an AttributeError traceback."""
    root = tmp_path / "half_engines" / "half"
    root.mkdir(parents=True)
    (root.parent / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "train.py").write_text("def add_arguments(parser):\n    pass\n")  # run forgotten
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["train", "--package", "half_engines", "half"]) == 2
        assert capsys.readouterr().err == ("handforge train: half_engines.half.train defines neither main(argv) nor "
                                           "add_arguments(parser) and run(args): define them (README.md, 'Adding an "
                                           "engine')\n")
    finally:
        for module in [m for m in sys.modules if m.startswith("half_engines")]:
            monkeypatch.delitem(sys.modules, module)


@pytest.mark.parametrize("command, module", [("train", "train"), ("eval", "evaluate")])
def test_an_engine_folder_without_init_py_is_named_with_the_fix(command, module, tmp_path, monkeypatch, capsys):
    """A folder with a train.py but no __init__.py (no package, pkgutil skips it) was told "no engine in PKG has a
    train.py yet", while serve and doctor name the missing file."""
    package = f"initless_{module}_engines"  # (one per case: monkeypatch puts back the modules it deleted)
    root = tmp_path / package / "initless"
    root.mkdir(parents=True)
    (root.parent / "__init__.py").write_text("")
    (root / f"{module}.py").write_text("def main(argv):\n    return 0\n")  # its __init__.py forgotten
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main([command, "--package", package, "initless"]) == 2
        assert capsys.readouterr().err == (f"handforge {command}: {root} has {'an' if module == 'evaluate' else 'a'} "
                                           f"{module}.py but no __init__.py, so it is no package: add an empty "
                                           "__init__.py to it\n")
    finally:
        for name in [m for m in sys.modules if m.startswith(package)]:
            monkeypatch.delitem(sys.modules, name)


def test_package_after_the_engine_is_pointed_before_it(capsys):
    """`handforge train example --package tests.engines` (options usually go anywhere) said only that
    'example' is no engine of handforge.engines."""
    assert main(["train", "example", "--package", "tests.engines"]) == 2
    assert "--package goes before the engine: handforge train --package tests.engines example" in capsys.readouterr().err


def test_an_engine_packages_settings_py_is_declared_for_its_train_and_eval(tmp_path, monkeypatch, capsys):
    """serve imports <engine>/settings.py; train/eval did not, so config.value of the engine's own key failed."""
    import sys
    import textwrap

    from handforge import config

    root = tmp_path / "keyed_engines" / "keyed"
    root.mkdir(parents=True)
    (root.parent / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "settings.py").write_text(textwrap.dedent("""
        from handforge import config
        config.register(config.Setting(key="keyed.weights", env="HANDFORGE_TEST_KEYED_WEIGHTS", help="weights"))
        """))
    (root / "evaluate.py").write_text(textwrap.dedent("""
        def add_arguments(parser):
            pass
        def run(args):
            from handforge import config
            print(config.value("keyed.weights"))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HANDFORGE_TEST_KEYED_WEIGHTS", "/weights/keyed")
    try:
        assert main(["eval", "--package", "keyed_engines", "keyed"]) == 0
        assert capsys.readouterr().out == "/weights/keyed\n"
    finally:
        for module in [m for m in sys.modules if m.startswith("keyed_engines")]:
            monkeypatch.delitem(sys.modules, module)
        config._SETTINGS.pop("keyed.weights", None)


def test_training_says_its_own_progress_not_accelerates_checkpoint_lines(tmp_path):
    # accelerate logged 6 INFO lines a checkpoint (hidden .part folders and all), burying the progress
    done = subprocess.run([sys.executable, "-m", "handforge", "train", *EXAMPLE, "--out", str(tmp_path / "run"),
                           "--steps", "30", "--quiet"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "run" / "checkpoints").is_dir()  # (checkpoints were saved)
    assert "accelerate" not in done.stderr, done.stderr
    assert f"wrote {tmp_path / 'run' / 'model'}" in done.stdout


def test_training_data_too_large_for_memory_is_one_line(tmp_path, capsys):
    """An allocation that fails (here the example's 10^13 training points, 120 TB) is one line naming what to
    lower, exit status 1, not torch's allocator traceback; nothing is written."""
    out = tmp_path / "run"
    assert main(["train", *EXAMPLE, "--out", str(out), "--samples", str(10**13), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("handforge train example: out of memory (") and len(err.splitlines()) == 1, err
    assert "lower the model's sizes or the batch size" in err and not out.exists()
    assert "checkpoints are kept" not in err  # (none was saved: it said the run's were kept)


def test_a_clip_with_a_hand_far_from_the_origin_is_named_before_training(tmp_path, capsys):
    """A (finite, so valid) clip with a hand at 1e30 m made the loss inf, said as "lower the learning rate"."""
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    pair, clips = side_by_side(), tmp_path / "clips"
    clips.mkdir()
    for name, shift in (("near", 0.0), ("far", 1e30)):
        right = stack_poses([pair.right] * 40)
        MotionClip(hands={"right": right.replace(transl=right.transl + shift),
                          "left": stack_poses([pair.left] * 40)}).save(clips / f"{name}.npz")
    out = tmp_path / "run"
    assert main(["train", "motion", "--motion-folder", str(clips), "--out", str(out), "--steps", "2", "--window", "16",
                 "--min-length", "8", "--batch-size", "2", "--d-model", "16", "--heads", "2", "--layers", "1",
                 "--ff-size", "16", "--threads", "1", "--quiet"]) == 2
    assert capsys.readouterr().err == ("handforge train motion: clip far places a hand 1.73205e+30 m from the origin (frame 0), "
                                       "beyond the 10000 m where float32 positions keep to a millimetre: move its "
                                       "hands nearer the origin (translations are metres)\n")
    assert not out.exists()


def test_a_corpus_without_train_clips_is_said_so(tmp_path, capsys):
    """A tiny corpus can put every sequence in validation or test: train motion said only "no clips to
    read: the source (split, max_clips) selected none", naming neither the split nor the corpus."""
    import numpy as np
    from handforge_shared.poses import HandPose, MotionClip, stack_poses

    corpus = tmp_path / "corpus"
    (corpus / "clips").mkdir(parents=True)
    pose = HandPose(global_orient=np.zeros(3), hand_pose=np.zeros(45), betas=np.zeros(10), transl=np.zeros(3))
    MotionClip(hands={s: stack_poses([pose] * 4) for s in ("left", "right")}).save(corpus / "clips" / "a.npz")
    (corpus / "splits.json").write_text(json.dumps({"format": "handforge.corpus-splits", "version": 1, "seed": 0,
                                                    "train": [], "validation": ["a"], "test": []}))
    assert main(["train", "motion", "--corpus", str(corpus), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"the train split of {corpus} holds no clips" in err and "make a larger corpus" in err, err
    # eval interaction on its empty test split: the other split is named as the fix, as eval motion names it
    assert main(["eval", "interaction", "--corpus", str(corpus)]) == 2
    err = capsys.readouterr().err
    assert err.rstrip().endswith("make a larger corpus, or choose another split (--split)"), err


def test_a_training_checkpoint_given_as_the_model_is_named_with_the_runs_model(tmp_path, capsys):
    """eval on run/checkpoints/step-N said "not a checkpoint folder, it has no config.json", not that a
    training checkpoint is the state a run resumes from, nor where the run's model is."""
    run = tmp_path / "run"
    assert main(["train", *EXAMPLE, "--out", str(run), "--steps", "2", "--quiet"]) == 0
    step = sorted((run / "checkpoints").iterdir())[-1]
    capsys.readouterr()
    assert main(["eval", *EXAMPLE, "--checkpoint", str(step)]) == 2
    err = capsys.readouterr().err
    assert f"{step}: not a checkpoint folder, it has no config.json: it is a training checkpoint (the state a run " \
           f"resumes from), not a model; give {run / 'model'}, the run's model" in err, err


def test_an_outside_packages_setting_in_the_config_file_is_no_misspelling(tmp_path, capsys, monkeypatch):
    """train/eval --package PKG declares PKG's engine settings: the config file's check ran before them and
    warned that example.checkpoints was a setting "no engine declares" (misspelled?)."""
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[example]\ncheckpoints = "{tmp_path}"\n')
    monkeypatch.setenv("HANDFORGE_CONFIG", str(config_file))
    assert main(["train", *EXAMPLE, "--out", str(tmp_path / "run"), "--steps", "2", "--quiet"]) == 0
    assert "no engine declares" not in capsys.readouterr().err
    config_file.write_text('[example]\ncheckpoint = "x"\n')  # a real misspelling is still said
    assert main(["train", *EXAMPLE, "--out", str(tmp_path / "run2"), "--steps", "2", "--quiet"]) == 0
    assert "no engine declares, which nothing reads: example.checkpoint (misspelled?" in capsys.readouterr().err


def test_torchs_info_lines_are_not_said_without_verbose(tmp_path):
    """A Ctrl-C while torch was being imported (early in an export) left its loggers at the root's INFO, and
    torch logged its "FakeTensor cache stats" (5 INFO lines) at exit, below "interrupted": torch's
    internals, as accelerate's, are said with -v only, whenever torch is imported."""
    script = ("import logging, sys; from handforge.cli import main; "  # a command that stops before torch
              f"main(['convert-mano', {str(tmp_path / 'missing')!r}]); "
              "assert 'torch' not in sys.modules; print(logging.getLogger('torch').level)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "30"  # WARNING (before: 0, NOTSET, the root's INFO)


def test_an_out_of_memory_mid_run_names_the_checkpoint_a_rerun_resumes_from(tmp_path, capsys, monkeypatch):
    """Out of memory at step 7, after the checkpoint of step 5: one line naming that checkpoint (the command
    line had guessed from --out whether any was kept), and the rerun resumes there."""
    import torch

    import tests.engines.example.model as example

    calls = []
    loss = example.loss

    def fails_at_step_7(model, batch):
        calls.append(1)
        if len(calls) == 7:
            torch.empty(10**13)  # 40 TB: the allocator's own error
        return loss(model, batch)

    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(example, "loss", fails_at_step_7)
        assert main(["train", *EXAMPLE, "--out", str(run), "--steps", "20", "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("handforge train example: out of memory (") and len(err.splitlines()) == 1, err
    assert err.endswith(f"the run's checkpoints are kept: a rerun resumes from step 5 "
                        f"({run / 'checkpoints' / 'step-00000005'})"), err
    assert main(["train", *EXAMPLE, "--out", str(run), "--steps", "20", "--quiet"]) == 0
    rows = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert rows == [10, 20], rows  # (logged every 10 steps: the rerun's, none twice)


def test_an_engine_setting_that_clashes_is_one_line_for_train(tmp_path, monkeypatch, capsys):
    """A settings.py declaring a key another module has was a traceback from `handforge train`."""
    root = tmp_path / "clashing_engines" / "clash"
    root.mkdir(parents=True)
    (root.parent / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "settings.py").write_text("from handforge import config\nconfig.register(config.Setting("
                                      "key='motion.checkpoint', env='HANDFORGE_TEST_CLASH', help='mine'))\n")
    (root / "train.py").write_text("def main(argv):\n    return 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["train", "--package", "clashing_engines", "clash"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("handforge train: clashing_engines.clash.settings: setting motion.checkpoint is already "
                              "declared differently (") and err.count("\n") == 1, err
    finally:
        for name in [m for m in sys.modules if m.startswith("clashing_engines")]:
            monkeypatch.delitem(sys.modules, name)
