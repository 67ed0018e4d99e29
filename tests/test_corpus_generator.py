"""The corpus generator and ``handforge corpus``: determinism, limits, held contacts, smoothness, files."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handforge.cli import main
from handforge.corpus import build
from handforge.corpus.build import write_corpus
from handforge.datasets.corpus import read_splits
from handforge.datasets import DatasetError
from handforge.corpus.generator import CorpusSettings, Generator
from handforge.evaluation.contact import contact_metrics
from handforge.evaluation.limits import joint_limit_metrics
from handforge.evaluation.motion import clip_keypoints, smoothness
from handforge.evaluation.penetration import penetration_metrics
from handforge_shared.poses import MotionClip

SMALL = CorpusSettings(chunk_size=12)
# Stated bounds. Held contact frames (exact, wrist-sealed): deepest vertex and overlap volume.
# (The 20,000-clip corpus of seed 0: worst of 113 sampled held frames 1.93 mm and 0.15 cm³.)
HELD_MAX_DEPTH_M = 0.0025
HELD_MAX_VOLUME_CM3 = 0.25
# Smoothness of all 42 keypoints: a minimum-jerk finger movement of 8 cm in 0.2 s peaks at
# 60·0.08/0.2³ = 600 m/s³; 6 Hz tapping of the fingertips about 1000 m/s³; clapping at 3 Hz keeps
# both whole hands accelerating (a clip mean of ~80 m/s³). Frame noise of ε adds ~8·ε·fps³ of
# jitter: 2 mm → ~430 m/s³.
MAX_JERK = 3000.0   # m/s³, any keypoint, any frame
MAX_JITTER = 150.0  # m/s³, mean over a clip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "c"
    summary = write_corpus(out, sequences=24, seed=5, workers=1, settings=SMALL, stats_sample=6, progress=False)
    clips = {p.stem: MotionClip.load(p) for p in sorted((out / "clips").glob("*.npz"))}
    return out, summary, clips


def test_corpus_files_summary_and_splits(corpus):
    out, summary, clips = corpus
    assert sorted(clips) == [f"{i:06d}" for i in range(24)]
    for clip in clips.values():
        assert clip.hand_model == "open" and clip.fps == 30.0 and 60 <= clip.num_frames <= 300
        assert set(clip.hands) == {"left", "right"}
        assert clip.extra["corpus"]["kind"] in ("gestures", "periodic", "interaction", "clapping", "count_on_hand")
    splits = json.loads((out / "splits.json").read_text())
    names = splits["train"] + splits["validation"] + splits["test"]
    assert sorted(names) == sorted(clips) and len(set(names)) == len(names)
    groups = {}
    for name in names:  # a person group never spans two splits
        split = next(s for s in ("train", "validation", "test") if name in splits[s])
        groups.setdefault(clips[name].extra["corpus"]["group"], set()).add(split)
    assert all(len(s) == 1 for s in groups.values())
    assert {k: len(v) for k, v in read_splits(out).items()} == {k: len(splits[k]) for k in ("train", "validation", "test")}
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["sequences"] == 24 and on_disk["frames"] == sum(c.num_frames for c in clips.values())
    assert on_disk["evaluation"]["held_contact_frames"]["frames"] >= 1
    assert on_disk["timing"]["sequences_per_second"] > 0
    for png in ("contact_sheet.png", "histograms.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 300 and im.size[1] > 150
    assert not list(out.parent.glob(".c.partial-*"))


def test_every_frame_is_within_the_joint_limits(corpus):
    _, _, clips = corpus
    for name, clip in clips.items():
        for side, pose in clip.hands.items():
            worst = joint_limit_metrics(pose.hand_pose, side).max_violation_deg.max()
            assert worst < 1e-3, f"{name} {side}: {worst:.4f}° outside the limits"  # float32 storage only


def test_held_interactions_touch_without_penetrating(corpus, model):
    _, _, clips = corpus
    spans = [(clip, a, b) for clip in clips.values() for a, b, _ in clip.extra["corpus"]["contact_frames"]]
    assert len(spans) >= 3, "the test corpus should hold some interactions"
    rng = np.random.default_rng(1)  # exact metrics cost ~0.5 s a frame: a dozen spans, first/last frame
    picked = [spans[i] for i in sorted(rng.choice(len(spans), size=min(6, len(spans)), replace=False))]
    frames = [(clip, f) for clip, a, b in picked for f in (a, b)]
    verts = {}
    for side in ("left", "right"):
        params = {k: np.stack([getattr(c.hands[side], k)[f] for c, f in frames])
                  for k in ("global_orient", "hand_pose", "betas", "transl")}
        verts[side] = model(side, **params).vertices.detach().numpy()
    faces = {s: model.faces(s) for s in ("left", "right")}
    pen = penetration_metrics(verts["left"], verts["right"], faces["left"], faces["right"])
    assert pen.max_depth.max() < HELD_MAX_DEPTH_M
    assert pen.volume.max() * 1e6 < HELD_MAX_VOLUME_CM3
    touching = contact_metrics(verts["left"], verts["right"], faces["left"], faces["right"])
    assert touching.in_contact.all()


def test_motions_are_smooth(corpus, model):
    _, _, clips = corpus
    rng = np.random.default_rng(0)
    for name, clip in clips.items():
        kp = clip_keypoints(clip, model)
        both = np.concatenate([kp["left"], kp["right"]], axis=1)
        s = smoothness(both, clip.fps)
        assert s.max_jerk < MAX_JERK and s.jitter < MAX_JITTER, (name, s.max_jerk, s.jitter)
    # the bound means something: 2 mm of frame noise alone breaks it
    noisy = smoothness(both + rng.normal(0, 0.002, both.shape), clip.fps)
    assert noisy.jitter > MAX_JITTER


def test_same_seed_same_clips_other_seed_different(model):
    gen = Generator(model=model, settings=CorpusSettings(chunk_size=5))
    a = gen.chunk(seed=3, chunk=1, count=5)
    b = gen.chunk(seed=3, chunk=1, count=5)
    c = gen.chunk(seed=4, chunk=1, count=5)
    assert len(a.sequences) == len(b.sequences) == len(c.sequences) == 5  # (zip below stops at the shortest)
    for x, y in zip(a.sequences, b.sequences):
        assert x.name == y.name and x.clip.extra == y.clip.extra
        for side in ("left", "right"):
            np.testing.assert_array_equal(x.clip.hands[side].to_vector(), y.clip.hands[side].to_vector())
    assert [s.name for s in a.sequences] == [f"{i:06d}" for i in range(5, 10)]
    differs = [not np.array_equal(x.clip.hands["right"].to_vector()[:60], y.clip.hands["right"].to_vector()[:60])
               for x, y in zip(a.sequences, c.sequences)]
    assert all(differs)


def test_clapping_clips_clap_and_the_rest_become_interactions(model):
    # Seed 0, chunks of 12: chunk 0's clap resolves; chunk 3 has a clapping member whose group's clap
    # did not (it used to clap along another template, closed grips included, under kind "clapping").
    gen = Generator(model=model, settings=CorpusSettings(chunk_size=12))
    seen = set()
    for chunk in (0, 3):
        for seq in gen.chunk(seed=0, chunk=chunk, count=12).sequences:
            meta = seq.clip.extra["corpus"]
            seen.add(meta["kind"])
            if meta["kind"] == "clapping":
                assert meta["templates"] == ["clap"], (seq.name, meta["templates"])
                assert all(template == "clap" for _, _, template in meta["contact_frames"])
    assert {"clapping", "interaction"} <= seen
    first = gen.chunk(seed=0, chunk=3, count=12).sequences  # the kind's change is deterministic too
    again = gen.chunk(seed=0, chunk=3, count=12).sequences
    for x, y in zip(first, again):
        assert x.clip.extra == y.clip.extra
        np.testing.assert_array_equal(x.clip.hands["right"].to_vector(), y.clip.hands["right"].to_vector())


@pytest.mark.slow
def test_worker_processes_write_the_same_corpus(tmp_path):
    settings = CorpusSettings(chunk_size=4)
    one = write_corpus(tmp_path / "one", 8, seed=9, workers=1, settings=settings, stats_sample=0, figures=False,
                       progress=False)
    two = write_corpus(tmp_path / "two", 8, seed=9, workers=2, settings=settings, stats_sample=0, figures=False,
                       progress=False)
    assert one["splits"] == two["splits"]
    clips = sorted(p.name for p in (tmp_path / "one" / "clips").glob("*.npz"))
    assert len(clips) == 8 and clips == sorted(p.name for p in (tmp_path / "two" / "clips").glob("*.npz"))
    for path in sorted((tmp_path / "one" / "clips").glob("*.npz")):
        with np.load(path) as x, np.load(tmp_path / "two" / "clips" / path.name) as y:
            assert sorted(x.files) == sorted(y.files)
            for key in x.files:
                np.testing.assert_array_equal(x[key], y[key])


def test_command_refuses_bad_arguments_and_keeps_existing_data(tmp_path, capsys):
    existing = tmp_path / "mine"
    existing.mkdir()
    (existing / "notes.txt").write_text("keep me")
    assert main(["corpus", "--out", str(existing), "--sequences", "3", "--quiet"]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert (existing / "notes.txt").read_text() == "keep me" and len(list(existing.iterdir())) == 1
    assert main(["corpus", "--out", str(tmp_path / "x"), "--sequences", "0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--sequences must be between 1 and" in err and "for more clips" not in err, err  # (the hint fits too many)
    assert main(["corpus", "--out", str(tmp_path / "x"), "--sequences", "10000001", "--quiet"]) == 2
    assert "for more clips, build several corpora" in capsys.readouterr().err
    assert main(["corpus", "--out", str(tmp_path / "x"), "--sequences", "2", "--workers", "0", "--quiet"]) == 2
    assert not (tmp_path / "x").exists()


def test_a_huge_count_or_chunk_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(build, "_generate", lambda *args: pytest.fail("generation started"))
    assert main(["corpus", "--out", str(tmp_path / "x"), "--sequences", str(10**12), "--chunk-size", str(10**12),
                 "--quiet"]) == 2
    assert f"between 1 and {build.MAX_SEQUENCES:,}" in capsys.readouterr().err
    # (a chunk is held in memory whole)
    assert main(["corpus", "--out", str(tmp_path / "x"), "--sequences", "2", "--chunk-size", str(10**6), "--quiet"]) == 2
    assert f"--chunk-size must be between 1 and {build.MAX_CHUNK_SIZE}, got 1000000" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_an_empty_mount_point_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """The finished corpus is renamed into --out's place: an empty volume's mount point refused that with
    EBUSY after every clip was made, and the clips went."""
    volume = tmp_path / "volume"
    volume.mkdir()
    monkeypatch.setattr(build.os.path, "ismount", lambda path: Path(path) == volume)
    monkeypatch.setattr(build, "_generate", lambda *args: pytest.fail("generation started"))
    assert main(["corpus", "--out", str(volume), "--sequences", "2", "--quiet"]) == 2
    assert f"mount point, which the finished corpus cannot replace: give a new folder inside it, e.g. --out " \
           f"{volume / 'corpus'}" in capsys.readouterr().err


def test_more_workers_than_cores_start_a_process_per_core(tmp_path, monkeypatch):
    started = []

    class Context:
        def Pool(self, processes, **kwargs):
            started.append(processes)
            raise RuntimeError("no pool in this test")

    monkeypatch.setattr(build, "usable_cpus", lambda: 3)
    monkeypatch.setattr(build.multiprocessing, "get_context", lambda method: Context())
    with pytest.raises(RuntimeError, match="no pool"):
        write_corpus(tmp_path / "c", 8, seed=1, workers=1000, settings=CorpusSettings(chunk_size=1), stats_sample=0,
                     figures=False, progress=False)
    assert started == [3] and list(tmp_path.iterdir()) == []


def test_the_command_says_when_it_runs_fewer_workers_than_asked(tmp_path, capsys):
    """One line, as ``handforge export --workers`` says it (the count was capped silently, and export refused it)."""
    import os

    assert main(["corpus", "--out", str(tmp_path / "c"), "--sequences", "2", "--workers", "100000",
                 "--stats-sample", "0", "--no-figures", "--quiet"]) == 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert [line for line in capsys.readouterr().err.splitlines() if "--workers" in line] == [
        f"handforge corpus: --workers 100000 is more than the {cpus} CPUs this process may use: running {cpus} (each "
        "holds torch and a generator, about 300 MB)"]
    assert len(list((tmp_path / "c" / "clips").iterdir())) == 2


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = build.run_chunk

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "run_chunk", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_corpus(tmp_path / "c", 4, seed=1, settings=CorpusSettings(chunk_size=2), stats_sample=0,
                     figures=False, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device", "clips/000000.npz")

    monkeypatch.setattr(build, "run_chunk", disk_full)
    assert main(["corpus", "--out", str(tmp_path / "c"), "--sequences", "2", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "clips/000000.npz: No space left on device: make room (or choose another --out); nothing of this run was kept" in err
    assert "Traceback" not in err and list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_statistics_keeps_the_complete_corpus_and_says_so(tmp_path, monkeypatch):
    # before: "interrupted" with the corpus left and summary.json's evaluation "pending" for good,
    # against the README's "an interrupted run leaves nothing behind"
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(build, "evaluate_sample", interrupted)
    # (and how to measure it: a rerun into the same --out is refused, the folder being taken)
    with pytest.raises(build.SummaryError, match="interrupted: the corpus is complete in .*not made.*usable as it "
                                                 "is, and `handforge measure --clips .*` measures its clips"):
        write_corpus(tmp_path / "c", 2, seed=1, settings=CorpusSettings(chunk_size=2), stats_sample=2,
                     figures=False, progress=False)
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert "interrupted" in summary["evaluation"] and len(list((tmp_path / "c" / "clips").iterdir())) == 2
    assert read_splits(tmp_path / "c")


@pytest.mark.parametrize("stop", [KeyboardInterrupt, "Terminated"])
def test_a_stop_during_the_statistics_exits_as_a_stop(tmp_path, capsys, monkeypatch, stop):
    """Ctrl-C or SIGTERM while the statistics ran: the corpus kept (as above), but the command exited 1 and said
    "interrupted" for SIGTERM too: a scheduler read a failure, not the stop it asked for (130 / 143)."""
    from handforge.termination import Terminated

    error = Terminated if stop == "Terminated" else stop

    def stopped(*args, **kwargs):
        raise error

    monkeypatch.setattr(build, "evaluate_sample", stopped)
    status = main(["corpus", "--out", str(tmp_path / "c"), "--sequences", "2", "--chunk-size", "2",
                   "--stats-sample", "2", "--no-figures", "--quiet"])
    err = capsys.readouterr().err
    assert status == (143 if stop == "Terminated" else 130), err
    assert err.startswith("handforge corpus: " + ("stopped by SIGTERM" if stop == "Terminated" else "interrupted")
                          + ": the corpus is complete in ")
    assert len(list((tmp_path / "c" / "clips").iterdir())) == 2


def test_a_corpus_the_disk_cannot_hold_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """A corpus never resumes: 10 M clips (~300 GB) started on a disk with 75 GB free, to fail hours later."""
    import shutil as shutil_module

    usage = shutil_module.disk_usage(tmp_path)
    monkeypatch.setattr(build.shutil, "disk_usage", lambda path: usage._replace(free=10**9))
    monkeypatch.setattr(build, "_generate", lambda *args: pytest.fail("generation started"))
    assert main(["corpus", "--out", str(tmp_path / "c"), "--sequences", "100000", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"100,000 clips need about 2.9 GB (29 kB a clip on average), and {tmp_path} has 1.0 GB free" in err
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert build.CLIP_BYTES_LOW * 40 < sum(p.stat().st_size for p in _forty_clips(tmp_path)) < build.CLIP_BYTES_MEAN * 40 * 1.5


def _forty_clips(tmp_path):
    """The clips of a 40-clip corpus: the per-clip figures are what they measure."""
    write_corpus(tmp_path / "forty", 40, seed=0, settings=CorpusSettings(chunk_size=40), stats_sample=0, figures=False,
                 progress=False)
    return list((tmp_path / "forty" / "clips").glob("*.npz"))


@pytest.mark.parametrize("name", ["c", "take[1]*"])  # (glob's own characters: the name is matched as is)
def test_the_work_folder_of_a_run_killed_outright_goes_with_the_next_run(tmp_path, name):
    """SIGTERM or SIGKILL runs no clean-up: the next run into the same --out removes the dead run's
    hidden work folder (it stayed for good), and leaves a running one's alone."""
    import os
    import subprocess
    import sys

    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    here = socket.gethostname()
    abandoned = tmp_path / f".{name}.partial-{here}-{int(dead.stdout)}"
    running = tmp_path / f".{name}.partial-{here}-{os.getpid()}"
    elsewhere = tmp_path / f".{name}.partial-another-host-{int(dead.stdout)}"  # shared storage: not ours to judge
    for work in (abandoned, running, elsewhere):
        (work / "clips").mkdir(parents=True)
    assert build.remove_abandoned(tmp_path / name) == [abandoned]
    assert not abandoned.exists() and running.exists() and elsewhere.exists()


