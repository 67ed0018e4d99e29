"""The scale-out driver: one sharding, fault and resume logic for local worker processes and Ray.

- Sharding: the unfinished indices, in order, are cut into fixed chunks; a free worker takes the next
  chunk. Every sample depends on (seed, index) only and is written atomically by whoever renders it,
  and the aggregate files are rebuilt from the finished samples in index order, so the dataset is the
  same bytes whatever the number of workers or the order they finish in.
- Faults: a worker that dies is replaced and its chunk goes back to the front of the queue (what it
  had finished is kept; the rest is redone, one sample per chunk, so that a sample that kills its
  worker fails alone); so is a worker that gives no answer for ``sample_timeout`` seconds per sample
  of its chunk (hung: stuck in a driver, a deadlock), after it is killed. A sample that kills
  ``MAX_ATTEMPTS`` workers is given up and reported. A sample that raises is reported and the run goes on.
- Resume: the driver starts like the single-process export (half-written samples removed, finished
  ones skipped), so a driver killed mid-run and started again continues without duplicates or holes.
- Progress: one bar for the whole run (samples/s and ETA), a summary of what failed and why.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from handforge.export.folder import CARD_JSON, InputWatch, claimed_folder, clean_partial, finished_indices, is_finished
from handforge.export.room import pending_that_fit
from handforge.export.spec import ExportSpec, input_files
from handforge.export.worker import replaces_too

MAX_ATTEMPTS = 3         # workers a sample may kill (alone or in its chunk) before it is given up
MAX_CHUNK = 8            # samples per chunk at most: what a dead worker costs, how often the bar moves
CHUNKS_PER_WORKER = 8    # at least this many chunks per worker: the last ones even out the finish
DEFAULT_SAMPLE_TIMEOUT = 600.0  # s per sample of a chunk before its worker counts as hung (Cycles at high spp)
START_TIMEOUT_FLOOR = 60.0  # s: a worker not ready this long after its start (and --sample-timeout) is hung
FINALISE_TRIES = 3       # aggregate files written at most this often while late samples keep landing


@dataclass(frozen=True)
class Event:
    kind: str     # "ready" (payload: GL renderer name), "fatal" (message), "done" ((chunk, results)), "died" (reason)
    slot: int
    payload: Any


class Pool(Protocol):
    starts_at_once: bool  # a worker not ready within the start timeout is hung (False: it may wait for resources)

    def start(self, slot: int, fault: str | None = None) -> None: ...
    def submit(self, slot: int, chunk: int, indices: list[int]) -> None: ...
    def wait(self, timeout: float) -> list[Event]: ...
    def stop(self, slot: int, force: bool = False) -> None: ...
    def describe(self) -> str: ...


class WorkerStartError(RuntimeError):
    """A worker could not start (no GL, no Blender, a bad hand model): the run stops with its message."""


def plan_chunks(pending: list[int], workers: int, chunk_size: int | None = None) -> list[list[int]]:
    """Cut ``pending`` (in order) into chunks: ``chunk_size`` each, else small enough that every worker
    gets ``CHUNKS_PER_WORKER`` of them and at most ``MAX_CHUNK``."""
    size = chunk_size or max(1, min(MAX_CHUNK, len(pending) // (workers * CHUNKS_PER_WORKER)))
    return [pending[k:k + size] for k in range(0, len(pending), size)]


class _Bar:
    """One progress bar over all workers: tqdm (rate and ETA), a ``progress(done, total)`` callable, or nothing."""

    def __init__(self, progress: bool | Callable, total: int, desc: str):
        self.callback = progress if callable(progress) else None
        self.done, self.total = 0, total
        self.tqdm = None
        if progress is True:
            from tqdm import tqdm

            self.tqdm = tqdm(total=total, desc=desc, unit="sample", smoothing=0.1, postfix="starting workers")
        self.ready = False

    def first_ready(self) -> None:
        """Start the bar's clock when a worker can take samples: counted from the command's start, the
        workers' start-up (seconds each) made the first sample's rate an ETA of minutes for a run of seconds."""
        if self.tqdm is not None and not self.ready and self.tqdm.n == 0:
            self.tqdm.set_postfix_str("", refresh=False)
            self.tqdm.reset(self.total)
        self.ready = True

    def update(self, n: int, **postfix: int) -> None:
        self.done += n
        if self.tqdm is not None:
            if postfix:
                self.tqdm.set_postfix(postfix, refresh=False)
            self.tqdm.update(n)
        if self.callback is not None and n:
            self.callback(self.done, self.total)

    def close(self) -> None:
        if self.tqdm is not None:
            self.tqdm.close()


def export_sharded(spec: ExportSpec, out: str | Path, pool_factory: Callable[[], Any], workers: int,
                   command: str, progress: bool | Callable = True, limit: int | None = None,
                   chunk_size: int | None = None, fault: str | None = None,
                   poll_seconds: float = 0.5, sample_timeout: float = DEFAULT_SAMPLE_TIMEOUT,
                   workers_here: bool = False, device: str | None = None) -> dict[str, Any]:
    """Export ``spec`` into ``out`` with ``workers`` workers from ``pool_factory()`` (a context manager
    giving a ``Pool``). ``fault``: the fault injection of ``handforge.export.worker.FAULT_ENV``;
    ``sample_timeout``: seconds per sample a worker may go without answering before it is stopped as hung;
    ``workers_here``: they run on this machine (their samples' memory is checked here, not a cluster's);
    ``device``: where the workers generate images (default: where this process would).
    Returns the single-process summary plus ``failed`` (index → why), ``worker_restarts`` and ``workers``."""
    if workers < 1:
        raise ValueError(f"workers: expected at least 1, got {workers}")
    if not sample_timeout > 0:  # also refuses NaN
        raise ValueError(f"sample timeout: expected a positive number of seconds, got {sample_timeout}")
    from handforge.export.run import check_rgb_source, folder_record
    from handforge.hands import load_hand_model

    check_rgb_source(spec)  # missing image weights: refused before any worker starts
    out = Path(out)
    # the driver's one copy: the record names it, and MANO's mean pose goes into the InterHand files
    model = load_hand_model(spec.hand_model)
    # e.g. no cluster at the address: a run that wrote no sample leaves nothing behind
    watch = InputWatch(lambda: input_files(spec))
    record = folder_record(spec, out, model, device)
    with claimed_folder(out, record) as removed:
        return _export_locked(spec, out, pool_factory, workers, command, progress, limit, chunk_size, fault,
                              poll_seconds, sample_timeout, removed, model, workers_here, watch, record)


def _export_locked(spec, out: Path, pool_factory, workers, command, progress, limit, chunk_size, fault,
                   poll_seconds, sample_timeout, removed: int, model, workers_here: bool, watch: InputWatch,
                   record: dict[str, Any]) -> dict[str, Any]:
    # as many samples at once as workers get work, each making one (a cluster's memory is not this machine's)
    pending, skipped = pending_that_fit(spec, out, limit, at_once=workers if workers_here else 0)
    chunks = plan_chunks(pending, workers, chunk_size)
    start = time.perf_counter()
    failed: dict[int, str] = {}
    restarts = 0
    renderer_name = None
    if chunks:
        with watch.on_stop(out, record, pending):
            try:
                with pool_factory() as pool:
                    failed, restarts, renderer_name = _drive(pool, chunks, min(workers, len(chunks)), progress,
                                                             fault, poll_seconds, out, sample_timeout)
            finally:  # what workers killed mid-write left (given up, or stopped by a Ctrl-C), once they are gone
                clean_partial(out)
    seconds = time.perf_counter() - start
    watch.after(out, record, pending)
    described = _finalise_settled(spec, out, command, renderer_name or _known_renderer(out), model)
    # a failed sample that a replaced worker finished after all is not a failure (when the files describe it)
    failed = {i: why for i, why in sorted(failed.items()) if i not in described}
    return {"written": len(pending) - len(failed), "skipped": skipped, "removed_partial": removed,
            "finished": len(described), "seconds": seconds, "failed": failed, "worker_restarts": restarts,
            "workers": workers}


def _finalise_settled(spec, out: Path, command: str, renderer_name: str, model) -> set[int]:
    """``finalise`` over the finished samples, again while one was put in place as it ran; returns the indices the
    aggregate files describe. A Ray actor stopped as hung writes on until ``ray.kill`` reaches it (a moment, more
    on a distant node): one that finished a sample the run had given up on while the files were written left it
    out of them, while the summary, checking the folder afterwards, no longer called it failed (no rerun hinted)."""
    from handforge.export.run import finalise

    for _ in range(FINALISE_TRIES):
        described = finished_indices(out, spec.samples)
        finalise(spec, out, command, renderer_name, model=model, indices=described)
        if finished_indices(out, spec.samples) == described:
            break
    return set(described)


def _drive(pool, chunks: list[list[int]], workers: int, progress, fault, poll_seconds,
           out: Path, sample_timeout: float) -> tuple[dict[int, str], int, str | None]:
    queue = deque(range(len(chunks)))
    attempts: Counter[int] = Counter()
    busy: dict[int, int] = {}            # slot → chunk
    deadline: dict[int, float] = {}      # slot → when its chunk counts as hung (monotonic)
    idle: list[int] = []
    ready: set[int] = set()
    unready_deaths: Counter[int] = Counter()  # deaths before "ready", per slot: a worker that cannot even start
    starting: dict[int, float] = {}      # slot → when a worker not ready yet counts as hung (monotonic)
    # a local worker starts at once; a Ray actor may wait, legitimately, for a node with its resources
    start_timeout = max(START_TIMEOUT_FLOOR, sample_timeout) if pool.starts_at_once else math.inf

    def start(slot: int, *fault_if_any) -> None:
        starting[slot] = time.monotonic() + start_timeout
        pool.start(slot, *fault_if_any)
    failed: dict[int, str] = {}
    restarts = 0
    renderer_name = None
    bar = _Bar(progress, sum(map(len, chunks)), f"export ({workers} workers, {pool.describe()})")
    try:
        for slot in range(workers):
            start(slot, fault)
        while queue or busy:
            while idle and queue:
                slot, chunk = idle.pop(), queue.popleft()
                busy[slot] = chunk
                deadline[slot] = time.monotonic() + sample_timeout * len(chunks[chunk])
                pool.submit(slot, chunk, chunks[chunk])
            # the hung check runs after the pool's own events: a chunk done or a worker dead since is not hung
            for event in itertools.chain(pool.wait(poll_seconds), _hung(pool, busy, deadline, chunks, sample_timeout),
                                         _hung_starting(pool, starting, start_timeout)):
                if event.kind == "ready":
                    bar.first_ready()
                    starting.pop(event.slot, None)
                    renderer_name = renderer_name or event.payload
                    unready_deaths[event.slot] = 0
                    ready.add(event.slot)
                    idle.append(event.slot)
                elif event.kind == "fatal":
                    raise WorkerStartError(f"an export worker could not start: {event.payload}")
                elif event.kind == "done":
                    chunk, results = event.payload
                    busy.pop(event.slot, None)
                    idle.append(event.slot)
                    for result in results:
                        if result.get("stop"):  # a full disk, an unwritable folder: every sample would fail
                            stop = result["stop"]
                            raise OSError(stop["errno"], stop["strerror"], stop["filename"])
                        if result["error"]:
                            failed[result["index"]] = result["error"]
                    bar.update(len(results), failed=len(failed), restarts=restarts)
                elif event.kind == "died":
                    restarts += 1
                    chunk = busy.pop(event.slot, None)
                    if event.slot in idle:
                        idle.remove(event.slot)
                    if event.slot not in ready:
                        unready_deaths[event.slot] += 1
                        if unready_deaths[event.slot] >= MAX_ATTEMPTS:
                            raise WorkerStartError(f"export workers keep dying before they are ready "
                                                   f"({event.payload})")
                    ready.discard(event.slot)
                    if chunk is not None:
                        bar.update(_requeue(chunk, chunks, attempts, queue, failed, event.payload, out),
                                   failed=len(failed), restarts=restarts)
                    starting.pop(event.slot, None)
                    if queue or busy:
                        start(event.slot, *([fault] if replaces_too(fault) else []))
        return failed, restarts, renderer_name
    finally:
        bar.close()


def _hung_starting(pool, starting: dict[int, float], start_timeout: float) -> Iterator[Event]:
    """Workers not ready by their start deadline (stuck loading a model or in a GPU driver): killed and
    reported as dead before ready (replaced; a slot that never starts ends the run)."""
    now = time.monotonic()
    for slot, due in list(starting.items()):
        if now > due:
            starting.pop(slot)
            pool.stop(slot, force=True)
            yield Event("died", slot, f"not ready within {start_timeout:g} s of its start: stopped as hung")


def _hung(pool, busy: dict[int, int], deadline: dict[int, float], chunks: list[list[int]],
          sample_timeout: float) -> Iterator[Event]:
    """Workers past their chunk's deadline: killed, and reported as dead (their chunk is then redone).
    A generator: ``busy`` is read when the iteration reaches it, after the pool's events are handled."""
    now = time.monotonic()
    for slot, chunk in list(busy.items()):
        if now > deadline.get(slot, float("inf")):
            pool.stop(slot, force=True)
            yield Event("died", slot, f"no answer within {sample_timeout * len(chunks[chunk]):g} s for "
                                      f"{len(chunks[chunk])} sample(s): stopped as hung (--sample-timeout)")


