"""The ``image.generate`` job kind and the image engines' availability (light at import: torch,
diffusers and the pipeline are imported inside the handler).

Engines in ``welcome.engines``: ``attentionhand`` (image.sd_model + image.guidance) and ``controlnet``
(image.sd_model + image.controlnets), so a client greys out each with its own reason; ``image`` owns
the job kind and is available when either is.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from handforge_shared.poses import (
    DEFAULT_HAND_MODEL,
    HAND_MODELS,
    POSE_FIELDS,
    hand_array_name,
)
from handforge_shared.protocol import ErrorCode, ProtocolError
from handforge_shared.skeleton import SIDES

from handforge import config
from handforge.engines.blender_inputs import CAMERA_SCALE_HINT, WORLD_LIMIT, camera_arrays, check_rigid
from handforge.engines.hands.jobs import pose_array_specs, require_hand_model
from handforge.engines.image.conditioning import CONTROL_KINDS
from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_CONFIG, SD_MODEL
from handforge.engines.image.tokens import HAND_WORDS, truncated
from handforge.render.camera import SENSOR_FITS
from handforge.runtime import torch_dtype
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry, parts_reason
from handforge.server.schema import (
    ArraySpec,
    Boolean,
    Integer,
    ListOf,
    Number,
    Schema,
    String,
    invalid,
)

ENGINES = {"attentionhand": (SD_MODEL.key, GUIDANCE.key), "controlnet": (SD_MODEL.key, CONTROLNETS.key)}
DTYPES = ("auto", "float32", "float16", "bfloat16")
# Texts travel in the 64 KiB message header, so their limits count them JSON-escaped as it carries them (a
# non-ASCII character takes 6 bytes, one beyond the BMP 12): the transfer's three prompts, the controls and its
# source labels (half the header) at their limits still fit. CLIP reads 77 tokens of a prompt anyway.
PROMPT_MAX = 8000
CONTROL_NAME_MAX = 600
AUTO = "auto"  # the first engine whose weights are here: the default, so the first click works with either set up
# the two ways to send the camera, by their arrays' names (errors name these, or the one at fault)
OPENCV_CAMERA = "camera.K, camera.R and camera.t"
INTRINSICS_LIMIT_PX = 1e7  # |camera.K|'s entries, pixels
BLENDER_CAMERA = "camera.matrix_world, camera.lens, camera.sensor and camera.shift"

IMAGE_ENGINES: dict[str, Engine] = {
    "attentionhand": Engine("attentionhand", "AttentionHand: SD 1.x + the mesh-image guidance module + TAS "
                                             "(arXiv:2407.18034)", settings=ENGINES["attentionhand"],
                            availability=lambda: _sd_complete() or _guidance_present()),
    "controlnet": Engine("controlnet", "SD 1.x + your ControlNets on our renders (depth, normals, skeleton, "
                                       "openpose, mesh)", settings=ENGINES["controlnet"],
                         availability=lambda: _sd_complete() or _controlnets_ready()),
}


def _sd_complete() -> str | tuple[str, str]:
    """The SD model's setting exists (checked before): does it hold an SD model's parts? (An empty folder made
    the engine available, and the first click failed.)"""
    from handforge.engines.image.layout import missing_parts

    path = config.value(SD_MODEL.key)
    missing = missing_parts(SD_MODEL.key, Path(path))
    if missing:
        return (f"{SD_MODEL.key} = {path}: {missing}", f"point it at a diffusers SD 1.x folder or one .safetensors "
                                                       f"file (`handforge models check {path}` says what it holds)")
    return sd_text_to_image_status(path)


def sd_text_to_image_status(path) -> str | tuple[str, str]:
    """Why the SD model at ``path`` cannot generate from text (an inpainting UNet: ready before, every job failing
    at its first step naming no file), with its fix; '' when it can or its configs cannot be read (the load says
    why). From the config.json files alone, for the engines' status lines (this one's and pose transfer's)."""
    from handforge.engines.image.loading import sd_latent_problem

    problem = sd_latent_problem(path, config.value(SD_CONFIG.key))
    return (f"{SD_MODEL.key} = {path}: {problem}", f"point {SD_MODEL.key} at an SD 1.x text-to-image model "
                                                   "(handforge models fetch sd15)") if problem else ""


def _controlnet_problems() -> tuple[str, dict[str, str]]:
    """The ControlNets folder and, for each ControlNet in it, why its load would fail (``controls.problems``)."""
    from handforge.engines.image.controls import problems

    folder = config.value(CONTROLNETS.key)
    return folder, problems(folder)


