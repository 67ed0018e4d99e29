"""What a HandForge client reports: typed events, one per thing that happened, and the exceptions of
the blocking API. Every submitted job ends with exactly one of ``Result``, ``Error``, ``Cancelled``.

numpy only (the Blender add-on carries this file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .protocol import ErrorCode, with_hint


@dataclass(frozen=True)
class Event:
    job: str | None


@dataclass(frozen=True)
class Connected(Event):
    """A ``welcome`` arrived: at start-up and again after every reconnect; from a backend still probing its
    devices twice (``capabilities["devices"]`` None, then the complete one, with the same ``instance``)."""

    endpoint: str
    instance: str
    capabilities: dict[str, Any]


@dataclass(frozen=True)
class Disconnected(Event):
    endpoint: str
    reason: str


@dataclass(frozen=True)
class Accepted(Event):
    position: int  # jobs waiting ahead of this one


@dataclass(frozen=True)
class Progress(Event):
    fraction: float
    message: str
    preview: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class Result(Event):
    """``arrays`` are read-only views of the received frames: copy one before modifying it."""

    data: dict[str, Any]
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Error(Event):
    """A failed job (``job`` set) or a connection problem (``job`` None). ``code``: see ``ErrorCode``."""

    code: str
    message: str
    hint: str = ""
    field: str = ""  # the offending input when the backend names it, e.g. "params.steps", "arrays.right.mask"

    def __str__(self) -> str:
        return with_hint(self.message, self.hint)


@dataclass(frozen=True)
class Cancelled(Event):
    reason: str  # "cancelled" (asked for), "shutdown" (the backend stopped), "closed" (the client was)
    message: str = ""


TERMINAL_EVENTS = (Result, Error, Cancelled)
UNAVAILABLE_CODES = frozenset({ErrorCode.NO_BACKEND, ErrorCode.BACKEND_LOST, ErrorCode.AUTH_FAILED})


class JobFailed(Exception):
    """Raised by the blocking API for an ``Error``; carries its code, message, hint and field."""

    def __init__(self, code: str, message: str, hint: str = "", job: str | None = None, field: str = "") -> None:
        super().__init__(with_hint(message, hint))
        self.code, self.message, self.hint, self.job, self.field = str(code), message, hint, job, field

    @classmethod
    def from_event(cls, event: Error | Cancelled) -> "JobFailed":
        if isinstance(event, Cancelled):
            return JobCancelledError("cancelled", event.message or f"job {event.job} was cancelled ({event.reason})",
                                     job=event.job)
        kind = BackendUnavailable if event.code in UNAVAILABLE_CODES else JobFailed
        return kind(event.code, event.message, event.hint, event.job, event.field)


class BackendUnavailable(JobFailed):
    """No backend answers, the connection was lost, or the backend refused our key."""


class JobCancelledError(JobFailed):
    pass


__all__ = ["Accepted", "BackendUnavailable", "Cancelled", "Connected", "Disconnected", "Error", "Event",
           "JobCancelledError", "JobFailed", "Progress", "Result", "TERMINAL_EVENTS", "UNAVAILABLE_CODES"]
