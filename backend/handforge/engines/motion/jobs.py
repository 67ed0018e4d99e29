"""The motion engine's job kinds: ``motion.inbetween``, ``motion.trajectory``, ``motion.generate``.

Light at import (the server imports it at start): torch, diffusers and the model load inside the
handlers, through the server's model cache.

Inputs are per-frame arrays named as in motion files (``<side>.<field>``): frame 0 of the arrays
is the first frame of the generated range, so a Blender frame range [a, b] travels as b - a + 1
rows. Every job returns one ``MotionClip`` in the motion format the add-on imports
(``clip.to_arrays()`` + ``data["motion"] = clip.metadata()``), the first sample; with
``num_samples`` > 1 every sample also comes packed as ``samples.<side>`` (N, T, 51) =
[global_orient 3 | hand_pose 45 | transl 3] per frame (betas as in the clip).

The hands a request sends are the scene's (the add-on sends every hand its scene has): a side not sent is
still generated (the clip has both hands), but it is not in the scene, so nothing keeps the other hand apart
from it and no overlap with it is measured or said (it steered a lone hand's fingers away from a phantom).
``motion.generate`` reads the sides from the betas sent; none sent: both hands.

``engine``: "learned" (the diffusion model of ``motion.checkpoint``; falls back to "spline", saying
so in ``data["engine"]`` and ``data["warning"]``, when no checkpoint is there) or "spline".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from handforge import config
from handforge.engines.hands.jobs import POSE_LIMITS, cached_hand_model, require_hand_model
from handforge.engines.motion import retime
from handforge.engines.motion.settings import CHECKPOINT
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry
from handforge.server.schema import ArraySpec, Integer, Number, Schema, String, invalid, refuse_unread
from handforge_shared.poses import HAND_MODELS, KEY_PARTS, MOTION_MAX_FRAMES, hand_array_name
from handforge_shared.protocol import ErrorCode
from handforge_shared.skeleton import NUM_BETAS, SIDES

MAX_SAMPLES = 8
MAX_FRAME = 1_048_574  # Blender's frame limits (MAXFRAME), both ways

PART_DOC = ("per frame, which parts are keys (1) or free (0): column 0 the wrist rotation (global_orient), "
            "columns 1-15 the finger joints in MANO order (hand_pose[3j-3:3j]), column 16 the wrist "
            "translation (transl)")


# In-betweens start from the keys' in-between noised 80 % of the way (SDEdit): from pure noise the shipped
# model sometimes holds a single-frame key and moves late; from 0.8 it eases through the gap on every seed,
# and its held-out Fréchet distances were lower too (README, Motion). Paths and generation start from noise.
INBETWEEN_VARIATION = 0.8


def _common_params(guidance: str, variation: float = 1.0) -> dict[str, Any]:
    """The parameters every motion job takes; ``guidance`` and ``variation`` are the kind's defaults."""
    return {
        "engine": String(doc="'learned': the diffusion model (motion.checkpoint), falling back to 'spline' when "
                             "no checkpoint is configured; 'spline': rotation splines and cubic wrist paths "
                             "through the keys", default="learned", choices=("learned", "spline")),
        "hand_model": String(doc="the hand model the keys' values and betas belong to; the result uses it too",
                             default="open", choices=HAND_MODELS),
        "fps": Number(doc="frames per second of the motion (stored in the result)", default=30.0, min=1.0, max=1000.0),
        "seed": Integer(doc="random seed: the same seed and inputs give the same motion (the learned engine's; the "
                        "spline engine's one motion is the same for every seed)", default=0, min=0,
                        max=2**31 - 1),
        "first_frame": Integer(doc="the frame number of the arrays' first row (Blender: the range's first frame): "
                                   "notes that name frames count from it; the range ends by Blender's last frame "
                                   "(first_frame + frames - 1 <= 1048574)", default=0, min=-MAX_FRAME, max=MAX_FRAME),
        "num_samples": Integer(doc="motions to generate (the first is the result's clip; all are in "
                                   "samples.<side>)", default=1, min=1, max=MAX_SAMPLES),
        "steps": Integer(doc="DDIM denoising steps (learned engine): more is slower and a little finer",
                         default=20, min=1, max=1000),
        "variation": Number(doc="how far the motion may stray from the keys' in-between, in (0, 1]: "
                                "1 = a fresh sample, small values stay close to the in-between; the learned "
                                "engine runs the last round(steps · variation) of its steps, at least one, so it "
                                "takes whole steps (with steps 1 every value is 1)",
                            default=variation, min=0.01, max=1.0),
        "smoothing": Number(doc="σ in frames of the Gaussian filter on the generated part (learned engine; keys "
                                "stay exact; 0 = off)", default=1.0, min=0.0, max=10.0),
        "penetration_guidance": String(doc="steer the hands apart where they pass through each other (learned "
                                           "engine): while sampling 'auto' when the wrists come within 20 cm, 'on' "
                                           "throughout, 'repair' never; all three then move the motions in which one "
                                           "hand still goes more than 2 mm into the other out of it, keys kept; 'off' "
                                           "does neither. 'auto' for wrist paths and generation; 'repair' for "
                                           "in-betweening, where the keys mostly keep the hands apart and guidance "
                                           "while sampling only cost quality (README 'Motion')", default=guidance,
                                       choices=("auto", "repair", "on", "off")),
    }


