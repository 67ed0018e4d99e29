"""Job kinds of the hand models: ``hand_model`` (a rig for Blender) and ``forward_hands`` (pose
parameters → vertices and keypoints). The engine also reports ``welcome.hand_models`` and warms the
hand models up when the server starts.

Array names are ``<side>.<field>``, e.g. ``right.hand_pose`` in and ``right.vertices`` out.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping

import numpy as np

from handforge.hands.registry import entry, hand_model_status
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry
from handforge.server.schema import ArraySpec, ListOf, Schema, String, invalid
from handforge_shared.poses import (BETAS_LIMIT, DEFAULT_HAND_MODEL, HAND_MODELS, POSE_FIELDS, TRANSL_LIMIT,
                                    hand_array_name)
from handforge_shared.protocol import ErrorCode, ProtocolError
from handforge_shared.skeleton import NUM_BETAS, SIDES

MAX_BATCH = 4096
FORWARD_CHUNK = 256
# Generous bounds that still catch unit mistakes (degrees for radians, millimetres for metres).
POSE_LIMIT = 4 * np.pi
# per pose field: every job that takes a hand's pose arrays bounds them alike
POSE_LIMITS = {"global_orient": POSE_LIMIT, "hand_pose": POSE_LIMIT, "betas": BETAS_LIMIT, "transl": TRANSL_LIMIT}

def cached_hand_model(ctx: JobContext, name: str):
    """A loaded HandModel from the server's model cache (once per model and device; reloaded when
    its files change); a model that cannot load becomes ``missing_weights``."""
    from handforge import config
    from handforge.hands.errors import HandModelError
    from handforge.hands.registry import load_hand_model

    model_entry = entry(name)
    files = config.value(model_entry.setting.key) if model_entry.setting is not None else None
    try:
        return ctx.model(("hands", name), lambda device: load_hand_model(name, device=device), checkpoint=files,
                         label=f"the {name} hand model")
    except HandModelError as exc:
        raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), model_entry.hint()) from None


def require_hand_model(name: str, field: str = "params.model") -> None:
    """Refuse a request before it is queued when hand model ``name`` (the request's ``field``) cannot be loaded
    here (every engine's check calls this: the job would otherwise run until it needs the model)."""
    status = entry(name).status()
    if not status["available"]:
        raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"hand model {name!r} is not available here: "
                            f"{status['reason']}", status["hint"], field=field)


def check_model_available(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    require_hand_model(params["model"])


def hand_model(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    model = cached_hand_model(ctx, params["model"])  # a "cpu"-class job: rigs are numpy, no need for the GPU
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

    model = cached_hand_model(ctx, params["model"])
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


def pose_array_specs(rows: Callable[[str], int | str], doc: Callable[[str, str], str],
                     name: Callable[[str, str], str] = hand_array_name,
                     partner: Callable[[str, str], str] | None = None) -> dict[str, ArraySpec]:
    """Both hands' pose arrays as a job kind takes them (every field of ``POSE_FIELDS``, optional, bounded alike by
    ``POSE_LIMITS``): the one home of these specs, which four engines wrote each their own way. ``rows(side)``: the
    first dimension (a size or a dimension's name); ``doc(side, field)``; ``name(side, field)``: the array's name
    (default ``<side>.<field>``); ``partner(side, field)``: the array it needs beside it (default: global_orient and
    hand_pose need each other, the rest needs global_orient: a hand is its rotations)."""
    def default_partner(side: str, field: str) -> str:
        return name(side, "hand_pose" if field == "global_orient" else "global_orient")

    partner = partner or default_partner
    return {name(side, field): ArraySpec(shape=(rows(side), size), required=False, min=-POSE_LIMITS[field],
                                         max=POSE_LIMITS[field], requires=(partner(side, field),),
                                         doc=doc(side, field))
            for side in SIDES for field, size in POSE_FIELDS.items()}


def _pose_array_specs() -> dict[str, ArraySpec]:
    docs = {"global_orient": "wrist rotation, axis-angle (radians), model frame",
            "hand_pose": "15 finger joint rotations, axis-angle, MANO joint order, world-aligned",
            "betas": f"shape coefficients ({NUM_BETAS}); zeros when absent",
            "transl": "wrist translation in metres; zeros when absent"}
    return pose_array_specs(lambda side: f"batch_{side}", lambda side, field: f"{side} hand: {docs[field]}" + (
        "" if field in ("global_orient", "hand_pose") else " (optional)"))


def _check_forward(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    if not any(hand_array_name(side, "global_orient") in arrays for side in SIDES):
        raise invalid("arrays", "no hand given",  # (neither side was sent: not the right hand's array)
                      "send <side>.global_orient and <side>.hand_pose for the left and/or right hand")
    check_model_available(params, arrays)


def capabilities() -> dict[str, Any]:
    """``welcome.hand_models``: each hand model, available here or why not and what to set."""
    return {"hand_models": hand_model_status()}


def warm_up() -> None:
    """Import the hand models and check their files once, before the first job or hello needs them."""
    hand_model_status()


MODEL_PARAM = String(doc="hand model", default=DEFAULT_HAND_MODEL, choices=HAND_MODELS)


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("hands", "hand models: the open hand always, MANO when its files are configured",
                               capabilities=capabilities, warm_up=warm_up))
    registry.add_kind(JobKind(
        "hand_model", hand_model, engine="hands", timeout=120, check=check_model_available,
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
        schema=Schema(params={"model": MODEL_PARAM}, arrays=_pose_array_specs(),
                      dims={f"batch_{side}": (1, MAX_BATCH) for side in SIDES}),
        description="pose parameters per hand (batched) to vertices and keypoints",
        returns={"sides": "the sides computed", "<side>.vertices": "(B, V, 3) float32, metres",
                 "<side>.keypoints": "(B, 21, 3) float32, InterHand2.6M keypoint order"}))


__all__ = ["MODEL_PARAM", "cached_hand_model", "capabilities", "check_model_available", "forward_hands", "hand_model",
           "register_jobs", "require_hand_model", "warm_up"]
