"""The example engine's job kind: light at import (the server imports it at start); the model
module, torch and diffusers are imported inside the handler."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from handforge import config
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry
from handforge.server.schema import ArraySpec, Schema, String, invalid
from tests.engines.example.settings import CHECKPOINTS


def _check_name(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_-]+", params["name"]):  # a name, never a path out of the folder
        raise invalid("params.name", f"{params['name']!r} is not a checkpoint name",
                      "use letters, digits, '_' and '-' only")


def apply(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    import torch

    from tests.engines.example.model import TinyNet

    folder = Path(config.value(CHECKPOINTS.key)) / params["name"]
    if not folder.is_dir():
        raise JobError("missing_weights", f"no example checkpoint {params['name']!r} in {folder.parent}",
                       CHECKPOINTS.how_to_set())
    net = ctx.pretrained(TinyNet, folder, label=f"the example model {params['name']}")  # for people: not its path
    with torch.no_grad():
        y = net(torch.as_tensor(np.array(arrays["x"], dtype=np.float32), device=ctx.device))
    ctx.progress(1.0, "applied")
    return JobResult({"name": params["name"], "device": ctx.device, "loaded": list(ctx.loaded)},
                     {"y": y.cpu().numpy()})


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("example", "the example engine of the tests (TinyNet)", settings=(CHECKPOINTS.key,)))
    registry.add_kind(JobKind(
        "example.apply", apply, engine="example", device="gpu", timeout=60, check=_check_name,
        schema=Schema(params={"name": String(doc="checkpoint name (a folder in example.checkpoints)",
                                             default="default", max_length=64)},
                      arrays={"x": ArraySpec(shape=("n", 3), doc="inputs")}, dims={"n": (1, 4096)}),
        description="TinyNet applied to a batch of inputs",
        example=lambda: ({"name": "default"}, {"x": np.zeros((2, 3), np.float32)}),  # a valid request, fuzzed
        returns={"y": "(n, 3) outputs", "loaded": "models this job loaded (empty when all came from the cache)"}))