def _controlnets_ready() -> str | tuple[str, str, str]:
    """The controlnet engine's ControlNets: why they cannot run, or the note of those broken and of the folders of
    other models passed over, from one read of their headers (the engine's availability and its note read them
    once each: twice per status)."""
    from handforge.engines.image.controls import passed_over

    folder, problems = _controlnet_problems()
    others = [f"{CONTROLNETS.key}: {name} holds a {other}, not a ControlNet: passed over"
              for name, other in passed_over(folder).items()]
    return _controlnets_present(folder, problems, others) or \
        ("", "", "; ".join(filter(None, [_broken_controlnets(folder, problems), *others])))


def _controlnets_present(folder: str, problems: dict[str, str], others: list[str]) -> str | tuple[str, str]:
    """The ControlNets folder exists (checked before): does it hold any ControlNet (``_controlnet_problems``)?
    ``others`` says the folders of other models there."""
    names = list(problems)
    # (each of a config.json of other widths than its weights: ready, and every job's load failed)
    if names and all(problems.values()):
        fixes = {name: _misfit_fix(Path(folder) / name, problem, "as they were made for",
                                   "ControlNets made for this SD model") for name, problem in problems.items()}
        other = ([] if all(fixes.values()) else
                 ["correct them, or import the ControlNets again (handforge models import DIR --kind controlnet)"])
        return ("; ".join(f"{CONTROLNETS.key}: {problem}" for problem in problems.values()),
                "; ".join(dict.fromkeys([fix for fix in fixes.values() if fix] + other)))
    if names:
        return ""
    reason, hint = no_controlnet(folder)
    return reason + "".join(f"; {other}" for other in others), hint


def no_controlnet(folder: str | Path) -> tuple[str, str]:
    """Why the ControlNets folder ``folder`` (it exists) gives no ControlNet, and the fix: the engine's status and
    `handforge models check` say it alike."""
    return (f"{CONTROLNETS.key} = {folder} holds no ControlNet (a folder with config.json and its weights per "
            "ControlNet)", "put SD 1.x ControlNets there (handforge models import DIR --kind controlnet, or handforge "
            "models fetch controlnet-depth), or point the setting at the folder that has them")


def _broken_controlnets(folder: str, problems: dict[str, str]) -> str:
    """The note of a controlnet engine that runs with some of its ControlNets only (``_controlnet_problems``): a
    broken one was unsaid until a job that named it failed (one that named none took it, and failed too, until
    ``controls.by_default`` left the broken ones out)."""
    broken = {name: problem for name, problem in problems.items() if problem}
    if not broken:
        return ""
    # (each problem says its own fix: correct the config.json, or import the ControlNet again)
    return "; ".join(broken.values()) + f" (jobs that name {'it' if len(broken) == 1 else 'them'} fail, jobs that " \
        f"name no controls leave {'it' if len(broken) == 1 else 'them'} out; handforge models import DIR --kind " \
        "controlnet imports one again)"


def _guidance_present() -> str | tuple[str, str]:
    """The guidance module's setting exists (checked before): is it a ControlNet folder? (Else ``auto`` took
    a training run's folder, or the weights file, for a ready engine, and the first click failed.)"""
    from handforge.engines.checkpoints import CONFIG_NAME, checkpoint_problem, saved_class
    from handforge.engines.image.loading import controlnet_problem, sd_fit_problem

    folder = Path(config.value(GUIDANCE.key))
    if folder.is_dir() and (folder / CONFIG_NAME).is_file() and saved_class(folder) in (None, "ControlNetModel"):
        # (a config.json of other widths than its weights was ready, and every job's load failed in diffusers' words)
        problem = controlnet_problem(folder) or sd_fit_problem(folder, config.value(SD_MODEL.key),
                                                               config.value(SD_CONFIG.key))
        return (f"{GUIDANCE.key} = {problem}", _misfit_fix(
            folder, problem, "as it was made for", "a guidance module made for this SD model (handforge train "
            "guidance trains one on it)") or "correct it, or train or import the guidance module again "
            f"(handforge models check {folder} checks it whole)") if problem else ""
    return (f"{GUIDANCE.key} = {checkpoint_problem(folder, 'ControlNetModel')}",
            f"point it at a ControlNetModel folder (the model/ folder of a `handforge train guidance` run, or handforge "
            f"models import DIR --kind guidance): {GUIDANCE.how_to_set_in_line()}")