# the diffusion model's settings, which the spline engine does not read
LEARNED_ONLY = ("steps", "variation", "smoothing", "penetration_guidance")
INBETWEEN_PARAMS = _common_params(guidance="repair", variation=INBETWEEN_VARIATION)
TRAJECTORY_PARAMS = _common_params(guidance="auto")
GENERATE_PARAMS = {**_common_params(guidance="auto"),
                   "num_frames": Integer(doc="frames to generate", default=120, min=2, max=MOTION_MAX_FRAMES)}


def _side_arrays(fields: dict[str, tuple[int, float, str]], required: bool = False) -> dict[str, ArraySpec]:
    specs = {}
    for side in SIDES:
        for name, (size, limit, doc) in fields.items():
            shape = ("frames",) if size == 0 else ("frames", size)
            dtypes = ("uint8",) if name == "mask" else ("float32", "float64")
            specs[hand_array_name(side, name)] = ArraySpec(
                shape=shape, dtypes=dtypes, required=False, min=0 if name == "mask" else -limit,
                max=1 if name == "mask" else limit, doc=f"{side} hand: {doc}")
        specs[hand_array_name(side, "betas")] = ArraySpec(
            shape=(NUM_BETAS,), required=False, min=-POSE_LIMITS["betas"], max=POSE_LIMITS["betas"],
            doc=f"{side} hand: shape coefficients, carried into the result unchanged (zeros when absent)")
    return specs


KEY_FIELDS = {
    "global_orient": (3, POSE_LIMITS["global_orient"], "(T, 3) wrist rotation keys, axis-angle radians (rows not keyed are not used, but must be finite and in range like the rest)"),
    "hand_pose": (45, POSE_LIMITS["hand_pose"], "(T, 45) finger joint rotation keys, axis-angle, MANO order"),
    "transl": (3, POSE_LIMITS["transl"], "(T, 3) wrist translation keys, metres, model frame"),
    "mask": (KEY_PARTS, 1, f"(T, {KEY_PARTS}) uint8 key mask, {PART_DOC}"),
}
PATH_FIELDS = {
    "transl": (3, POSE_LIMITS["transl"], "(T, 3) the wrist path, metres, model frame, one row per frame"),
    "global_orient": (3, POSE_LIMITS["global_orient"], "(T, 3) optional wrist rotations along the path (axis-angle); "
                                         "without them the wrist rotation is generated"),
}
DIMS = {"frames": (2, MOTION_MAX_FRAMES)}
RETURNS = {
    "motion": "the clip's metadata (MotionClip.metadata()); with the arrays <side>.<field> it is the motion; its "
              "extra.motion_engine: the engine and, for the learned one, its checkpoint, seed, steps, variation, "
              "smoothing and penetration_guidance",
    "<side>.<field>": "global_orient, hand_pose, betas, transl, present per frame (MotionClip.to_arrays())",
    "samples.<side>": "(N, T, 51) float32 every sample: global_orient | hand_pose | transl",
    "engine": "the engine that ran ('learned' or 'spline')",
    "warning": "why the learned engine fell back to the spline engine, and when the keys themselves hold the hands "
               "in each other (Keep Apart then moves the wrists between them) or the hands are left in each other "
               "(naming the samples so left when num_samples > 1); for the spline engine, which keeps nothing "
               "apart, the keys and the frames it made (numbered from first_frame, the scene's frame of the first "
               "row) that hold the hands more than 5 mm into each other, with the depth (measured where the hand "
               "model's files are here)",
    "seconds": "time spent generating",
}


