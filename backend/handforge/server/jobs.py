"""What a job handler sees: its context, its result, and the errors it may raise.

A handler is ``def handler(ctx: JobContext, params: dict, arrays: dict[str, np.ndarray]) -> JobResult``.
It runs on a worker thread, never on the socket thread, and knows nothing of the transport:

    def denoise(ctx, params, arrays):
        for step in range(params["steps"]):
            ...                                     # one step of work on ctx.device
            ctx.progress((step + 1) / params["steps"], f"step {step + 1}", preview=small_image)
        return JobResult({"seed": params["seed"]}, {"image": image})

Models come from the server's model cache (``model_cache.py``): ``ctx.pretrained(ModelClass, folder)``
loads a checkpoint folder once per device and reuses it across jobs; ``ctx.model(key, loader,
checkpoint=path, label=...)`` does the same for anything else. A load shows as progress "loading <label>":
the label says what it is for people ("the SD model sd15 (float16)"), the key is only the cache's.

``ctx.progress`` (and ``ctx.check_cancelled``) raise ``JobCancelled`` once the job was cancelled,
timed out or the backend is shutting down, so a handler that reports progress at each step stops
at its next step without further code. Input arrays are read-only views of the received frames.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Mapping

import numpy as np

from handforge_shared.protocol import WIRE_ERROR_CODES, ErrorCode

if TYPE_CHECKING:
    from handforge.server.model_cache import ModelCache


@dataclass
class JobResult:
    """What a handler returns: JSON ``data`` and named ``arrays`` (sent zero-copy when large; do not
    modify them after returning)."""

    data: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


class JobError(Exception):
    """A failure the handler can name: becomes an ``error`` with this code (e.g. ``missing_weights``
    with the setting to fill as ``hint``). Any other exception becomes ``internal``."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        # only a code the backend sends: a client-side one ("no_backend") made the client say no backend ran
        if code not in WIRE_ERROR_CODES:
            raise ValueError(f"JobError code {str(code)!r} is none a backend sends; give one of: "
                             + ", ".join(c.value for c in ErrorCode if c in WIRE_ERROR_CODES))
        self.code = ErrorCode(code)
        self.message = message
        self.hint = hint