def _misfit_fix(path: Path, problem: str, made: str, for_this: str) -> str:
    """The fix of ``problem``, said of the ControlNet folder ``path``, when it is that it does not fit the SD model
    (``sd_fit``): an SD model of the width it was ``made`` for, or ``for_this`` (SD 2.x ControlNets on SD 1.x were
    told to be corrected or imported again, which mends nothing); '' for any other problem (its own fix)."""
    from handforge.engines.image.loading import sd_fit, sd_fit_problem

    sd, sd_config = config.value(SD_MODEL.key), config.value(SD_CONFIG.key)
    found = sd_fit(path, sd, sd_config) if sd else None
    if found is None or problem != sd_fit_problem(path, sd, sd_config):
        return ""
    key, a, b = found
    if key == "in_channels":  # (a UNet of other latent channels is no text-to-image model: refused)
        return f"use {for_this} ({key} {a})"
    return f"point {SD_MODEL.key} at an SD model whose UNet has {key} {b}, {made}, or use {for_this} ({key} {a})"


def _image_availability() -> str | tuple[str, str]:
    """Available when either engine is; else both reasons, and both fixes."""
    statuses = {name: engine.status() for name, engine in IMAGE_ENGINES.items()}
    if any(status.available for status in statuses.values()):
        return ""
    return (parts_reason({name: s.reason for name, s in statuses.items()}),
            "; ".join(dict.fromkeys(s.hint for s in statuses.values() if s.hint)))  # the same fix once


def ready_engine(requested: str, order: tuple[str, ...], controls: list[str]) -> str:
    """``requested``, or for ``auto`` the first of ``order`` whose weights are here (``controlnet`` when
    ControlNets are named; ``order[0]`` when none is, whose check then says what to set)."""
    if requested != AUTO:
        return requested
    if controls:
        return "controlnet"
    return next((name for name in order if IMAGE_ENGINES[name].status().available), order[0])


def passed_over(asked: str, ran: str, order: tuple[str, ...], controls: list[str], word: str = "engine") -> list[str]:
    """The warning for ``auto`` having run ``ran`` past an engine of ``order`` whose own weights are set but cannot
    run (misshapen, of another SD model), with why and the fix; none when they are unset (nothing was set up to
    pass over) or ``ran`` was asked for. Its images came from the other engine without a word."""
    if asked != AUTO or controls:  # (named ControlNets choose the controlnet engine: nothing passed over)
        return []
    warnings = []
    for name in order[:order.index(ran)]:
        status = IMAGE_ENGINES[name].status()
        if config.value(ENGINES[name][1]) is not None and not status.available:
            warnings.append(f"{word} auto ran {ran}, not {name}: {status.reason}" + (
                f" ({status.hint}; or set {word} to {ran})" if status.hint else ""))
    return warnings


def _require_engine(name: str) -> None:
    status = IMAGE_ENGINES[name].status()
    if not status.available:
        raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"engine {name!r} cannot run: {status.reason}", status.hint)


