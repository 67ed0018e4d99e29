"""One export worker: holds the hand model, its own GL context and (for RGB) its own Blender warm, and
writes the samples it is given straight into the dataset folder (each one atomically, see ``samples``).

The same class runs inside a local worker process (``handforge.export.local_pool``) and a Ray actor
(``handforge.export.ray_pool``); the driver (``handforge.export.shards``) only sees JSON-able results.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import time
from pathlib import Path
from typing import Any

from handforge.export.folder import is_finished
from handforge.disk import stops_the_run
from handforge.export.samples import SampleWriter, failure
from handforge.export.spec import parse_spec

# Fault injection for the tests and for trying a cluster's recovery by hand: "die_after=K" makes every
# first worker (not their replacements) exit abruptly (no clean-up, like SIGKILL) after K samples;
# "hang_after=K" makes it stop answering instead (as a worker stuck in a driver or a deadlock would), for
# the driver's --sample-timeout to stop it; "hang_at_start=0" makes it never get ready (stuck loading), for
# the start timeout. Every first worker, so that one fails whichever gets the work. "die_at=I" is a
# poisonous sample instead (a scene that segfaults Blender): every worker, replacements too, exits
# abruptly when it starts sample I; "raise_at=I" makes it raise there an error no sample's own handling
# catches (a stale NFS handle while checking the folder), out of the worker's run.
FAULT_ENV = "HANDFORGE_EXPORT_FAULT"
FAULT_KINDS = ("die_after", "hang_after", "hang_at_start", "die_at", "raise_at")


def parse_fault(text: str) -> str | None:
    """``text`` checked (``die_after=K`` or ``hang_after=K``, ``hang_at_start=0``: never ready, or
    ``die_at=I``: sample I kills its worker), or None when empty; anything else is an error that says the forms."""
    if not text:
        return None
    key, _, value = text.partition("=")
    if key.strip() not in FAULT_KINDS or not value.strip().isdigit():
        raise ValueError(f"{FAULT_ENV}={text!r}: expected die_after=K, hang_after=K (K a whole number of samples), "
                         "hang_at_start=0, die_at=I or raise_at=I (I a sample index)")
    return f"{key.strip()}={int(value)}"


def replaces_too(fault: str | None) -> bool:
    """Whether a replacement worker gets the fault as well: a poisonous sample kills whoever renders it."""
    return (fault or "").startswith(("die_at=", "raise_at="))


class SampleWorker:
    """``SampleWorker(spec_dict, out).run(indices)`` → one result per index: ``{"index", "error"}``, and
    ``"stop"`` (the ``OSError``'s errno, strerror and filename) when the dataset folder cannot take samples.
    ``threads``: torch's CPU threads in this worker (None: torch's default)."""

    def __init__(self, spec: dict[str, Any], out: str, fault: str | None = None, threads: int | None = None):
        import torch

        from handforge.hands import load_hand_model
        from handforge.render.gl import renderer

        if threads:  # N workers each with every core's threads would oversubscribe the CPUs (Ray sets its own)
            torch.set_num_threads(threads)
        self.spec, self.out = parse_spec(spec), Path(out)
        kind, _, count = (parse_fault(fault or "") or "").partition("=")
        self.fault = (kind, int(count)) if kind else None
        while kind == "hang_at_start":  # the injected fault: stuck before ready (a model load, a GPU driver)
            time.sleep(3600)
        self.model = load_hand_model(self.spec.hand_model)
        self.gl = renderer()  # this process's own EGL context
        self._stack = contextlib.ExitStack()
        self.rgb = None
        if "rgb" in self.spec.outputs and self.spec.render.engine != "none":
            from handforge.engines.image.generated_rgb import rgb_source  # Blender, or the image pipeline (once)

            # no timeout of its own: the driver stops a hung worker (--sample-timeout) and redoes its samples
            self.rgb = self._stack.enter_context(rgb_source(self.spec, blender_timeout=math.inf))
        self.written = 0

    @property
    def renderer_name(self) -> str:
        return self.gl.renderer_name

    def run(self, indices: list[int]) -> list[dict[str, Any]]:
        # each sample's files are written while the next one is made (``SampleWriter``)
        try:
            with SampleWriter(self.out) as writer:
                self._run(writer, indices)
        except OSError as exc:  # a full disk, an unwritable folder (``stops_the_run``): the driver stops the run
            if not stops_the_run(exc, writing=True):
                raise
            return [{"index": index, "error": None if is_finished(self.out, index) else failure(exc),
                     "stop": {"errno": exc.errno, "strerror": exc.strerror, "filename": exc.filename}}
                    for index in indices]
        return [{"index": index, "error": writer.errors.get(index)} for index in indices]

    def _run(self, writer: SampleWriter, indices: list[int]) -> None:
        from handforge.export.run import begin_sample

        for index in indices:
            if is_finished(self.out, index):  # a replaced worker's sample, or a second driver's
                continue
            if self.fault == ("die_at", index):
                writer.flush()  # what it finished before stays finished
                os._exit(70)  # the injected poisonous sample: as a Blender segfault on it
            if self.fault == ("raise_at", index):
                writer.flush()
                raise OSError(errno.ESTALE, os.strerror(errno.ESTALE), str(self.out))
            writer.write_or_fail(index, lambda: begin_sample(self.spec, index, self.model, self.gl, self.rgb))
            self.written += 1
            if self.fault is not None and self.fault[0] not in ("die_at", "raise_at") and self.written >= self.fault[1]:
                writer.flush()  # its K samples are on the disk, as before the writes overlapped
                if self.fault[0] == "die_after":
                    os._exit(70)  # the injected fault: no clean-up, no reply
                while True:  # hang_after: alive, never answering
                    time.sleep(3600)

    def close(self) -> None:
        self._stack.close()
