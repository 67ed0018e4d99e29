"""Export workers as local processes (``handforge export --workers N``): one spawned process per slot,
each holding a ``SampleWorker``; JSON messages over one pipe per worker (never pickle on the wire).

A worker that dies (killed, out of memory, a crash in GL or Blender) shows up as an end of file on
its pipe and its process sentinel; the driver (``handforge.export.shards``) replaces it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from handforge.arguments import usable_cpus
from handforge.export.shards import Event
from handforge.scratch import scratch_folder
from handforge.termination import die_with_parent


def worker_gpus(spec: dict[str, Any]) -> list[str]:
    """The GPUs local workers share, one each in turn (``CUDA_VISIBLE_DEVICES`` entries): for generated images
    only, those this process may use (its own ``CUDA_VISIBLE_DEVICES``, else every GPU torch counts); none
    on a machine without. Every worker took the first GPU, each loading its own pipeline there, and the
    others stayed idle."""
    if spec.get("render", {}).get("engine") != "generate" or "rgb" not in spec.get("outputs", ()):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # ("": none; ids or UUIDs as the user wrote them)
        return [entry.strip() for entry in visible.split(",") if entry.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]  # (NVML's count: no CUDA context made)


def _serve(conn: Connection, spec_json: str, out: str, fault: str | None, parent: int, threads: int,
           scratch: str, gpu: str | None = None) -> None:
    if gpu is not None:  # before anything here touches CUDA: this worker's one GPU is its "cuda"
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    tempfile.tempdir = scratch  # before anything makes a temporary file (and Blender's, through TMPDIR)
    os.environ["TMPDIR"] = scratch
    if not die_with_parent(parent):  # the driver dies: so does this worker, and a restarted driver never races it
        return
    # Ctrl-C reaches the whole process group: the driver stops the workers and says so once (each
    # worker printed its own KeyboardInterrupt traceback)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from handforge.export.worker import SampleWorker

    try:
        worker = SampleWorker(json.loads(spec_json), out, fault, threads)
    except Exception as exc:  # e.g. no GL here: fatal for the run, said once by the driver
        conn.send_bytes(json.dumps({"fatal": f"{type(exc).__name__}: {exc}"}).encode())
        return
    conn.send_bytes(json.dumps({"ready": worker.renderer_name}).encode())
    try:
        while True:
            try:
                message = json.loads(conn.recv_bytes())
            except EOFError:
                return
            if message.get("stop"):
                return
            results = worker.run(message["indices"])
            conn.send_bytes(json.dumps({"chunk": message["chunk"], "results": results}).encode())
    finally:
        worker.close()


class LocalPool:
    """``start``/``submit``/``wait``/``stop`` of ``handforge.export.shards.Pool`` on local processes;
    ``workers``: how many will run at once, so each gets its share of the CPUs' threads."""

    def __init__(self, spec: dict[str, Any], out: str, workers: int = 1):
        self.spec_json, self.out = json.dumps(spec), str(Path(out).absolute())
        self.threads = max(1, usable_cpus() // workers)
        self.context = multiprocessing.get_context("spawn")  # fork would copy torch's threads and a GL state
        self.gpus = worker_gpus(spec)
        self.workers: dict[int, tuple[Any, Connection]] = {}

    def __enter__(self) -> "LocalPool":
        # the workers' temporary files (their Blender's) go under one folder of the run's, removed at the
        # end: a killed or hung worker cannot clean up after itself. A killed driver cannot either: the
        # folder records it, and the next export removes those of drivers that are gone (``handforge.scratch``)
        self.scratch = str(scratch_folder("export-workers"))
        return self

    starts_at_once = True  # a worker not ready within the start timeout is hung (``shards``)

    def __exit__(self, kind: Any, *exc: Any) -> None:
        try:  # after a Ctrl-C or an error the workers are killed, not waited for one by one
            for slot in list(self.workers):
                self.stop(slot, force=kind is not None)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def describe(self) -> str:
        return "local processes"

    def start(self, slot: int, fault: str | None = None) -> None:
        ours, theirs = self.context.Pipe()
        args = (theirs, self.spec_json, self.out, fault, os.getpid(), self.threads, self.scratch, self.gpu(slot))
        process = self.context.Process(target=_serve, args=args, name=f"handforge-export-{slot}", daemon=True)
        process.start()
        theirs.close()
        self.workers[slot] = (process, ours)

    def gpu(self, slot: int) -> str | None:
        """The GPU of the worker in ``slot``, in turn over ``worker_gpus`` (a replaced worker keeps its slot's)."""
        return self.gpus[slot % len(self.gpus)] if self.gpus else None

    def submit(self, slot: int, chunk: int, indices: list[int]) -> None:
        try:
            self.workers[slot][1].send_bytes(json.dumps({"chunk": chunk, "indices": indices}).encode())
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # it died; wait() reports it

    def wait(self, timeout: float) -> list[Event]:
        by_handle = {}
        for slot, (process, conn) in self.workers.items():
            by_handle[conn] = slot
            by_handle[process.sentinel] = slot
        events: list[Event] = []
        seen = set()
        for handle in wait(list(by_handle), timeout):
            slot = by_handle[handle]
            if slot in seen or slot not in self.workers:
                continue
            seen.add(slot)
            process, conn = self.workers[slot]
            try:
                while conn.poll():
                    events.append(_event(slot, json.loads(conn.recv_bytes())))
                if process.is_alive():
                    continue
            except (EOFError, OSError):
                pass
            process.join(5)
            self._forget(slot)
            events.append(Event("died", slot, f"worker process exited with code {process.exitcode}"))
        return events

    def stop(self, slot: int, force: bool = False) -> None:
        """End a worker: asked to stop (10 s to finish), or killed at once with ``force`` (a hung one)."""
        process, conn = self.workers.get(slot, (None, None))
        if process is None:
            return
        if not force:
            try:
                conn.send_bytes(json.dumps({"stop": True}).encode())
            except OSError:
                pass
            process.join(10)
        if process.is_alive():
            process.kill()
            process.join()
        self._forget(slot)

    def _forget(self, slot: int) -> None:
        _, conn = self.workers.pop(slot)
        conn.close()


def _event(slot: int, message: dict[str, Any]) -> Event:
    if "ready" in message:
        return Event("ready", slot, message["ready"])
    if "fatal" in message:
        return Event("fatal", slot, message["fatal"])
    return Event("done", slot, (message["chunk"], message["results"]))