def check_target(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """The image to make: its size, one camera that is one, a hand, a hand model here (every engine that
    draws the rigs' pose through a camera checks these; image.transfer's ihpt too)."""
    if params["width"] % 8 or params["height"] % 8:
        raise invalid(f"params.{'width' if params['width'] % 8 else 'height'}", f"{params['width']}×"
                      f"{params['height']}: both sides must be multiples of 8",
                      "round the camera's resolution to a multiple of 8")
    given = [n for n in ("camera.K", "camera.matrix_world") if n in arrays]
    if len(given) != 1:  # (named "arrays.camera", no array's name; neither set is at fault alone: "arrays")
        raise invalid("arrays", f"{'two cameras were sent' if given else 'no camera was sent'}: send one, "
                      f"{OPENCV_CAMERA} (OpenCV) or {BLENDER_CAMERA} (Blender's settings)")
    if not any(hand_array_name(s, "global_orient") in arrays for s in SIDES):
        raise invalid("arrays.right.global_orient", "no hand given",
                      "send <side>.global_orient and <side>.hand_pose for the left and/or right hand")
    check_rigs(arrays)
    request_camera(params, arrays)  # a camera that is not one: refused now, not after SD has loaded
    require_hand_model(params["hand_model"], "params.hand_model")


def check_rigs(arrays: Mapping[str, np.ndarray]) -> None:
    """Each rig's (and a Blender camera's) matrix_world a rotation and a translation, as the labelled export
    wants it: the labels' pose (params_world) cannot carry a scale the image would show."""
    for side in SIDES:
        name = hand_array_name(side, "matrix_world")
        if name in arrays:
            check_rigid(f"arrays.{name}", np.asarray(arrays[name])[None], lambda _, side=side: f"the {side} hand's rig")
    if "camera.matrix_world" in arrays:
        check_rigid("arrays.camera.matrix_world", np.asarray(arrays["camera.matrix_world"])[None],
                    lambda _: "the camera", CAMERA_SCALE_HINT)


def check_request(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    """Cross-field rules, for the engine that will run (``auto`` resolved; the job resolves it the same way)."""
    if params.get("tas") and params.get("tas_strength") == 0:
        raise invalid("params.tas_strength", "0 with tas on: TAS would move the latents by nothing, at the cost of "
                      "its attention gradient each step", "give tas_strength above 0, or set tas off")
    check_target(params, arrays)
    params = {**params, "engine": ready_engine(params["engine"], tuple(ENGINES), params["controls"])}
    if params["tas_steps"] is not None and params["tas_steps"] > params["steps"]:
        raise invalid("params.tas_steps", f"{params['tas_steps']} is more than the {params['steps']} steps")
    if params["engine"] == "attentionhand" and params["controls"]:
        raise invalid("params.controls", "controls choose ControlNets of the controlnet engine",
                      "leave them out for attentionhand, or set engine to 'controlnet'")
    _require_engine(params["engine"])
    if params["engine"] == "controlnet":
        from handforge.engines.image.controls import ControlError, resolve

        try:
            resolve(params["controls"], config.value(CONTROLNETS.key))
        except ControlError as exc:
            raise invalid("params.controls", str(exc)) from None


def cached_pipeline(ctx: JobContext, params: dict[str, Any], weights: list[str]):
    """The pipeline of these weights, dtype and offload setting from the server's model cache."""
    from handforge.engines.checkpoints import checkpoint_name
    from handforge.engines.image.loading import WeightsError, build_pipeline

    sd, sd_config = config.value(SD_MODEL.key), config.value(SD_CONFIG.key)
    dtype = torch_dtype(params["dtype"], ctx.device)
    offload = params["cpu_offload"]
    if offload and not ctx.device.startswith("cuda"):  # (refused at submit unless the job may run on a GPU)
        raise JobError(ErrorCode.INVALID_PARAMS, "cpu_offload moves models between the CPU and a GPU; this job "
                       f"runs on {ctx.device}", "turn cpu_offload off")

    def load(device: str):
        pipe = build_pipeline(sd, weights, sd_config, dtype=dtype, device="cpu" if offload else device,
                              check=ctx.check_cancelled)
        if offload:  # each model goes to the GPU only while it runs (diffusers + accelerate)
            pipe.enable_model_cpu_offload(device=device)
        return pipe

    # the guides' files are checkpoints, not part of the key: a guide rewritten in place (retrained) replaces its
    # pipeline (its signature in the key made it another entry, and the old pipeline, SD model and all, stayed cached)
    key = ("image", str(sd), tuple(weights), str(dtype), offload)
    guides = " + ".join(dict.fromkeys(checkpoint_name(w) for w in weights))  # (one folder given twice loads once)
    label = (f"the SD model {checkpoint_name(sd)} with {guides} ({str(dtype).removeprefix('torch.')}"
             + (", CPU offload)" if offload else ")"))
    try:
        # (and sd_config, a single-file model's config folder: another one, or one edited, went unseen until a restart)
        return ctx.model(key, load, checkpoint=(sd, sd_config, *weights), label=label)
    except WeightsError as exc:
        raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), weights_hint(exc)) from None


def weights_hint(exc) -> str:
    """The setting that holds the weights a ``WeightsError`` names, and how to check them: the user
    mends that one (a hint listing every image setting sent them looking through all)."""
    settings = (SD_CONFIG, SD_MODEL, GUIDANCE, CONTROLNETS)  # the config before the model: it may lie inside it
    if exc.path is not None:
        for setting in settings:
            value = config.value(setting.key)
            folder = None if value is None else Path(value).expanduser()
            if folder is not None and (exc.path == folder or folder in exc.path.parents):
                return f"check {setting.key} = {value}: handforge models check {exc.path}"
    return f"check {', '.join(s.key for s in settings)} (handforge models check)"


def request_hands(arrays: Mapping[str, np.ndarray]):
    from handforge_shared.poses import HandPose

    hands = {}
    for side in SIDES:
        if hand_array_name(side, "global_orient") not in arrays:
            continue
        # betas and transl are optional (zeros), as the schema says
        fields = {name: np.asarray(arrays.get(hand_array_name(side, name), np.zeros(size)), np.float64).reshape(size)
                  for name, size in POSE_FIELDS.items()}
        hands[side] = HandPose(**fields)
    return hands


