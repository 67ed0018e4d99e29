"""Job kinds every backend has, whatever engines it holds: diagnostics (``ping``, ``echo``, ``sleep``,
``sleep.gpu``).

``default_registry()`` is what a server starts with: these plus every engine under ``handforge.engines``.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from handforge.server.jobs import JobContext, JobResult
from handforge.server.registry import Engine, JobKind, Registry, discover_engines
from handforge.server.schema import ANY_ARRAY, Boolean, Integer, JsonObject, Number, Schema, String, invalid


def ping(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    return JobResult({"pong": True, "time": time.time(), "device": ctx.device})


def echo(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    return JobResult({**params["data"], "text": params["text"]}, dict(arrays))


def sleep(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    steps, step_s = params["steps"], params["step_seconds"]
    if not params["cooperative"]:  # ignores cancel: for testing the server's timeout watchdog
        time.sleep(steps * step_s)
        return JobResult({"steps": steps, "device": ctx.device})
    for step in range(1, steps + 1):
        ctx.wait(step_s)
        if params["fail_at"] == step:
            raise RuntimeError(f"sleep failed at step {step}, as asked by fail_at")
        ctx.progress(step / steps, f"step {step}/{steps}")
    return JobResult({"steps": steps, "device": ctx.device})


SLEEP_TIMEOUT = 600.0


def _check_sleep(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    # a sleep that ignores cancel holds its worker until it ends, whatever the watchdog reports: 100,000 steps
    # of 60 s kept a worker (the only GPU-class one) asleep for 69 days, every later job of its class waiting
    total = params["steps"] * params["step_seconds"]
    if not params["cooperative"] and total > SLEEP_TIMEOUT:
        raise invalid("params.cooperative", f"false with {params['steps']} steps of {params['step_seconds']:g} s: "
                      f"{total:g} s asleep, past the kind's {SLEEP_TIMEOUT:g} s limit",
                      f"ask for at most {SLEEP_TIMEOUT:g} s in all (steps × step_seconds), or a cooperative sleep")


SLEEP_SCHEMA = Schema(params={
    "steps": Integer(doc="number of steps", default=10, min=1, max=100_000),
    "step_seconds": Number(doc="seconds per step", default=0.1, min=0.0, max=60.0),
    "fail_at": Integer(doc="raise an error at this step (tests error handling)", default=None, nullable=True, min=1),
    "cooperative": Boolean(doc="false: sleep in one go, ignoring cancel (tests the timeout watchdog); "
                               f"then at most {SLEEP_TIMEOUT:g} s in all", default=True),
})


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("builtin", "diagnostics: ping, echo, sleep, sleep.gpu"))
    registry.add_kind(JobKind("ping", ping, description="a job that returns at once (measures the job path)",
                              returns={"pong": "true", "time": "server time (s)", "device": "device it ran on"}))
    registry.add_kind(JobKind("echo", echo, Schema(params={"text": String(doc="returned as is", default=""),
                                                           "data": JsonObject(doc="returned as the result's data",
                                                                              default={})},
                                                   extra_arrays=ANY_ARRAY),
                              description="returns its text, data and arrays unchanged (a stand-in for any result)",
                              returns={"text": "the text", "*": "each data entry and each input array"}))
    sleep_doc = "sleeps in steps with progress; cancellable at each step (for tests)"
    registry.add_kind(JobKind("sleep", sleep, SLEEP_SCHEMA, timeout=SLEEP_TIMEOUT, check=_check_sleep,
                              description=sleep_doc,
                              returns={"steps": "steps done", "device": "device it ran on"}))
    registry.add_kind(JobKind("sleep.gpu", sleep, SLEEP_SCHEMA, device="gpu", timeout=SLEEP_TIMEOUT, check=_check_sleep,
                              description=sleep_doc + ", as GPU-class work (one at a time per device)",
                              returns={"steps": "steps done", "device": "device it ran on"}))


def default_registry() -> Registry:
    """The diagnostics plus every engine found under ``handforge.engines`` (the hand models among them)."""
    registry = Registry()
    register_jobs(registry)
    discover_engines(registry)
    return registry


__all__ = ["default_registry", "echo", "ping", "register_jobs", "sleep"]
