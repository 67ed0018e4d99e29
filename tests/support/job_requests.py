"""What the server says of a job request before queueing it, checked in process (the kind's schema, then its
check): the input-bound tests of every job kind ask it."""

from __future__ import annotations

from functools import lru_cache

from handforge_shared.protocol import ErrorCode, ProtocolError


@lru_cache(maxsize=None)
def registry():
    from handforge.server import default_registry

    return default_registry()


def refusal(kind: str, params: dict, arrays: dict | None = None) -> ProtocolError | None:
    """What the server says of a submitted request before queueing it (None: it would be queued)."""
    job, arrays = registry().kind(kind), arrays or {}
    try:
        checked = job.schema.validate(params, arrays)
        if job.check is not None:
            job.check(checked, arrays)
    except ProtocolError as exc:
        return exc
    return None


def refused(kind: str, params: dict, arrays: dict | None = None, field: str = "") -> ProtocolError:
    error = refusal(kind, params, arrays)
    assert error is not None, f"{kind} {params} was accepted"
    assert error.code == ErrorCode.INVALID_PARAMS and error.field == field, (error.field, str(error))
    assert str(error).startswith(field)
    return error