# ------------------------------------------------------------------------------------- checks
def _frames(arrays: Mapping[str, np.ndarray]) -> int:
    return next(a.shape[0] for n, a in arrays.items() if not n.endswith(".betas"))


def _check_engine(params: dict[str, Any], defaults: dict[str, Any]) -> None:
    """The learned engine's hand model is here; the spline engine is not sent the diffusion model's
    settings (``defaults``: the job kind's params), which it would ignore, unsaid."""
    if params["engine"] == "learned":  # its guidance runs the hand model; the spline engine needs none
        require_hand_model(params["hand_model"], "params.hand_model")
        return
    refuse_unread(params, defaults, LEARNED_ONLY, "learned",
                  "the spline engine draws rotation splines and cubic wrist paths through the keys")


def _check_last_frame(params: dict[str, Any], num_frames: int) -> None:
    """The range ends within Blender's frames: notes name frames counted from ``first_frame`` (its own bound alone
    took 6 frames from frame 1,048,574, and a note then named frame 1,048,579, which no scene has)."""
    last = params["first_frame"] + num_frames - 1
    if last > MAX_FRAME:
        raise invalid("params.first_frame", f"{num_frames} frames from frame {params['first_frame']} end at frame "
                      f"{last}, past Blender's last frame {MAX_FRAME}",
                      f"start at frame {MAX_FRAME - num_frames + 1} at the latest, or send fewer frames")