def hand_model_for(ctx: JobContext, name: str):
    """The hand model on the CPU (conditioning renders with numpy and GL), through the model cache: on a CPU
    device the hands engine's own entry; on a GPU a CPU copy of its own, labelled so (both were "the mano hand
    model", and a CPU job loaded the same model twice under that one name)."""
    from handforge.engines.hands.jobs import cached_hand_model
    from handforge.hands.errors import HandModelError
    from handforge.hands.registry import entry, load_hand_model

    if ctx.device == "cpu":
        return cached_hand_model(ctx, name)
    model_entry = entry(name)
    files = config.value(model_entry.setting.key) if model_entry.setting is not None else None
    try:
        return ctx.model(("image", "hands", name), lambda device: load_hand_model(name), checkpoint=files,
                         label=f"the {name} hand model (a CPU copy for the pose renders)")
    except HandModelError as exc:
        raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), model_entry.hint()) from None


def hand_model_labels(name: str) -> dict[str, str]:
    """What an image's labels say of its hand model, as the labelled export's do: the pose parameters
    mean nothing without it (image.transfer reads them back), and the image inherits its licence."""
    from handforge.hands.registry import entry

    return {"hand_model": name, "hand_model_licence": entry(name).licence}


def request_camera(params: dict[str, Any], arrays: Mapping[str, np.ndarray]):
    """The OpenCV camera in the hand models' axes: given as K/R/t, or as a Blender camera's settings
    converted by the one camera model (``from_blender``) as the labelled export does. A bad one is
    refused before the job is queued (``check_request`` builds it once too)."""
    from handforge_shared.skeleton import MODEL_TO_BLENDER

    from handforge.render.camera import BlenderCamera, Camera, CameraError, from_blender

    try:
        if "camera.K" in arrays:
            return Camera(arrays["camera.K"], arrays["camera.R"], arrays["camera.t"], params["width"], params["height"])
        (sensor_w, sensor_h), (shift_x, shift_y) = arrays["camera.sensor"], arrays["camera.shift"]
        aspect_x, aspect_y = params["pixel_aspect"]
        settings = BlenderCamera(matrix_world=arrays["camera.matrix_world"], lens=float(arrays["camera.lens"][0]),
                                 sensor_width=float(sensor_w), sensor_height=float(sensor_h),
                                 sensor_fit=params["sensor_fit"], shift_x=float(shift_x), shift_y=float(shift_y),
                                 resolution_x=params["width"], resolution_y=params["height"],
                                 pixel_aspect_x=aspect_x, pixel_aspect_y=aspect_y)
        return from_blender(settings, world_to_blender=MODEL_TO_BLENDER)
    except CameraError as exc:  # the array (or param) at fault, where one is: "arrays.camera" was no array's name
        opencv = "camera.K" in arrays
        named = {"K": "arrays.camera.K", "R": "arrays.camera.R", "t": "arrays.camera.t"} if opencv else \
            {"matrix_world": "arrays.camera.matrix_world", "sensor_fit": "params.sensor_fit"}
        if exc.value in named:
            raise invalid(named[exc.value], str(exc)) from None
        raise invalid("arrays", f"{OPENCV_CAMERA if opencv else BLENDER_CAMERA} make no camera: {exc}") from None


def placed_hands(hand_model, hands: dict, arrays: Mapping[str, np.ndarray]) -> dict:
    """Hands posed in their armature's space moved by ``<side>.matrix_world`` into the Blender world
    (as the labelled export moves them); hands without one are already in the world."""
    from handforge.export.blender_scene import posed_hands

    moved = {s: hand_array_name(s, "matrix_world") for s in hands if hand_array_name(s, "matrix_world") in arrays}
    if not moved:
        return hands
    matrices = {s: np.asarray(arrays[name], np.float64) for s, name in moved.items()}
    return {**hands, **{s: h["pose"] for s, h in posed_hands(hand_model, {s: hands[s] for s in moved},
                                                            matrices).items()}}


def refine_skipped(params: dict[str, Any], box: list[float] | None) -> list[str]:
    """The warning for refine_hands skipped on hands whose box is under one latent cell (``refine.refinable``), or
    none (the box itself, too small or empty, is ``out_of_view``'s to say)."""
    from handforge.engines.image.refine import MIN_SIDE, refinable

    if not params["refine_hands"] or box is None or min(box[2], box[3]) <= 0 or refinable(box):
        return []
    return [f"refine_hands skipped: nothing to refine in a box under {MIN_SIDE:g} pixels a side"]


def cpu_half_warning(params: dict[str, Any], device: str) -> list[str]:
    """The warning for float16 asked for on the CPU, or none: it runs, slower than float32 (torch's CPU float16
    kernels; auto is float32 there), and only the server's log had a word of it, diffusers' that it would fail."""
    if params["dtype"] != "float16" or device.startswith("cuda"):
        return []
    return [f"dtype float16 on {device} runs slower than float32 there (the CPU's float16 kernels): dtype auto "
            "(float32 on the CPU) or float32 is faster"]