def _requeue(chunk: int, chunks: list[list[int]], attempts: Counter, queue: deque, failed: dict[int, str],
             reason: str, out: Path) -> int:
    """A dead worker's chunk: its finished samples count, the rest is redone first, each sample as a
    chunk of its own with the attempts so far (which one killed the worker is unknown: redone together,
    a poisonous sample killed every worker on the chunk and the healthy ones were given up with it), or,
    after ``MAX_ATTEMPTS``, given up. Returns how many samples the bar moves by."""
    attempts[chunk] += 1
    finished = [i for i in chunks[chunk] if is_finished(out, i)]
    unfinished = [i for i in chunks[chunk] if i not in set(finished)]
    if attempts[chunk] < MAX_ATTEMPTS:
        chunks[chunk] = []
        singles = range(len(chunks), len(chunks) + len(unfinished))
        chunks.extend([i] for i in unfinished)
        for single in singles:
            attempts[single] = attempts[chunk]
        queue.extendleft(reversed(singles))  # at the front, in index order
        return len(finished)
    for index in unfinished:
        failed[index] = f"{MAX_ATTEMPTS} workers died on this sample (last: {reason})"
    return len(chunks[chunk])


def _known_renderer(out: Path) -> str:
    """The GL renderer's name when no worker ran (everything was finished): the card's, else this machine's."""
    import json

    try:  # a card cut short or damaged (a copy that stopped midway) is rewritten below, not trusted: its JSON
        # error ended the rerun meant to rebuild it ("Unterminated string ..."), where one process rebuilt it
        card = json.loads((out / CARD_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = None
    name = card.get("gl_renderer") if isinstance(card, dict) else None
    if isinstance(name, str) and name:
        return name
    from handforge.render.gl import renderer

    return renderer().renderer_name


def failure_summary(failed: dict[int, str], shown: int = 10) -> list[str]:
    """Lines saying what failed and why, one per distinct reason, with the first sample indices."""
    by_reason: dict[str, list[int]] = {}
    for index, why in sorted(failed.items()):
        by_reason.setdefault(why, []).append(index)
    lines = []
    for why, indices in sorted(by_reason.items(), key=lambda item: (-len(item[1]), item[0])):
        listed = ", ".join(map(str, indices[:shown])) + (", …" if len(indices) > shown else "")
        lines.append(f"  {len(indices)} sample(s) [{listed}]: {why}")
    return lines
