"""The interaction engine's representation and denoiser: vectors decode back to the same hands
(either anchor side), and a tiny model's training loss falls through the one training loop."""

from __future__ import annotations

import json
import re

import pytest
import torch

from handforge.engines.interaction.model import InteractionDenoiser, training_loss
from handforge.engines.interaction.representation import (
    OTHER,
    WristJoints,
    anchor_frame,
    canonical,
    decode_anchor,
    decode_other,
    encode,
    pair_from_batch,
)
from handforge.hands import load_hand_model
from handforge.training.loop import TrainSettings, train
from tests.support.interaction import synthetic_pairs
from tests.support.tiny_corpus import write_tiny_corpus
from tests.support.threads import one_thread  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def hand_model():
    return load_hand_model("open", dtype=torch.float64)


def vertices(model, side, hand):
    return model(side, **{k: v.double() for k, v in hand.items()}).vertices


@pytest.mark.parametrize("anchor_side", ["left", "right"])
def test_vectors_decode_to_the_same_hands_for_either_anchor_side(hand_model, anchor_side):
    pair = pair_from_batch(synthetic_pairs(8, seed=3).arrays)
    pair = {s: {k: v.double() for k, v in h.items()} for s, h in pair.items()}
    wrists = WristJoints.of(hand_model)
    canon = canonical(pair, anchor_side)
    anchor, other = encode(canon, wrists)
    rotation, wrist = anchor_frame(canon["left"], wrists)
    back = decode_other(other, rotation, wrist, wrists, mirror=anchor_side == "right")
    other_side = "left" if anchor_side == "right" else "right"
    error = (vertices(hand_model, other_side, back) - vertices(hand_model, other_side, pair[other_side])).abs().max()
    assert error < 1e-9
    # the anchor vector keeps the anchor's articulation: decoded, it has the same shape up to a rigid motion
    decoded = decode_anchor(anchor, wrists)
    assert torch.allclose(decoded["hand_pose"], canon["left"]["hand_pose"], atol=1e-12)
    assert torch.allclose(anchor[:, 55:], anchor.new_tensor([1, 0, 0, 0, 1, 0, 0, 0, 0]).expand(8, 9))


def test_tiny_model_loss_falls(tmp_path, hand_model):
    torch.manual_seed(0)
    anchors, others = synthetic_pairs(512, seed=1).vectors(WristJoints.of(hand_model))
    net = InteractionDenoiser(width=32, hidden=64, layers=3, heads=2, attention_layers=1, dropout=0.0,
                              num_train_timesteps=100)
    net.fit_normalisation(anchors.float(), others.float())
    scheduler = net.noise_scheduler()
    dataset = torch.utils.data.TensorDataset(anchors.float(), others.float())
    result = train(net, dataset, lambda m, b: training_loss(m, *b, scheduler),
                   TrainSettings(out=tmp_path / "run", steps=120, batch_size=64, lr=3e-3, log_every=10,
                                 ema_decay=None, checkpoint_every=120, progress=False))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert result.model_dir is not None and (result.model_dir / "config.json").is_file()
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:2]) / 2, losses
    assert OTHER == "right"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_tiny_corpus(tmp_path_factory.mktemp("interaction") / "corpus")


def _train(*argv: str) -> int:
    import argparse

    from handforge.engines.interaction import train as interaction_train

    parser = argparse.ArgumentParser()
    interaction_train.add_arguments(parser)
    return interaction_train.run(parser.parse_args(list(argv)))


def test_a_run_sized_by_minutes_resumes_with_its_step_count(corpus, tmp_path, capsys):
    """A rerun of a --minutes run continues the step count chosen at its start: it timed a new probe, so
    the step count (and with it the learning-rate schedule) changed, or fell below the steps done and the
    rerun was refused."""
    common = ["--corpus", str(corpus), "--batch-size", "8", "--quiet", "--width", "32", "--hidden", "64",
              "--layers", "2", "--out", str(tmp_path / "run"), "--minutes", "0.02"]
    assert _train(*common) == 0
    steps = json.loads((tmp_path / "run" / "settings.json").read_text())["steps"]
    capsys.readouterr()
    (tmp_path / "run" / "settings.json").write_text(  # as if the first start had sized it otherwise
        (tmp_path / "run" / "settings.json").read_text().replace(f'"steps": {steps},', f'"steps": {steps + 3},'))
    assert _train(*common) == 0
    printed = capsys.readouterr().out
    assert f"continuing the run's {steps + 3} steps" in printed and "ms/step" not in printed, printed
    assert json.loads(printed.strip().splitlines()[-1])["steps"] == steps + 3
    settings_file = tmp_path / "run" / "settings.json"  # edited to a float: said naming the file (it named none)
    settings_file.write_text(json.dumps({**json.loads(settings_file.read_text()), "steps": float(steps + 5)}))
    assert _train(*common) == 2
    assert f'{settings_file}: "steps" must be a whole number (a JSON integer' in capsys.readouterr().err


