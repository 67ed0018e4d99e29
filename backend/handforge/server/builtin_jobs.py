"""Job kinds every backend has: diagnostics (``ping``, ``echo``, ``sleep``) and hand models
(``hand_model``: a rig for Blender; ``forward_hands``: pose parameters → vertices and keypoints).

Array names are ``<side>.<field>``, e.g. ``right.hand_pose`` in and ``right.vertices`` out.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any, Mapping

import numpy as np

from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry
from handforge.server.schema import (
    ANY_ARRAY, ArraySpec, Boolean, Integer, JsonObject, ListOf, Number, Schema, String, invalid,
)
from handforge_shared.poses import HAND_MODELS, POSE_FIELDS, hand_array_name
from handforge_shared.protocol import ErrorCode
from handforge_shared.skeleton import NUM_BETAS, SIDES

MAX_BATCH = 4096
FORWARD_CHUNK = 256
# Generous bounds that still catch unit mistakes (degrees for radians, millimetres for metres).
POSE_LIMIT = 4 * np.pi
BETAS_LIMIT = 20.0
TRANSL_LIMIT = 100.0


# ---------------------------------------------------------------------------------- diagnostics
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


SLEEP_SCHEMA = Schema(params={
    "steps": Integer(doc="number of steps", default=10, min=1, max=100_000),
    "step_seconds": Number(doc="seconds per step", default=0.1, min=0.0, max=60.0),
    "fail_at": Integer(doc="raise an error at this step (tests error handling)", default=None, nullable=True, min=1),
    "cooperative": Boolean(doc="false: sleep in one go, ignoring cancel (tests the timeout watchdog)", default=True),
})


# ---------------------------------------------------------------------------------- hand models
_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def _hand_model(name: str, device: str):
    """A loaded HandModel, cached per (model, device); a missing MANO becomes ``missing_weights``."""
    from handforge.hands import HandModelError, load_hand_model

    with _models_lock:
        key = (name, device)
        if key not in _models:
            try:
                _models[key] = load_hand_model(name, device=device)
            except HandModelError as exc:
                raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), _mano_hint()) from None
        return _models[key]


def _mano_hint() -> str:
    from handforge.hands.settings import MANO_DIR

    return MANO_DIR.how_to_set()


def _check_model_available(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    from handforge.server.capabilities import hand_models
    from handforge_shared.protocol import ProtocolError

    status = hand_models().get(params["model"], {})
    if not status.get("available"):
        raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"hand model {params['model']!r} is not available here: "
                            f"{status.get('reason', 'unknown')}", status.get("hint", ""))


def hand_model(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    model = _hand_model(params["model"], "cpu")  # rigs are numpy: no need for the GPU
    betas = arrays.get("betas")
    rigs, out = {}, {}
    for i, side in enumerate(params["sides"]):
        ctx.check_cancelled()
        rig = model.rig(side)
        meta = rig.metadata()
        if betas is not None:
            vertices, joints = rig.shaped(betas)
            rig = replace(rig, rest_vertices=vertices, rest_joints=joints)
            meta["betas"] = [float(b) for b in betas]
        rigs[side] = meta
        out.update({hand_array_name(side, name): array for name, array in rig.to_arrays().items()})
        ctx.progress((i + 1) / len(params["sides"]), f"{side} rig")
    return JobResult({"model": params["model"], "rigs": rigs}, out)


def forward_hands(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    import torch

    model = _hand_model(params["model"], ctx.device)
    sides = [s for s in SIDES if hand_array_name(s, "global_orient") in arrays]
    total = sum(arrays[hand_array_name(s, "global_orient")].shape[0] for s in sides)
    done, out = 0, {}
    for side in sides:
        batch = arrays[hand_array_name(side, "global_orient")].shape[0]
        vertices, keypoints = [], []
        for start in range(0, batch, FORWARD_CHUNK):
            ctx.check_cancelled()
            chunk = slice(start, start + FORWARD_CHUNK)
            inputs = {f: _tensor(arrays.get(hand_array_name(side, f)), chunk, ctx.device) for f in POSE_FIELDS}
            with torch.no_grad():
                result = model(side, **inputs)
            vertices.append(result.vertices.float().cpu().numpy())
            keypoints.append(result.keypoints.float().cpu().numpy())
            done += len(vertices[-1])
            ctx.progress(done / total, f"{side} hand: {done}/{total}")
        out[hand_array_name(side, "vertices")] = np.concatenate(vertices)
        out[hand_array_name(side, "keypoints")] = np.concatenate(keypoints)
    return JobResult({"model": params["model"], "sides": sides}, out)


def _tensor(array: np.ndarray | None, rows: slice, device: str):
    import torch

    if array is None:
        return None
    return torch.tensor(np.asarray(array[rows], dtype=np.float32), device=device)  # copies the read-only view


def _pose_arrays() -> dict[str, ArraySpec]:
    limits = {"global_orient": POSE_LIMIT, "hand_pose": POSE_LIMIT, "betas": BETAS_LIMIT, "transl": TRANSL_LIMIT}
    docs = {"global_orient": "wrist rotation, axis-angle (radians), model frame",
            "hand_pose": "15 finger joint rotations, axis-angle, MANO joint order, world-aligned",
            "betas": f"shape coefficients ({NUM_BETAS}); zeros when absent",
            "transl": "wrist translation in metres; zeros when absent"}
    specs = {}
    for side in SIDES:
        for name, size in POSE_FIELDS.items():
            core = name in ("global_orient", "hand_pose")
            specs[hand_array_name(side, name)] = ArraySpec(
                shape=(f"batch_{side}", size), required=False, min=-limits[name], max=limits[name],
                requires=((hand_array_name(side, "hand_pose"),) if name == "global_orient"
                          else (hand_array_name(side, "global_orient"),)),
                doc=f"{side} hand: {docs[name]}" + ("" if core else " (optional)"))
    return specs


def _check_forward(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    if not any(hand_array_name(side, "global_orient") in arrays for side in SIDES):
        raise invalid("arrays.right.global_orient", "no hand given",
                      "send <side>.global_orient and <side>.hand_pose for the left and/or right hand")
    _check_model_available(params, arrays)


MODEL_PARAM = String(doc="hand model", default="open", choices=HAND_MODELS)


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("builtin", "diagnostics: ping, echo, sleep"))
    registry.add_engine(Engine("hands", "hand models: the open hand always, MANO when its files are configured"))
    registry.add_kind(JobKind("ping", ping, description="a job that returns at once (measures the job path)",
                              returns={"pong": "true", "time": "server time (s)", "device": "device it ran on"}))
    registry.add_kind(JobKind("echo", echo, Schema(params={"text": String(doc="returned as is", default=""),
                                                           "data": JsonObject(doc="returned as the result's data",
                                                                              default={})},
                                                   extra_arrays=ANY_ARRAY),
                              description="returns its text, data and arrays unchanged (a stand-in for any result)",
                              returns={"text": "the text", "*": "each data entry and each input array"}))
    sleep_doc = "sleeps in steps with progress; cancellable at each step (for tests)"
    registry.add_kind(JobKind("sleep", sleep, SLEEP_SCHEMA, timeout=600, description=sleep_doc,
                              returns={"steps": "steps done", "device": "device it ran on"}))
    registry.add_kind(JobKind("sleep.gpu", sleep, SLEEP_SCHEMA, device="gpu", timeout=600,
                              description=sleep_doc + ", as GPU-class work (one at a time per device)",
                              returns={"steps": "steps done", "device": "device it ran on"}))
    registry.add_kind(JobKind(
        "hand_model", hand_model, engine="hands", timeout=120, check=_check_model_available,
        schema=Schema(params={"model": MODEL_PARAM,
                              "sides": ListOf(doc="hands to return", default=list(SIDES), min_items=1, max_items=2,
                                              unique=True, item=String(choices=SIDES))},
                      arrays={"betas": ArraySpec(shape=(NUM_BETAS,), required=False, min=-BETAS_LIMIT,
                                                 max=BETAS_LIMIT, doc="shape the rest mesh and joints (optional)")}),
        description="rest rig of a hand model for a DCC: mesh, faces, joints, skin weights, blend shapes",
        returns={"rigs": "per side the rig metadata (HandRig.metadata(), plus betas when shaped)",
                 "<side>.<field>": "the arrays of HandRig.to_arrays(); rebuild with HandRig.from_arrays"}))
    registry.add_kind(JobKind(
        "forward_hands", forward_hands, engine="hands", device="gpu", timeout=120, check=_check_forward,
        schema=Schema(params={"model": MODEL_PARAM}, arrays=_pose_arrays(),
                      dims={f"batch_{side}": (1, MAX_BATCH) for side in SIDES}),
        description="pose parameters per hand (batched) to vertices and keypoints",
        returns={"sides": "the sides computed", "<side>.vertices": "(B, V, 3) float32, metres",
                 "<side>.keypoints": "(B, 21, 3) float32, InterHand2.6M keypoint order"}))


__all__ = ["echo", "forward_hands", "hand_model", "ping", "register_jobs", "sleep"]
