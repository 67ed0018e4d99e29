"""Writing a corpus to disk: chunks in worker processes, clip files, splits and the summary.

Layout of a corpus directory:
    clips/NNNNNN.npz        one ``MotionClip`` per sequence (``shared/poses.py`` format, open hand)
    splits.json             train / validation / test clip names (by person group, see below)
    summary.json            statistics (``summary``), settings and timing
    contact_sheet.png       thumbnails of sampled clips
    histograms.png          lengths, kinds, templates, speeds, resolver success, penetration

The corpus is built in a hidden sibling directory and renamed into place at the end, so an
interrupted or failed run leaves nothing behind. Clips that share a person group (same hand
shape and resolved interactions) always land in the same split, so validation and test clips
are never near-copies of training clips.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import math
import multiprocessing
import os
import shutil
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from handforge.arguments import usable_cpus
from handforge.corpus.generator import CORPUS_VERSION, CorpusSettings, Generator
from handforge.corpus.summary import (
    clip_record,
    contact_sheet,
    evaluate_sample,
    histograms,
    resolver_summary,
    summarise,
    write_json,
)
from handforge.datasets.corpus import SPLITS, SPLITS_FORMAT, clip_path, load_clip
from handforge.disk import byte_amount
from handforge.runtime import torch_threads
from handforge.scratch import running
from handforge_shared.files import file_error, replace_held
from handforge_shared.poses import MotionClip

SPLIT_SHARES = tuple(zip(SPLITS, (0.90, 0.05, 0.05)))  # train / validation / test, as handforge.datasets reads them
# Clips per corpus: ~30 kB each on disk (10 M: ~300 GB) and a small record each in memory for the splits and
# summary; a count of 10**12 filled the memory with its list of chunks before the first clip was made
MAX_SEQUENCES = 10_000_000
# Refused before the first clip when they cannot fit (a corpus never resumes: a full disk after hours lost it
# all): 28.9 kB a clip on average (40 clips, 60-300 frames, 7.9-56 kB), counted at 22 kB so that a refusal
# is not wrong for the few clips whose random lengths come out short
CLIP_BYTES_MEAN, CLIP_BYTES_LOW = 28_900, 22_000
# A chunk's clips and resolver state stay in memory until it is written, ~170 kB a clip (256 took 38 MB more than
# 32): 4096 is ~700 MB per worker, where --chunk-size 10**6 ran out of memory after its hours of work
MAX_CHUNK_SIZE = 4096


class CorpusError(ValueError):
    """The corpus cannot be written as asked; the message says what to change."""


# ---------------------------------------------------------------------- chunk work
_GENERATOR: Generator | None = None


def _init_worker(settings: CorpusSettings) -> None:
    global _GENERATOR
    import signal

    import torch

    # Ctrl-C reaches the whole process group: the parent alone answers it (it stops the pool and
    # cleans up), so that a worker does not print its own KeyboardInterrupt traceback first
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)  # one process per core
    _GENERATOR = Generator(settings=settings)


def _run_chunk(job: tuple[int, int, int, str]) -> dict[str, Any]:
    seed, chunk, count, clip_dir = job
    assert _GENERATOR is not None
    return run_chunk(_GENERATOR, seed, chunk, count, Path(clip_dir))


def run_chunk(generator: Generator, seed: int, chunk: int, count: int, clip_dir: Path) -> dict[str, Any]:
    """Generate one chunk and write its clips; return the records the summary needs."""
    start = time.perf_counter()
    report = generator.chunk(seed, chunk, count)
    records = []
    for seq in report.sequences:
        seq.clip.save(clip_dir / f"{seq.name}.npz")
        records.append(clip_record(seq.name, seq.group, seq.clip))
    outcomes = [{"template": r.template, "ok": r.ok, "max_depth": r.max_depth, "closing_depth": r.closing_depth,
                 "max_gap": float(r.contact_gaps.max(initial=0.0))} for r in report.resolved]
    return {"chunk": chunk, "records": records, "resolver": outcomes, "seconds": time.perf_counter() - start}


# ---------------------------------------------------------------------- splits
def split_of(seed: int, group: str) -> str:
    """The split of a person group: a stable hash of (seed, group) against ``SPLIT_SHARES``."""
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2 ** 64
    edge = 0.0
    for name, share in SPLIT_SHARES:
        edge += share
        if u < edge:
            return name
    return SPLIT_SHARES[-1][0]


def make_splits(seed: int, records: list[dict[str, Any]]) -> dict[str, list[str]]:
    splits: dict[str, list[str]] = {name: [] for name, _ in SPLIT_SHARES}
    for r in records:
        splits[split_of(seed, r["group"])].append(r["name"])
    return splits


# ---------------------------------------------------------------------- the whole corpus
def check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CorpusError(f"{out} already exists and is not an empty directory: choose a new --out, or remove it")
    if os.path.ismount(out):  # (a container's volume): the finished corpus replaces --out, which a mount point refuses
        raise CorpusError(f"{out} is a mount point, which the finished corpus cannot replace: give a new folder "
                          f"inside it, e.g. --out {out / 'corpus'}")


def _remove_work(work: Path, made: list[Path]) -> None:
    """A failed run leaves nothing: its work folder, and the folders above --out it made (deepest first)."""
    shutil.rmtree(work, ignore_errors=True)
    for folder in made:
        with contextlib.suppress(OSError):  # (not empty: another run's, or the user's meanwhile)
            folder.rmdir()


def remove_abandoned(out: Path) -> list[Path]:
    """Remove the hidden work folders of runs into ``out`` that were killed outright (SIGTERM, SIGKILL,
    a power cut: no clean-up ran), named by their machine and process id: this machine's whose
    process is no longer running (another machine's, on shared storage, are left alone)."""
    removed = []
    prefix = f".{out.name}.partial-{socket.gethostname()}-"
    for work in out.parent.glob(f".{glob.escape(out.name)}.partial-*"):  # (a name may hold [ or *)
        pid = work.name[len(prefix):] if work.name.startswith(prefix) else ""
        if pid.isdigit() and not running(int(pid)):
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def _check_room(out: Path, sequences: int) -> None:
    """``CorpusError`` when ``sequences`` clips cannot fit in the free space of ``out``'s file system."""
    from handforge_shared.files import existing_ancestor

    disk = existing_ancestor(out.parent)
    free = shutil.disk_usage(disk).free
    if sequences * CLIP_BYTES_LOW > free:
        raise CorpusError(f"{sequences:,} clips need about {byte_amount(sequences * CLIP_BYTES_MEAN)} "
                          f"({CLIP_BYTES_MEAN / 1e3:.0f} kB a clip on average), and {disk} has {byte_amount(free)} "
                          "free: free space, build fewer clips (--sequences), or write elsewhere (--out)")


def write_corpus(out: str | os.PathLike, sequences: int, seed: int, workers: int = 1,
                 settings: CorpusSettings | None = None, stats_sample: int = 200, figures: bool = True,
                 progress: bool = True) -> dict[str, Any]:
    """Generate ``sequences`` clips from ``seed`` into ``out``; returns the summary.

    The clips and splits appear at ``out`` all at once, when every clip is written (a failure
    before that leaves nothing). The statistics and figures come after: if they fail, the corpus
    stays, ``summary.json`` records the error under ``evaluation`` and ``SummaryError`` is raised.
    """
    out = Path(out).expanduser().resolve()
    if not 1 <= sequences <= MAX_SEQUENCES:
        raise CorpusError(f"--sequences must be between 1 and {MAX_SEQUENCES:,}, got {sequences}"
                          + ("; for more clips, build several corpora with different --seed values"
                             if sequences > MAX_SEQUENCES else ""))
    if workers < 1:
        raise CorpusError(f"--workers must be at least 1, got {workers}")
    if stats_sample < 0:
        raise CorpusError(f"--stats-sample must be 0 or more, got {stats_sample}")
    if not 0 <= seed < 2 ** 63:
        raise CorpusError(f"--seed must be a non-negative integer below 2**63, got {seed}")
    settings = settings or CorpusSettings()
    if not 1 <= settings.chunk_size <= MAX_CHUNK_SIZE:
        raise CorpusError(f"--chunk-size must be between 1 and {MAX_CHUNK_SIZE}, got {settings.chunk_size}")
    check_output(out)
    _check_room(out, sequences)
    remove_abandoned(out)
    work = out.parent / f".{out.name}.partial-{socket.gethostname()}-{os.getpid()}"
    clip_dir = work / "clips"
    made = [p for p in out.parents if not p.exists()]  # --out's missing folders, made here: removed on failure
    try:
        clip_dir.mkdir(parents=True)
    except OSError as exc:  # a folder access() allowed (output_folder) that the file system refuses: /proc as root
        _remove_work(work, made)
        if exc.errno == errno.ENAMETOOLONG:  # the name fits, the work folder's beside it does not
            longest = len(out.name) - (len(work.name) - os.pathconf(out.parent, "PC_NAME_MAX"))
            raise CorpusError(f"the name {out.name[:20]}… ({len(out.name)} characters) is too long to build the "
                              f"corpus beside it, in a work folder named after it with {len(work.name) - len(out.name)} "
                              f"more; choose a name of at most {longest} characters") from None
        raise CorpusError(f"cannot write into {out.parent}: {exc.strerror or exc}; choose a folder you can "
                          "write to") from None
    started = time.perf_counter()
    try:
        chunks = [(seed, c, min(settings.chunk_size, sequences - c * settings.chunk_size), str(clip_dir))
                  for c in range(math.ceil(sequences / settings.chunk_size))]
        results = _generate(chunks, settings, workers, progress, sequences)
        gen_seconds = time.perf_counter() - started
        records = [r for res in sorted(results, key=lambda x: x["chunk"]) for r in res["records"]]
        splits = make_splits(seed, records)
        write_json(work / "splits.json", {"format": SPLITS_FORMAT, "version": 1, "seed": seed,
                                          "rule": "person groups hashed with the seed: 90/5/5", **splits})
        resolver = resolver_summary(o for res in results for o in res["resolver"])
        summary = summarise(records, splits, resolver, {"pending": True}, _settings(seed, len(records), workers,
                                                                                      settings))
        summary["timing"] = {"generation_seconds": gen_seconds, "sequences_per_second": len(records) / gen_seconds}
        write_json(work / "summary.json", summary)
        try:
            if out.exists():
                out.rmdir()  # empty (checked above)
            replace_held(work, out)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not out.is_dir():
                raise
            # (said before as "Directory not empty: fix it", though the folder was right when this run began)
            raise CorpusError(f"{out} was filled by something else while this corpus was made (another `handforge "
                              "corpus` into it?): this run's corpus is not kept; choose another --out") from None
    except BaseException:
        _remove_work(work, made)
        raise
    try:
        _evaluate(out, seed, records, summary, stats_sample, figures)
    except KeyboardInterrupt as stop:  # the corpus itself is complete (perhaps hours of it): keep it, say so
        from handforge.termination import Terminated

        summary["evaluation"] = {"interrupted": "the statistics were interrupted; the clips and splits are complete"}
        how = "stopped by SIGTERM" if isinstance(stop, Terminated) else "interrupted"
        raise SummaryError(f"{how}: the corpus is complete in {out}, but its statistics and figures were not "
                           f"made (summary.json says so); it is usable as it is, and `handforge measure --clips {out}` "
                           "measures its clips", interrupted=stop) from None
    except Exception as exc:  # the corpus itself is complete: keep it, say what failed
        if summary["evaluation"] != {"pending": True}:  # the statistics are made: only the figures failed
            # (a full disk at histograms.png replaced minutes of statistics with "statistics failed: OSError: [Errno
            # 28] No space left on device")
            why = file_error(exc, "choose another --out") if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
            summary["evaluation"]["figures_error"] = why
            raise SummaryError(f"the corpus is complete in {out} and its statistics are in summary.json, but its "
                               f"figures failed: {why}") from exc
        summary["evaluation"] = {"error": f"{type(exc).__name__}: {exc}"}
        raise SummaryError(f"the corpus is complete in {out}, but its statistics failed: {type(exc).__name__}: "
                           f"{exc}") from exc
    finally:
        summary["timing"]["total_seconds"] = time.perf_counter() - started
        write_json(out / "summary.json", summary)
    return summary


class SummaryError(RuntimeError):
    """The corpus was written but its statistics or figures could not be made (``interrupted``: by Ctrl-C or
    SIGTERM, which the command's exit status says as for any stopped command: 130 or 143, not 1)."""

    def __init__(self, message: str, interrupted: KeyboardInterrupt | None = None) -> None:
        super().__init__(message)
        self.interrupted = interrupted


def _settings(seed: int, count: int, workers: int, settings: CorpusSettings) -> dict[str, Any]:
    return {"seed": seed, "sequences": count, "workers": workers, "corpus_version": CORPUS_VERSION,
            "hand_model": "open", "fps": 30, **{k: v for k, v in asdict(settings).items() if k != "resolver"},
            "resolver": asdict(settings.resolver)}


def _generate(chunks: list, settings: CorpusSettings, workers: int, progress: bool, total: int) -> list[dict]:
    from tqdm import tqdm

    bar = tqdm(total=total, unit="clip", desc="corpus", disable=not progress, smoothing=0.05)
    results = []
    try:
        if workers == 1:
            with torch_threads(1):
                generator = Generator(settings=settings)
                for job in chunks:
                    results.append(run_chunk(generator, job[0], job[1], job[2], Path(job[3])))
                    bar.update(job[2])
        else:
            ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch threads
            # a process per core at most: each holds torch and a generator (~300 MB), and one more than the
            # cores only waits; --workers 1000 started 1000 of them and ran the machine out of memory
            processes = min(workers, len(chunks), usable_cpus())
            with ctx.Pool(processes, initializer=_init_worker, initargs=(settings,)) as pool:
                for res in pool.imap_unordered(_run_chunk, chunks):
                    results.append(res)
                    bar.update(len(res["records"]))
    finally:
        bar.close()
    return results


def _evaluate(out: Path, seed: int, records: list[dict[str, Any]], summary: dict[str, Any], stats_sample: int,
              figures: bool) -> None:
    """Evaluation-module statistics on a sample of clips, and the figures; fills ``summary``."""
    from handforge.hands import load_hand_model

    started = time.perf_counter()
    model = load_hand_model("open")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2 ** 31,)))
    picked = sorted(rng.choice(len(records), size=min(stats_sample, len(records)), replace=False))
    sample = [(records[i]["name"], load_clip(clip_path(out, records[i]["name"]))) for i in picked]
    summary["evaluation"] = evaluate_sample(sample, model, rng) if sample else {"sample_clips": 0}
    summary["timing"]["evaluation_seconds"] = time.perf_counter() - started
    if figures:
        contact_sheet(out / "contact_sheet.png", _sheet_clips(sample), model)
        histograms(out / "histograms.png", records, summary)


def _sheet_clips(sample: list[tuple[str, MotionClip]], count: int = 24) -> list[tuple[str, MotionClip]]:
    """Up to ``count`` sampled clips, interactions first (they are the interesting thumbnails)."""
    two = [s for s in sample if s[1].extra["corpus"].get("contact_frames")]
    one = [s for s in sample if not s[1].extra["corpus"].get("contact_frames")]
    return (two[: max(count * 2 // 3, count - len(one))] + one)[:count]