def test_a_speed_probe_that_fails_leaves_no_probe_folder(corpus, tmp_path, capsys):
    """--minutes times a throwaway run in OUT/speed-probe; a probe that failed (or was interrupted) left that
    folder behind, which only a later --minutes run removed."""
    from handforge.cli import main

    out = tmp_path / "run"
    assert main(["train", "interaction", "--corpus", str(corpus), "--batch-size", "100000", "--quiet", "--width",
                 "8", "--hidden", "16", "--layers", "1", "--out", str(out), "--minutes", "0.02"]) == 2
    assert "fewer than one batch of 100000 per device: lower --batch-size" in capsys.readouterr().err
    assert not (out / "speed-probe").exists()
    # nor a settings.json: a rerun with --minutes took its step count (20,000, the default) for a run to
    # continue, hours instead of the minutes asked for
    assert not (out / "settings.json").exists()
    assert main(["train", "interaction", "--corpus", str(corpus), "--batch-size", "100000", "--quiet", "--width",
                 "8", "--hidden", "16", "--layers", "1", "--out", str(out)]) == 2  # (no probe: refused by the loop)
    assert "fewer than one batch" in capsys.readouterr().err and not (out / "settings.json").exists()
    small = ["train", "interaction", "--corpus", str(corpus), "--batch-size", "8", "--quiet", "--width", "8",
             "--hidden", "16", "--layers", "1", "--minutes", "0.01"]
    assert main([*small, "--out", str(tmp_path / "done")]) == 0
    # a run killed before its first checkpoint: its settings.json, no checkpoint (20,000 steps recorded)
    recorded = json.loads((tmp_path / "done" / "settings.json").read_text())
    out.mkdir(exist_ok=True)
    (out / "settings.json").write_text(json.dumps({**recorded, "steps": 20000}))
    capsys.readouterr()
    assert main([*small, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ms/step" in printed and "continuing the run's" not in printed, printed
    assert json.loads(printed.strip().splitlines()[-1])["steps"] < 20000


def test_a_finished_minutes_run_says_how_to_go_on(corpus, tmp_path, capsys):
    """A finished --minutes run rerun with --minutes and a larger --steps trained nothing and said "a larger
    --steps goes on", though one was given: with --minutes the steps are the run's record (a review found it)."""
    from handforge.cli import main

    small = ["train", "interaction", "--corpus", str(corpus), "--batch-size", "8", "--quiet", "--width", "8",
             "--hidden", "16", "--layers", "1", "--out", str(tmp_path / "run")]
    assert main([*small, "--minutes", "0.01"]) == 0
    steps = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["steps"]
    assert main([*small, "--minutes", "0.01", "--steps", str(steps + 50)]) == 0
    note = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["note"]
    assert note == (f"the run was already at step {steps}: nothing was trained (rerun without --minutes, with a "
                    "larger --steps, to go on)"), note
    assert main([*small, "--steps", str(steps + 2)]) == 0  # as said: it goes on
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (summary["steps"], summary["note"]) == (steps + 2, f"resumed at step {steps}"), summary


def test_a_refused_speed_probe_leaves_another_runs_probe_alone(corpus, tmp_path, capsys):
    """Two --minutes runs into one --out: the second's probe is refused (the first's holds OUT/speed-probe), and
    its clean-up deleted that folder under the first run, which then failed (exit 1, "log.jsonl: No such file")."""
    from handforge.cli import main
    from handforge_shared.files import folder_lock

    probe = tmp_path / "run" / "speed-probe"
    probe.mkdir(parents=True)
    (probe / ".theirs").write_text("")  # (hidden: no name the loop refuses before taking the lock)
    with folder_lock(probe):  # as the other run's probe holds it
        assert main(["train", "interaction", "--corpus", str(corpus), "--batch-size", "8", "--quiet", "--width",
                     "8", "--hidden", "16", "--layers", "1", "--out", str(tmp_path / "run"), "--minutes",
                     "0.01"]) == 2
        assert "another training run is writing into this folder" in capsys.readouterr().err
        assert (probe / ".theirs").is_file()


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(corpus, tmp_path, capsys):
    """--hidden 10000000 asks for more memory than the machine has: refused in one line from its size
    (counted on torch's meta device), before any weight is allocated. A size that fits in address space
    but not in RAM (--d-model 30000 of motion) was ended by the OOM killer without a word."""
    from handforge.cli import main

    out = tmp_path / "run"
    assert main(["train", "interaction", "--corpus", str(corpus), "--batch-size", "4", "--quiet", "--width", "8",
                 "--hidden", "10000000", "--layers", "1", "--steps", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge train interaction: InteractionDenoiser of ") and len(err.splitlines()) == 1
    assert "GiB to train" in err and "lower the model's sizes" in err and not (out / "model").exists()


def test_a_bad_out_or_warm_up_is_refused_before_the_data_is_read(tmp_path, capsys):
    """The run's settings and --out were checked only by the training loop, after the pairs were read (and
    with --minutes a 40-step speed probe run): here --corpus is no corpus at all, and the settings are named."""
    (tmp_path / "no-corpus").mkdir()
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "checkpoints").write_text("")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    common = ["--corpus", str(tmp_path / "no-corpus"), "--batch-size", "8", "--quiet", "--width", "8", "--hidden",
              "16", "--layers", "1"]
    for argv, needle in ((["--out", str(tmp_path / "odd")], "checkpoints is a file, not the run's own"),
                         (["--out", str(tmp_path / "mine"), "--minutes", "0.02"],
                          "holds files that are not a training run's (notes.txt)"),
                         (["--out", str(tmp_path / "x"), "--steps", "10", "--warmup-steps", "50"],
                          "warmup_steps (--warmup-steps) 50 is more than steps 10")):
        assert _train(*common, *argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("handforge train interaction: ") and needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists() and not (tmp_path / "mine" / "speed-probe").exists()


def test_a_model_too_large_for_memory_is_refused_by_run_itself(corpus, tmp_path, capsys):
    """new_model's TrainingError came out of run() (only `handforge train`'s dispatcher said it in one line)."""
    assert _train("--corpus", str(corpus), "--batch-size", "4", "--quiet", "--width", "8", "--hidden", "10000000",
                  "--layers", "1", "--steps", "1", "--out", str(tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge train interaction: InteractionDenoiser of ") and "GiB to train" in err


def test_the_train_command_fine_tunes_from_a_given_model(corpus, tmp_path, capsys):
    """``handforge train interaction --init``: the run starts from the model folder (its weights, size and
    normalisation), so its loss starts where that model's training ended."""
    from handforge.engines.checkpoints import load_model

    common = ["--corpus", str(corpus), "--batch-size", "8", "--lr", "3e-3", "--quiet",
              "--width", "32", "--hidden", "64", "--layers", "2"]
    assert _train(*common, "--out", str(tmp_path / "first"), "--steps", "80") == 0
    # another size given with --init is refused (it was ignored unsaid); the model's own is fine-tuned
    assert _train(*common, "--out", str(tmp_path / "tuned"), "--steps", "10", "--warmup-steps", "0",
                  "--init", str(tmp_path / "first" / "model"), "--width", "48") == 2
    assert "--width 48 given with --init, whose model keeps its own size (width 32" in capsys.readouterr().err
    assert _train(*common, "--out", str(tmp_path / "tuned"), "--steps", "10", "--warmup-steps", "0",
                  "--init", str(tmp_path / "first" / "model")) == 0
    first = [json.loads(line)["loss"] for line in (tmp_path / "first" / "log.jsonl").read_text().splitlines()]
    tuned = [json.loads(line)["loss"] for line in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()]
    assert abs(tuned[0] - first[-1]) < abs(tuned[0] - first[0]), (first, tuned)
    start = load_model(InteractionDenoiser, tmp_path / "first" / "model")
    result = load_model(InteractionDenoiser, tmp_path / "tuned" / "model")
    same = {k: v for k, v in result.config.items() if k != "_name_or_path"}
    assert result.config.width == 32 and same == {k: v for k, v in start.config.items() if k != "_name_or_path"}
    capsys.readouterr()
    # refused before any data is read: a folder that is not an interaction model, and the run's own folder
    assert _train(*common, "--out", str(tmp_path / "bad"), "--steps", "10", "--init", str(corpus)) == 2
    assert "--init" in capsys.readouterr().err and not (tmp_path / "bad").exists()  # on stderr, as every command
    assert _train(*common, "--out", str(tmp_path / "first"), "--steps", "10", "--init",
                  str(tmp_path / "first" / "model")) == 2
    assert "inside --out" in capsys.readouterr().err
    # the run continued on every other frame is another dataset for the same weights (it resumed unsaid)
    assert _train(*common, "--out", str(tmp_path / "first"), "--steps", "90", "--stride", "2") == 2
    assert "other settings (data_options: stride 1 -> 2)" in capsys.readouterr().err
    # with the batch size and the model's width too: all in one refusal, before the data is read (no corpus here)
    assert _train(*common, "--out", str(tmp_path / "first"), "--steps", "90", "--stride", "2", "--batch-size", "4",
                  "--width", "48", "--corpus", str(tmp_path / "no-corpus")) == 2
    assert ("other settings (batch_size 8 -> 4; model_config: width 32 -> 48; data_options: stride 1 -> 2); resume "
            "with the same settings and data") in capsys.readouterr().err
    # the fine-tuned run again: the --init model's config is its own (no difference; nothing left to train)
    assert _train(*common, "--out", str(tmp_path / "tuned"), "--steps", "10", "--warmup-steps", "0",
                  "--init", str(tmp_path / "first" / "model")) == 0


def test_a_run_resumed_on_a_corpus_rebuilt_in_place_is_refused(corpus, tmp_path, capsys):
    """The same folder and options, as many frames, other data: resuming would go on training the weights
    on another dataset unsaid; a run recorded before the data was (null) still resumes."""
    import shutil

    import numpy as np

    data = tmp_path / "corpus"
    shutil.copytree(corpus, data)
    common = ["--corpus", str(data), "--batch-size", "8", "--quiet", "--width", "32", "--hidden", "64",
              "--layers", "2", "--out", str(tmp_path / "run")]
    assert _train(*common, "--steps", "4") == 0
    settings_file = tmp_path / "run" / "settings.json"
    for clip in (data / "clips").glob("*.npz"):  # both hands a millimetre further along x: the same frames
        arrays = dict(np.load(clip))
        for side in ("left", "right"):
            arrays[f"{side}.transl"] = arrays[f"{side}.transl"] + np.float32([0.001, 0, 0])
        np.savez(clip, **arrays)
    capsys.readouterr()
    assert _train(*common, "--steps", "6") == 2
    assert "holds a run with other training data" in capsys.readouterr().err
    # a run that recorded no data statistics (before they were) is not refused for that
    settings_file.write_text(json.dumps({**json.loads(settings_file.read_text()), "data_statistics": None}))
    assert _train(*common, "--steps", "6") == 0


def test_the_eval_command_names_a_wrong_split(corpus, capsys):
    import argparse

    from handforge.engines.interaction import evaluate

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    assert evaluate.run(parser.parse_args(["--corpus", str(corpus), "--split", "val"])) == 2
    assert "unknown split ['val']: use train, validation, test" in capsys.readouterr().err


def test_the_eval_draws_its_ground_truth_from_other_clips_than_its_reference(corpus):
    """Frames of one clip are near copies: the ground-truth row and the reference set never share a
    clip, and a split too small for either draw is named."""
    import numpy as np

    from handforge.datasets import open_corpus
    from handforge.engines.interaction.data import load_pairs
    from handforge.engines.interaction.evaluate import clip_disjoint_draws

    pairs = load_pairs(corpus, "train")  # the fixture's one person group
    half = len(pairs) // 2
    assert torch.equal(pairs.clips[:half], pairs.clips[half:])  # a mirrored frame keeps its clip
    source = open_corpus(corpus, split="train")
    for row in (0, half - 1):  # each frame is one of its clip's frames
        clip = source.load(int(pairs.clips[row]))
        pose = np.asarray(clip.hands["left"].hand_pose, np.float32)
        assert np.abs(pose - pairs.arrays["hand_pose"][row, 0].numpy()).max(axis=-1).min() < 1e-6
    clips = np.repeat(np.arange(10), 6)
    reference, truth = clip_disjoint_draws(clips, 20, 12, np.random.default_rng(0))
    assert len(reference) == 20 and len(truth) == 12
    assert not set(clips[reference]) & set(clips[truth])
    assert len(set(reference)) == 20 and len(set(truth)) == 12
    with pytest.raises(ValueError, match="fewer than --samples 31"):
        clip_disjoint_draws(clips, 20, 31, np.random.default_rng(0))



def test_a_split_of_one_clip_is_named_with_what_to_do():
    """The ground truth and the reference come from two halves of the clips: a split of one clip said "half of its
    1 clips hold 0 frames, fewer than --samples 8", and --samples cannot go below 6. Now said as it is."""
    import numpy as np

    from handforge.engines.interaction.evaluate import clip_disjoint_draws

    with pytest.raises(ValueError, match="^it holds 1 clip, and the ground-truth row is drawn from other clips than "
                                         "the reference: make a larger corpus, or choose another split"):
        clip_disjoint_draws(np.zeros(60, int), 20, 8, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fewer than --samples 31: lower it, or make a larger corpus"):
        clip_disjoint_draws(np.repeat(np.arange(10), 6), 20, 31, np.random.default_rng(0))

def test_a_stride_that_skips_every_contact_frame_is_named(corpus):
    # it said only "corpus clips need contact_frames", which they have
    from handforge.engines.interaction.data import load_pairs

    with pytest.raises(ValueError, match="no interaction frames in the train split .*one frame in 100000 "
                                         "\\(--stride\\) may have skipped every contact: lower it"):
        load_pairs(corpus, "train", stride=100000)


def test_an_empty_split_is_named_with_its_corpus(corpus):
    """eval interaction on a corpus without test clips said "the source (split, max_clips) selected none"; then
    "choose another split", which no interaction command has an option for."""
    from handforge.engines.interaction.data import load_pairs

    with pytest.raises(ValueError, match=f"^the test split of {corpus} holds no clips .*: make a larger corpus$"):
        load_pairs(corpus, "test")  # the fixture's one person group is all in train


def test_a_split_without_interaction_frames_says_how_to_fix_it(corpus, tmp_path, capsys):
    """eval and train interaction on a split whose clips have no contact said only "no interaction frames in the
    train split (corpus clips need contact_frames)", no fix (a review found it); now as an empty split is said."""
    import shutil

    import numpy as np

    from handforge.cli import main

    no_contact = tmp_path / "corpus"
    shutil.copytree(corpus, no_contact)
    for clip in (no_contact / "clips").glob("*.npz"):
        with np.load(clip) as held:
            arrays = dict(held)
        meta = json.loads(str(arrays["meta"]))
        meta["extra"]["corpus"]["contact_frames"] = []
        np.savez(clip, **{**arrays, "meta": np.array(json.dumps(meta))})
    said = "no interaction frames in the train split (corpus clips need contact_frames): make a larger corpus"
    assert main(["eval", "interaction", "--corpus", str(no_contact), "--split", "train", "--samples", "6",
                 "--reference", "6", "--steps", "1"]) == 2
    assert capsys.readouterr().err.strip() == f"handforge eval interaction: {said}, or choose another split (--split)"
    assert _train("--corpus", str(no_contact), "--out", str(tmp_path / "run"), "--steps", "1", "--quiet") == 2
    assert capsys.readouterr().err.strip() == f"handforge train interaction: {said}"


@pytest.mark.parametrize("change, problem", [({"hand_model": "mano"}, "of the mano hand model"),
                                             ({"extra": {"pose_convention": "mean_relative"}}, "mean-relative")])
def test_a_corpus_of_another_hand_model_or_raw_poses_is_refused(corpus, tmp_path, capsys, change, problem):
    """A corpus is encoded on the open hand's wrist joints: MANO clips (or raw InterHand2.6M poses) in a corpus
    folder trained a model on the wrong joints, unsaid."""
    import dataclasses
    import shutil

    from handforge_shared.poses import MotionClip

    other = tmp_path / "corpus"
    shutil.copytree(corpus, other)
    for path in (other / "clips").glob("*.npz"):
        clip = MotionClip.load(path)
        extra = {**clip.extra, **change.get("extra", {})}
        dataclasses.replace(clip, hand_model=change.get("hand_model", clip.hand_model), extra=extra).save(path)
    assert _train("--corpus", str(other), "--out", str(tmp_path / "model"), "--steps", "2", "--batch-size", "8",
                  "--quiet") == 2
    err = capsys.readouterr().err
    assert problem in err and "--interhand" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model").exists()


def test_a_corpus_clip_with_a_hand_far_from_the_origin_is_named_before_training(corpus, tmp_path, capsys):
    """A (finite, so valid) corpus clip with a hand at 1e30 m trained a model whose translations were
    normalised by its distance, unsaid (the motion engine refuses such clips too)."""
    import dataclasses
    import shutil

    from handforge_shared.poses import MotionClip

    other = tmp_path / "corpus"
    shutil.copytree(corpus, other)
    path = sorted((other / "clips").glob("*.npz"))[0]
    clip = MotionClip.load(path)
    right = clip.hands["right"]
    dataclasses.replace(clip, hands={**clip.hands, "right": right.replace(transl=right.transl + 1e30)}).save(path)
    assert _train("--corpus", str(other), "--out", str(tmp_path / "model"), "--steps", "2", "--batch-size", "8",
                  "--quiet") == 2
    err = capsys.readouterr().err
    assert re.search(f"clip {path.stem} places a hand 1.7\\d*e\\+30 m from the origin \\(frame 0\\), beyond the "
                     "10000 m .*nearer the origin", err) and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "model").exists()


def test_the_eval_names_a_draw_with_too_few_distinct_configurations(tmp_path, capsys, monkeypatch):
    """The corpus's contact frames repeat template poses, so a small split's reference draw can hold 5 or
    fewer distinct configurations, too few for k-NN precision/recall (k = 5; the reference manifold is built
    from its distinct rows): that is one line and exit status 2 before anything is sampled, not a traceback
    after every row. (The ground-truth row is a generated set: its copies count, as any generator's do.)"""
    import argparse

    from handforge.corpus.build import write_corpus
    from handforge.engines.interaction import evaluate, pipeline

    corpus = tmp_path / "corpus"
    write_corpus(corpus, sequences=8, seed=1, stats_sample=0, figures=False, progress=False)

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the draws were checked")

    monkeypatch.setattr(pipeline.InteractionPipeline, "__call__", no_sampling)
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args(["--corpus", str(corpus), "--split", "train", "--samples", "6", "--reference", "6",
                              "--mesh-samples", "1", "--template-samples", "6", "--conditioned-samples", "0",
                              "--steps", "2", "--seed", "1"])  # (seed 1: a reference of 5 distinct configurations)
    assert evaluate.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("handforge eval interaction: the train split's reference (--reference 6 frames) holds 5 "
                          "distinct configurations"), err
    assert len(err.splitlines()) == 1, err


def test_knn_precision_recall_builds_its_manifolds_from_distinct_configurations():
    """Copies of a configuration (the corpus holds template poses exactly) must not shrink the k-NN
    radii to 0: samples near, but not on, the reference points are inside its manifold, far ones
    are not, and the score is the same with the reference's points repeated."""
    import numpy as np

    from handforge.engines.interaction.evaluate import distinct_rows, knn_precision_recall

    rng = np.random.default_rng(0)
    points = rng.normal(size=(40, 8))
    copies = np.repeat(points, 6, axis=0) + rng.normal(scale=1e-6, size=(240, 8))
    assert len(distinct_rows(copies)) == 40
    near = points + rng.normal(scale=0.05, size=points.shape)
    far = points + 10.0
    assert knn_precision_recall(copies, near) == knn_precision_recall(points, near)
    assert knn_precision_recall(copies, near)[0] == 1.0
    assert knn_precision_recall(copies, far) == (0.0, 0.0)
    with pytest.raises(ValueError, match="distinct"):
        knn_precision_recall(np.repeat(points[:5], 3, axis=0), near)


def test_knn_precision_recall_on_hand_computed_one_dimensional_sets():
    """Each point's own radius is the distance to its 5th-nearest other point (column 0 of the sorted
    distances is the point itself), and a sample is inside when within that radius of some point."""
    import numpy as np

    from handforge.engines.interaction.evaluate import knn_precision_recall

    column = lambda values: np.asarray(values, np.float64)[:, None]  # noqa: E731
    # Grid 0..19: the 5th neighbour of 19 is 14, radius 5; of 18 it is 14 too: radius 4.
    # 23.5 lies 4.5 from 19 (inside its radius 5), 5.5 from 18 (outside its 4); 50..56 lie far from all.
    grid, fake = column(np.arange(20)), column([23.5, *range(50, 57)])
    # the 8 generated points' radii: 23.5's 5th neighbour is 54, 30.5 away, which covers the whole grid
    assert knn_precision_recall(grid, fake) == (1 / 8, 1.0)
    # the same sets swapped: 23.5 is the one reference point inside the grid's manifold (recall 1/8),
    # and every grid point lies within 23.5's radius 30.5 (precision 1)
    assert knn_precision_recall(fake, grid) == (1.0, 1 / 8)
    # Two clusters of very different spread: 0..0.009 (radii <= 0.005) and 100..190 (radii 50). The
    # points 1.0..1.7 lie 1 from the first cluster and 98 from the second: outside every point's own
    # radius, though inside the largest radius (50) of a point of the first cluster. Their own
    # radii (0.3..0.5) hold none of the clusters' points.
    clusters, between = column([*np.arange(10) * 0.001, *(100 + 10 * np.arange(10))]), column(1 + 0.1 * np.arange(8))
    assert knn_precision_recall(clusters, between) == (0.0, 0.0)
    assert knn_precision_recall(between, clusters) == (0.0, 0.0)


def test_knn_recall_counts_a_generator_s_repeated_samples():
    """The generated manifold is built from every sample (Kynkäänniemi et al.'s definition): a generator that
    repeats 6 configurations has radii of 0 at its copies and a low recall. Its copies dropped, the 6 points'
    5th-neighbour radii spanned everything, and it out-recalled a healthy generator (0.9995 against 0.87)."""
    import numpy as np

    from handforge.engines.interaction.evaluate import knn_precision_recall, markdown

    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    healthy = rng.normal(size=(200, 8))
    repeating = np.repeat(rng.normal(size=(6, 8)), 34, axis=0)[:200] + rng.normal(scale=1e-5, size=(200, 8))
    healthy_recall, repeating_recall = knn_precision_recall(real, healthy)[1], knn_precision_recall(real, repeating)[1]
    assert repeating_recall < 0.05 < 0.5 < healthy_recall
    with pytest.raises(ValueError, match="more than 5 generated samples, got 5"):
        knn_precision_recall(real, healthy[:5])
    # a row not measured is a dash in the table, not a TypeError that loses the rows measured
    row = dict.fromkeys(("penetration_volume_cm3", "max_depth_mm", "contact_ratio", "diversity", "fd", "kid",
                         "ms_per_sample"), 1.0)
    assert markdown({"degenerate": {**row, "compared_samples": 5, "precision": None, "recall": None}}) \
        .splitlines()[-1].count("–") == 2


def test_the_eval_table_gives_each_row_s_sample_count_and_warns_of_small_ones():
    """FD, KID and precision/recall depend on N (FD's bias ~1/N; a singular covariance at N ≤ the feature
    dimension), and the rows' N differ by default (500, 100 conditioned, 150 templates): the table said none
    of it, so a row measured on 100 samples read as a worse engine."""
    from handforge.engines.interaction.evaluate import markdown, sample_count_warnings

    metrics = dict.fromkeys(("penetration_volume_cm3", "max_depth_mm", "contact_ratio", "diversity", "fd", "kid",
                             "precision", "recall", "ms_per_sample"), 1.0)

    def row(n):
        return {**metrics, "samples": n, "compared_samples": n, "reference_frames": 2000, "feature_dim": 128}

    table = {"ground truth": row(500), "around held-out hands": row(100), "templates": row(150)}
    lines = markdown(table).splitlines()
    assert lines[0].startswith("| | N | pen. volume") and lines[3].startswith("| around held-out hands | 100 | 1 |")
    warning, note = sample_count_warnings(table)
    assert warning.startswith("warning: around held-out hands (N = 100): FD, KID and precision/recall on no more "
                              "samples than the feature dimension (128)")
    assert "(100, 150, 500, against 2000 reference frames)" in note and "--equal-samples" in note
    equal = {name: {**row(150), "reference_frames": 150} for name in table}  # (--equal-samples: the smallest N)
    assert sample_count_warnings(equal) == []


def test_the_eval_report_says_how_it_was_made(corpus, tmp_path):
    """Two reports of one checkpoint made with other settings must be told apart: the JSON names the
    corpus and every sampling setting, the engine's defaults filled in where none was given."""
    import argparse

    from handforge.engines.interaction import evaluate
    from handforge.engines.interaction.pipeline import SampleSettings

    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    given = evaluate.run_record(parser.parse_args(["--corpus", str(corpus), "--steps", "7", "--cfg", "-0.5",
                                                   "--no-touch", "--redraws", "0"]), "model")
    assert given["steps"] == 7 and given["cfg"] == -0.5 and given["touch"] is False and given["redraws"] == 0
    assert given["corpus"] == str(corpus) and given["checkpoint"] == "model"
    defaults = evaluate.run_record(parser.parse_args(["--corpus", str(corpus)]), "model")
    assert defaults["guidance"] == SampleSettings().penetration_guidance
    assert defaults["contact"] == SampleSettings().contact_guidance and defaults["separation"] is True
    assert json.loads(json.dumps(defaults)) == defaults  # plain JSON


def test_the_eval_refuses_more_steps_than_the_models_diffusion_steps(corpus, tmp_path, capsys):
    """As the job does: ``--steps`` beyond the model's diffusion steps is one line and exit status 2, not
    diffusers' ValueError from set_timesteps after the data was loaded."""
    import argparse

    from handforge.engines.checkpoints import save_model
    from handforge.engines.interaction import evaluate

    folder = save_model(InteractionDenoiser(width=16, hidden=32, num_train_timesteps=50), tmp_path / "m")
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    args = parser.parse_args(["--corpus", str(corpus), "--checkpoint", str(folder), "--samples", "6",
                              "--mesh-samples", "1", "--template-samples", "6", "--conditioned-samples", "0",
                              "--steps", "51"])
    assert evaluate.run(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "handforge eval interaction: --steps 51 is more than the model's 50 diffusion steps", err


def test_eval_with_an_unusable_feature_checkpoint_says_it_in_one_line(corpus, tmp_path, capsys, monkeypatch):
    """A bad evaluation.features setting ended eval interaction (and eval motion) in a FeatureError
    traceback, exit 1; measure said it in one line."""
    from handforge.cli import main

    monkeypatch.setenv("HANDFORGE_FEATURES", str(tmp_path / "nonexistent"))
    assert main(["eval", "interaction", "--corpus", str(corpus), "--split", "train", "--samples", "6",
                 "--reference", "6", "--mesh-samples", "1", "--template-samples", "6", "--steps", "1"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("handforge eval interaction: ") and "nonexistent: no such feature checkpoint" in line, line


def test_more_conditioned_samples_than_samples_are_capped_and_the_report_records_the_number_used(
        tmp_path_factory, tmp_path, capsys):
    """The conditioned row's held-out hands are drawn among the --samples ones: more is said to be capped, and the
    JSON report records the number the row used (it recorded the number asked). On the training split, the run and
    its report say the figures are not held-out (they were unsaid)."""
    import argparse

    from handforge.corpus.build import write_corpus
    from handforge.corpus.generator import CorpusSettings
    from handforge.engines.checkpoints import save_model
    from handforge.engines.interaction import evaluate

    # the smallest corpus whose train split holds enough clips and distinct configurations for every row (the
    # module's corpus has one clip there); an untrained tiny model, one step: the cap is what is checked
    corpus = tmp_path_factory.mktemp("eval") / "corpus"
    write_corpus(corpus, sequences=20, seed=3, settings=CorpusSettings(chunk_size=6, sequences_per_group=20),
                 stats_sample=0, figures=False, progress=False)
    folder = save_model(InteractionDenoiser(width=16, hidden=32, num_train_timesteps=50), tmp_path / "m")
    parser = argparse.ArgumentParser()
    evaluate.add_arguments(parser)
    report = tmp_path / "report.json"
    options = ["--corpus", str(corpus), "--checkpoint", str(folder), "--samples", "12", "--conditioned-samples",
               "30", "--reference", "40", "--mesh-samples", "1", "--template-samples", "6", "--steps", "1",
               "--out", str(report)]
    args = parser.parse_args([*options, "--split", "train"])
    assert evaluate.run(args) == 0, capsys.readouterr().err
    err = capsys.readouterr().err
    assert "--conditioned-samples 30 is more than --samples 12: the row uses 12" in err
    written = json.loads(report.read_text())
    assert written["conditioned_samples"] == 12, written
    # the training split's figures said not to be held-out, in one line and in the report (they were unsaid)
    note = ("note: the train split is the one training reads, so these figures are not held-out (evaluate "
            "on validation or test with --split for that)")
    assert f"handforge eval interaction: {note}\n" in err, err
    assert (written["split"], written["held_out"], written["note"]) == ("train", False, note), written
    (row,) = [row for name, row in written["rows"].items() if "around train hands" in name]  # not "held-out"
    assert row["samples"] == 12, row
    assert not [name for name in written["rows"] if "held-out" in name], written["rows"]
    # the same clips as the test split: held-out, no note
    splits = json.loads((corpus / "splits.json").read_text())
    splits["test"], splits["train"] = splits["train"], []
    (corpus / "splits.json").write_text(json.dumps(splits))
    assert evaluate.run(parser.parse_args([*options, "--split", "test"])) == 0
    assert "not held-out" not in capsys.readouterr().err
    written = json.loads(report.read_text())
    assert (written["split"], written["held_out"]) == ("test", True) and "note" not in written, written
