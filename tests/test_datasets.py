"""handforge.datasets on a tiny corpus made by the real generator and on synthetic InterHand2.6M
annotation files: values equal to MotionClip.load's and the InterHand reader's, splits, windows,
mirroring, DataLoader workers, memory-mapped stores and clear errors for bad folders."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from handforge.corpus.build import write_corpus
from handforge.corpus.generator import CorpusSettings
from handforge.datasets import (
    FIELDS,
    HAND_AXIS,
    ClipStore,
    DatasetError,
    FrameDataset,
    WindowDataset,
    arrays_to_clip,
    clip_arrays,
    interhand_files,
    mirror_arrays,
    open_corpus,
    open_interhand,
    open_motion_folder,
    read_clip_info,
)
from handforge_shared.poses import MotionClip, PoseFormatError

KEYS = (*FIELDS, "present")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """12 generated clips; splits.json rewritten so each split holds whole person groups."""
    out = tmp_path_factory.mktemp("corpus") / "c"
    write_corpus(out, sequences=12, seed=3, settings=CorpusSettings(chunk_size=12, sequences_per_group=3),
                 stats_sample=0, figures=False, progress=False)
    groups: dict[str, list[str]] = {}
    for path in sorted((out / "clips").glob("*.npz")):
        groups.setdefault(MotionClip.load(path).extra["corpus"]["group"], []).append(path.stem)
    assert len(groups) >= 3, "the fixture needs three person groups"
    names = list(groups.values())
    splits = json.loads((out / "splits.json").read_text())
    splits.update(validation=names[0], test=names[1], train=[n for g in names[2:] for n in g])
    (out / "splits.json").write_text(json.dumps(splits))
    return out


@pytest.fixture(scope="module")
def loaded(corpus) -> dict[str, MotionClip]:
    return {p.stem: MotionClip.load(p) for p in sorted((corpus / "clips").glob("*.npz"))}


def _expected(clip: MotionClip) -> dict[str, np.ndarray]:
    """The representation written out by hand from MotionClip.load's values."""
    t = clip.num_frames
    out = {k: np.zeros((t, 2, n), np.float32) for k, n in FIELDS.items()} | {"present": np.zeros((t, 2), bool)}
    for h, side in enumerate(("left", "right")):
        if side in clip.hands:
            out["present"][:, h] = clip.present[side]
            for k in FIELDS:
                out[k][:, h] = getattr(clip.hands[side], k)
    return out


def _assert_sample(sample: dict, expected: dict[str, np.ndarray]) -> None:
    for k in KEYS:
        assert sample[k].dtype == (torch.bool if k == "present" else torch.float32), k
        np.testing.assert_array_equal(sample[k].numpy(), expected[k], err_msg=k)