def _check_generate(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _check_engine(params, GENERATE_PARAMS)
    _check_last_frame(params, params["num_frames"])
    _check_fits_model(params, params["num_frames"], "params.num_frames")


def _check_inbetween(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _check_engine(params, INBETWEEN_PARAMS)
    # a hand sent incomplete first: one sent without its mask was otherwise told "arrays.right.mask: no keys
    # given" (the wrong hand, and keys it had sent) instead of which array it lacks
    for side in SIDES:
        names = [hand_array_name(side, f) for f in KEY_FIELDS]
        given = [n for n in names if n in arrays]
        if given and len(given) != len(names):
            missing = sorted(set(names) - set(given))
            raise invalid(f"arrays.{missing[0]}", f"is required with arrays.{given[0]}",
                          f"send all of {', '.join(names)} for the {side} hand")
    sides = [s for s in SIDES if hand_array_name(s, "mask") in arrays]
    if not sides:
        raise invalid("arrays.right.mask", "no keys given",
                      f"send <side>.mask ({KEY_PARTS} columns per frame) with <side>.global_orient, .hand_pose and "
                      ".transl for the left and/or right hand")
    keyed = sum(int(np.asarray(arrays[hand_array_name(s, "mask")]).any(axis=1).sum()) for s in sides)
    if keyed == 0:
        raise invalid(f"arrays.{hand_array_name(sides[0], 'mask')}", "keys no frame (all zeros)",
                      "set a row's columns to 1 where the values are keys; use motion.generate for no keys")
    _observed(inbetween_observation, params, arrays)
    _check_last_frame(params, _frames(arrays))
    _check_fits_model(params, _frames(arrays), "arrays")


def _check_trajectory(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    _check_engine(params, TRAJECTORY_PARAMS)
    # rotations without their path first: they were otherwise told "arrays.right.transl: no wrist path given"
    # (the wrong hand when the left one was sent) instead of which array they lack
    for side in SIDES:
        if hand_array_name(side, "global_orient") in arrays and hand_array_name(side, "transl") not in arrays:
            raise invalid(f"arrays.{hand_array_name(side, 'transl')}",
                          f"is required with arrays.{hand_array_name(side, 'global_orient')}",
                          f"send the {side} wrist's path (T, 3) with its rotations")
    if not any(hand_array_name(s, "transl") in arrays for s in SIDES):
        raise invalid("arrays.right.transl", "no wrist path given",
                      "send <side>.transl (T, 3) for the left and/or right wrist")
    _observed(trajectory_observation, params, arrays)
    _check_last_frame(params, _frames(arrays))
    _check_fits_model(params, _frames(arrays), "arrays")


def _beyond_model(num_frames: int, fps: float, steps: int, model: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """What of a request the learned model (``model``: its config) cannot take, as (field, message, hint), or None."""
    if retime.model_frames(num_frames, fps, model["fps"]) > model["max_frames"]:  # (it runs on its own frames:
        most = int((model["max_frames"] - 1) * fps / model["fps"]) + 1            # counted at its frame rate)
        # (the time is what counts: "20 frames at 1 fps" read as too many frames)
        return ("frames", f"{num_frames} frames at {fps:g} fps ({(num_frames - 1) / fps:.2f} s) is longer than the "
                f"model's {model['max_frames']} frames at {model['fps']:g} fps "
                f"({(model['max_frames'] - 1) / model['fps']:.2f} s)",
                f"generate at most {most} frames at a time at {fps:g} fps, or use the spline engine (up to "
                f"{MOTION_MAX_FRAMES} frames at any frame rate)")
    if steps > model["num_train_timesteps"]:
        # the schema allows 1000 (the shipped model's); a checkpoint trained with fewer diffusion steps
        # cannot take more DDIM steps (diffusers' set_timesteps raised a ValueError: an internal error)
        most = model["num_train_timesteps"]
        return ("params.steps", f"steps ({steps}) exceeds the {most} diffusion steps the motion model was trained "
                "with", f"ask for at most {most} steps")
    return None


def _learned_config() -> dict[str, Any] | None:
    """The config of the model a learned job will run, read from its files; None where the job will fall back to
    the spline engine (``_learned_problem``)."""
    from handforge.engines.checkpoints import CheckpointError, saved_config
    from handforge.engines.motion.model_config import MOTION_DENOISER

    value = config.value(CHECKPOINT.key)
    try:
        return None if _learned_problem(value) else saved_config(value, MOTION_DENOISER)
    except CheckpointError:  # (replaced since it was checked, e.g. a training run writing it: the job decides)
        return None


def _learned_problem(value: str | None) -> str:
    """Why ``_pipeline`` will not run the learned model of the setting's ``value`` ('' when it will), from its files:
    what its load (``load_model``, ``check_representation``) refuses, the weights' values read too. The submit
    check and the engine's note ask it: a checkpoint of NaN weights passed them, and a request beyond its model's
    limits was refused that the job, falling back to the spline engine, would have served."""
    from handforge.engines.checkpoints import checkpoint_problem, saved_config
    from handforge.engines.motion.model_config import MOTION_DENOISER, representation_problem
    from handforge.engines.motion.representation import FRAME_DIM

    problem = checkpoint_problem(value or None, MOTION_DENOISER, finite=True, frame_dim=FRAME_DIM)
    return problem or representation_problem(value, saved_config(value, MOTION_DENOISER))


def _check_fits_model(params: dict[str, Any], num_frames: int, frames_field: str) -> None:
    """A learned job the model cannot take, refused before it is queued (it was when its turn came)."""
    model = _learned_config() if params["engine"] == "learned" else None
    beyond = None if model is None else _beyond_model(num_frames, params["fps"], params["steps"], model)
    if beyond is not None:
        field, message, hint = beyond
        raise invalid(frames_field if field == "frames" else field, message, hint)


# ------------------------------------------------------------------------------------- observations
def _sent(arrays: Mapping[str, np.ndarray], field: str) -> tuple[str, ...]:
    """The scene's hands: those the request sends ``field`` of (the add-on sends every hand its scene has)."""
    return tuple(s for s in SIDES if hand_array_name(s, field) in arrays)


def _betas(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.stack([np.asarray(arrays.get(hand_array_name(s, "betas"), np.zeros(NUM_BETAS)), dtype=np.float64)
                     for s in SIDES])


def inbetween_observation(params: dict[str, Any], arrays: Mapping[str, np.ndarray]):
    from handforge.engines.motion.observation import Observation

    t = _frames(arrays)
    values = {f: np.zeros((t, 2, n)) for f, n in (("global_orient", 3), ("hand_pose", 45), ("transl", 3))}
    mask = np.zeros((t, 2, KEY_PARTS), dtype=bool)
    for h, side in enumerate(SIDES):
        if hand_array_name(side, "mask") not in arrays:
            continue
        mask[:, h] = np.asarray(arrays[hand_array_name(side, "mask")]) > 0
        for f in values:
            values[f][:, h] = arrays[hand_array_name(side, f)]
    return Observation(**values, part_mask=mask, betas=_betas(arrays), hand_model=params["hand_model"],
                       fps=params["fps"], scene_hands=_sent(arrays, "mask"))


def trajectory_observation(params: dict[str, Any], arrays: Mapping[str, np.ndarray]):
    from handforge.engines.motion.observation import Observation

    t = _frames(arrays)
    values = {f: np.zeros((t, 2, n)) for f, n in (("global_orient", 3), ("hand_pose", 45), ("transl", 3))}
    mask = np.zeros((t, 2, KEY_PARTS), dtype=bool)
    for h, side in enumerate(SIDES):
        if hand_array_name(side, "transl") in arrays:
            values["transl"][:, h] = arrays[hand_array_name(side, "transl")]
            mask[:, h, KEY_PARTS - 1] = True
        if hand_array_name(side, "global_orient") in arrays:
            values["global_orient"][:, h] = arrays[hand_array_name(side, "global_orient")]
            mask[:, h, 0] = True
    return Observation(**values, part_mask=mask, betas=_betas(arrays), hand_model=params["hand_model"],
                       fps=params["fps"], scene_hands=_sent(arrays, "transl"))


def generate_observation(params: dict[str, Any], arrays: Mapping[str, np.ndarray]):
    from handforge.engines.motion.observation import Observation

    t = params["num_frames"]
    zeros = {f: np.zeros((t, 2, n)) for f, n in (("global_orient", 3), ("hand_pose", 45), ("transl", 3))}
    return Observation(**zeros, part_mask=np.zeros((t, 2, KEY_PARTS), dtype=bool), betas=_betas(arrays),
                       hand_model=params["hand_model"], fps=params["fps"],
                       scene_hands=_sent(arrays, "betas") or SIDES)  # (no betas: a two-hand motion from nothing)


# ------------------------------------------------------------------------------------- running
def _pipeline(ctx: JobContext, hand_model_name: str):
    """The learned pipeline, or (None, why) when no checkpoint is there."""
    from handforge.engines.checkpoints import CheckpointError, checkpoint_name
    from handforge.engines.motion.model import MotionDenoiser, check_representation
    from handforge.engines.motion.pipeline import MotionPipeline

    value = config.value(CHECKPOINT.key)
    if not value or not Path(value).exists():  # (a file: load_model says it is one, and to give its folder)
        return None, (f"no motion checkpoint at {str(value) if value else '(not set)'}: the spline engine made this "
                      f"motion; {CHECKPOINT.how_to_set_in_line()}.")
    try:
        model = ctx.pretrained(MotionDenoiser, value, label=f"the motion model {checkpoint_name(value)}")
        check_representation(model, value)
    except CheckpointError as exc:  # (said as the engine's note says it: a bare path and its problem named no setting)
        return None, f"the learned model cannot be used ({CHECKPOINT.key}: {exc}): the spline engine made this motion"
    return MotionPipeline(model, cached_hand_model(ctx, hand_model_name)), ""


def _run(ctx: JobContext, params: dict[str, Any], observation) -> JobResult:
    import torch

    from handforge.engines.checkpoints import checkpoint_name
    from handforge.engines.motion.overlap import frame_depths, spline_note
    from handforge.engines.motion.pipeline import guidance_named
    from handforge.engines.motion.synthesis import synthesize
    from handforge.hands.registry import entry

    started = time.monotonic()
    engine, warning, pipeline = params["engine"], "", None
    if engine == "learned":
        pipeline, warning = _pipeline(ctx, params["hand_model"])
        if pipeline is None:
            engine = "spline"
        else:  # (refused at submit: here for a checkpoint changed since)
            beyond = _beyond_model(observation.num_frames, observation.fps, params["steps"], pipeline.model.config)
            if beyond is not None:
                raise JobError(ErrorCode.INVALID_PARAMS, *beyond[1:])
    guidance = guidance_named(params["penetration_guidance"])
    if observation.wrist_shift is None and entry(params["hand_model"]).status()["available"]:
        # MANO's wrist joints, where its files are here: the spline engine places a hand without keys by its
        # wrist (the learned one's pipeline places the keys itself)
        observation = observation.placed(cached_hand_model(ctx, params["hand_model"]))

    # the spline engine keeps nothing apart: where the hand model is here, its motion is measured for a note
    measured = engine == "spline" and entry(params["hand_model"]).status()["available"]
    # with guidance, denoising fills the bar to 90 % and moving overlapping hands apart (if any) the rest; the
    # spline's curves (instant) 10 % and measuring them the rest; each stage's first and last update reach the client
    denoised = 0.9 if guidance is not None and engine == "learned" else 0.1 if measured else 1.0

    first_step: dict[str, float] = {}  # when the first denoising step ended (its warm-up is no measure)

    shown = [0.0]  # the bar never goes back: the polish's own last checks had set it back to 90 % (0.96 -> 0.9)

    def say(fraction: float, message: str, force: bool = False) -> None:
        shown[0] = max(shown[0], fraction)
        ctx.progress(shown[0], message, force=force)

    def on_step(step: int, total: int, stage: str) -> None:
        ends = step in (1, total)
        if stage == "denoising":  # (a lower bound of the job's time: the polish comes after)
            if step == 1:
                first_step["at"] = time.monotonic()
            else:
                ctx.check_pace(step, total, first_step.get("at", time.monotonic()), "denoising steps")
        if stage == "separating":
            say(denoised + (1.0 - denoised) * step / total,
                f"moving the hands out of each other ({step}/{total} at most)", force=ends)
        elif stage == "checking":  # before and after the polish: where the hands overlap (cancels here too)
            say(denoised, f"checking where the hands overlap ({step}/{total})")
        else:  # (the spline engine's one update said its stage's name, "spline")
            # (variation < 1 starts part way: "step 1/4" of Steps 5 read as a step lost)
            part_way = f" ({total} of Steps {params['steps']}: variation under 1 starts part way)" \
                if stage == "denoising" and total < params["steps"] else ""
            said = {"denoising": f"denoising step {step}/{total}{part_way}", "spline": "spline curves through the keys"}
            say(denoised * step / total, said.get(stage, stage), force=ends)

    # what made the motion: the spline engine reads none of the learned engine's settings (its clips said "steps 20")
    meta: dict[str, Any] = {"engine": engine}
    if engine == "learned":
        meta.update(checkpoint=checkpoint_name(config.value(CHECKPOINT.key)),
                    **{k: params[k] for k in ("seed", "steps", "variation", "smoothing", "penetration_guidance")})
    with torch.no_grad():
        clips = synthesize(observation, engine, pipeline, num_samples=params["num_samples"], steps=params["steps"],
                           seed=params["seed"], variation=params["variation"], guidance=guidance, callback=on_step,
                           smoothing=params["smoothing"], extra={"motion_engine": meta})
    arrays = clips[0].to_arrays()
    if len(clips) > 1:
        for side in SIDES:
            arrays[f"samples.{side}"] = np.stack([np.concatenate(
                [c.hands[side].global_orient, c.hands[side].hand_pose, c.hands[side].transl], -1) for c in clips]
            ).astype(np.float32)
    data: dict[str, Any] = {"motion": clips[0].metadata(), "engine": engine,
                            "seconds": round(time.monotonic() - started, 3)}
    if guidance is not None and engine == "learned":
        def measuring(motion: int, motions: int) -> None:  # (8 long samples take seconds: said, and cancellable)
            say(shown[0], f"measuring where the hands are left in each other ({motion}/{motions})")

        warning = " ".join(filter(None, [warning, _overlap_note(pipeline, observation, clips, measuring)]))
    if measured and observation.both_hands:  # (one hand in the scene: nothing for it to go into)
        def measuring_frames(done: int, total: int) -> None:  # (512 frames take seconds on a CPU: cancellable)
            say(denoised + (1.0 - denoised) * done / total,
                f"measuring where the hands go into each other ({done}/{total} frames)", force=done == total)

        depths = frame_depths(cached_hand_model(ctx, params["hand_model"]), observation.betas,
                              _rig_values(clips[0]), callback=measuring_frames)
        said = spline_note(observation, depths, OVERLAP_SAID, params["first_frame"])
        warning = " ".join(filter(None, [warning, said]))
    if measured and shown[0] < 1.0:  # (one hand, or none within reach: nothing measured, the bar left at 10 %)
        say(1.0, "nothing to measure: the hands are not within reach of each other" if observation.both_hands
            else "nothing to measure: one hand", force=True)
    if params["engine"] == "spline" and params["seed"] != 0:  # (asked of it: a seed that changed nothing, unsaid)
        warning = " ".join(filter(None, [warning, f"The spline engine draws one motion through the keys: seed "
                                                  f"{params['seed']} changes nothing; the learned engine draws another "
                                                  "for each seed."]))
    if engine == "spline" and params["num_samples"] > 1:  # (its N "samples" came back the same, unsaid)
        warning = " ".join(filter(None, [warning, f"The spline engine makes one motion: the {params['num_samples']} "
                                                  "samples are the same; the learned engine draws different ones."]))
    if warning:
        data["warning"] = warning
    return JobResult(data, arrays)


OVERLAP_SAID = 0.005  # m: hands deeper into each other than this are said to be (the depth measure errs by millimetres)


def _overlap_note(pipeline, observation, clips, on_measured=None) -> str:
    """A note when the hands stay in each other where Keep Apart cannot move them: keys that themselves hold
    the hands in each other (the repair moves the wrists out between them and back, README, Known limits: a
    keyed hold bounced, unsaid), or, failing that, keyed wrists brought together (crossing wrist paths: Keep
    Apart moves fingers and free wrist rotations only, and the hands stayed 20 mm deep, unsaid). Every sample
    is measured and those left in each other are named: the add-on keys any of them (Keyed Sample), and the
    first one's note was said of them all (a sample 8 mm deep went unsaid beside a clear first)."""
    mask = np.asarray(observation.part_mask)
    changeable = ~mask.reshape(len(mask), -1).all(-1)
    # every frame a key of every part: Keep Apart moved nothing (as with 'off', nothing to say; it said a bounce);
    # one hand in the scene: the generated other one is not there to be in (it was measured, and said)
    if not changeable.any() or not observation.both_hands:
        return ""
    values = [_rig_values(clip) for clip in clips]
    # on_measured(motion, motions) after each chunk of frames measured (progress, cancelling)
    callback = None if on_measured is None else (lambda motion, motions, _stage: on_measured(motion, motions))
    # the keys are the same in every sample: measured in the first
    depth = float(pipeline.deepest_penetration([observation], values[:1], keyed=True, callback=callback)[0])
    if depth > OVERLAP_SAID:
        return (f"Your keys hold the hands {depth * 1000:.0f} mm into each other; Keep Apart moves the wrists out "
                "between such keys and back, which a hold shows as a bounce: set Keep Apart to Off "
                "(penetration_guidance 'off') to keep it as keyed.")
    if not observation.part_mask[..., KEY_PARTS - 1].any():  # no keyed wrist: Keep Apart could move them all
        return ""
    depths = pipeline.deepest_penetration([observation] * len(values), values, callback=callback)
    deep = [(i, float(d)) for i, d in enumerate(depths) if d > OVERLAP_SAID]
    if not deep:
        return ""
    if len(values) == 1:
        by, which = f" {deep[0][1] * 1000:.0f} mm", ""
    else:
        by, which = "", " (" + ", ".join(f"sample {i}: {d * 1000:.0f} mm" for i, d in deep) + ")"
    if mask[changeable, :, KEY_PARTS - 1].all():  # both wrists placed on every frame sampling makes: the paths
        return (f"The hands are still{by} into each other where your wrist keys or paths bring them together{which}: "
                "Keep Apart moves the fingers and free wrist rotations, never a keyed wrist; move the paths apart "
                "there.")
    # (a free wrist went in: the note above blamed paths the request had not sent, a hand left to the engine)
    return (f"The hands still go{by} into each other in places Keep Apart did not clear{which}: Regenerate for another "
            "take, or key the wrists apart there.")


def _rig_values(clip) -> dict[str, np.ndarray]:
    """A two-hand clip's rig values {global_orient, hand_pose, transl}: (T, 2, size), the hands in HAND_AXIS order."""
    from handforge.engines.motion import representation as rep

    return {k: np.stack([getattr(clip.hands[s], k) for s in rep.HAND_AXIS], 1)
            for k in ("global_orient", "hand_pose", "transl")}


def _observed(build, params, arrays):
    from handforge.engines.motion.observation import ObservationError

    try:
        return build(params, arrays)
    except ObservationError as exc:
        raise invalid("arrays", str(exc)) from None


def inbetween(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    return _run(ctx, params, _observed(inbetween_observation, params, arrays))


def trajectory(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    observation = _observed(trajectory_observation, params, arrays)
    _refuse_one_path(ctx, params, observation)
    return _run(ctx, params, observation)


SAME_PATH = 0.001  # m: wrists no further apart than this on every frame follow one path


def _refuse_one_path(ctx: JobContext, params: dict[str, Any], observation) -> None:
    """Refuse both wrists sent along one path (one curve chosen for both): the hands went through each other the
    whole way, unsaid by the spline engine, said by the learned one only after its run. The wrist joints, not
    ``transl``, are compared: a hand's wrist is its rest joint (of its side and betas) moved by ``transl``, so one
    path gives each hand another ``transl``. Measured with the hand model, where it loads (the spline engine runs
    without it: not measured there)."""
    import torch

    from handforge.engines.motion.kinematics import rest_skeleton
    from handforge.hands.registry import entry

    if not observation.part_mask[..., KEY_PARTS - 1].all() or not entry(params["hand_model"]).status()["available"]:
        return
    hand_model = cached_hand_model(ctx, params["hand_model"])
    layer = hand_model.layer(SIDES[0])  # (its device and dtype)
    betas = torch.as_tensor(observation.betas, dtype=layer.float_dtype, device=layer.faces.device)
    rest, _ = rest_skeleton(hand_model, betas[None])
    wrists = observation.transl + rest[0, :, 0].double().cpu().numpy()  # (T, 2, 3)
    if np.linalg.norm(wrists[:, 0] - wrists[:, 1], axis=-1).max() <= SAME_PATH:
        raise JobError(ErrorCode.INVALID_PARAMS, "the left and right wrist paths (left.transl, right.transl) put both "
                       "wrists on one path, through each other on every frame",
                       "send a different path for one wrist, or send one wrist's path only (the other hand is then "
                       "generated)")


def generate(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    return _run(ctx, params, _observed(generate_observation, params, arrays))


def _note() -> str:
    """Why the learned model cannot run (missing, or a checkpoint its load refuses): its jobs then run the spline engine."""
    from handforge.engines.checkpoints import CheckpointError

    try:
        problem = _learned_problem(config.value(CHECKPOINT.key))
    except CheckpointError as exc:  # (replaced since it was checked: said as read)
        problem = str(exc)
    return (f"the learned model cannot be used ({CHECKPOINT.key}: {problem}): jobs asking for it run the spline engine"
            if problem else "")


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("motion", "two-hand motion: in-betweening of keys at any frames and joints, wrist "
                                         "paths, generation (learned diffusion model, spline fallback)", note=_note))
    registry.add_kind(JobKind(
        "motion.inbetween", inbetween, engine="motion", device="gpu", timeout=600, check=_check_inbetween,
        schema=Schema(params=INBETWEEN_PARAMS, arrays=_side_arrays(KEY_FIELDS), dims=DIMS),
        description="motion through the animator's keys: any frames, any joints of either hand, kept exactly",
        returns=RETURNS))
    registry.add_kind(JobKind(
        "motion.trajectory", trajectory, engine="motion", device="gpu", timeout=600, check=_check_trajectory,
        schema=Schema(params=TRAJECTORY_PARAMS, arrays=_side_arrays(PATH_FIELDS), dims=DIMS),
        description="fingers (and free wrist rotations) generated along given wrist paths, followed exactly",
        returns=RETURNS))
    registry.add_kind(JobKind(
        "motion.generate", generate, engine="motion", device="gpu", timeout=600, check=_check_generate,
        schema=Schema(params=GENERATE_PARAMS,
                      arrays={hand_array_name(s, "betas"): ArraySpec(
                          shape=(NUM_BETAS,), required=False, min=-POSE_LIMITS["betas"], max=POSE_LIMITS["betas"],
                          doc=f"{s} hand: shape coefficients (zeros when absent)") for s in SIDES}),
        description="two-hand motion from nothing (unconditional), placed around the model origin",
        returns=RETURNS))


__all__ = ["generate", "inbetween", "register_jobs", "trajectory"]