class JobCancelled(Exception):
    """Raised inside a handler by ``ctx.progress``/``ctx.check_cancelled``/``ctx.wait`` once the job
    must stop; let it propagate (clean up with ``try/finally`` if needed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


ProgressSink = Callable[[float, str, dict[str, np.ndarray]], None]


class JobContext:
    """Per-job handle given to the handler: progress, cooperative cancel, the device to run on."""

    def __init__(self, job_id: str, kind: str, sink: ProgressSink, min_interval_s: float = 0.05,
                 models: "ModelCache | None" = None) -> None:
        self.job_id = job_id
        self.kind = kind
        self.device = "cpu"  # set by the worker that runs the job: "cpu" or "cuda:N"
        self.loaded: list[str] = []  # the labels of the models this job had to load (the others were cached)
        self._models = models
        self._sink = sink
        self._min_interval = min_interval_s
        self._last_sent = -float("inf")
        self._fraction = 0.0  # the last fraction reported: a model loaded mid-job says so at it
        self._stop = threading.Event()
        self._reason = ""
        self.started: float | None = None   # set by the worker (monotonic): when the handler began
        self.deadline: float | None = None  # the earliest of its kind's limit and its client's timeout

    # ---------------------------------------------------------------- for handlers
    def progress(self, fraction: float, message: str = "",
                 preview: np.ndarray | Mapping[str, np.ndarray] | None = None, *, force: bool = False) -> None:
        """Report progress (0..1) with an optional preview array (or named arrays).

        Updates closer together than the server's progress interval are dropped (except the final
        one, fraction 1, and those with ``force``: e.g. the first and last of a stage) so that a fast
        loop cannot flood the client. Raises ``JobCancelled`` when the job must stop.
        """
        self.check_cancelled()
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._fraction = fraction
        now = time.monotonic()
        if fraction < 1.0 and not force and now - self._last_sent < self._min_interval:
            return
        self._last_sent = now
        if preview is None:
            previews = {}
        elif isinstance(preview, Mapping):
            previews = {name: np.array(a, copy=True) for name, a in preview.items()}
        else:
            previews = {"preview": np.array(preview, copy=True)}  # the handler may reuse its buffer
        self._sink(fraction, str(message), previews)

    def check_pace(self, done: int, total: int, since: float, what: str = "steps") -> None:
        """Fail now, as ``timeout``, when ``total`` equal pieces of work will not finish before the deadline at
        the pace of those after the first (``done`` of them finished; ``since``: when the first finished, its
        warm-up being no measure of the rest): a motion of 1000 steps × 8 samples held its device for the whole
        600 s limit, and failed then. Judged after 4 pieces and 2 s of them, with a fifth of the limit to spare
        for a busy machine's unsteady pace."""
        if self.deadline is None or done < 4 or done >= total:
            return
        now = time.monotonic()
        if now - since < 2.0:
            return
        started = self.started if self.started is not None else since
        finish = now + (now - since) / (done - 1) * (total - done)
        if finish - self.deadline > 0.2 * (self.deadline - started):
            raise JobError(ErrorCode.TIMEOUT, f"at this pace its {total} {what} end about {finish - started:.0f} s "
                           f"after it started, past the {self.deadline - started:.0f} s it may run ({done} done)",
                           f"ask for less work per job (fewer {what}, samples or frames), or a longer timeout")

    def check_cancelled(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled, timed out or the backend is stopping."""
        if self._stop.is_set():
            raise JobCancelled(self._reason)

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> None:
        """Sleep that wakes up (raising ``JobCancelled``) as soon as the job must stop."""
        if self._stop.wait(max(0.0, seconds)):
            raise JobCancelled(self._reason)

    def model(self, key: Hashable, loader: Callable[[str], Any], checkpoint: str | Path | None = None,
              label: str | None = None) -> Any:
        """The model cached under ``key`` for this job's device, loaded with ``loader(ctx.device)`` the
        first time (reported as progress "loading <label>" and recorded in ``ctx.loaded``), and again when
        ``checkpoint`` (a file or folder) changed on disk. ``label``: what is loaded, for people ("the open hand
        model", "the interaction model interaction_v4": a folder's name, not its path); without one the user
        reads the cache's key ("loading image /a/sd+/b/cn torch.float32"). Do not modify the model: later jobs
        share it. A cancel that arrived while it loaded stops the job here (the loaded model stays cached for the
        next job); a loader may call ``check_cancelled`` between its parts to stop sooner (nothing is cached
        then)."""
        from handforge.server.model_cache import shared_cache

        self.check_cancelled()
        cache = self._models if self._models is not None else shared_cache()

        def on_load(name: str) -> None:
            self.loaded.append(name)
            self.progress(self._fraction, f"loading {name}", force=True)  # (at 0.0 the bar went back to the start)

        model = cache.get(key, loader, self.device, checkpoint=checkpoint, on_load=on_load, label=label)
        self.check_cancelled()  # a load is not interruptible: its cancel is seen when it returns
        return model

    def pretrained(self, cls: type, folder: str | Path, dtype: Any = None, label: str | None = None) -> Any:
        """A ModelMixin checkpoint folder (``engines.checkpoints``) through the model cache, keyed by
        the class and the folder, in eval mode on this job's device; ``label`` as ``model``'s (default: the
        class and the folder's name, "the TinyNet model a")."""
        from handforge.engines.checkpoints import checkpoint_name, load_model

        folder = Path(folder).resolve()
        key = f"{cls.__name__} {folder}" + ("" if dtype is None else f" ({dtype})")
        return self.model(key, lambda device: load_model(cls, folder, device=device, dtype=dtype), checkpoint=folder,
                          label=label or f"the {cls.__name__} model {checkpoint_name(folder)}"
                          + ("" if dtype is None else f" ({str(dtype).removeprefix('torch.')})"))

    # ---------------------------------------------------------------- for the server
    def request_stop(self, reason: str) -> None:
        if not self._stop.is_set():
            self._reason = reason
            self._stop.set()


__all__ = ["JobCancelled", "JobContext", "JobError", "JobResult"]