@pytest.mark.parametrize("cached", [False, True])
def test_frames_and_windows_equal_the_loaded_clips(corpus, loaded, tmp_path, cached):
    source = open_corpus(corpus)
    assert [c.name for c in source.clips] == sorted(loaded) and HAND_AXIS == ("left", "right")
    assert [c.num_frames for c in source.clips] == [c.num_frames for c in loaded.values()]
    store = ClipStore.build(source, cache=tmp_path / "store" if cached else None)
    assert store.num_frames == sum(c.num_frames for c in loaded.values())

    frames = FrameDataset(store)
    assert len(frames) == store.num_frames
    for i in np.random.default_rng(0).choice(len(frames), 40, replace=False):
        sample, info = frames[int(i)], frames.info(int(i))
        expected = _expected(loaded[info.name])
        assert info.source == "handforge-corpus" and info.hand_model == "open" and info.fps == 30.0
        _assert_sample(sample, {k: v[int(sample["frame"])] for k, v in expected.items()})

    length, stride = 48, 20
    windows = WindowDataset(store, length=length, stride=stride)
    assert len(windows) == sum((c.num_frames - length) // stride + 1 for c in loaded.values())
    for i in range(len(windows)):
        sample = windows[i]
        first = int(sample["frame"])
        assert first % stride == 0
        expected = _expected(loaded[windows.info(i).name])
        _assert_sample(sample, {k: v[first:first + length] for k, v in expected.items()})
    whole = WindowDataset(store, length=None)
    assert [int(whole[i]["present"].shape[0]) for i in range(len(whole))] == [c.num_frames for c in loaded.values()]


def test_representation_round_trips_to_clips(loaded):
    clip = next(iter(loaded.values()))
    back = arrays_to_clip(clip_arrays(clip), _info(clip))
    for side in clip.hands:
        np.testing.assert_array_equal(back.hands[side].to_vector(), clip.hands[side].to_vector())
        np.testing.assert_array_equal(back.present[side], clip.present[side])


def _info(clip: MotionClip):
    from handforge.datasets import ClipInfo

    return ClipInfo(source="test", name="x", split=None, fps=clip.fps, num_frames=clip.num_frames,
                    hand_model=clip.hand_model, extra=dict(clip.extra))


def test_splits_hold_whole_person_groups_and_max_clips_takes_the_first(corpus, loaded):
    splits = json.loads((corpus / "splits.json").read_text())
    for split in ("train", "validation", "test"):
        source = open_corpus(corpus, split=split)
        assert [c.name for c in source.clips] == sorted(splits[split])
        assert {c.split for c in source.clips} == {split}
        assert all(c.group == loaded[c.name].extra["corpus"]["group"] for c in source.clips)
        store = ClipStore.build(source)
        names = {FrameDataset(store).info(i).name for i in range(0, store.num_frames, 7)}
        assert names <= set(splits[split])
    groups = {s: {c.group for c in open_corpus(corpus, split=s).clips} for s in ("train", "validation", "test")}
    assert not (groups["train"] & groups["validation"]) and not (groups["train"] & groups["test"])
    both = open_corpus(corpus, split=["validation", "test"])
    assert len(both) == len(splits["validation"]) + len(splits["test"])
    first = open_corpus(corpus, max_clips=3)
    assert [c.name for c in first.clips] == sorted(loaded)[:3]
    assert [c.name for c in open_corpus(corpus).select("test", max_clips=1).clips] == sorted(splits["test"])[:1]


def test_dataloader_with_two_workers(corpus, tmp_path):
    store = ClipStore.build(open_corpus(corpus, split="train"), cache=tmp_path / "store")
    assert len(pickle.dumps(store)) < 1000  # a memory-mapped store travels as its folder name
    for dataset in (WindowDataset(store, length=32, stride=32, mirror=True), FrameDataset(ClipStore.build(
            open_corpus(corpus, split="train")), stride=5, both_hands=True)):
        loader = DataLoader(dataset, batch_size=16, shuffle=False, num_workers=2)
        batches = list(loader)
        assert sum(len(b["clip"]) for b in batches) == len(dataset)
        stacked = {k: torch.cat([b[k] for b in batches]) for k in (*KEYS, "clip", "frame", "mirrored")}
        for i in (0, len(dataset) // 2, len(dataset) - 1):
            for k, v in dataset[i].items():
                assert torch.equal(stacked[k][i], v), k


def test_cache_is_reused_while_the_corpus_is_unchanged(corpus, tmp_path):
    source = open_corpus(corpus, split="train")
    store = ClipStore.build(source, cache=tmp_path / "store")
    stamp = (tmp_path / "store" / "hand_pose.npy").stat().st_mtime_ns
    again = ClipStore.build(source, cache=tmp_path / "store")
    assert (tmp_path / "store" / "hand_pose.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.arrays["hand_pose"], store.arrays["hand_pose"])
    smaller = ClipStore.build(source.select(max_clips=2), cache=tmp_path / "store")  # another selection: rebuilt
    assert len(smaller) == 2 and smaller.num_frames == sum(c.num_frames for c in source.clips[:2])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not a clip-store cache"):
        ClipStore.build(source, cache=tmp_path / "other")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"  # never deleted
    (tmp_path / "a-file").write_text("mine")  # a file as the cache (or above it) was NotADirectoryError
    for cache in (tmp_path / "a-file", tmp_path / "a-file" / "store"):
        with pytest.raises(DatasetError, match="a-file is a file: give a folder for the cache"):
            ClipStore.build(source, cache=cache)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_mirroring_is_an_involution_and_matches_the_clip_mirror(loaded, corpus):
    clip = next(c for c in loaded.values())
    arrays = clip_arrays(clip)
    mirrored = mirror_arrays(arrays)
    np.testing.assert_array_equal(clip_arrays(clip.mirrored())["hand_pose"], mirrored["hand_pose"])
    for k in KEYS:
        np.testing.assert_array_equal(clip_arrays(clip.mirrored())[k], mirrored[k], err_msg=k)
        np.testing.assert_array_equal(mirror_arrays(mirrored)[k], arrays[k], err_msg=k)
    assert not np.array_equal(mirrored["transl"], arrays["transl"])
    # the same on tensors with a batch axis, and against the frame's TwoHandPose.mirrored
    tensors = {k: torch.from_numpy(v[None]) for k, v in arrays.items()}
    np.testing.assert_array_equal(mirror_arrays(tensors)["global_orient"][0].numpy(), mirrored["global_orient"])
    frame = clip.frame(10).mirrored()
    np.testing.assert_array_equal(mirrored["hand_pose"][10, 0], frame.left.hand_pose.astype(np.float32))
    np.testing.assert_array_equal(mirrored["transl"][10, 1], frame.right.transl.astype(np.float32))
    windows = WindowDataset(ClipStore.build(open_corpus(corpus, max_clips=2)), length=30, mirror=True)
    half = len(windows) // 2
    assert not windows[1]["mirrored"] and windows[half + 1]["mirrored"]
    for k in KEYS:
        assert torch.equal(windows[half + 1][k], mirror_arrays(windows[1])[k]), k


# ----------------------------------------------------------------------------- InterHand2.6M
def _hand(rng: np.random.Generator) -> dict:
    return {"pose": rng.normal(scale=0.4, size=48).tolist(), "shape": rng.normal(size=10).tolist(),
            "trans": rng.normal(scale=0.2, size=3).tolist()}


@pytest.fixture
def interhand_root(tmp_path) -> tuple[Path, dict]:
    """The release's layout: annotations/{train,val}/InterHand2.6M_{split}_MANO_NeuralAnnot.json."""
    rng = np.random.default_rng(0)
    data = {
        "train": {"0": {"0": {"right": _hand(rng), "left": _hand(rng)}, "3": {"right": _hand(rng)},
                        "6": {"right": None, "left": _hand(rng)}, "9": {"right": _hand(rng), "left": _hand(rng)},
                        "30": {"right": _hand(rng), "left": _hand(rng)}, "33": {"right": _hand(rng)}},  # a jump
                  "4": {"1": {"left": _hand(rng)}, "2": {"left": _hand(rng), "right": _hand(rng)}}},
        "val": {"8": {"10": {"right": _hand(rng), "left": None}, "11": {"right": _hand(rng), "left": _hand(rng)}}},
    }
    for folder, content in data.items():
        path = tmp_path / "annotations" / folder / f"InterHand2.6M_{folder}_MANO_NeuralAnnot.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(content))
    return tmp_path, data


def test_interhand_reads_into_the_same_representation(interhand_root):
    root, data = interhand_root
    source = open_interhand(root, fps=5.0)
    assert [(c.name, c.split, c.group) for c in source.clips] == [
        ("0/0", "train", "0"), ("0/1", "train", "0"), ("4", "train", "4"), ("8", "validation", "8")]
    reference = interhand_files.capture_clips(root / "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json",
                                              fps=5.0)
    store = ClipStore.build(source)
    # capture 0 is cut at its jump 9 → 30 (annotation step 3 there); capture 4 stays whole
    for c, (name, rows) in enumerate((("0", slice(0, 4)), ("0", slice(4, 6)), ("4", slice(0, 2)))):
        info = source.clips[c]
        assert info.source == "InterHand2.6M" and info.hand_model == "mano" and info.fps == 5.0
        assert info.pose_convention == "mean_relative"
        assert info.extra["frame_indices"] == reference[name].extra["frame_indices"][rows]
        for k, v in clip_arrays(reference[name]).items():
            np.testing.assert_array_equal(store.frames(c)[k], v[rows].astype(v.dtype if k == "present" else np.float32),
                                          err_msg=k)
    # both-hand frames are exactly the annotated frames with two hands, values as the reader gives them
    frames = FrameDataset(store, both_hands=True)
    annotated = interhand_files.frame_poses(root / "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json")
    two = [key for key, pose in annotated.items() if pose.left is not None and pose.right is not None]
    got = [(frames.info(i).group, frames.info(i).extra["frame_indices"][int(frames[i]["frame"])])
           for i in range(len(frames)) if frames.info(i).split == "train"]
    assert got == two
    sample = frames[0]
    np.testing.assert_array_equal(sample["hand_pose"][1].numpy(), np.float32(annotated[two[0]].right.hand_pose))
    assert [c.name for c in open_interhand(root, split="validation").clips] == ["8"]
    means = {"left": np.full(45, 0.1), "right": np.full(45, -0.2)}
    flat = open_interhand(root, split="train", hands_mean=means)
    assert flat.clips[0].pose_convention == "flat"
    np.testing.assert_allclose(flat.load(0).hands["right"].hand_pose[0],
                               np.asarray(data["train"]["0"]["0"]["right"]["pose"][3:]) - 0.2)


def test_interhand_folder_errors(interhand_root, tmp_path):
    root, _ = interhand_root
    with pytest.raises(DatasetError, match="no test/InterHand2.6M_test_MANO_NeuralAnnot.json"):
        open_interhand(root, split="test")
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        open_interhand(root, split="val")
    with pytest.raises(DatasetError, match="no InterHand2.6M MANO annotations"):
        open_interhand(tmp_path / "annotations" / "nothing")
    bad = root / "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="InterHand2.6M_train_MANO_NeuralAnnot.json: not a readable JSON"):
        open_interhand(root, split="train")


# ----------------------------------------------------------------------------- bad folders
def test_bad_corpus_folders_say_what_is_wrong(corpus, tmp_path):
    with pytest.raises(DatasetError, match="no clips folder"):
        open_corpus(tmp_path)
    # before: "<it>/clips: no clips folder" of a folder that is not there, or a file
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'nowhere'}: no such folder; give the folder"):
        open_corpus(tmp_path / "nowhere")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'a_file'}: a file, not a folder; give the folder"):
        open_corpus(tmp_path / "a_file")
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    (copy / "splits.json").unlink()
    with pytest.raises(DatasetError, match=r"splits.json: no such file"):
        open_corpus(copy)
    shutil.copy(corpus / "splits.json", copy / "splits.json")
    (copy / "clips" / "000004.npz").write_bytes(b"not a zip file")
    # (before: "Cannot load file containing pickled data when allow_pickle=False", numpy's guess)
    with pytest.raises(DatasetError, match=r"000004\.npz: not a readable motion file \(not a \.npz archive\)$"):
        open_corpus(copy)
    np.savez(copy / "clips" / "000004.npz", meta=np.array("[" * 100_000))  # (said its class, then the same)
    with pytest.raises(DatasetError, match=r"000004\.npz: not a readable motion file \('meta' is not valid JSON \(nested too deeply: lists"):
        open_corpus(copy)
    (copy / "clips" / "000004.npz").unlink()
    with pytest.raises(DatasetError, match=r"lists 1 clips that are not there \(first: 000004.npz\)"):
        open_corpus(copy)
    with pytest.raises(DatasetError, match="unknown split"):
        open_corpus(corpus, split="val")
    with pytest.raises(DatasetError, match="max_clips must be a positive integer"):
        open_corpus(corpus, max_clips=0)
    (copy / "splits.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DatasetError, match="not a HandForge corpus split file"):
        open_corpus(copy)
    store = ClipStore.build(open_corpus(corpus, max_clips=1))
    with pytest.raises(DatasetError, match="none of the 1 clips is 100000 frames long"):
        WindowDataset(store, length=100000)
    with pytest.raises(DatasetError, match="stride must be a positive integer"):
        FrameDataset(store, stride=0)
    for stride in (0, -3):  # 0 was taken as "not given" (the window's length), unlike FrameDataset's
        with pytest.raises(DatasetError, match="stride must be a positive integer"):
            WindowDataset(store, length=4, stride=stride)



def test_json_files_nested_too_deeply_are_named(tmp_path):
    """A damaged JSON file nested thousands of levels deep raised RecursionError, a traceback naming no file."""
    deep = "[" * 100_000 + "]" * 100_000
    annotations = tmp_path / "ih/annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json"
    annotations.parent.mkdir(parents=True)
    annotations.write_text('{"0": ' + deep + "}")  # (a deep array alone is named as no object, unread)
    with pytest.raises(DatasetError, match="InterHand2.6M_train_MANO_NeuralAnnot.json: not a readable JSON"):
        open_interhand(tmp_path / "ih", split="train")
    (tmp_path / "corpus/clips").mkdir(parents=True)
    (tmp_path / "corpus/splits.json").write_text(deep)
    with pytest.raises(DatasetError, match=r"splits.json: not readable JSON"):
        open_corpus(tmp_path / "corpus")
    (tmp_path / "store").mkdir()
    (tmp_path / "store/clips.json").write_text(deep)
    with pytest.raises(DatasetError, match=r"clips.json: not readable JSON"):
        ClipStore.open(tmp_path / "store")
    # a number of 5,000 digits: json's ValueError beyond Python's int limit, not a JSONDecodeError (a traceback)
    (tmp_path / "corpus/splits.json").write_text('{"train": ' + "1" * 5000 + "}")
    with pytest.raises(DatasetError, match=r"splits.json: not readable JSON \(a number of more than [\d,]+ digits, more than any value takes"):
        open_corpus(tmp_path / "corpus")
    (tmp_path / "store/clips.json").write_text("1" * 5000)
    with pytest.raises(DatasetError, match=r"clips.json: not readable JSON \(a number of more than [\d,]+ digits, more than any value takes"):
        ClipStore.open(tmp_path / "store")


def test_a_clip_whose_meta_declares_a_huge_text_is_refused_before_it_is_read(corpus, tmp_path):
    """Indexing read meta with np.load, uncapped: a 585 kB clip declaring 150 million characters (trailing
    spaces, valid JSON) took 1.6 GB. Now meta is read as MotionClip.load reads it, capped at 1 MiB stored."""
    clips = tmp_path / "clips"
    clips.mkdir()
    path = clips / "000000.npz"
    clip = MotionClip.load(corpus / "clips" / "000000.npz")
    text = json.dumps(clip.metadata())
    text += " " * (300_000 - len(text))  # 1.2 MB as UTF-32
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in {**clip.to_arrays(), "meta": np.array(text)}.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, value)
    assert path.stat().st_size < 100_000
    refusal = "not a readable motion file \\(its 'meta' text takes 1,200,000 bytes, more than the 1,048,576"
    with pytest.raises(DatasetError, match=f"^{path}: {refusal}"):
        read_clip_info(path)
    with pytest.raises(PoseFormatError, match=f"^{path}: its 'meta' text takes 1,200,000 bytes"):
        MotionClip.load(path)


@pytest.mark.parametrize("meta, said", [
    (None, "extra.corpus must be a JSON object, got NoneType"),
    (5, "extra.corpus must be a JSON object, got int"),
    ({"contact_frames": "oops"}, "extra.corpus.contact_frames must be a list of .first, last, template., got str"),
    ({"contact_frames": [[1]]}, r"extra.corpus.contact_frames\[0\] must be .first, last, template. \(two whole frame "
                                r"numbers and a name\), got \[1\]"),
    ({"contact_frames": [[0, 3, "prayer"], ["a", "b", "prayer"]]}, r"extra.corpus.contact_frames\[1\] must be"),
    ({"contact_frames": [[1.5, 3, "prayer"]]}, r"extra.corpus.contact_frames\[0\] must be"),
    ({"contact_frames": [[-50, 1_000_000_000, "prayer"]]}, r"extra.corpus.contact_frames\[0\] spans frames -50 to 1000000000, not "
                                                         r"within the clip's 0 to \d+"),
])
def test_a_clip_whose_corpus_meta_is_damaged_is_named_with_its_field(corpus, tmp_path, meta, said):
    """Training, evaluation and the corpus summary read ``contact_frames``: a damaged one ended in a TypeError or
    a NumPy traceback, said "not enough values to unpack" naming no file, or was used as it was."""
    import dataclasses

    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    path = copy / "clips" / "000000.npz"
    clip = MotionClip.load(path)
    dataclasses.replace(clip, extra={**clip.extra, "corpus": meta}).save(path)
    with pytest.raises(DatasetError, match=f"^{path}: meta {said}"):
        read_clip_info(path)
    with pytest.raises(DatasetError, match=f"^{path}: meta {said}.*make the clip anew, or remove the clip"):
        open_corpus(copy)


def test_a_clip_damaged_after_indexing_is_named(corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    source = open_corpus(copy, max_clips=2)
    (copy / "clips" / "000001.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match=r"000001\.npz"):
        ClipStore.build(source)


def test_plain_motion_folders(corpus, loaded, tmp_path):
    source = open_motion_folder(corpus / "clips", max_clips=2)
    assert [c.split for c in source.clips] == [None, None] and [c.name for c in source.clips] == sorted(loaded)[:2]
    with pytest.raises(DatasetError, match="no motion clips"):
        open_motion_folder(tmp_path)
    (tmp_path / "settings.json").write_text("{}")  # a file given as the folder: it was said to be no such folder
    with pytest.raises(DatasetError, match=f"^{tmp_path / 'settings.json'}: a file, not a folder of motion clips"):
        open_motion_folder(tmp_path / "settings.json")
    (tmp_path / "settings.json").unlink()
    # a clip named with a capital .NPZ (as some systems name files) was skipped, unsaid
    shutil.copy(corpus / "clips" / "000000.npz", tmp_path / "b.npz")
    shutil.copy(corpus / "clips" / "000001.npz", tmp_path / "A.NPZ")
    assert [c.name for c in open_motion_folder(tmp_path).clips] == ["A", "b"]


@pytest.mark.timeout(60)  # a FIFO read as a clip waited for a writer for ever
def test_a_motion_folder_names_entries_that_are_not_regular_files(corpus, tmp_path):
    shutil.copy(corpus / "clips" / "000000.npz", tmp_path / "000000.npz")
    os.mkfifo(tmp_path / "a.npz")
    with pytest.raises(DatasetError, match=r"a\.npz is not a regular file \(a FIFO\)"):
        open_motion_folder(tmp_path)
    (tmp_path / "a.npz").unlink()
    (tmp_path / "sub.npz").mkdir()  # was 'not a readable motion file (IsADirectoryError: ...)'
    with pytest.raises(DatasetError, match=r"sub\.npz is not a regular file \(a folder\)"):
        open_motion_folder(tmp_path)


def test_one_stray_frame_index_does_not_cut_a_capture_into_pieces():
    # before: cut wherever the step exceeded the smallest one: frame 89 among 0, 3, ..., 297 made 100
    # clips of one or two frames and no training window
    from handforge.datasets.interhand import continuous_pieces
    from handforge_shared.poses import HandPose

    indices = sorted([*range(0, 300, 3), 89, *range(600, 630, 3)])
    n = len(indices)
    hand = HandPose(np.zeros((n, 3)), np.zeros((n, 45)), np.zeros((n, 10)), np.zeros((n, 3)))
    clip = MotionClip(hands={"right": hand}, present={"right": np.ones(n, bool)}, fps=10.0, hand_model="mano",
                      extra={"frame_indices": indices})
    pieces = continuous_pieces(clip)
    assert [p.num_frames for p in pieces] == [101, 10]  # cut only at the jump 297 -> 600


def test_an_annotation_file_without_hands_is_named(tmp_path):
    # before: "no clips to read: the source (split, max_clips) selected none", though neither was given
    path = tmp_path / "annotations" / "train" / "InterHand2.6M_train_MANO_NeuralAnnot.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"0": {"0": {"right": None, "left": None}}}))
    with pytest.raises(DatasetError, match="InterHand2.6M_train_MANO_NeuralAnnot.json: no annotated hand in any capture"):
        open_interhand(tmp_path, split="train")


def test_a_cached_store_of_interhand_clips_is_rebuilt_when_their_values_change(interhand_root, tmp_path):
    # before: the fingerprint held only the clips' infos, so another hands_mean (or an edited JSON)
    # came back from the cache with the old values
    root, data = interhand_root
    first = ClipStore.build(open_interhand(root, split="train"), cache=tmp_path / "store")
    for frames in data["train"].values():  # the annotations corrected: every right hand's pose + 1
        for hands in frames.values():
            if hands.get("right"):
                hands["right"]["pose"] = [v + 1.0 for v in hands["right"]["pose"]]
    (root / "annotations/train/InterHand2.6M_train_MANO_NeuralAnnot.json").write_text(json.dumps(data["train"]))
    edited = ClipStore.build(open_interhand(root, split="train"), cache=tmp_path / "store")
    rows = np.asarray(edited.arrays["present"][:, 1])
    np.testing.assert_allclose(edited.arrays["hand_pose"][rows, 1], first.arrays["hand_pose"][rows, 1] + 1.0, atol=1e-5)


@pytest.mark.parametrize("name", ["../../secret", "/tmp/secret", "../c/clips/000001", "sub/000001", "C:000001", "..",
                                  ""])
def test_a_split_entry_that_is_a_path_is_refused_naming_the_file_and_the_entry(corpus, tmp_path, name):
    """splits.json's names were joined to clips/ as they were: '../../secret' or '/tmp/secret' read a .npz outside
    the corpus folder (and 'sub/000001' one whose split was then not found)."""
    copy = tmp_path / "c"
    shutil.copytree(corpus, copy)
    (tmp_path / "secret.npz").write_bytes((corpus / "clips" / "000001.npz").read_bytes())  # a readable clip, outside
    (copy / "clips" / "sub").mkdir()
    shutil.copy(corpus / "clips" / "000001.npz", copy / "clips" / "sub")
    splits = json.loads((copy / "splits.json").read_text())
    splits["test"] = [*splits["test"], name]
    (copy / "splits.json").write_text(json.dumps(splits))
    said = (f"{copy / 'splits.json'}: 'test' lists {name!r}, which is not a clip name: a clip name is the name of a "
            f"file in {copy / 'clips'} without .npz (e.g. 000001), never a path")
    with pytest.raises(DatasetError) as info:
        open_corpus(copy)
    assert str(info.value) == said


def test_clips_linked_from_elsewhere_are_read_and_a_loop_of_links_is_refused(corpus, tmp_path):
    # a subset of a larger corpus made with links is the user's own (refused for a while: "a link out of the
    # corpus"); a name in splits.json is still never a path (above)
    copy = tmp_path / "c"
    shutil.copytree(corpus, copy)
    outside = tmp_path / "elsewhere.npz"
    shutil.move(copy / "clips" / "000002.npz", outside)
    (copy / "clips" / "000002.npz").symlink_to(outside)
    assert len(open_corpus(copy)) == len(open_corpus(corpus))
    (copy / "clips" / "000002.npz").unlink()
    (copy / "clips" / "000002.npz").symlink_to("000002.npz")  # a loop
    with pytest.raises(DatasetError, match=r"clips that are not there \(first: 000002\.npz\)"):
        open_corpus(copy)
    (copy / "clips" / "000002.npz").unlink()
    shutil.move(outside, copy / "clips" / "000002.npz")
    # a clips folder that is itself a link (to another disk) is the corpus's own folder
    moved = tmp_path / "disk" / "clips"
    moved.parent.mkdir()
    shutil.move(copy / "clips", moved)
    (copy / "clips").symlink_to(moved)
    assert len(open_corpus(copy)) == len(open_corpus(corpus))


def test_a_clip_listed_twice_in_one_split_is_said_so(tmp_path):
    """It said "clip 000001 is in both 'train' and 'train'"."""
    from handforge.datasets.corpus import SPLITS_FORMAT, read_splits

    (tmp_path / "splits.json").write_text(json.dumps({"format": SPLITS_FORMAT, "train": ["000001", "000001"],
                                                      "validation": [], "test": []}))
    with pytest.raises(DatasetError, match="clip 000001 is listed twice in 'train'$"):
        read_splits(tmp_path)


def test_a_cached_store_is_rebuilt_when_a_clip_file_changes_at_the_same_size(corpus, tmp_path):
    """The module doc: the cache is reused while the source is unchanged (same clip files, sizes and modification
    times). A clip rewritten with other values but the same byte size (stored uncompressed: same shapes, same
    meta) and a later modification time is read again: the store's frames are the edited file's arrays."""
    folder = tmp_path / "motions"
    folder.mkdir()
    for name in ("000000", "000001"):
        clip = MotionClip.load(corpus / "clips" / f"{name}.npz")
        np.savez(folder / f"{name}.npz", **clip.to_arrays(), meta=np.array(json.dumps(clip.metadata())))
    first = ClipStore.build(open_motion_folder(folder), cache=tmp_path / "store")
    edited = folder / "000001.npz"
    with np.load(edited, allow_pickle=False) as stored:
        arrays = {k: stored[k] for k in stored.files}
    for side in ("left", "right"):
        arrays[f"{side}.transl"] = arrays[f"{side}.transl"] + np.float32(0.25)
        arrays[f"{side}.hand_pose"] = arrays[f"{side}.hand_pose"][::-1].copy()
    before = edited.stat()
    np.savez(edited, **arrays)
    os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert edited.stat().st_size == before.st_size  # the same size: only the time tells the change
    store = ClipStore.build(open_motion_folder(folder), cache=tmp_path / "store")
    assert [c.name for c in store.clips] == ["000000", "000001"]
    with np.load(edited, allow_pickle=False) as direct:
        for h, side in enumerate(HAND_AXIS):
            for k in FIELDS:
                np.testing.assert_array_equal(store.frames(1)[k][:, h], direct[f"{side}.{k}"], err_msg=k)
            np.testing.assert_array_equal(store.frames(1)["present"][:, h], direct[f"{side}.present"])
    assert not np.array_equal(store.frames(1)["transl"], first.frames(1)["transl"])


def test_frames_past_a_clips_end_are_refused(corpus):
    """frames(i, start, stop): frames start:stop of clip i, an IndexError outside it; a stop one past the clip's
    end reached into the next clip's frames."""
    store = ClipStore.build(open_corpus(corpus, max_clips=2))
    n = store.clips[0].num_frames
    assert len(store.frames(0, 0, n)["present"]) == n  # the whole clip
    for clip, start, stop in ((0, 0, n + 1), (0, n, n + 1), (1, 0, store.clips[1].num_frames + 1), (0, 2, 1),
                              (0, -1, 3)):
        with pytest.raises(IndexError, match=f"frames {start}:{stop} outside clip {clip} of"):
            store.frames(clip, start, stop)


def test_a_corpus_and_a_clip_store_held_a_moment_on_windows_are_put_in_place_once_free(corpus, tmp_path,
                                                                                         monkeypatch):
    """On Windows a just-written folder cannot be renamed while another process (an antivirus, the search
    indexer) holds one of its files a moment: a corpus build and a clip-store cache failed there at the very
    end. Both renames are tried again for about a second now (``replace_held``). Emulated: sys.platform win32,
    each rename refused once; the corpus and the cache come out whole, nothing left beside them."""
    from tests.support.windows import held_replace

    tries, slept = held_replace(monkeypatch, "win32", refusals=1, each=True)
    out = tmp_path / "corpus"
    write_corpus(out, sequences=3, seed=3, settings=CorpusSettings(chunk_size=3, sequences_per_group=3),
                 stats_sample=0, figures=False, progress=False, workers=1)
    def folder_tries(prefix):  # (the files written whole inside were refused once each too, and retried)
        return [t for t in tries if Path(t).name.startswith(prefix) and Path(t).parent == tmp_path]

    assert len(folder_tries(".corpus.partial")) == 2 and len(slept) == len(set(tries)) == len(tries) / 2
    assert len(list((out / "clips").glob("*.npz"))) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["corpus"]
    store = ClipStore.build(open_corpus(corpus, split="train"), cache=tmp_path / "store")
    assert len(folder_tries(".store.partial")) == 2 and len(slept) == len(set(tries))
    assert len(store) == len(open_corpus(corpus, split="train").clips)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "store"]