def test_splits_file_is_checked(tmp_path):
    (tmp_path / "splits.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DatasetError, match="not a HandForge corpus split file"):
        read_splits(tmp_path)


def test_transitions_stay_nearly_free_of_penetration(corpus, model):
    """Between held contacts hands approach, grip and let go; every third frame of every two-hand
    clip is checked with the loss's fast per-vertex test (exact metrics would take minutes)."""
    import torch

    from handforge.evaluation.penetration import penetration_depths

    _, _, clips = corpus
    worst = 0.0
    for clip in clips.values():
        if clip.extra["corpus"]["kind"] not in ("interaction", "clapping", "count_on_hand"):
            continue
        with torch.no_grad():
            v = {s: model.forward_pose(s, clip.hands[s]).vertices[::3] for s in ("left", "right")}
            dl, dr = penetration_depths(v["left"], v["right"], model.faces("left"), model.faces("right"))
        worst = max(worst, float(torch.maximum(dl.amax(), dr.amax())))
    assert worst < 0.005  # measured over 256 clips: 10 of 14,689 free frames above 2 mm, none above 5 mm


def test_failed_statistics_keep_the_finished_corpus(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ValueError("metric exploded")

    monkeypatch.setattr(build, "evaluate_sample", broken)
    code = main(["corpus", "--out", str(tmp_path / "c"), "--sequences", "3", "--stats-sample", "2", "--quiet"])
    assert code == 1 and "the corpus is complete" in capsys.readouterr().err
    assert len(list((tmp_path / "c" / "clips").glob("*.npz"))) == 3 and (tmp_path / "c" / "splits.json").is_file()
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert summary["evaluation"] == {"error": "ValueError: metric exploded"} and summary["sequences"] == 3



def test_sigterm_stops_the_corpus_and_removes_its_work_folder(tmp_path):
    """``kill`` (SIGTERM) while clips are written ends the run as Ctrl-C does: exit 143, one line, the
    hidden work folder removed. Its default action ended the process on the spot and left the folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "corpus"
    process = subprocess.Popen([sys.executable, "-m", "handforge", "corpus", "--out", str(out), "--sequences", "2000",
                                "--chunk-size", "1", "--quiet"], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".corpus.partial-*/clips/*.npz")):  # writing clips: inside the work folder
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == ("stopped by SIGTERM: nothing of this run was kept (a corpus does not resume): "
                                           "run the same command again to start it anew")
    assert list(tmp_path.iterdir()) == []


def test_the_out_folders_parents_are_made_as_export_makes_them(tmp_path, capsys, monkeypatch):
    # before: "the parent directory …/data does not exist: create it first", where the README's
    # `handforge corpus --out data/corpus` was the first command of a fresh checkout
    out = tmp_path / "data" / "corpora" / "c"
    assert main(["corpus", "--out", str(out), "--sequences", "2", "--stats-sample", "0", "--no-figures",
                 "--quiet"]) == 0, capsys.readouterr().err
    assert read_splits(out) and len(list((out / "clips").iterdir())) == 2
    # a failed run leaves nothing, the folders it made above --out included
    def failed(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "_generate", failed)
    with pytest.raises(OSError):
        write_corpus(tmp_path / "new" / "deeper" / "c", 2, seed=1, figures=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_a_folder_filled_by_another_run_meanwhile_is_said_so(tmp_path, monkeypatch):
    """Two corpora into one --out: the later one said "Directory not empty: fix it (or choose another --out)",
    though the folder had been empty when it began, and the other run's corpus is what filled it."""
    from handforge.corpus import build
    from handforge.corpus.build import CorpusError

    out = tmp_path / "c"
    generate = build._generate

    def meanwhile(*args, **kwargs):  # the other run renames its corpus into place while this one generates
        out.mkdir()
        (out / "splits.json").write_text("{}")
        return generate(*args, **kwargs)

    monkeypatch.setattr(build, "_generate", meanwhile)
    with pytest.raises(CorpusError, match="was filled by something else while this corpus was made.*choose another"):
        write_corpus(out, 2, seed=1, workers=1, settings=CorpusSettings(chunk_size=1), stats_sample=0,
                     figures=False, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"] and (out / "splits.json").read_text() == "{}"


def test_the_summary_keys_the_resolvers_depths_as_estimates():
    """The resolver's depths are its loss's nearest-vertex estimates (a clasp's 1.9 mm is exactly 1.45 mm):
    keyed ``max_depth_mm``, beside the evaluation's exact ``max_depth_mm``, they read as the same measure."""
    from handforge.corpus import summary as module

    outcomes = [{"template": "interlocked", "ok": True, "max_depth": 0.0019, "max_gap": 0.001, "closing_depth": 0.0025},
                {"template": "interlocked", "ok": False, "max_depth": 0.004, "max_gap": 0.0, "closing_depth": 0.0}]
    summary = module.resolver_summary(outcomes)
    row = summary["per_template"]["interlocked"]
    assert "max_depth_mm" not in row and "max_closing_depth_mm" not in row
    assert row["max_depth_estimate_mm"] == pytest.approx(1.9) and row["max_closing_depth_estimate_mm"] == pytest.approx(2.5)
    assert "estimate" in summary["depths"]


def test_a_count_that_does_not_fill_the_last_chunk_writes_every_clip(tmp_path):
    """5 clips in chunks of 2 (2, 2 and a last chunk of 1): clip k of chunk c is sequence c · chunk_size + k, so the
    corpus holds five distinct clips 000000..000004, each recording its own index, all five in the splits and the
    summary (every other test uses a count the chunk size divides)."""
    out = tmp_path / "c"
    summary = write_corpus(out, 5, seed=2, settings=CorpusSettings(chunk_size=2), stats_sample=0, figures=False,
                           progress=False)
    names = [f"{i:06d}" for i in range(5)]
    assert sorted(p.stem for p in (out / "clips").glob("*.npz")) == names
    clips = {name: MotionClip.load(out / "clips" / f"{name}.npz") for name in names}
    assert [clips[name].extra["corpus"]["index"] for name in names] == list(range(5))
    vectors = [clips[name].hands["right"].to_vector() for name in names]
    assert all(not (a.shape == b.shape and np.array_equal(a, b)) for i, a in enumerate(vectors)
               for b in vectors[i + 1:])  # five different motions, none written over another
    splits = json.loads((out / "splits.json").read_text())
    assert sorted(splits["train"] + splits["validation"] + splits["test"]) == names
    assert summary["sequences"] == 5