CAMERA_IN_HAND = 0.012  # m: a camera closer than this to a hand's bones (a finger's or the palm's half-thickness) is in it


def out_of_view(view) -> list[str]:
    """The warnings for hands the image cannot follow, or none: no hand in the camera's view; the hands' box under one
    cell of the latent image (far from the camera: before, said only when refine_hands was on); the camera inside a
    hand, nearer its bones (keypoint to parent keypoint) than ``CAMERA_IN_HAND`` (its control images are the inside
    of the mesh). A hand that only reaches behind the camera, seen in part, is no warning."""
    from handforge.engines.image.refine import MIN_SIDE
    from handforge_shared.skeleton import KEYPOINT_PARENTS

    box = view.box
    if box is None or box[2] <= 0 or box[3] <= 0:
        return ["no hand is in the camera's view, so the image follows no pose: aim the camera at the hands"]
    warnings = []
    if max(box[2], box[3]) < MIN_SIDE:
        warnings.append(f"the hands' box is {box[2]:.2g} × {box[3]:.2g} pixels, under {MIN_SIDE:g} a side (one cell "
                        "of the latent image: the hands are far from the camera, or all but out of its view), too "
                        "small for the image to follow their pose: move the camera nearer the hands")
    children = [k for k, parent in enumerate(KEYPOINT_PARENTS) if parent >= 0]
    parents = [KEYPOINT_PARENTS[k] for k in children]
    for side, hand in view.hands.items():
        points = np.asarray(hand["keypoints_camera"], np.float64)  # the camera at the origin
        a, b = points[parents], points[children]
        along = np.clip(np.einsum("ij,ij->i", -a, b - a) / np.maximum(np.einsum("ij,ij->i", b - a, b - a), 1e-12), 0, 1)
        nearest = float(np.linalg.norm(a + along[:, None] * (b - a), axis=1).min())
        if nearest < CAMERA_IN_HAND:
            warnings.append(f"the camera is inside the {side} hand ({nearest * 1000:.0f} mm from its bones), so the "
                            "image cannot follow its pose: move the camera out of the hand")
    return warnings


def tas_skipped(losses: list[list[float | None]], dtype) -> list[str]:
    """The warning for TAS updates skipped (an image's loss or gradient not finite: None in its losses), or none:
    the image was sampled without them, and the losses alone did not say so. The cause said for the ``dtype`` the
    job ran in (float16's overflow was said of float32 runs too)."""
    import torch

    skipped = sum(loss is None for step in losses for loss in step)
    if not skipped:
        return []
    total = sum(len(step) for step in losses)
    why = ("as float16 overflows; dtype float32 or bfloat16 avoids it" if dtype == torch.float16 else
           f"in {str(dtype).removeprefix('torch.')}, where nothing overflows: the weights or the inputs hold a NaN or an "
           "infinity (handforge models check finds such weights)")
    return [f"TAS skipped {skipped} of its {total} updates (image × step): the attention loss or its gradient was not "
            f"finite, {why}"]


