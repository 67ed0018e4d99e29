"""The HandForge backend server: a ZeroMQ ROUTER loop, a registry of job kinds, validation, workers.

What an engine needs to plug in (it never sees the transport)::

    from handforge.server import ArraySpec, Engine, Integer, JobKind, JobResult, Schema

    def register_jobs(registry):          # in handforge/engines/<engine>/jobs.py
        registry.add_engine(Engine("motion", "motion in-betweening", settings=("motion.checkpoint",)))
        registry.add_kind(JobKind("motion.inbetween", handler, Schema(...), device="gpu", timeout=600,
                                  engine="motion"))

    def handler(ctx, params, arrays) -> JobResult:
        ...  ctx.progress(fraction, message, preview=None); ctx.check_cancelled(); ctx.device
"""

from handforge.server.builtin_jobs import default_registry
from handforge.server.jobs import JobCancelled, JobContext, JobError, JobResult
from handforge.server.registry import Engine, EngineStatus, JobKind, Registry
from handforge.server.schema import (
    ANY_ARRAY,
    ArraySpec,
    Boolean,
    Integer,
    ListOf,
    Number,
    Param,
    Schema,
    String,
    invalid,
)

__all__ = ["ANY_ARRAY", "ArraySpec", "Boolean", "Engine", "EngineStatus", "Integer", "JobCancelled", "JobContext",
           "JobError", "JobKind", "JobResult", "ListOf", "Number", "Param", "Registry", "Schema", "String",
           "default_registry", "invalid"]
