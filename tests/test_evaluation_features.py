"""The feature network: training on a real (small) corpus, checkpoints, invariances, the shipped weights."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from handforge.cli import main
from handforge.evaluation.distribution import frechet_feature_distance
from handforge.evaluation.feature_training import TrainSettings, load_corpus, train
from handforge.evaluation.features import (
    SHIPPED_CHECKPOINT,
    FeatureError,
    FeatureNetworks,
    canonical_frames,
    load_features,
)
from handforge_shared.poses import MotionClip, side_by_side

TINY = dict(epochs_frame=1, epochs_motion=1, windows_per_clip=1, batch_frame=256, batch_motion=8)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "c"
    assert main(["corpus", "--out", str(out), "--sequences", "16", "--seed", "5", "--no-figures", "--quiet",
                 "--stats-sample", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def data(corpus):
    return load_corpus(corpus)


def random_rigid(seed: int) -> tuple[np.ndarray, np.ndarray]:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q)), np.array([0.3, -0.2, 0.5])


def test_corpus_clips_become_labelled_two_hand_keypoints(data):
    assert len(data.names) == 16 and {"train"} <= set(data.splits)
    for keypoints, labels in zip(data.keypoints, data.frame_labels):
        assert keypoints.shape[1:] == (42, 3) and len(labels) == len(keypoints)
        # left then right, InterHand2.6M order: wrist to middle MCP is the palm, whatever the pose
        for wrist, mcp in ((20, 11), (41, 32)):
            palm = np.linalg.norm(keypoints[:, wrist] - keypoints[:, mcp], axis=-1)
            assert np.all((palm > 0.06) & (palm < 0.16)) and np.ptp(palm) < 0.005  # rigid palm
    assert any(len(t) for t in data.templates)  # some clips hold interactions
    held = np.concatenate(data.frame_labels)
    assert "free" in set(held) and len(set(held)) > 1


def test_a_plain_folder_splits_by_person_group(corpus):
    """Without splits.json the clips are split by hash: per person group, not per clip name."""
    loaded = load_corpus(corpus / "clips")
    splits_of_group: dict[str, list[str]] = {}
    for name, split in zip(loaded.names, loaded.splits):
        group = MotionClip.load(corpus / "clips" / f"{name}.npz").extra["corpus"]["group"]
        splits_of_group.setdefault(group, []).append(split)
    assert any(len(splits) > 1 for splits in splits_of_group.values())  # groups of several clips
    assert all(len(set(splits)) == 1 for splits in splits_of_group.values()), splits_of_group
    assert {"train", "validation"} <= set(loaded.splits)


def test_a_corpus_summary_nested_too_deeply_is_read_as_none(corpus, tmp_path):
    """The summary.json train-features records the corpus's settings from, nested thousands deep: a traceback."""
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(corpus, copy)
    (copy / "summary.json").write_text("[" * 100_000)
    loaded = load_corpus(copy, max_clips=2)
    assert len(loaded.names) == 2 and "corpus_settings" not in loaded.source


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_a_checkpoint_folder_holding_other_files_is_not_replaced(tmp_path, capsys):
    """--out a feature checkpoint (it has a recipe.json) with the user's notes.txt beside it was replaced whole,
    notes.txt gone (a review found it). Refused now, before the corpus is read; the checkpoint's own names and
    hidden ones (.DS_Store) are what a replaced checkpoint may hold."""
    out = tmp_path / "features"
    for part in ("frame", "motion"):
        (out / part).mkdir(parents=True)
    (out / "recipe.json").write_text("{}")
    (out / "notes.txt").write_text("keep")
    assert main(["train-features", "--corpus", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "which would be deleted when it is replaced: notes.txt; move them away or choose a new folder" in err, err
    assert (out / "notes.txt").read_text() == "keep"
    (out / "notes.txt").unlink()
    (out / ".DS_Store").write_text("")
    assert main(["train-features", "--corpus", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err  # (past the folder's check)


def test_train_features_command_writes_a_checkpoint_that_loads(corpus, tmp_path, capsys):
    out = tmp_path / "features"
    assert main(["train-features", "--corpus", str(corpus), "--out", str(out), "--epochs", "1", "--max-clips", "6",
                 "--quiet"]) == 0
    # (the test corpus has no validation clips: the results are the training clips', which is said; it showed
    # accuracy 1.0 and a Fréchet distance of 0 as if validated)
    assert "no clip used is in the validation split, so the results above are measured on the training clips: use " \
           "more clips (a larger --max-clips)" in capsys.readouterr().err
    nets = load_features(out)
    assert folder_bytes(out) < 2_000_000
    recipe = nets.recipe
    assert recipe["settings"]["seed"] == 0 and recipe["data"]["clips_used"] == 6
    assert recipe["corpus_command"] == "handforge corpus --out CORPUS --sequences 16 --seed 5"
    assert {"frame_validation_accuracy", "frame_fd_train_validation"} <= set(recipe["results"])
    assert recipe["results"]["validated_on"] == "train (no validation clips)"
    rng = np.random.default_rng(0)
    frames = load_corpus(corpus).keypoints[0]
    f = nets.frame_features(frames[rng.choice(len(frames), 10)])
    m = nets.motion_features([frames, frames[:70]])
    assert f.shape == (10, 128) and m.shape == (2, 128) and np.isfinite(f).all() and np.isfinite(m).all()


def test_the_checkpoint_does_not_depend_on_the_thread_count(corpus, tmp_path):
    """The README's recipe names no --threads: the same corpus and seed must give the same weights on any
    count (before, torch's per-thread sums left the last bits of 14 of 32 tensors different)."""
    before, left = torch.get_num_threads(), []
    for threads in ("1", "3"):
        assert main(["train-features", "--corpus", str(corpus), "--out", str(tmp_path / threads), "--epochs", "1",
                     "--max-clips", "8", "--threads", threads, "--quiet"]) == 0
        left.append(torch.get_num_threads())
        torch.set_num_threads(before)
    files = sorted(p.relative_to(tmp_path / "1") for p in (tmp_path / "1").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "3") for p in (tmp_path / "3").rglob("*") if p.is_file())
    assert {str(name.parent) for name in files if name.suffix == ".safetensors"} == {"frame", "motion"}, files
    for name in files:
        one, three = (tmp_path / "1" / name).read_bytes(), (tmp_path / "3" / name).read_bytes()
        if name.name == "recipe.json":  # its command names the --out folder, "1" or "3"
            one, three = ({k: v for k, v in json.loads(text).items() if k != "command"} for text in (one, three))
        assert one == three, name
    assert left == [before, before]  # the command's count is not left behind for the rest of the process
    with pytest.raises(ValueError, match="threads must be a whole number ≥ 1, got 0"):
        train(load_corpus(corpus, max_clips=2), threads=0)


def subset(data, count):
    return type(data)(*(getattr(data, f)[:count] for f in ("names", "splits", "keypoints", "frame_labels",
                                                            "motion_labels", "templates")), data.source)


def test_training_is_reproducible_with_a_seed(data):
    small = subset(data, 5)
    a = train(small, TrainSettings(**TINY, seed=1))
    b = train(small, TrainSettings(**TINY, seed=1))
    c = train(small, TrainSettings(**TINY, seed=2))
    for name, tensor in a.frame.state_dict().items():
        assert torch.equal(tensor, b.frame.state_dict()[name]), name
    assert not torch.equal(a.frame.embed[0].weight, c.frame.embed[0].weight)


def test_checkpoints_round_trip_and_bad_files_are_refused(data, tmp_path):
    nets = train(subset(data, 5), TrainSettings(**TINY))
    path = nets.save(tmp_path / "f")
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*.*")) == [
        "frame/config.json", "frame/diffusion_pytorch_model.safetensors", "motion/config.json",
        "motion/diffusion_pytorch_model.safetensors", "recipe.json"]
    again = FeatureNetworks.load(path)
    frames = data.keypoints[0][:20]
    assert np.array_equal(nets.frame_features(frames), again.frame_features(frames))
    assert np.array_equal(nets.motion_features([frames]), again.motion_features([frames]))
    assert again.recipe == json.loads(json.dumps(nets.recipe))
    recipe = (path / "recipe.json").read_text()
    (path / "recipe.json").write_text("[" * 100_000)  # nested thousands deep: a RecursionError traceback
    with pytest.raises(FeatureError, match=r"not a readable feature checkpoint \(nested too deeply: "):
        FeatureNetworks.load(path)
    (path / "recipe.json").write_text(recipe)
    broken = tmp_path / "broken"
    (broken / "frame").mkdir(parents=True)
    (broken / "frame" / "config.json").write_text("not json")
    with pytest.raises(FeatureError, match="not a readable"):
        FeatureNetworks.load(broken)
    swapped = tmp_path / "swapped"  # each net's folder holds the other's checkpoint
    swapped.mkdir()
    (path / "frame").rename(swapped / "motion")
    (path / "motion").rename(swapped / "frame")
    with pytest.raises(FeatureError, match=r"holds a checkpoint of another model \(MotionNet, not FrameNet\)"):
        FeatureNetworks.load(swapped)
    with pytest.raises(FeatureError, match="train-features"):
        FeatureNetworks.load(tmp_path / "missing")
    old_format = tmp_path / "features_v1.safetensors"
    old_format.write_bytes(b"x")
    with pytest.raises(FeatureError, match="is a file: feature checkpoints are folders"):
        FeatureNetworks.load(old_format)
    with pytest.raises(FeatureError, match="are folders"):
        nets.save(tmp_path / "f.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "f", "features_v1.safetensors", "swapped"]


def test_command_refuses_bad_input_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "f"
    assert main(["train-features", "--corpus", str(tmp_path / "nowhere"), "--out", str(out), "--quiet"]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    (tmp_path / "taken").write_text("a file")
    assert main(["train-features", "--corpus", str(tmp_path), "--out", str(tmp_path / "taken"), "--quiet"]) == 2
    assert "not a file" in capsys.readouterr().err and [p.name for p in tmp_path.iterdir()] == ["taken"]
    precious = tmp_path / "precious"  # someone's folder: never replaced by a checkpoint
    precious.mkdir()
    (precious / "thesis.txt").write_text("keep")
    assert main(["train-features", "--corpus", str(tmp_path), "--out", str(precious), "--quiet"]) == 2
    assert "holds other files" in capsys.readouterr().err and (precious / "thesis.txt").read_text() == "keep"
    with pytest.raises(SystemExit) as exit_:
        main(["train-features", "--corpus", str(tmp_path), "--out", str(tmp_path / "f"), "--threads", "-1", "--quiet"])
    assert exit_.value.code == 2 and "--threads: must be at least 0" in capsys.readouterr().err


def test_features_do_not_depend_on_where_the_pair_is(data):
    nets = load_features(SHIPPED_CHECKPOINT)
    frames = data.keypoints[1]
    rotation, shift = random_rigid(3)
    moved = frames @ rotation.T + shift
    assert np.allclose(canonical_frames(frames), canonical_frames(moved), atol=1e-4)
    assert np.allclose(nets.frame_features(frames), nets.frame_features(moved), atol=1e-3)
    assert np.allclose(nets.motion_features([frames]), nets.motion_features([moved]), atol=1e-3)
    with pytest.raises(FeatureError, match="42, 3"):
        nets.frame_features(frames[:, :21])


def test_shipped_features_tell_corpus_frames_from_implausible_ones(data):
    nets = load_features(SHIPPED_CHECKPOINT)
    assert folder_bytes(SHIPPED_CHECKPOINT) < 2_000_000
    recipe = nets.recipe
    assert recipe["data"]["clips_used"] >= 1000 and "corpus_command" in recipe
    frames = np.concatenate(data.keypoints)
    rng = np.random.default_rng(0)
    half = rng.permutation(len(frames))
    a, b = frames[half[: len(half) // 2]], frames[half[len(half) // 2:]]
    same = frechet_feature_distance(nets.frame_features(a), nets.frame_features(b))
    # the same frames with the left hand moved 5 cm along x, and with the fingers' keypoints shuffled
    moved = b + np.concatenate([np.tile([0.05, 0.0, 0.0], (21, 1)), np.zeros((21, 3))])
    shuffled = b[:, np.concatenate([rng.permutation(21), 21 + rng.permutation(21)])]
    assert frechet_feature_distance(nets.frame_features(a), nets.frame_features(moved)) > 3 * same
    assert frechet_feature_distance(nets.frame_features(a), nets.frame_features(shuffled)) > 20 * same



def test_shipped_networks_recognise_a_corpus_they_never_saw(data):
    """The test corpus has another seed than the training corpus: its clips are new to the networks."""
    nets = load_features(SHIPPED_CHECKPOINT)
    assert nets.recipe["results"]["motion_validation_accuracy"] > 0.9
    classes = nets.motion.config.classes
    with torch.no_grad():
        predicted = [classes[int(nets.motion.classify(torch.from_numpy(f)).argmax())]
                     for f in nets.motion_features(data.keypoints)]
    assert np.mean([p == t for p, t in zip(predicted, data.motion_labels)]) >= 0.75
    frames = np.concatenate(data.keypoints)
    labels = np.concatenate(data.frame_labels).astype(str)
    with torch.no_grad():
        logits = nets.frame.classify(torch.from_numpy(nets.frame_features(frames)))
    guess = np.array(nets.frame.config.classes)[logits.argmax(-1).numpy()]
    held = labels != "free"
    assert held.any() and np.mean(guess[held] == labels[held]) > 0.5  # which interaction is held
    assert np.mean(guess == labels) > np.mean(labels == "free")       # better than always "free"


def test_evaluate_command_reports_every_metric(corpus, tmp_path):
    out = tmp_path / "report.json"
    assert main(["measure", "--clips", str(corpus), "--reference", str(corpus), "--frames", "6", "--max-clips", "6",
                 "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["clips"] == 6
    assert {"smoothness", "joint_limits", "penetration", "contact", "diversity_frames", "diversity_motions",
            "vs_reference_frames", "vs_reference_motions"} <= set(report)
    assert report["joint_limits"]["right"]["limit_violation_max_deg"] < 0.1  # the corpus respects the limits
    assert report["smoothness"]["jitter"] > 0 and report["penetration"]["penetration_volume_cm3"] >= 0
    assert report["vs_reference_motions"]["frechet"] == pytest.approx(0.0, abs=1e-6)  # the same clips
    assert report["not_measured"] == {}  # every metric measured
    assert main(["measure", "--clips", str(tmp_path / "none")]) == 2


def test_frames_are_drawn_as_from_the_list_of_every_two_hand_frame():
    """draw_frames numbers the (clip, frame) pairs instead of listing them: the same pairs as rng.choice over
    the list, clips with no two-hand frame (repeated ends in its numbering) included."""
    from handforge.evaluation.report import draw_frames

    rng = np.random.default_rng(0)
    for trial in range(200):
        present = [rng.random(rng.integers(0, 40)) < rng.random() for _ in range(rng.integers(1, 9))]
        listed = [(i, int(t)) for i, p in enumerate(present) for t in np.flatnonzero(p)]
        count, seed = int(rng.integers(1, 60)), int(rng.integers(2 ** 31))
        expected = ([listed[k] for k in sorted(np.random.default_rng(seed).choice(len(listed), min(count, len(listed)),
                                                                              replace=False))] if listed else [])
        assert draw_frames(present, count, np.random.default_rng(seed)) == expected, trial


def test_a_folder_measures_as_the_list_of_its_clips(corpus):
    from handforge.evaluation.report import evaluate_clips, load_clips
    from handforge.hands import load_hand_model

    model, nets, folder = load_hand_model("open"), load_features(), load_clips(corpus, 4)
    assert evaluate_clips(folder, model, reference=folder, features=nets, frames=3) == \
        evaluate_clips(list(folder), model, reference=list(folder), features=nets, frames=3)


def test_a_clip_that_changes_between_reads_is_refused(corpus):
    """The frames drawn from a clip's first read were indexed into its second."""
    from handforge.evaluation.report import evaluate_clips, load_clips
    from handforge.hands import load_hand_model

    class Shrinking(list):  # a sequence whose clips lose their last frames after the first read
        reads = 0

        def __getitem__(self, index):
            clip = super().__getitem__(index)
            self.reads += 1
            return clip if self.reads <= len(self) else MotionClip.from_frames(
                [clip.frame(t) for t in range(clip.num_frames // 2)], fps=clip.fps)

        def __iter__(self):
            return (self[i] for i in range(len(self)))

    clips = Shrinking(load_clips(corpus, 3))
    with pytest.raises(ValueError, match="changed between two reads"):
        evaluate_clips(clips, load_hand_model("open"), features=load_features(), frames=200)


def test_measuring_a_folder_holds_one_clip_at_a_time(corpus):
    """Every clip and its keypoints were in memory at once: 385 MB for 300 corpus clips measured against
    themselves (57k frames each side), about 25 GB for the README's 20,000-sequence corpus."""
    import tracemalloc

    from handforge.evaluation.report import evaluate_clips, load_clips
    from handforge.hands import load_hand_model

    model, nets = load_hand_model("open"), load_features()

    def peak_bytes(clips: int) -> int:
        tracemalloc.start()
        try:
            folder = load_clips(corpus, clips)
            evaluate_clips(folder, model, reference=folder, features=nets, frames=2)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    few, every = peak_bytes(2), peak_bytes(16)
    assert every < 1.5 * few, (few, every)  # before: 4-8 times as much for 8 times the clips


@pytest.mark.parametrize("given, needle", [
    ("clip.npz", "clip.npz is a file: give the folder of motion clips (.npz) that holds it"),
    ("nowhere", "nowhere: no such folder (a folder of motion clips .npz, or a corpus folder)"),
    ("empty", "empty: no motion clips (.npz) found"),
])
def test_measure_says_whether_clips_is_a_file_missing_or_empty(given, needle, tmp_path, monkeypatch, capsys):
    """All three said "no motion clips (.npz) found", which for one clip given as a file was misleading."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "clip.npz").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    assert main(["measure", "--clips", given]) == 2
    assert capsys.readouterr().err.splitlines() == [f"handforge measure: {needle}"]


def test_measure_reads_clips_given_under_the_home_folder(tmp_path, monkeypatch, capsys):
    """"--clips=~/clips" (which the shell leaves as it is) was "no such folder", though --out took "~"."""
    monkeypatch.setenv("HOME", str(tmp_path))
    MotionClip.from_frames([side_by_side()] * 4).save(tmp_path / "clips" / "a.npz")
    assert main(["measure", "--clips=~/clips", "--frames", "2"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed)["clips"] == 1
    # marked as a report: saved (`> r.json`), a later --out r.json replaces it (refused as "not a report")
    (tmp_path / "r.json").write_text(printed)
    assert main(["measure", "--clips=~/clips", "--frames", "2", "--out", str(tmp_path / "r.json")]) == 0


def test_measure_refuses_an_empty_clips_path(tmp_path, monkeypatch, capsys):
    """"--clips $UNSET" gave "", which is the current folder: its clips were measured as if asked for."""
    monkeypatch.chdir(tmp_path)
    MotionClip.from_frames([side_by_side()] * 4).save(tmp_path / "a.npz")
    assert main(["measure", "--clips", ""]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "handforge measure: the clips folder is an empty path: give the folder of motion clips (.npz)"]
    assert main(["measure", "--clips", str(tmp_path), "--reference", ""]) == 2  # (no comparison, unsaid)
    assert "--reference is an empty path" in capsys.readouterr().err  # (tests/test_measure_reference_path.py)


@pytest.mark.parametrize("make, kind", [(os.mkfifo, "a FIFO"), (Path.mkdir, "a folder")])
def test_measure_names_clip_entries_that_are_not_regular_files(make, kind, tmp_path, capsys):
    """A FIFO named a.npz was "no such file"; a folder named a.npz "is a folder: choose a .npz file inside it"."""
    MotionClip.from_frames([side_by_side()] * 4).save(tmp_path / "clips" / "b.npz")
    make(tmp_path / "clips" / "a.npz")
    assert main(["measure", "--clips", str(tmp_path / "clips")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"handforge measure: {tmp_path / 'clips' / 'a.npz'} is not a regular file ({kind}): "), err


def test_measure_refuses_mean_relative_clips(tmp_path, capsys):
    """Raw InterHand2.6M clips (mean-relative finger poses) were measured as if flat: every metric of other poses."""
    clip = MotionClip.from_frames([side_by_side()] * 4, extra={"pose_convention": "mean_relative"})
    clip.save(tmp_path / "raw.npz")
    assert main(["measure", "--clips", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "raw.npz: holds mean_relative hand poses (raw InterHand2.6M)" in err and "to_flat" in err


def test_train_features_refuses_mean_relative_clips(tmp_path, capsys):
    """As measure does: raw InterHand2.6M clips were trained on as if flat, keypoints of other poses, unsaid."""
    clips = tmp_path / "clips"
    clips.mkdir()
    MotionClip.from_frames([side_by_side()] * 4, extra={"pose_convention": "mean_relative"}).save(clips / "raw.npz")
    assert main(["train-features", "--corpus", str(clips), "--out", str(tmp_path / "f"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "raw.npz" in err and "mean_relative" in err and "to_flat" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f").exists()


def test_measure_says_mano_clips_need_manos_files(tmp_path, monkeypatch, capsys):
    """Clips of the MANO hand (InterHand2.6M's) measured without MANO's files ended in a traceback."""
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "no-mano"))
    MotionClip.from_frames([side_by_side()] * 4, hand_model="mano").save(tmp_path / "clips" / "mano.npz")
    assert main(["measure", "--clips", str(tmp_path / "clips")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge measure: ") and "no-mano" in err and "Traceback" not in err


def test_measure_refuses_clips_of_several_frame_rates(tmp_path, capsys):
    """5 fps clips against a 30 fps reference gave a Fréchet distance of motions at unlike speeds, unsaid."""
    for folder, fps in (("clips", 30.0), ("reference", 5.0)):
        MotionClip.from_frames([side_by_side()] * 4, fps=fps).save(tmp_path / folder / "a.npz")
    assert main(["measure", "--clips", str(tmp_path / "clips"), "--reference", str(tmp_path / "reference")]) == 2
    assert "all clips must have one frame rate, found 5 and 30 fps" in capsys.readouterr().err


def _clips(folder: Path, frames: list, count: int = 1) -> Path:
    for k in range(count):
        MotionClip.from_frames(frames).save(folder / f"{k}.npz")
    return folder


def test_measure_says_each_metric_it_leaves_out(tmp_path, capsys):
    """Clips too short or one-handed for a metric got a report without it, and not a word: no smoothness
    without 4 two-hand frames, no penetration, contact or diversity without a two-hand frame, no left hand's
    joint limits, no motion comparison with one reference clip."""
    from handforge_shared.poses import TwoHandPose

    pose = side_by_side()
    right_only = _clips(tmp_path / "right_only", [TwoHandPose(left=None, right=pose.right)] * 6, count=2)
    reference = _clips(tmp_path / "reference", [pose] * 6)
    out = tmp_path / "report.json"
    assert main(["measure", "--clips", str(right_only), "--reference", str(reference), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    left_out = report["not_measured"]
    assert set(left_out) == {"smoothness", "joint_limits.left", "penetration", "contact", "diversity_frames",
                             "diversity_motions", "vs_reference_frames", "vs_reference_motions"}
    assert left_out["joint_limits.left"] == "the left hand is present on no frame of the clips"
    assert "found 0 and 1" in left_out["vs_reference_motions"]
    assert set(report["joint_limits"]) == {"right"} and not set(left_out) & set(report)
    # one line per metric left out, each saying why, as the report does
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("handforge measure: ")]
    assert lines == [f"handforge measure: left out {name}: {why}" for name, why in left_out.items()]

    # one 3-frame two-hand clip, 1 frame drawn: smoothness and both diversities, each with its reason
    assert main(["measure", "--clips", str(_clips(tmp_path / "short", [pose] * 3)), "--frames", "1"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert "diversity_frames" not in report and {"penetration", "contact", "joint_limits"} <= set(report)
    assert report["not_measured"]["diversity_frames"] == "needs 2 or more two-hand frames, 1 drawn: raise --frames"
    assert "4 consecutive frames" in report["not_measured"]["smoothness"]
    assert sum(line.startswith("handforge measure: left out ") for line in captured.err.splitlines()) == 3

    # every metric asked for left out: the report says why, and the exit is no success (it was 0: a script took the
    # empty report for a measure)
    assert main(["measure", "--clips", str(right_only), "--metrics", "penetration,contact", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.endswith("handforge measure: nothing was measured: every metric asked for was left out (above)\n"), err
    assert set(json.loads(out.read_text())["not_measured"]) == {"penetration", "contact"}


def test_measure_computes_the_metrics_asked_for_and_refuses_unknown_names(tmp_path, capsys):
    clips = _clips(tmp_path / "clips", [side_by_side()] * 5, count=2)
    for asked, needle in (("contact,penetration,nonsense", "unknown metrics ['nonsense']; choose from penetration, "
                                                           "contact, joint_limits, smoothness, diversity_frames, "
                                                           "diversity_motions, vs_reference_frames, "
                                                           "vs_reference_motions"),
                          (",", "no metric named; choose from penetration, contact"),
                          ("vs_reference_motions", "vs_reference_motions compares the clips with reference clips: "
                                                   "give the reference (--reference FOLDER), or leave it out")):
        assert main(["measure", "--clips", str(clips), "--metrics", asked]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"handforge measure: {needle}") and len(err.splitlines()) == 1, err
    with pytest.raises(SystemExit) as exit_:  # (measured once, unsaid, before)
        main(["measure", "--clips", str(clips), "--metrics", "contact, smoothness,contact"])
    assert exit_.value.code == 2
    assert "argument --metrics: contact given more than once; give each once" in capsys.readouterr().err
    assert main(["measure", "--clips", str(clips), "--frames", "3", "--metrics", "contact, smoothness"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert {"contact", "smoothness"} <= set(report) and report["not_measured"] == {}
    assert not {"penetration", "joint_limits", "diversity_frames", "diversity_motions"} & set(report)
    assert "left out" not in captured.err


def test_a_metric_that_is_not_finite_is_left_out_and_said(tmp_path):
    """Features gone NaN (a broken checkpoint) made the distances raise and the whole measure fail, and a NaN
    value was written as "NaN", which is not JSON."""
    from handforge.evaluation.report import evaluate_clips
    from handforge.hands import load_hand_model

    nets = load_features()
    with torch.no_grad():
        for weight in nets.frame.parameters():
            weight.fill_(float("nan"))
    clips = [MotionClip.from_frames([side_by_side()] * 5) for _ in range(2)]
    report = evaluate_clips(clips, load_hand_model("open"), reference=clips, features=nets, frames=4)
    assert report["not_measured"] == {
        "diversity_frames": "could not be computed: features contain NaN or inf",
        "vs_reference_frames": "could not be computed: features contain NaN or inf"}
    assert {"diversity_motions", "vs_reference_motions", "penetration"} <= set(report)
    json.dumps(report, allow_nan=False)