def generate(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    from handforge.engines.image.cancel_points import cancel_points
    from handforge.engines.image.conditioning import condition
    from handforge.engines.image.controls import resolve
    from handforge.engines.image.pipeline import image_generators, latent_preview
    from handforge.engines.image.refine import refinable
    from handforge.engines.image.tokens import hand_tokens

    asked = params["engine"]
    params = {**params, "engine": ready_engine(asked, tuple(ENGINES), params["controls"])}
    camera = request_camera(params, arrays)
    hand_model = hand_model_for(ctx, params["hand_model"])
    cond = condition(hand_model, placed_hands(hand_model, request_hands(arrays), arrays), camera)
    if params["engine"] == "attentionhand":
        weights, kinds = [str(config.value(GUIDANCE.key))], ["mesh"]
    else:
        controls = resolve(params["controls"], config.value(CONTROLNETS.key))
        weights, kinds = [str(c.path) for c in controls], [c.kind for c in controls]
    pipe = cached_pipeline(ctx, params, weights)
    if params["attention_slicing"]:
        pipe.enable_attention_slicing()
    else:
        pipe.disable_attention_slicing()

    tokens, tagger = hand_tokens(params["prompt"], pipe.tokenizer) if params["tas"] else ([], "")
    steps = params["steps"]
    tas_steps = steps // 2 if params["tas_steps"] is None else params["tas_steps"]

    refine = params["refine_hands"] and cond.local_view is not None and refinable(cond.global_view.box)
    passes = 2 if refine else 1
    device = "cpu" if params["cpu_offload"] else ctx.device
    # (a refine pass of its own, seeded seed + 1, had drawn the next seed's noise)
    generators = image_generators(params["seed"], params["batch"], device)

    def run(view, phase: int, **extra):
        def on_step(i: int, total: int, latents) -> None:
            label = "hands " if phase else ""
            ctx.progress((phase + (i + 1) / total) / passes, f"{label}step {i + 1}/{total}",
                         preview=latent_preview(latents))

        with cancel_points(ctx.check_cancelled, pipe.unet, *pipe.controlnets):  # (within a step, not only between)
            return pipe(params["prompt"], [view.images[k] for k in kinds], negative_prompt=params["negative_prompt"],
                        num_inference_steps=steps, guidance_scale=params["guidance_scale"],
                        control_scales=params["control_scale"], num_images=params["batch"],
                        generator=generators,
                        tas_tokens=[t.index for t in tokens], tas_strength=params["tas_strength"], tas_steps=tas_steps,
                        on_step=on_step, **extra)

    out = run(cond.global_view, 0)
    images, refine_losses = out.images, []
    if passes == 2:  # the hands' box again at full resolution, blended back (refine.py)
        from handforge.engines.image.refine import cut, paste

        size = (params["width"], params["height"])
        local = run(cond.local_view, 1, init_images=cut(images, cond.crop, size), strength=params["refine_strength"])
        images, refine_losses = paste(images, local.images, cond.crop), local.tas_losses
    view = cond.global_view
    data = {"engine": params["engine"], "seed": params["seed"], "controls": kinds,
            "tas": {"tokens": [t.__dict__ for t in tokens], "tagger": tagger, "steps": tas_steps if tokens else 0,
                    "losses": out.tas_losses, "refine_losses": refine_losses},
            "camera": camera.to_dict(), "hands": view.hands, **hand_model_labels(params["hand_model"]),
            "bbox": view.box, "refined_box": cond.crop if passes == 2 else None}
    # said, not silently skipped (refine_hands too: it has no box to refine)
    warnings = (passed_over(asked, params["engine"], tuple(ENGINES), params["controls"])
                + out_of_view(view) + refine_skipped(params, view.box) + cpu_half_warning(params, ctx.device)
                + truncated(pipe.tokenizer, params["prompt"])
                + truncated(pipe.tokenizer, params["negative_prompt"], "negative_prompt"))
    if params["engine"] == "controlnet":
        from handforge.engines.image.controls import controls_left_out

        warnings += controls_left_out(params["controls"])
    if params["tas"] and not tokens:
        warnings.append("TAS did nothing: the prompt has no hand-related word (a verb in -ing such as holding, or "
                        f"the whole words {', '.join(sorted(HAND_WORDS))}) in the part the text encoder reads")
    elif params["tas"] and not tas_steps:  # (its hand words found and listed, and the latents never moved: unsaid)
        why = ("tas_steps is 0" if params["tas_steps"] is not None else
               f"it runs at the first half of the steps by default, 0 of {steps}")
        warnings.append(f"TAS did nothing: {why}; give tas_steps 1 or more (or more steps), or set tas off")
    warnings += tas_skipped(out.tas_losses + refine_losses, pipe.unet.dtype)
    if warnings:
        data["warning"] = "; ".join(warnings)
    return JobResult(data, {"images": images, **{f"control.{k}": view.images[k] for k in kinds}})


def _pose_specs() -> dict[str, ArraySpec]:
    return pose_array_specs(lambda side: 1, lambda side, field: f"{side} hand {field} (one pose; HandPose fields)"
                            + ("" if field in ("global_orient", "hand_pose") else ", optional"))


def register_jobs(registry: Registry) -> None:
    for engine in IMAGE_ENGINES.values():
        registry.add_engine(engine)
    registry.add_engine(Engine("image", "hand image generation with the attentionhand or controlnet engine",
                               availability=_image_availability))
    registry.add_kind(JobKind(
        "image.generate", generate, engine="image", device="gpu", timeout=1800, check=check_request,
        needs_cuda=("cpu_offload",),
        schema=Schema(
            params={
                "prompt": String(doc="what the image shows", max_length=PROMPT_MAX, escaped=True),
                "negative_prompt": String(doc="what it must not show", default="", max_length=PROMPT_MAX,
                                          escaped=True),
                "engine": String(doc="attentionhand, controlnet, or auto: attentionhand when its weights are here, else "
                                      "controlnet (controlnet when controls are named)", default=AUTO,
                                  choices=(AUTO, *ENGINES)),
                "controls": ListOf(doc="controlnet engine: ControlNet folders, 'name' or 'name:kind' (kind: "
                                       f"{', '.join(CONTROL_KINDS)}); empty: all", default=[], max_items=8,
                                   item=String(max_length=CONTROL_NAME_MAX, escaped=True)),
                "seed": Integer(doc="random seed", default=0, min=0, max=2**63 - 1),
                "steps": Integer(doc="sampling steps (DDIM)", default=20, min=1, max=200),
                "guidance_scale": Number(doc="classifier-free guidance scale", default=7.5, min=1.0, max=30.0),
                "control_scale": Number(doc="ControlNet conditioning scale", default=1.0, min=0.0, max=3.0),
                "tas": Boolean(doc="text attention stage on hand-related tokens", default=True),
                "tas_strength": Number(doc="TAS step size at the first step (halved by the last)", default=20.0,
                                       min=0.0, max=200.0),
                "tas_steps": Integer(doc="TAS at the first N steps (default: half)", default=None, nullable=True,
                                     min=0, max=200),
                "width": Integer(doc="image width = the camera's (multiple of 8)", default=512, min=64, max=2048),
                "height": Integer(doc="image height = the camera's (multiple of 8)", default=512, min=64, max=2048),
                "batch": Integer(doc="images, the k-th (from 0) seeded seed + k: each as it is alone at its seed, "
                                     "but for rounding (a batch sums in another order)",
                                 default=1, min=1, max=16),
                "hand_model": String(doc="hand model of the pose parameters", default=DEFAULT_HAND_MODEL,
                                     choices=HAND_MODELS),
                "sensor_fit": String(doc="Blender camera: its sensor fit", default="AUTO", choices=SENSOR_FITS),
                "pixel_aspect": ListOf(doc="Blender camera: the scene's pixel aspect x, y", default=[1.0, 1.0],
                                       min_items=2, max_items=2, item=Number(min=0.01, max=100.0)),
                "dtype": String(doc="weights' precision (auto: float16 on CUDA, float32 on the CPU)", default="auto",
                                choices=DTYPES),
                "attention_slicing": Boolean(doc="less GPU memory, a little slower", default=False),
                "cpu_offload": Boolean(doc="keep models on the CPU until each runs (8 GB GPUs)", default=False),
                "refine_hands": Boolean(doc="regenerate the hands' box at full resolution and blend it back",
                                        default=False),
                "refine_strength": Number(doc="how much of the box is regenerated (image-to-image strength)",
                                          default=0.6, min=0.05, max=1.0),
            },
            # bounded: a focal length of 1e300 px overflowed the float32 render, and the image came without hands,
            # unsaid (1e7 px is a 1,200 mm lens on a 36 mm sensor at 8192 px, many times over)
            arrays={"camera.K": ArraySpec(shape=(3, 3), required=False, requires=("camera.R", "camera.t"),
                                          min=-INTRINSICS_LIMIT_PX, max=INTRINSICS_LIMIT_PX,
                                          doc="OpenCV intrinsics for width × height"),
                    "camera.R": ArraySpec(shape=(3, 3), required=False, requires=("camera.K",),
                                          doc="world→camera rotation"),
                    "camera.t": ArraySpec(shape=(3,), required=False, requires=("camera.K",),
                                          doc="world→camera translation, metres"),
                    # bounded as the labelled export's: a rig at 1e300 m posed to inf and failed inside the job
                    # as an internal error, a 1e9 mm lens was taken
                    **camera_arrays((), optional=True),
                    **{hand_array_name(s, "matrix_world"): ArraySpec(
                        shape=(4, 4), required=False, min=-WORLD_LIMIT, max=WORLD_LIMIT,
                        requires=(hand_array_name(s, "global_orient"),),
                        doc=f"the {s} hand's armature matrix_world (with a Blender camera)") for s in SIDES},
                    **_pose_specs()}),
        description="prompt + posed hands + camera → images whose hands follow the pose, with their labels",
        returns={"images": "(batch, H, W, 3) uint8", "control.<kind>": "(H, W, 3) uint8 control images",
                 "hands": "per side the export's labels (keypoints_2d, visible, boxes, parameters)",
                 "hand_model": "the hand model the labels' parameters belong to, with hand_model_licence",
                 "tas": "tokens attended (index, token, word), tagger, per-step losses (and the refine pass's), null "
                        "where an update was skipped (a loss or gradient not finite)",
                 "warning": "what did not happen as asked (engine auto passing over weights set but broken, no hand "
                            "in view, refine_hands on hands under 8 pixels, a prompt cut short, TAS with no "
                            "hand-related word, TAS updates skipped), "
                            "only then"}))


__all__ = ["IMAGE_ENGINES", "cached_pipeline", "check_request", "check_target", "cpu_half_warning", "generate",
           "hand_model_for", "hand_model_labels", "out_of_view", "passed_over", "placed_hands", "register_jobs",
           "request_camera", "request_hands", "weights_hint"]
