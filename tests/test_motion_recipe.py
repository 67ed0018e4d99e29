"""``handforge train motion --recipe shipped``: the shipped checkpoint's stages as one command (``recipe.py``), each
fine-tuning the one before in a folder of its own, and a rerun passing over the stages already done."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from handforge.engines.checkpoints import load_model
from handforge.engines.motion import recipe
from handforge.engines.motion import train as motion_train
from handforge.engines.motion.model import MotionDenoiser
from tests.support.tiny_corpus import write_tiny_corpus

TINY = ("--d-model", "32", "--layers", "1", "--heads", "2", "--ff-size", "64", "--window", "32", "--min-length", "16")
STAGES = (("first", ("--steps", "4", "--batch-size", "4", "--warmup-steps", "0", *TINY)),
          ("second", ("--steps", "3", "--batch-size", "4", "--warmup-steps", "0", "--lr", "1e-4",
                      "--observation-curve", "hermite", "--seed", "2", *TINY)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("recipe") / "corpus")


def parsed(*argv: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser()
    motion_train.add_arguments(parser)
    return parser.parse_args(list(argv)), parser


def test_the_shipped_recipe_is_the_three_documented_stages():
    args, _ = parsed("--corpus", "corpus20k", "--out", "runs/v6", "--recipe", "shipped", "--threads", "1")
    plan = recipe.stage_arguments(args, recipe.SHIPPED)
    assert [name for name, _ in plan] == ["base", "fine_tune", "hermite"]
    first, second, third = (" ".join(argv) for _, argv in plan)
    assert first.startswith("--corpus corpus20k --threads 1 --checkpoint-every 250 --steps 3000 --batch-size 32 "
                            "--max-clips 16000 --out runs/v6/base") and "--init" not in first, first
    assert "--lr 1.5e-4 --warmup-steps 50 --batch-size 32 --seed 6 --out runs/v6/fine_tune --init runs/v6/base/model" \
        in second, second
    assert "--observation-curve hermite" in third and third.endswith("--out runs/v6/hermite --init "
                                                                       "runs/v6/fine_tune/model"), third


def test_a_recipe_runs_its_stages_in_turn_each_fine_tuning_the_one_before(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    args, parser = parsed("--motion-folder", str(corpus / "clips"), "--out", str(out), "--recipe", "shipped",
                          "--quiet", "--checkpoint-every", "2")
    assert recipe.run_recipe(args, motion_train.run, parser, STAGES) == 0
    said = capsys.readouterr().out
    assert "stage 1/2 first: handforge train motion --motion-folder" in said and "stage 2/2 second:" in said
    assert f"the recipe's model: {out / 'second' / 'model'}" in said
    first, second = (load_model(MotionDenoiser, out / name / "model") for name in ("first", "second"))
    assert second.config.observation_curve == "hermite" and first.config.observation_curve == "linear"
    assert second.config.data_std == first.config.data_std  # (the second started from the first: its statistics)
    settings = json.loads((out / "second" / "settings.json").read_text())
    assert settings["data_options"]["init"] == str((out / "first" / "model").resolve()), settings["data_options"]
    assert [json.loads(line)["step"] for line in (out / "second" / "log.jsonl").read_text().splitlines()][-1] == 3
    # run again: every stage's model is there, nothing is trained
    stamp = (out / "second" / "model" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert recipe.run_recipe(args, motion_train.run, parser, STAGES) == 0
    again = capsys.readouterr().out
    assert again.count("its model is written") == 2 and "handforge train motion --motion-folder" not in again
    assert (out / "second" / "model" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp


def test_an_option_the_stages_set_is_refused_with_a_recipe(corpus, tmp_path, capsys):
    args, parser = parsed("--motion-folder", str(corpus / "clips"), "--out", str(tmp_path / "run"), "--recipe",
                          "shipped", "--steps", "10", "--lr", "1e-3")
    assert motion_train.run(args) == 2
    err = capsys.readouterr().err
    assert "--recipe shipped sets --steps, --lr for each of its stages: leave them out" in err, err
    assert not (tmp_path / "run").exists()
