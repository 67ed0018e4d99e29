"""The ``image.transfer`` job kind: a source image's hands re-posed to the rigs' pose, appearance kept
(light at import: torch, diffusers and the pipelines are imported inside the handler).

Inputs: the source image (``source.image``), optionally its pose (``source.<side>.<field>`` arrays, or
``source_labels``: the labels JSON a HandForge image carries, ``{"hands": {side: {"params_world"}},
"camera"}``), and the target exactly as ``image.generate`` takes it (camera + the rigs' pose arrays).
The result is ``image.generate``'s: ``images`` + the labels of the target pose, so clients import it
the same way. The pipeline comes from the same model cache entry as ``image.generate``'s; the
reference attention is installed for this job only and removed afterwards (``reference.inject``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from handforge_shared.files import parse_json, read_error
from handforge_shared.poses import HAND_MODELS, POSE_FIELDS, HandPose, hand_array_name
from handforge_shared.protocol import DEFAULT_LIMITS, ErrorCode, ProtocolError
from handforge_shared.skeleton import SIDES

from handforge import config
from handforge.engines.hands.jobs import POSE_LIMITS, pose_array_specs
from handforge.engines.image import jobs as image_jobs
from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_CONFIG, SD_MODEL
from handforge.engines.image.tokens import truncated
from handforge.engines.transfer.settings import TARGET_GENERATOR
from handforge.export.labels import label_poses
from handforge.runtime import torch_dtype
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry, parts_reason
from handforge.server.schema import ArraySpec, Number, Schema, String, invalid

KIND = "image.transfer"
ENGINES = ("reference", "ihpt")  # training-free (ControlNet + reference attention) / IHPT's target generator
GUIDES = ("controlnet", "attentionhand")  # the target pose's render goes to your ControlNets or the guidance module
SOURCE_PREFIX = "source."
SOURCE_SIZE = (16, 4096)  # pixels per side; resized to the target's size
# image.generate's parameters that mean nothing here (text attention, hand-box refinement)
NOT_TAKEN = ("engine", "tas", "tas_strength", "tas_steps", "refine_hands", "refine_strength")
BACKGROUND_SHARE = 0.5  # of the progress bar, when a new background is drawn first (as many steps as the transfer)
# source_labels travels in the message header (limits.max_header_bytes, 64 KiB, with every other param): half of it
# (200,000 was promised, and a longer text failed as a too_large header), counted JSON-escaped as the header carries
# it (String.escaped: its quotes take 2 bytes each there, and 32,768 characters of JSON did not fit). A HandForge
# image's labels are 11-14 KB (two hands' keypoints, boxes and parameters: at most about 18 KB however their numbers
# print), about 100 bytes more escaped (some 100 quotes, all ASCII)
SOURCE_LABELS_MAX = DEFAULT_LIMITS.max_header_bytes // 2
# the reference engine's own settings at their defaults (the schema's): the ihpt engine reads none of them (its
# target generator conditions SD on the source image and both poses: no text, no ControlNet), so one set to
# anything else is said in its result's warning. Blender's Transfer Pose always sends prompt, guide and
# reference_scale: at these defaults unless the user changed them
REFERENCE_ONLY = {"prompt": "two hands", "guide": image_jobs.AUTO, "reference_scale": 1.0, "controls": [],
                  "control_scale": 1.0}
# image.generate's settings the ihpt engine reads only to draw a new background (background_prompt): its target
# generator samples without classifier-free guidance, so without one they have no effect, said as the above are
BACKGROUND_ONLY = {"negative_prompt": "", "guidance_scale": 7.5}


def _target_generator() -> str | tuple[str, str]:
    """Whether the setting names a TargetGenerator checkpoint that loads, from its files, the weights' values read
    too (a run folder instead of its model/, a config.json out of limits, or weights holding NaN, was 'available',
    and every job then failed as missing_weights)."""
    from handforge.engines.transfer.model_config import target_generator_problem

    folder = config.value(TARGET_GENERATOR.key)
    problem = target_generator_problem(folder, finite=True)
    if problem:
        return problem, _target_generator_fix()
    return _fits_sd(folder)


def _fits_sd(folder) -> str | tuple[str, str]:
    """The target generator's context width against the SD model's UNet, from their config.json files (without
    torch): one of another SD model was available and its requests accepted, each job refusing it once SD had
    loaded. An SD model whose UNet config cannot be read here is left to its own checks."""
    sd, sd_config = config.value(SD_MODEL.key), config.value(SD_CONFIG.key)
    # (an inpainting model: ihpt was ready, and each job refused it once it loaded; said as the image engines say it)
    latent = image_jobs.sd_text_to_image_status(sd) if sd is not None else ""
    if latent:
        return latent
    problem = sd_width_problem(folder, sd, sd_config)
    return (problem, _fits_sd_fix()) if problem else ""


def sd_width_problem(folder, sd, sd_config=None) -> str:
    """Why the target generator checkpoint in ``folder`` (one that loads) cannot drive the SD model ``sd``'s UNet,
    from their config.json files ('' when it can, or ``sd`` is None or its UNet config cannot be read: left to its
    own checks); ``sd_config``: the configs' folder of a one-file ``sd`` (image.sd_config). `handforge models
    check` says it in the same words."""
    from handforge.engines.checkpoints import config_json, saved_config
    from handforge.engines.transfer.model_config import TARGET_GENERATOR as MODEL
    from handforge.engines.transfer.model_config import width_problem

    if sd is None:
        return ""
    configs = Path(sd) if Path(sd).is_dir() else sd_config  # (one .safetensors: its config folder)
    try:
        unet = config_json(Path(configs) / "unet" / "config.json") if configs is not None else None
        sd_width = unet.get("cross_attention_dim", UNET_CONTEXT) if isinstance(unet, dict) else None
    except (OSError, ValueError):
        return ""
    return width_problem(folder, saved_config(folder, MODEL)["cross_attention_dim"], sd, sd_width) \
        if isinstance(sd_width, int) else ""


UNET_CONTEXT = 1280  # diffusers' UNet2DConditionModel default, for a config.json without cross_attention_dim


def _fits_sd_fix() -> str:
    return f"set {SD_MODEL.key} to the SD model it was trained on, or {TARGET_GENERATOR.key} to one trained on this one"


def _target_generator_fix() -> str:
    return (f"point {TARGET_GENERATOR.key} at the model/ folder of a `handforge train transfer` run: "
            f"{TARGET_GENERATOR.how_to_set_in_line()}")


# (public: `handforge models list` says its status, the server's, word for word)
IHPT = Engine("ihpt", "IHPT's target generator (handforge train transfer) on SD 1.x", settings=(SD_MODEL.key,
              TARGET_GENERATOR.key), availability=_target_generator)


def _reference_availability() -> str:
    """The training-free engine runs on SD 1.x + the ControlNets or the guidance module."""
    statuses = {name: image_jobs.IMAGE_ENGINES[name].status() for name in GUIDES}
    if any(status.available for status in statuses.values()):
        return ""
    return parts_reason({name: status.reason for name, status in statuses.items()})


def _availability() -> str | tuple[str, str]:
    reference, ihpt = _reference_availability(), IHPT.status()
    if not reference or ihpt.available:
        return ""
    guides = [image_jobs.IMAGE_ENGINES[name].status().hint for name in GUIDES]
    return (parts_reason({"reference": reference, "ihpt": ihpt.reason}),
            "; ".join(dict.fromkeys(h for h in (*guides, ihpt.hint) if h)))  # the same fix once


def source_array(side: str, name: str) -> str:
    return SOURCE_PREFIX + hand_array_name(side, name)


def source_pose(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, HandPose]:
    """The source image's hands: from ``source.<side>.*`` arrays, else from ``source_labels``; {} if neither."""
    given = {s for s in SIDES if source_array(s, "global_orient") in arrays}
    if given and params["source_labels"]:
        raise invalid("params.source_labels", "the source pose is given twice (source.<side>.* arrays and labels)",
                      "send one of them")
    if given:
        return {s: HandPose(**{n: np.asarray(arrays.get(source_array(s, n), np.zeros(size)), np.float64).reshape(size)
                               for n, size in POSE_FIELDS.items()}) for s in given}  # betas, transl: zeros if absent
    if not params["source_labels"]:
        return {}
    try:
        labels = parse_json(params["source_labels"])
        hands = label_poses(labels)
    except ValueError as exc:
        raise invalid("params.source_labels", f"not HandForge labels ({read_error(exc)})",
                      "send the handforge_labels JSON of a generated image: {\"hands\": {side: {\"params_world\": "
                      "{...}}}, \"camera\": {...}}") from None
    made_with = labels.get("hand_model", params["hand_model"])  # (labels before it was recorded: taken as given)
    if not isinstance(made_with, str) or made_with not in HAND_MODELS:  # (else "set hand_model to ['x']")
        raise invalid("params.source_labels", f"its hand_model is {made_with!r}: it must be a string naming a hand "
                      f"model: {' or '.join(HAND_MODELS)}", "send the labels of a HandForge image as they were written")
    if made_with != params["hand_model"]:  # the same numbers are another pose in another hand model
        raise invalid("params.source_labels", f"the source's pose is of the {made_with!r} hand model, this job's "
                      f"hand_model is {params['hand_model']!r}", f"set hand_model to {made_with!r} (rigs of that "
                      "hand model), or send the source pose as source.<side>.* arrays of this one")
    unknown = set(hands) - set(SIDES)
    if unknown:
        raise invalid("params.source_labels", f"hands {sorted(hands)}: expected 'left' and/or 'right'")
    if not hands:  # (every hand null: it was said as "hands []: expected 'left' and/or 'right'")
        raise invalid("params.source_labels", "its hands are all null: the source image has no hand to transfer",
                      "send the labels of an image with a hand, or the source pose as source.<side>.* arrays")
    for side, pose in hands.items():
        _check_magnitudes(side, pose)
    return hands


def _check_magnitudes(side: str, pose: HandPose) -> None:
    """The labels' pose bounded as the source.<side>.* arrays are (the schema checks those)."""
    for name, limit in POSE_LIMITS.items():
        worst = float(np.max(np.abs(getattr(pose, name))))
        if worst > limit:
            # (in full digits, as the arrays' bounds are said: ':g' made 20.000000000000004 "20, more than 20")
            raise invalid("params.source_labels", f"{side} {name} has a value of magnitude {worst!r}, more "
                          f"than {float(limit)!r}", "send the labels of a HandForge image as they were written")


def source_camera(params: dict[str, Any]):
    """The source image's camera from ``source_labels`` (``"camera"``: K, R, t, width, height), or None."""
    from handforge.render.camera import Camera, CameraError

    camera = json.loads(params["source_labels"]).get("camera") if params["source_labels"] else None
    if not camera:
        return None
    try:
        return Camera.from_dict(camera)
    except (CameraError, ValueError, TypeError, OverflowError) as exc:
        raise invalid("params.source_labels", f"its camera: {exc}") from None


def _check(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    hands = source_pose(params, arrays)
    source_camera(params)  # a labels' camera that is none: refused here, not inside the job as "internal"
    target = {k: v for k, v in arrays.items() if not k.startswith(SOURCE_PREFIX)}  # image.generate's inputs
    if params["background_prompt"]:
        camera = source_camera(params)
        if not hands or camera is None:
            raise invalid("params.background_prompt", "a new background needs the source's pose and camera",
                          "send source_labels with its camera (a HandForge image's labels)")
        height, width = arrays["source.image"].shape[:2]
        if (camera.width, camera.height) != (width, height):
            raise invalid("arrays.source.image", f"{width}×{height} pixels, its labels' camera sees "
                          f"{camera.width}×{camera.height}", "send the image the labels belong to, unresized")
    if params["engine"] == "ihpt":
        if not hands:
            raise invalid("params.source_labels", "the ihpt engine needs the source image's pose",
                          "send source_labels (a HandForge image's labels) or source.<side>.* arrays")
        if params["cpu_offload"]:
            raise invalid("params.cpu_offload", "the ihpt engine keeps its models on the job's device",
                          "turn cpu_offload off (float16 SD 1.x and the target generator fit an 8 GB GPU)")
        status = IHPT.status()
        if not status.available:
            raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"engine 'ihpt' cannot run: {status.reason}", status.hint)
        image_jobs.check_target(params, target)  # ihpt's weights are its own: checked above
        return
    params = {**params, "guide": image_jobs.ready_engine(params["guide"], GUIDES, params["controls"])}
    _check_guide(params)
    generate_params = {**params, "engine": params["guide"], "tas_steps": None}
    image_jobs.check_request(generate_params, target)


def _check_guide(params: dict[str, Any]) -> None:
    """The reference engine's guide, in this job's words (image.generate's checks speak of its engine)."""
    guide, other = params["guide"], next(g for g in GUIDES if g != params["guide"])
    if guide == "attentionhand" and params["controls"]:
        raise invalid("params.controls", "controls choose ControlNets of the controlnet guide",
                      "leave them out for guide 'attentionhand', or set guide to 'controlnet'")
    status = image_jobs.IMAGE_ENGINES[guide].status()
    if not status.available:
        ready = image_jobs.IMAGE_ENGINES[other].status().available
        raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"guide {guide!r} cannot run: {status.reason}",
                            f"set guide to {other!r}, which is ready" if ready else status.hint)


def _sd_parts(ctx: JobContext, params: dict[str, Any]) -> dict:
    """SD 1.x's parts (no ControlNet) from the model cache, for the ihpt engine."""
    from handforge.engines.checkpoints import checkpoint_name
    from handforge.engines.image.loading import WeightsError, load_sd, sd_parts_on

    sd, sd_config = config.value(SD_MODEL.key), config.value(SD_CONFIG.key)
    dtype = torch_dtype(params["dtype"], ctx.device)

    def load(device: str):
        return sd_parts_on(load_sd(sd, sd_config, dtype, ctx.check_cancelled), device)

    try:  # (sd_config too: a single-file model's config folder, another or edited, went unseen until a restart)
        parts = ctx.model(("transfer", "sd", str(sd), str(dtype)), load, checkpoint=(sd, sd_config),
                          label=f"the SD model {checkpoint_name(sd)} ({str(dtype).removeprefix('torch.')})")
    except WeightsError as exc:
        raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), image_jobs.weights_hint(exc)) from None
    return parts


def _sample_ihpt(ctx: JobContext, params: dict[str, Any], parts: dict, source: np.ndarray, source_hands, hands,
                 camera, on_step) -> np.ndarray:
    from handforge.engines.checkpoints import CheckpointError, checkpoint_name
    from handforge.engines.image.loading import WeightsError
    from handforge.engines.transfer.model import TargetGenerator, check_fits, pose_vector
    from handforge.engines.transfer.model_config import target_generator_problem
    from handforge.engines.image.pipeline import image_generators
    from handforge.engines.transfer.pipeline import sample_target

    sd = config.value(SD_MODEL.key)
    folder = config.value(TARGET_GENERATOR.key)
    try:
        model = ctx.pretrained(TargetGenerator, folder, label=f"the target generator {checkpoint_name(folder)}")
    except CheckpointError as exc:  # e.g. the run folder instead of its model/; a size, in the status's words
        said = target_generator_problem(folder) or str(exc)
        raise JobError(ErrorCode.MISSING_WEIGHTS, said, _target_generator_fix()) from None
    try:
        check_fits(model, folder, parts["unet"], sd)
    except WeightsError as exc:
        raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), _fits_sd_fix()) from None
    seen_from = source_camera(params) or camera  # a source without a camera: taken as seen like the target
    return sample_target(parts, model, source, pose_vector(source_hands, seen_from.R),
                         pose_vector(hands, camera.R), params["width"], params["height"], params["steps"], params["batch"],
                         image_generators(params["seed"], params["batch"], ctx.device), on_step)


def _unread_by_ihpt(params: dict[str, Any]) -> list[str]:
    """The settings an ihpt request set which had no effect (in a warning's words): the reference engine's, and
    without a background_prompt those of the background it did not draw."""
    def set_otherwise(defaults: dict[str, Any]) -> list[str]:
        return [f"{name} {shown(params[name])}" for name, default in defaults.items() if params[name] != default]

    def shown(value) -> str:
        text = repr(value)
        return text if len(text) <= 40 else text[:37] + "..."

    warnings = []
    said = set_otherwise(REFERENCE_ONLY)
    if said:
        warnings.append(f"{', '.join(said)} had no effect: the ihpt engine reads no {', '.join(REFERENCE_ONLY)} (its "
                        "target generator conditions SD on the source image and the two poses, not on text or "
                        "ControlNets); they are the reference engine's")
    said = set_otherwise(BACKGROUND_ONLY) if not params["background_prompt"] else []
    if said:
        warnings.append(f"{', '.join(said)} had no effect: the ihpt engine reads {' and '.join(BACKGROUND_ONLY)} only "
                        "to draw the new background a background_prompt asks for (its target generator samples "
                        "without classifier-free guidance); set background_prompt, or leave them at their defaults")
    return warnings


def trained_size(folder) -> int | None:
    """The resolution (``--size``) the target generator in ``folder`` was trained at: its config.json's
    trained_size (``handforge train transfer`` records it there), else, for a model trained before it did, its
    run's settings.json (the run's data options; the model is the run's model/). None when neither says it (such
    a model/ copied out of its run)."""
    from handforge.engines.checkpoints import CONFIG_NAME, config_json
    from handforge.training.loop import MODEL

    def whole(size) -> bool:
        return isinstance(size, int) and not isinstance(size, bool) and size > 0

    folder = Path(folder)
    try:
        own = config_json(folder / CONFIG_NAME).get("trained_size")
    except (OSError, ValueError, AttributeError):  # (AttributeError: a config.json that is no object)
        own = None
    if whole(own):
        return own
    try:
        recorded = parse_json((folder.parent / "settings.json").read_text()) if folder.name == MODEL else None
    except (OSError, ValueError):
        return None
    if not isinstance(recorded, dict) or recorded.get("model_class") != "TargetGenerator":
        return None
    options = recorded.get("data_options")
    size = options.get("size") if isinstance(options, dict) else None
    return size if whole(size) else None


def _size_warning(params: dict[str, Any]) -> list[str]:
    """The ihpt engine at a resolution other than its training one runs (SD's UNet is convolutional), said:
    its target generator learnt the context of size × size images only."""
    size = trained_size(config.value(TARGET_GENERATOR.key))
    if size is None or (params["width"], params["height"]) == (size, size):
        return []
    return [f"the target generator was trained on {size}×{size} images (--size {size}), this image is "
            f"{params['width']}×{params['height']}: the hands may come out worse; set width and height to {size}, "
            f"or train at this size"]


def _new_background(ctx: JobContext, params: dict[str, Any], parts, hand_model, source: np.ndarray,
                    source_hands) -> tuple[np.ndarray, np.ndarray]:
    """IHPT's background and source generators: a text-to-image background, the source's hands
    composited in through their thresholded mesh image; (new source, that mesh image)."""
    from handforge.engines.image.conditioning import condition
    from handforge.engines.transfer.compositing import background, composite
    from handforge.engines.transfer.pipeline import fit_image

    camera = source_camera(params)
    mesh = condition(hand_model, source_hands, camera).global_view.images["mesh"]
    height, width = source.shape[:2]
    # drawn at most at the target's size (the source is resized to it later; a 4096² background cost
    # gigabytes), SD's sides multiples of 8, then fitted to the source
    scale = min(1.0, max(params["width"], params["height"]) / max(width, height))
    size = (max(64, round(width * scale / 8) * 8), max(64, round(height * scale / 8) * 8))
    ctx.progress(0.0, "background")

    def on_step(done: int, total: int) -> None:
        ctx.check_cancelled()
        ctx.progress(BACKGROUND_SHARE * done / total, f"background: step {done}/{total}")

    back = background(parts, params["background_prompt"], *size, negative_prompt=params["negative_prompt"],
                      steps=params["steps"], guidance_scale=params["guidance_scale"], seed=params["seed"],
                      device="cpu" if params["cpu_offload"] else ctx.device, on_step=on_step)
    return composite(fit_image(back, width, height), source, mesh), mesh


def transfer_job(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    from handforge.engines.image.cancel_points import cancel_points
    from handforge.engines.image.conditioning import condition
    from handforge.engines.image.controls import resolve
    from handforge.engines.image.pipeline import latent_preview
    from handforge.engines.image.pipeline import image_generators
    from handforge.engines.transfer.pipeline import opaque, transfer

    before = BACKGROUND_SHARE if params["background_prompt"] else 0.0  # the new background's part of the bar
    unread = _unread_by_ihpt(params) if params["engine"] == "ihpt" else []  # (as asked: before guide's auto is read)
    asked = params["guide"]
    params = {**params, "guide": image_jobs.ready_engine(asked, GUIDES, params["controls"])}

    def on_step(i: int, total: int, latents) -> None:
        ctx.progress(before + (1.0 - before) * (i + 1) / total, f"step {i + 1}/{total}", preview=latent_preview(latents))

    source_hands = source_pose(params, arrays)
    camera = image_jobs.request_camera(params, arrays)
    hand_model = image_jobs.hand_model_for(ctx, params["hand_model"])
    hands = image_jobs.placed_hands(hand_model, image_jobs.request_hands(arrays), arrays)
    view = condition(hand_model, hands, camera).global_view
    data = {"engine": params["engine"], "seed": params["seed"], "camera": camera.to_dict(), "hands": view.hands,
            **image_jobs.hand_model_labels(params["hand_model"]), "bbox": view.box,
            "source_hands": {s: p.to_dict() for s, p in source_hands.items()}}
    warnings = image_jobs.out_of_view(view)  # said, not a silently poseless image
    warnings += image_jobs.cpu_half_warning(params, ctx.device)
    source, extra = opaque(np.asarray(arrays["source.image"])), {}

    def recomposited(parts):
        if not params["background_prompt"]:
            return source
        new, mesh = _new_background(ctx, params, parts, hand_model, source, source_hands)
        extra.update({"source": new, "source.mesh": mesh})
        if not np.any(mesh):  # nothing of the source kept: the transfer starts from the new background alone
            warnings.append("the source's labels place no hand in their camera's view, so the new background "
                            "covers the whole source: check the source labels' camera (or leave out "
                            "background_prompt)")
        # (cut short as the prompt is, said as it is: both engines draw the background)
        warnings.extend(truncated(parts["tokenizer"], params["background_prompt"], "background_prompt"))
        # ihpt reads the negative_prompt here only (the reference engine's: said once, with its prompt)
        if params["engine"] == "ihpt":
            warnings.extend(truncated(parts["tokenizer"], params["negative_prompt"], "negative_prompt"))
        return new

    if params["engine"] == "ihpt":
        if set(source_hands) != set(hands):  # its pose encoder pairs the source's hands with the target's
            warnings.append(f"the source shows the {' and '.join(sorted(source_hands))} hand(s), the rigs pose the "
                            f"{' and '.join(sorted(hands))}: the transfer pairs different hands; pose the same "
                            "hands as the source shows")
        parts = _sd_parts(ctx, params)
        with cancel_points(ctx.check_cancelled, parts["unet"]):  # (its background's steps and its own)
            images = _sample_ihpt(ctx, params, parts, recomposited(parts), source_hands, hands, camera, on_step)
        warnings += unread + _size_warning(params)
        data["controls"] = ["mesh"]  # the control.<kind> renders returned, as the reference engine's result says
        if warnings:  # (ihpt reads no prompt, its background does: background_prompt and negative_prompt)
            data["warning"] = "; ".join(warnings)
        return JobResult(data, {"images": images, "control.mesh": view.images["mesh"], **extra})
    if params["guide"] == "attentionhand":
        weights, kinds = [str(config.value(GUIDANCE.key))], ["mesh"]
    else:
        controls = resolve(params["controls"], config.value(CONTROLNETS.key))
        weights, kinds = [str(c.path) for c in controls], [c.kind for c in controls]
    pipe = image_jobs.cached_pipeline(ctx, params, weights)
    if params["attention_slicing"]:
        pipe.enable_attention_slicing()
    else:
        pipe.disable_attention_slicing()
    device = "cpu" if params["cpu_offload"] else ctx.device
    with cancel_points(ctx.check_cancelled, pipe.unet, *pipe.controlnets):  # (within a step, not only between)
        out = transfer(pipe, recomposited(pipe.components), [view.images[k] for k in kinds], params["prompt"],
                       negative_prompt=params["negative_prompt"], num_inference_steps=params["steps"],
                       guidance_scale=params["guidance_scale"], control_scales=params["control_scale"],
                       num_images=params["batch"], generator=image_generators(params["seed"], params["batch"], device),
                       reference_scale=params["reference_scale"], on_step=on_step)
    data.update({"guide": params["guide"], "controls": kinds, "reference_scale": params["reference_scale"]})
    warnings += image_jobs.passed_over(asked, params["guide"], GUIDES, params["controls"], "guide")
    warnings += truncated(pipe.tokenizer, params["prompt"]) + truncated(
        pipe.tokenizer, params["negative_prompt"], "negative_prompt")
    if params["guide"] == "controlnet":
        from handforge.engines.image.controls import controls_left_out

        warnings += controls_left_out(params["controls"])
    if warnings:
        data["warning"] = "; ".join(warnings)
    return JobResult(data, {"images": out.images, **{f"control.{k}": view.images[k] for k in kinds}, **extra})


def _schema(generate: Schema) -> Schema:
    """image.generate's target inputs (camera, pose, sampling, memory) + the source and the transfer's own."""
    params = {k: v for k, v in generate.params.items() if k not in NOT_TAKEN}
    # (seeded as image.generate's, but for the background a background_prompt draws, one for the batch)
    params["batch"] = replace(params["batch"], doc="images, the k-th (from 0) seeded seed + k: each as it is alone at "
                                                   "its seed (with background_prompt: on the background drawn at seed)")
    for name in BACKGROUND_ONLY:  # (a client reading the schema learns where ihpt reads them)
        params[name] = replace(params[name], doc=f"{params[name].doc} (reference engine; ihpt: its new background's, "
                                                 "with background_prompt only)")
    params["prompt"] = String(doc="what the image shows (the source's own words help; reference engine)",
                              default=REFERENCE_ONLY["prompt"], max_length=image_jobs.PROMPT_MAX, escaped=True)
    params["engine"] = String(doc="reference: training-free (ControlNet on the target pose + reference attention "
                                  "from the source); ihpt: IHPT's target generator (transfer.target_generator; "
                                  "needs the source pose)", default="reference", choices=ENGINES)
    params["guide"] = String(doc="the target pose's render goes to: controlnet (image.controlnets), attentionhand "
                                 "(the guidance module, image.guidance), or auto: controlnet when ControlNets are "
                                 "here, else attentionhand (reference engine)", default=REFERENCE_ONLY["guide"],
                             choices=(image_jobs.AUTO, *GUIDES))
    params["reference_scale"] = Number(doc="how strongly the source's appearance is injected (0: not at all; "
                                           "reference engine)", default=REFERENCE_ONLY["reference_scale"], min=0.0,
                                       max=1.0)
    params["background_prompt"] = String(doc="IHPT's background and source generators: a new background from "
                                             "this prompt, the source's hands composited in (needs source_labels "
                                             "with its camera); empty: keep the source as it is", default="",
                                         max_length=image_jobs.PROMPT_MAX, escaped=True)
    params["source_labels"] = String(doc="the source's pose as a HandForge image's labels JSON (or send "
                                         "source.<side>.* arrays); optional. It travels in the message header, "
                                         "JSON-escaped: max_length counts it so (each \" or \\ 2 characters, a "
                                         "control or non-ASCII character 6), half of limits.max_header_bytes (a "
                                         "HandForge image's labels are 11-14 KB)", default="",
                                     max_length=SOURCE_LABELS_MAX, escaped=True)
    arrays = dict(generate.arrays)
    arrays["source.image"] = ArraySpec(shape=("source_height", "source_width", "source_channels"), dtypes=("uint8",),
                                       image=True, doc="the source image, RGB or RGBA (straight alpha: composited over "
                                                       "white), top row first; resized to width × height")
    arrays.update(pose_array_specs(lambda side: 1, lambda side, field: f"the source image's {side} hand {field}, "
                                   "optional", name=source_array))
    dims = {**generate.dims, "source_height": SOURCE_SIZE, "source_width": SOURCE_SIZE, "source_channels": (3, 4)}
    return Schema(params=params, arrays=arrays, dims=dims, extra_arrays=generate.extra_arrays, max_bytes=generate.max_bytes)


def register_jobs(registry: Registry) -> None:
    generate = registry.kind("image.generate")  # engines register in name order: image before transfer
    registry.add_engine(IHPT)
    registry.add_engine(Engine("transfer", "pose transfer: the source image's hands re-posed to the rigs' pose "
                                           "(reference: ControlNet + reference attention, or ihpt)",
                               availability=_availability))
    registry.add_kind(JobKind(
        KIND, transfer_job, engine="transfer", device="gpu", timeout=1800, check=_check, schema=_schema(generate.schema),
        needs_cuda=generate.needs_cuda,
        description="source image + target pose (camera + rigs) → images of the source's hands in the target pose",
        returns={"images": "(batch, H, W, 3) uint8", "control.<kind>": "(H, W, 3) uint8 target-pose renders",
                 "hands": "the target pose's labels (keypoints_2d, visible, boxes, parameters)",
                 "source_hands": "the source pose used (params_world per side), {} when not given",
                 "hand_model": "the hand model of both poses, with hand_model_licence",
                 "controls": "the kinds of the control.<kind> renders (reference: those its guide read; ihpt: "
                             "mesh, the target pose's render, which its target generator does not read)",
                 "warning": "what did not happen as asked (guide auto passing over weights set but broken, no hand "
                            "in the camera's view, a prompt cut short, the "
                            "reference engine's settings sent to ihpt, negative_prompt or guidance_scale sent to ihpt "
                            "without background_prompt, ihpt at another size than it was trained at), only then",
                 "source": "with background_prompt: (H, W, 3) uint8 the recomposited source; source.mesh its mask "
                           "image"}))


__all__ = ["IHPT", "KIND", "register_jobs", "sd_width_problem", "source_pose", "trained_size", "transfer_job"]
