"""Worker threads: jobs run here, never on the socket thread.

Two queues: "gpu"-class jobs are taken one at a time by one thread per compute device (each CUDA
GPU, or the CPU when there is none), so heavy work is serialised per device; "cpu"-class jobs are
taken by a small thread pool and run concurrently. Workers never touch the socket: they report
through ``post`` (which the server drains on its own thread), in order, for each job:
``Started``, ``Progress``*, then exactly one ``Finished``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from handforge.runtime import out_of_memory
from handforge.server.jobs import JobCancelled, JobContext, JobError, JobResult
from handforge.server.registry import JobKind
from handforge_shared.protocol import ErrorCode, ProtocolError, wire_array

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """The server's record of one accepted job."""

    client: bytes
    job_id: str
    kind: JobKind
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    ctx: JobContext
    accepted_at: float
    deadline: float | None = None         # request deadline (monotonic), from the submit's data.timeout
    started_at: float | None = None
    device: str | None = None
    cancel_requested: bool = False
    done: bool = False                    # a terminal event was sent (or the client is gone)

    @property
    def run_deadline(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.kind.timeout

    def next_deadline(self) -> float | None:
        times = [t for t in (self.deadline, self.run_deadline) if t is not None]
        return min(times) if times else None


@dataclass
class Started:
    job: Job
    device: str


@dataclass
class Progress:
    job: Job
    fraction: float
    message: str
    preview: dict[str, np.ndarray]


@dataclass
class Finished:
    job: Job
    result: JobResult | None = None
    error: tuple[str, str, str] | None = None   # code, message, hint
    cancelled: str | None = None                # reason


Event = Started | Progress | Finished


class _Queue:
    def __init__(self) -> None:
        self.items: deque[Job] = deque()
        self.cond = threading.Condition()


class WorkerPool:
    def __init__(self, post: Callable[[Event], None], cpu_threads: int = 4) -> None:
        self._post = post
        self._queues = {"gpu": _Queue(), "cpu": _Queue()}
        self._stopping = False
        self._threads: list[threading.Thread] = []
        for i in range(max(1, cpu_threads)):
            self._spawn("cpu", "cpu", f"handforge-cpu-{i}")

    def start_devices(self, devices: list[str]) -> None:
        """One serial worker per compute device for "gpu"-class jobs (called once devices are known)."""
        for device in devices or ["cpu"]:
            self._spawn("gpu", device, f"handforge-gpu-{device}")

    def _spawn(self, lane: str, device: str, name: str) -> None:
        thread = threading.Thread(target=self._work, args=(lane, device), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def enqueue(self, job: Job) -> int:
        """Queue a job; returns how many jobs of its class wait ahead of it."""
        queue = self._queues[job.kind.device]
        with queue.cond:
            queue.items.append(job)
            queue.cond.notify()
            return len(queue.items) - 1

    def remove(self, job: Job) -> bool:
        """Take a job out of its queue if it has not started; True if it was still waiting."""
        queue = self._queues[job.kind.device]
        with queue.cond:
            try:
                queue.items.remove(job)
                return True
            except ValueError:
                return False

    def waiting(self, lane: str | None = None) -> int:
        """Jobs not started yet: of one class ("gpu" or "cpu"), or of both."""
        if lane is not None:
            return len(self._queues[lane].items)
        return sum(len(q.items) for q in self._queues.values())

    def stop(self, grace_s: float) -> None:
        """Stop taking jobs and wait up to ``grace_s`` for the running ones (threads are daemons)."""
        self._stopping = True
        for queue in self._queues.values():
            with queue.cond:
                queue.items.clear()
                queue.cond.notify_all()
        end = time.monotonic() + grace_s
        for thread in self._threads:
            thread.join(max(0.0, end - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("workers still busy after %.1f s, left behind: %s", grace_s, ", ".join(stuck))

    def _work(self, lane: str, device: str) -> None:
        queue = self._queues[lane]
        while True:
            with queue.cond:
                while not queue.items and not self._stopping:
                    queue.cond.wait()
                if self._stopping:
                    return
                job = queue.items.popleft()
            self._run(job, device)
            del job  # an idle worker must not keep its last job's arrays alive until the next one

    def _run(self, job: Job, device: str) -> None:
        job.ctx.device = device
        job.ctx.started = time.monotonic()
        job.ctx.deadline = min(t for t in (job.deadline, job.ctx.started + job.kind.timeout) if t is not None)
        self._post(Started(job, device))
        try:
            job.ctx.check_cancelled()
            result = job.kind.handler(job.ctx, job.params, job.arrays)
            if result is None:
                result = JobResult()
            if not isinstance(result, JobResult):
                raise TypeError(f"the handler of {job.kind.name!r} returned {type(result).__name__}, not JobResult")
            outcome = Finished(job, result=_sendable(job.kind.name, result))
        except JobCancelled as exc:
            outcome = Finished(job, cancelled=exc.reason)
        except JobError as exc:
            outcome = Finished(job, error=(exc.code, exc.message, exc.hint))
        except Exception as exc:
            log.exception("job %s (%s) failed", job.job_id, job.kind.name)
            outcome = Finished(job, error=(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}", _hint_for(exc)))
        except BaseException as exc:
            # A handler's SystemExit (sys.exit, argparse) or KeyboardInterrupt: never a signal's (those reach only the
            # main thread), so it is the handler's bug as any other. Let go, it ended this worker thread silently:
            # its job was reported as a timeout and a GPU-class lane was left without its only worker.
            log.error("job %s (%s) raised %s", job.job_id, job.kind.name, type(exc).__name__, exc_info=True)
            outcome = Finished(job, error=(ErrorCode.INTERNAL, f"the handler of {job.kind.name} raised "
                                           f"{type(exc).__name__}({exc})", "a job's handler must raise an exception, "
                                           "not exit; the backend carries on"))
        self._post(outcome)


def _sendable(kind: str, result: JobResult) -> JobResult:
    """``result`` with its arrays as they go on the wire, converted here on the worker: a result numpy cannot
    convert (a ragged list, a CUDA tensor) raised on the socket thread and stopped the whole backend, and a
    data that is no dict was sent, and dropped by the client as malformed."""
    if not isinstance(result.data, dict):
        raise JobError(ErrorCode.INTERNAL, f"the result of {kind} cannot be sent: its data is a "
                       f"{type(result.data).__name__}, not a dict", "the job's handler must return "
                       "JobResult(data: dict, arrays: dict); the backend carries on")
    arrays = {}
    for name, array in result.arrays.items():
        try:
            arrays[name] = wire_array(name, array)[1]
        except ProtocolError as exc:  # a dtype or name the protocol does not carry
            raise JobError(ErrorCode.INTERNAL, f"the result of {kind} cannot be sent: {exc.message}", exc.hint) from None
        except Exception as exc:
            log.exception("the result of %s: arrays.%s cannot be converted", kind, name)
            raise JobError(ErrorCode.INTERNAL, f"the result of {kind} cannot be sent: arrays.{name} is no array numpy "
                           f"can convert ({type(exc).__name__}: {exc})", "the job's handler must return numpy arrays "
                           "(a torch tensor: .cpu().numpy(); a list: rectangular); the backend carries on") from None
    return replace(result, arrays=arrays)  # (any other field as it came)


def _hint_for(exc: Exception) -> str:
    if out_of_memory(exc):
        return ("the device ran out of memory: try a smaller batch or resolution, or close other programs "
                "using its memory; the backend carries on")
    return "the backend log has the traceback; the backend carries on"


__all__ = ["Event", "Finished", "Job", "Progress", "Started", "WorkerPool"]
