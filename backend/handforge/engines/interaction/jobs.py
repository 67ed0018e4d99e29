"""The job kind ``interaction.sample``: candidates for the other hand around the artist's hand, or
whole two-hand interactions. Light at import (the server imports it at start): torch, diffusers
and the engine's modules are imported inside the handler.

For the add-on (the *Sample interaction* and *Key candidates* operators):

    params  engine        "learned" (the diffusion model; default) or "templates" (no weights)
            model         hand model of the anchor and the result: "open" or "mano"
            anchor_side   "left" / "right": the artist's hand of that side, sent as the anchor.*
                          arrays, is the anchor and comes back unchanged; "none": both hands free
            count         candidates (1–256), returned best first
            seed          same seed, same request → same candidates
            steps         DDIM steps per hand (learned)
            cfg_scale     classifier-free guidance s (learned; 0 = plain conditional)
            penetration_guidance, guidance_steps   anti-penetration strength and how many of the
                          last steps it acts on (learned; 0 = off)
            contact_guidance, separation, touch, redraws   the contact term, the final rigid moves out
                          of and into touch with the anchor, the rounds of redrawing interlocked
                          candidates (learned)
            templates     restrict the templates engine to these template names (empty: all)
    arrays  anchor.global_orient (3,), anchor.hand_pose (45,) required with an anchor side;
            anchor.betas (10,), anchor.transl (3,) optional (zeros). With anchor_side "none", anchor.betas
            alone may be sent: both hands' shape (else drawn with them). Pose conventions of the README.
    result  left.<field> / right.<field> (count, n) float32 for global_orient, hand_pose, betas,
            transl (apply row i of the non-anchor side to the other rig); score (count,) in (0, 1],
            higher is more plausible, with its parts max_depth (m), gap (m), limit (degrees);
            data: anchor_side, engine, model, count, and for templates the template of each row; warning
            (only when one applies, several joined by "; "): every candidate still in or apart from the
            anchor, or the anchor's fingers more than 5° outside their joint limits (the other hand was
            made for the anchor moved into them, and the scores rate the other hand only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from handforge import config
from handforge.engines.hands.jobs import POSE_LIMITS, cached_hand_model, require_hand_model
from handforge.engines.interaction.settings import CHECKPOINT
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry
from handforge.server.schema import ArraySpec, Boolean, Integer, ListOf, Number, Schema, String, invalid, refuse_unread
from handforge_shared.protocol import ErrorCode, ProtocolError
from handforge_shared.poses import DEFAULT_HAND_MODEL, HAND_MODELS, POSE_FIELDS, ROTATION_FIELDS

ENGINES = ("learned", "templates")
ANCHOR_SIDES = ("none", "left", "right")
REQUIRED_ANCHOR = ROTATION_FIELDS
MAX_COUNT = 256
# the diffusion model's settings, which the templates engine does not read
LEARNED_ONLY = ("steps", "cfg_scale", "penetration_guidance", "contact_guidance", "guidance_steps", "redraws")


def _template_names() -> tuple[str, ...]:
    from handforge.corpus.templates import template_names

    return template_names()


def _check(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    side = params["anchor_side"]
    # (with both hands free, anchor.betas alone is their shape)
    sent = sorted(name for name in arrays if name.startswith("anchor.") and name != "anchor.betas")
    if side == "none" and sent:
        raise invalid(f"arrays.{sent[0]}", "anchor arrays were sent but anchor_side is 'none'",
                      "set anchor_side to the side of the hand you sent, or send no anchor arrays (but "
                      "anchor.betas, the shape of both free hands)")
    for name in REQUIRED_ANCHOR:
        if side != "none" and f"anchor.{name}" not in arrays:
            raise invalid(f"arrays.anchor.{name}", f"anchor_side is {side!r} but anchor.{name} is missing",
                          "send the anchor hand's anchor.global_orient (3,) and anchor.hand_pose (45,)")
    unknown = [n for n in params["templates"] if n not in _template_names()]
    if unknown:
        raise invalid("params.templates", f"unknown template {unknown[0]!r}", "known: " + ", ".join(_template_names()))
    if params["templates"] and params["engine"] != "templates":
        raise invalid("params.templates", "templates only apply to engine 'templates'",
                      "set engine to 'templates' or leave templates empty")
    if params["engine"] == "templates":  # the other way round as well (they were ignored, unsaid)
        refuse_unread(params, SCHEMA.params, LEARNED_ONLY, "learned",
                      "the templates engine draws the corpus's templates")
    elif not params["separation"] and params["redraws"] not in (0, SCHEMA.params["redraws"].default):
        # (a redraw replaces candidates still interlocked after the separation: without it, none would run)
        raise invalid("params.redraws", "redraws only apply with separation (they redraw the candidates the "
                      "separation leaves interlocked)", "set separation to true, or leave redraws out")
    require_hand_model(params["model"])
    if params["engine"] == "learned":
        _check_learned(params)


def _check_learned(params: dict[str, Any]) -> None:
    """The learned engine's checkpoint loads, as far as its files tell, and was trained with the steps asked for:
    said before the job is queued (the job said it when its turn came; it still does, for files changed since)."""
    from handforge.engines.checkpoints import CheckpointError, saved_config
    from handforge.engines.interaction.model_config import INTERACTION_DENOISER

    folder = config.value(CHECKPOINT.key)
    problem = _checkpoint_problem(folder)
    if not problem:
        try:
            most = saved_config(folder, INTERACTION_DENOISER)["num_train_timesteps"]
        except CheckpointError as exc:  # (replaced since it was checked, e.g. a training run writing it)
            problem = str(exc)
    if problem:  # (no folder there: how to set the setting, as the job says it)
        raise ProtocolError(ErrorCode.MISSING_WEIGHTS, f"engine 'learned' cannot run: {CHECKPOINT.key}: {problem}",
                            _CHECKPOINT_FIX if folder and Path(folder).is_dir() else _no_checkpoint_fix())
    if params["steps"] > most:
        raise invalid("params.steps", _too_many_steps(params["steps"], most, folder), f"ask for at most {most} steps")


def _checkpoint_problem(folder: str | None) -> str:
    """Why the learned engine's load will refuse ``folder`` ('' when it loads), from its files, the weights' values
    read too: a checkpoint of NaN weights passed the submit check and the engine's note, and every job then failed
    as missing_weights."""
    from handforge.engines.checkpoints import checkpoint_problem
    from handforge.engines.interaction.model_config import INTERACTION_DENOISER, VECTOR_DIM

    return checkpoint_problem(folder, INTERACTION_DENOISER, finite=True, vector_dim=VECTOR_DIM)


_CHECKPOINT_FIX = (f"point {CHECKPOINT.key} at the model/ folder of a `handforge train interaction` run, or unset it "
                   "for the shipped model; or use engine 'templates', which needs no weights")


def _no_checkpoint_fix() -> str:
    return ("unset interaction.checkpoint for the shipped model, or train one (`handforge train interaction --corpus DIR "
            "--out RUN`) and point at RUN/model: " + CHECKPOINT.how_to_set_in_line() + "; or use engine 'templates', which "
            "needs no weights")


def _too_many_steps(steps: int, most: int, folder) -> str:
    return f"{steps} exceeds the {most} diffusion steps the model at {folder} was trained with"


def sample(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    from handforge.engines.interaction.pipeline import SampleSettings

    hand_model = cached_hand_model(ctx, params["model"])
    settings = SampleSettings(count=params["count"], seed=params["seed"], steps=params["steps"],
                              cfg_scale=params["cfg_scale"], penetration_guidance=params["penetration_guidance"],
                              guidance_steps=min(params["guidance_steps"], params["steps"]),
                              contact_guidance=params["contact_guidance"],
                              separation=params["separation"], touch=params["touch"], redraws=params["redraws"],
                              betas=arrays.get("anchor.betas") if params["anchor_side"] == "none" else None)
    anchor = None
    if params["anchor_side"] != "none":
        anchor = {"side": params["anchor_side"]}
        for name, size in POSE_FIELDS.items():
            anchor[name] = np.asarray(arrays.get(f"anchor.{name}", np.zeros(size)), dtype=np.float32).reshape(size)
    progress = lambda fraction, message: ctx.progress(0.98 * fraction, message)  # noqa: E731
    if params["engine"] == "templates":
        from handforge.engines.interaction.templates import TemplateSampler

        sampler = ctx.model(f"interaction templates on {params['model']}", lambda device: TemplateSampler(hand_model),
                            label=f"the interaction templates for the {params['model']} hand model")
        found = sampler(settings, anchor, templates=params["templates"], progress=progress)
    else:
        found = _learned(ctx, hand_model, params["model"], params)(settings, anchor, progress=progress)
    ctx.progress(1.0, f"{params['count']} candidates")
    data = {"engine": params["engine"], "model": params["model"], "anchor_side": params["anchor_side"],
            "count": params["count"], "best_score": float(found.score[0]), **found.extra}
    if anchor is not None:
        warnings = [_still_off(found, anchor, settings), _anchor_off_limits(hand_model, anchor)]
        if any(warnings):
            data["warning"] = "; ".join(w for w in warnings if w)
    return JobResult(data, found.arrays())


UNUSUAL_BETAS = 5.0  # |betas| beyond this is far from any hand the corpus and InterHand2.6M hold (about ±3)


def _still_off(found, anchor: Mapping[str, np.ndarray], settings) -> str:
    """A warning when every candidate still goes into the anchor past the separation's tolerance, or stays apart from
    it past the touch's (an anchor shaped at betas 20, the schema's limit, left all 35-72 mm deep; at -20, 10 mm
    apart around a fist: said only by low scores)."""
    from handforge.engines.interaction.pipeline import CONTACT_TOLERANCE

    deepest, widest = float(np.min(found.max_depth)), float(np.min(found.gap))
    if settings.separation and deepest > 2 * settings.overlap_tolerance:
        what, measure = f"still goes {deepest * 1000:.0f} mm or more into the anchor", "max_depth"
    elif settings.touch and widest > 2 * CONTACT_TOLERANCE:
        what, measure = f"is still {widest * 1000:.0f} mm or more from the anchor", "gap"
    else:
        return ""
    shape = float(np.abs(anchor["betas"]).max())
    why = (f": the anchor's shape (betas up to {shape:g}) is far from the hands the engines know (within about "
           f"±3), one cause" if shape > UNUSUAL_BETAS else "")
    return f"every candidate {what}{why} (their scores and {measure} say how far)"


# degrees an anchor's finger may lie outside its joint limits unsaid: people's ranges vary by about ±10°
# (handforge_shared.anatomy), and a few degrees barely change the hand the other one is made for
ANCHOR_LIMIT_TOLERANCE_DEG = 5.0
JOINTS_NAMED = 3  # the worst joints a warning names (then how many more)
SEGMENT_WORDS = ("base", "middle", "tip")  # a finger's joints, proximal to distal (skeleton.FINGER_JOINTS)
ANGLE_WORDS = ("bent", "spread", "twisted")  # anatomy.ANGLE_NAMES: flex, abd, twist


def _joint_in_words(joint: int) -> str:
    """A finger joint (MANO index 1..15) as an artist names it, e.g. "index finger's middle joint" (the middle
    finger's had read 'middle middle joint')."""
    from handforge_shared.skeleton import FINGER_JOINTS

    finger, joints = next((f, js) for f, js in FINGER_JOINTS.items() if joint in js)
    return f"{finger if finger in ('thumb', 'pinky') else finger + ' finger'}'s {SEGMENT_WORDS[joints.index(joint)]} joint"


def _anchor_off_limits(hand_model: Any, anchor: Mapping[str, Any]) -> str:
    """A warning when the anchor's fingers lie outside their joint limits: both engines make the other hand for the
    anchor moved into them (the learned one conditions on it, the templates' resolver clamps it), and the scores
    rate the other hand only, so an anchor bent 60° past its limits got candidates scored 1.0, unsaid."""
    from handforge.evaluation.limits import joint_frames
    from handforge_shared.anatomy import hand_pose_to_anatomical, limit_violation

    side = anchor["side"]
    angles = hand_pose_to_anatomical(np.asarray(anchor["hand_pose"], np.float64).reshape(45),
                                     joint_frames(side, hand_model.rig(side)), side)  # (15, 3): flex, abd, twist
    violation = np.degrees(limit_violation(angles))
    worst = violation.max(axis=1)
    off = [j for j in np.argsort(-worst, kind="stable") if worst[j] > ANCHOR_LIMIT_TOLERANCE_DEG]
    if not off:
        return ""

    def how(j: int) -> str:  # (a joint flexed backwards, past straight, is bent back: "bent" read as too far closed)
        kind = int(np.argmax(violation[j]))
        return "bent back" if kind == 0 and angles[j, 0] < 0 else ANGLE_WORDS[kind]

    named = [f"{_joint_in_words(j + 1)} {how(j)} {worst[j]:.0f}° past its limit" for j in off[:JOINTS_NAMED]]
    more = f" and {len(off) - JOINTS_NAMED} more joints" if len(off) > JOINTS_NAMED else ""
    fingers = len({_joint_in_words(j + 1).split("'")[0] for j in off})
    return (f"the anchor is outside its joint limits ({', '.join(named)}{more}): the other hand was made for the "
            f"anchor with its fingers moved into their limits, and the scores rate the other hand only, so bring the "
            f"finger{'s' if fingers > 1 else ''} back within the limits (the rig's Joint Limits, though a bent base "
            f"joint also spreads less, which they leave unchecked) or start from a preset")


def _learned(ctx: JobContext, hand_model: Any, model_name: str, params: dict[str, Any]):
    from handforge.engines.checkpoints import CheckpointError, checkpoint_name
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.interaction.pipeline import InteractionPipeline

    folder = Path(config.value(CHECKPOINT.key))
    if not folder.is_dir():
        raise JobError("missing_weights", f"no interaction checkpoint at {folder}", _no_checkpoint_fix())
    try:
        denoiser = ctx.pretrained(InteractionDenoiser, folder, label=f"the interaction model {checkpoint_name(folder)}")
    except CheckpointError as exc:  # a folder that is no checkpoint of this model (e.g. the run, not run/model)
        raise JobError("missing_weights", str(exc), _CHECKPOINT_FIX) from None
    most = denoiser.config.num_train_timesteps
    if params["steps"] > most:  # (refused at submit: here for a checkpoint changed since)
        raise JobError("invalid_params", f"params.steps: {_too_many_steps(params['steps'], most, folder)}",
                       f"ask for at most {most} steps")
    return ctx.model(f"interaction pipeline {folder.resolve()} {model_name}",
                     lambda device: InteractionPipeline(denoiser, hand_model), checkpoint=folder,
                     label=f"the interaction pipeline of {checkpoint_name(folder)} for the {model_name} hand model")


# the other hand is placed within reach of the anchor: an anchor this far inside the other jobs' bound leaves it room
# (an anchor at -100 m had its partner at -100.17 m, which forward_hands and the motion jobs then refused)
ANCHOR_ROOM = 1.0


def _anchor_arrays() -> dict[str, ArraySpec]:
    docs = {"global_orient": "wrist axis-angle", "hand_pose": "15 finger-joint axis-angles (MANO order)",
            "betas": "shape (default zeros); with anchor_side 'none', both hands' (default: drawn with them)",
            "transl": f"translation, metres (default zeros; within {POSE_LIMITS['transl'] - ANCHOR_ROOM:g} m of the "
                      f"origin, {ANCHOR_ROOM:g} m inside the other jobs' bound, so the other hand placed by it fits "
                      "theirs)"}
    limits = {**POSE_LIMITS, "transl": POSE_LIMITS["transl"] - ANCHOR_ROOM}
    return {f"anchor.{name}": ArraySpec(shape=(size,), required=False, min=-limits[name], max=limits[name],
                                        doc=f"the anchor hand's {docs[name]}")
            for name, size in POSE_FIELDS.items()}


SCHEMA = Schema(
    params={
        # 'learned' by default since its separation, touch and redraws: on the held-out test split it
        # overlaps less than the templates (0.011 against 0.024 cm³) at a lower Fréchet distance (21.6
        # against 34.3), four times faster (README 'Interaction')
        "engine": String(doc="'learned' (default): the diffusion model (needs interaction.checkpoint, shipped); "
                             "'templates': the corpus's interaction templates, no weights", default="learned",
                         choices=ENGINES),
        "model": String(doc="hand model of the anchor and the result", default=DEFAULT_HAND_MODEL, choices=HAND_MODELS),
        "anchor_side": String(doc="side of the artist's hand sent as anchor.* (returned unchanged), or 'none' "
                                  "for both hands free", default="none", choices=ANCHOR_SIDES),
        "count": Integer(doc="candidates, returned best (highest score) first", default=16, min=1, max=MAX_COUNT),
        "seed": Integer(doc="random seed: the same request and seed give the same candidates", default=0, min=0,
                        max=2**31 - 1),
        "steps": Integer(doc="DDIM steps per hand (learned engine)", default=20, min=2, max=200),
        "cfg_scale": Number(doc="classifier-free guidance s, x0 = x0_c + s (x0_c - x0_u) (learned engine); below 0 "
                                "towards the unconditional (-1): varied candidates around one hand; up to 2 (at 3 to "
                                "10 the model was pushed off its data: candidates 9 to 49 cm from the hand)",
                            default=0.1, min=-1.0, max=2.0),
        "penetration_guidance": Number(doc="anti-penetration guidance strength (learned engine; 0 = off)",
                                       default=2.0, min=0.0, max=100.0),  # pipeline.SampleSettings
        "contact_guidance": Number(doc="weight of the contact term beside the penetration term: hands within 3 cm "
                                       "are drawn into touch (learned engine; 0 = off)",
                                   default=1.0, min=0.0, max=100.0),  # pipeline.SampleSettings
        "guidance_steps": Integer(doc="how many of the last steps the anti-penetration guidance acts on (every "
                                      "step when more than steps)",
                                  default=10, min=0, max=200),
        # (both engines: said "learned engine", while a template placed on an artist's hand is settled so too)
        "separation": Boolean(doc="finally move the generated hand rigidly out of the anchor, pose unchanged, until "
                                  "no vertex is deeper than 1.5 mm (learned engine; templates engine with an anchor)",
                              default=True),
        "touch": Boolean(doc="finally move a generated hand that is apart (up to 5 cm) rigidly into touch with the "
                             "anchor, pose unchanged (learned engine; templates engine with an anchor)", default=True),
        "redraws": Integer(doc="rounds of drawing again the candidates still deeper than 1.5 mm after the "
                               "separation, whose fingers interlock (learned engine, with separation; 0 = off)",
                           default=2, min=0, max=8),
        "templates": ListOf(doc="template names the templates engine draws from (empty: all)", default=[],
                            max_items=64, unique=True, item=String(max_length=64)),
    },
    arrays=_anchor_arrays())


def _note() -> str:
    """What the interaction engine lacks: the learned model (then only engine 'templates' runs)."""
    problem = _checkpoint_problem(config.value(CHECKPOINT.key))
    return (f"engine 'learned' cannot run ({CHECKPOINT.key}: {problem}); engine 'templates' can" if problem else "")


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("interaction", "two-hand interaction sampling (InterHandGen): the learned model "
                               "and the always-available templates", note=_note))
    registry.add_kind(JobKind(
        "interaction.sample", sample, SCHEMA, engine="interaction", device="gpu", timeout=600, check=_check,
        description="candidates for the other hand around an anchor hand (or both hands), sorted by plausibility",
        returns={"<side>.<field>": "(count, n) float32 pose parameters of both hands, best candidate first",
                 "score": "(count,) plausibility in (0, 1], higher is better",
                 "max_depth": "(count,) deepest penetration, m, as the score estimates it (along the nearest "
                              "vertex's normal; handforge eval's exact depth can differ)",
                 "gap": "(count,) distance between the hands, m",
                 "limit": "(count,) worst joint-limit violation of the generated hands, degrees",
                 "best_score": "the first candidate's score", "templates": "template of each row (templates engine)",
                 "warning": "only when one applies: every candidate still in or apart from the anchor, or the anchor's "
                            "fingers outside their joint limits (named, in degrees; the other hand was made for the "
                            "anchor moved into them, and the scores rate the other hand only)"}))


__all__ = ["SCHEMA", "register_jobs", "sample"]
