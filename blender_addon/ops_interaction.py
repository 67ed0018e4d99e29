"""Interaction: the other hand around the artist's hand (backend job ``interaction.sample``).

*Sample Interaction* sends the anchor rig's pose (or none: both hands free) and keeps the
candidates, best first, in the window manager: plain numbers and the rigs' names, never Python
references to Blender data, at most ``MAX_CANDIDATES``, and outside the undo history (the window
manager is not undone). Browsing (Next / Previous / the index) poses the rig(s) as a preview
without undo steps, so the last undo step still holds the artist's pose: *Apply* keeps the shown
candidate as one undo step, *Cancel* writes back the channels saved before the first preview.
*Key Candidates* keys N candidates on consecutive frames (generated keys; the artist's keys stay).

The backend answers in the anchor rig's armature space, and the candidates are kept so; each time a
candidate poses or keys a rig, ``pose.into_rig_space`` carries it into the other rig's space as the rigs
stand then (for Key Candidates: on each keyed frame), so rigs moved, rotated or parented to objects that
move apart still meet where the backend put them.
"""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import bpy
import numpy as np
from bpy.app.handlers import persistent
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty,
                       StringProperty)

from . import app_handlers, connection, fingers, hands, jobs, keys, placement
from . import pose as pose_conv
from . import rig as rig_build
from .errors import USER_ERRORS, reports_errors
from .panels import _engine_note, _Panel, _wrapped
from handforge_shared.poses import HandPose, MotionClip
from handforge_shared.skeleton import JOINT_NAMES, SIDES, other_side

JOB_KIND = "interaction.sample"
MAX_CANDIDATES = 64  # a browse list, not a dataset: what the window manager keeps
SENT_FIELDS = ("global_orient", "hand_pose", "betas", "transl")
KEPT_FIELDS = ("global_orient", "hand_pose", "transl")  # the rig keeps its own shape
POSE_TOLERANCE = 1e-4  # rad, m (and the rigs' relative transform): beyond the float32 round trip of a pose
GUIDANCE_STEPS = 10
# in this order: Blender stores an enum choice by its index, and saved scenes chose by it
ENGINE_ITEMS = [("templates", "Templates", "The corpus's interaction templates, placed and settled (no weights)"),
                ("learned", "Learned", "The diffusion model (InterHandGen), the shipped checkpoint")]
ANCHOR_ITEMS = [("ACTIVE", "Active Hand", "The active hand rig stays as posed; the other hand is sampled"),
                ("LEFT", "Left", "The left hand stays as posed; the right hand is sampled"),
                ("RIGHT", "Right", "The right hand stays as posed; the left hand is sampled"),
                ("NONE", "Both Free", "Both hands are sampled")]


# ---------------------------------------------------------------------- stored state (window manager)
class HANDFORGE_PG_interaction_candidate(bpy.types.PropertyGroup):
    score: FloatProperty(name="Score", description="Plausibility in (0, 1], higher is better")
    max_depth: FloatProperty(name="Max Depth", unit="LENGTH",
                             description="Deepest penetration between the hands, as the score estimates it (from the "
                                         "nearest vertex's normal; handforge eval measures it exactly, and can differ)")
    gap: FloatProperty(name="Gap", unit="LENGTH", description="Distance between the hands")
    limit: FloatProperty(name="Limit", description="Worst joint-limit violation, degrees")
    template: StringProperty(name="Template", description="The template it came from (templates engine)")
    poses: StringProperty(name="Poses", options={"HIDDEN"},
                          description="JSON: side → global_orient, hand_pose, transl, in the reference rig's space "
                                      "(the anchor's; the left one's when both are free)")


def _index_changed(self, context):
    if _quiet:
        return
    if self.index > len(self.candidates):  # typed past the end: the last one
        _set_index(self, len(self.candidates))
    try:  # typed in another scene than the rigs': said in the panel, as ◀ / ▶ refuse it
        _check_in_scene(_browse_rigs(self), context.scene)
    except (*USER_ERRORS, KeyError) as exc:
        self.message = str(exc)
        return
    show_candidate(self)


class HANDFORGE_PG_interaction_browse(bpy.types.PropertyGroup):
    candidates: CollectionProperty(type=HANDFORGE_PG_interaction_candidate, name="Candidates",
                                  description="The last sampling's candidates, best first")
    index: IntProperty(name="Candidate", default=1, min=1, update=_index_changed,
                       description="The candidate shown on the rig(s), 1 the most plausible")
    anchor_side: StringProperty(name="Anchor", description="The side kept as posed ('none': both sampled)")
    posed_sides: StringProperty(name="Posed", description="Sides the candidates pose, comma-separated")
    rig_names: StringProperty(name="Rigs", description="JSON: side → the rig object's name")
    rig_uids: StringProperty(name="Rig IDs", options={"HIDDEN"},
                             description="JSON: side → the rig object's session id (it survives a rename)")
    previous: StringProperty(name="Previous", options={"HIDDEN"},
                             description="JSON: the posed rigs' channels before the first preview")
    summary: StringProperty(name="Summary", description="Engine, hand model and time of the sampling")
    sampled_for: StringProperty(name="Sampled For", options={"HIDDEN"},
                                description="JSON: the anchor's pose the candidates were made for")
    message: StringProperty(name="Message", description="Why the preview could not be shown")
    shown: StringProperty(name="Shown", options={"HIDDEN"},
                          description="JSON: the posed rigs' channels as the preview last wrote them, and its frame")


class _SampleOptions:
    """The options of a sampling request, declared once for the panel's settings (kept with the
    scene) and the operator (Blender reads property annotations from mixin classes)."""

    anchor: EnumProperty(name="Anchor", items=ANCHOR_ITEMS, default="ACTIVE", description="Which hand stays as posed")
    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="learned", description="Interaction engine")
    count: IntProperty(name="Count", default=8, min=1, max=MAX_CANDIDATES, description="How many candidates")
    seed: IntProperty(name="Seed", default=0, min=0, max=2**31 - 1, description="Same seed and hands, same candidates")
    steps: IntProperty(name="Steps", default=20, min=2, max=200, description="Denoising steps (learned engine)")
    variety: FloatProperty(name="Variety", default=0.0, min=0.0, max=1.0,
                           description="How far the candidates may stray from the most likely hand for this anchor "
                                       "(learned engine): 0 gives near copies of one, 1 varied ones that fit it less "
                                       "well")
    penetration_guidance: FloatProperty(name="Penetration Guidance", default=2.0, min=0.0, max=100.0,
                                        description="Push the hands apart where they overlap (learned engine; 0 off)")
    contact_guidance: FloatProperty(name="Contact Guidance", default=1.0, min=0.0, max=100.0,
                                    description="Draw hands within 3 cm into touch (learned engine; 0 off)")
    separation: BoolProperty(name="Separation", default=True,
                             description="Finally move the generated hand out of the other, pose unchanged, until "
                                         "no part is deeper than 1.5 mm (learned engine; templates engine "
                                         "around a hand)")
    touch: BoolProperty(name="Touch", default=True,
                        description="Finally move a generated hand that is apart (up to 5 cm) into touch with the "
                                    "other, pose unchanged (learned engine; templates engine around a hand)")


class HANDFORGE_PG_interaction_settings(_SampleOptions, bpy.types.PropertyGroup):
    """What the panel's Sample Interaction button sends (kept with the scene)."""

    key_count: IntProperty(name="Key", default=0, min=0, max=MAX_CANDIDATES,
                           description="How many candidates Key Candidates keys (0: all)")


_quiet = False  # set while the index is written by code that shows the candidate itself


def _set_index(state, value: int) -> None:
    global _quiet
    _quiet = True
    try:
        state.index = value
    finally:
        _quiet = False


def shown(state):
    """The candidate the index points at (1-based)."""
    return state.candidates[min(max(state.index, 1), len(state.candidates)) - 1]


def shown_number(state) -> int:
    """The number of the candidate the index points at (1-based, within the candidates)."""
    return min(max(state.index, 1), len(state.candidates))


def browse_state(context) -> HANDFORGE_PG_interaction_browse:
    return context.window_manager.handforge_interaction


def browsing(context) -> bool:
    return len(browse_state(context).candidates) > 0


# ---------------------------------------------------------------------- rigs
def _find_rig(name: str, uid: int | None):
    """A hand rig by its session id (a renamed rig is still found); by name only without one; None when it
    is gone. Not by name when its id is gone: that is another rig, e.g. one added in place of the deleted
    one under its name, which Next posed and Cancel gave the deleted rig's pose (the candidates are dropped
    when a file is opened, so no id of theirs is renewed)."""
    if uid is not None:
        obj = jobs.by_uid(bpy.data.objects, uid)
    else:
        obj = bpy.data.objects.get(name)
    return obj if obj is not None and obj.type == "ARMATURE" and obj.handforge.is_hand else None


def _rigs(names: dict[str, str], uids: dict[str, int], what: str) -> dict[str, object]:
    rigs = {side: _find_rig(name, uids.get(side)) for side, name in names.items()}
    for side, obj in rigs.items():
        if obj is None:
            raise ValueError(f"the {side} hand rig {names[side]!r} of {what} is gone: sample again")
    hands.check_joints(rigs)  # (a bone renamed since: the poses are read and written by joint name)
    return rigs


def _browse_rigs(state) -> dict[str, object]:
    return _rigs(json.loads(state.rig_names or "{}"), json.loads(state.rig_uids or "{}"), "the candidates")


def check_not_browsed(context, objects, what: str) -> None:
    """Refuse ``what`` on rigs whose interaction candidates are being browsed: Set Shape re-keys a rig for its new
    skeleton, but the channels Cancel writes back were saved for the old one (the hand off its pose before the
    candidates), its undo step holds the preview, and the candidates were made for the shape before."""
    if not browsing(context):
        return
    uids = set(json.loads(browse_state(context).rig_uids or "{}").values())
    browsed = [obj for obj in objects if obj.session_uid in uids]
    if browsed:
        names = " and ".join(repr(obj.name) for obj in browsed)
        raise ValueError(f"interaction candidates are being browsed on {names}, made for the shape they have: Apply "
                         f"or Cancel them (HandForge > Interaction) first, then {what}")


def active_hand(context):
    obj = context.active_object
    if obj is not None and obj.type == "MESH" and obj.handforge.is_hand_mesh and obj.parent is not None:
        obj = obj.parent  # the hand's mesh was clicked: its rig
    if obj is None or obj.type != "ARMATURE" or not obj.handforge.is_hand:
        raise ValueError("the active object is not a HandForge hand: click a hand (rig or mesh), or choose Left, "
                         "Right or Both Free as the anchor")
    return obj


def anchor_and_rigs(context, anchor: str) -> tuple[str, dict[str, object]]:
    """('left' | 'right' | 'none', side → rig) for a request, checked: both rigs, one hand model."""
    found = hands.scene_hands(context.scene, "BOTH")
    missing = [side for side in SIDES if side not in found]
    if missing:
        raise ValueError(f"no {missing[0]} hand in the scene: interaction needs both hands (HandForge › Add Hands)")
    side = {"LEFT": "left", "RIGHT": "right", "NONE": "none"}.get(anchor)
    if anchor == "ACTIVE":
        rig = active_hand(context)
        side = rig.handforge.side
        if found[side] != rig:  # a hand of another pair: its partner is not known (the panel's was posed)
            other = found[other_side(side)]
            raise ValueError(f"the active hand {rig.name!r} is not one of the pair chosen in HandForge > Hands "
                             f"({found['left'].name!r}, {found['right'].name!r}), whose {other_side(side)} hand "
                             f"{other.name!r} would be posed: choose {rig.name!r} and its partner there, or click "
                             f"{found[side].name!r}")
    hands.one_hand_model(found, "interaction")
    hands.check_editable(rig for rig_side, rig in found.items() if rig_side != side)  # the hands to be posed
    hands.check_not_in_edit_mode(found.values())
    hands.check_evaluated(context.view_layer, found.values())  # else the anchor is read, the preview shown, stale
    return side, found


def _snapshot(rig) -> dict:
    """The rig's animation channels and corrective shape-key values, as written (float32 exact)."""
    bones = {pb.name: {"mode": pb.rotation_mode, "rotation_quaternion": list(pb.rotation_quaternion),
                       "rotation_euler": list(pb.rotation_euler), "rotation_axis_angle": list(pb.rotation_axis_angle),
                       "location": list(pb.location), "scale": list(pb.scale)} for pb in rig.pose.bones}
    shape_keys = {kb.name: kb.value for kb in (rig_build.corrective_keys(rig) or [])}
    return {"bones": bones, "shape_keys": shape_keys, "frame": _frame_of(rig)}


def _scene_of(rig):
    """The rig's scene: the one shown, if the rig is there (None: in no scene)."""
    shown = getattr(bpy.context, "scene", None)  # (none in a restricted context: the add-on being disabled)
    if shown is not None and any(o == rig for o in shown.objects):
        return shown
    return next(iter(rig.users_scene), None)


def _frame_of(rig) -> float | None:
    """The frame (subframe included) shown in the rig's scene."""
    scene = _scene_of(rig)
    return None if scene is None else scene.frame_current + scene.frame_subframe


def _restore(rig, saved: dict) -> None:
    for name, channels in saved["bones"].items():
        pb = rig.pose.bones.get(name)
        if pb is None:
            continue
        pb.rotation_mode = channels["mode"]
        for prop in ("rotation_quaternion", "rotation_euler", "rotation_axis_angle", "location", "scale"):
            setattr(pb, prop, channels[prop])
    for kb in rig_build.corrective_keys(rig) or []:
        if kb.name in saved["shape_keys"]:
            kb.value = saved["shape_keys"][kb.name]
    now = _frame_of(rig)
    if saved.get("frame") is not None and now is not None and now != saved["frame"]:
        # saved on another frame (scrubbed while browsing): its keyed values held that frame's, which written here
        # showed against the keys, and Key Pose keyed them. What the artist's animation gives on this frame, as
        # Blender evaluates it (bone keys and NLA strips, keyed sliders moving their fingers, corrective keys)
        placement.show_animation(_scene_of(rig), rig_build.hand_ids(rig))
    else:
        fingers.sync_sliders(rig)


def reference_side(anchor_side: str) -> str:
    """The side whose armature space the candidates are in: the anchor's, the left one's when both are free."""
    return "left" if anchor_side == "none" else anchor_side


def placed(poses: dict, side: str, reference: str, rigs: dict[str, object], worlds: dict[str, np.ndarray]) -> dict:
    """A candidate's hand ``side`` (``poses``: its JSON, in the reference rig's space) in its own rig's space,
    the rigs' objects placed as ``worlds`` says (side → matrix_world): where the backend put it from the
    anchor, wherever the rigs stand now (Apply kept it where they stood when sampled)."""
    pose = {name: np.asarray(poses[side][name], np.float64) for name in KEPT_FIELDS}
    if side == reference:
        return pose
    return pose_conv.into_rig_space(pose, worlds[reference], worlds[side],
                                    np.array(rigs[side].data.bones[JOINT_NAMES[0]].head_local))


def _candidate_pose(state, candidate, side: str, rigs: dict[str, object]) -> HandPose:
    """The candidate's hand ``side`` for its rig as the rigs stand now."""
    worlds = {s: np.array(rig.matrix_world) for s, rig in rigs.items()}
    fields = placed(json.loads(candidate.poses), side, reference_side(state.anchor_side), rigs, worlds)
    return HandPose(betas=pose_conv.rig_betas(rigs[side]), **fields)


def _pose_rig(rig, pose: HandPose) -> None:
    pose_conv.write_pose(rig, pose)
    fingers.sync_sliders(rig)


def show_candidate(state) -> None:
    """Pose the browsed rig(s) with the candidate at ``state.index`` (never raises: an index update)."""
    try:
        rigs = _browse_rigs(state)
        candidate = shown(state)
        for side in state.posed_sides.split(","):
            _pose_rig(rigs[side], _candidate_pose(state, candidate, side, rigs))
        state.shown = json.dumps({side: _snapshot(rigs[side]) for side in state.posed_sides.split(",")})
        state.message = ""
    except (*USER_ERRORS, KeyError, IndexError) as exc:
        state.message = str(exc)


def take_off_preview(state, keep_posed: bool = False) -> list[str]:
    """Put the previewed rigs back as they were before the candidates (which are kept); ``keep_posed``: not a rig
    the artist posed since the add-on last wrote it (``_posed_since``). Returns what was not put back: a rig that
    lost a joint since (a bone renamed or deleted) keeps the candidate shown, whole; it had been put back in part,
    then failed on the lost bone (a KeyError), and Cancel and Sample Interaction failed so until it came back."""
    left = []
    if state.previous:
        written = json.loads(state.shown or "{}")
        for side, saved in json.loads(state.previous).items():
            obj = _find_rig(json.loads(state.rig_names).get(side, ""), json.loads(state.rig_uids or "{}").get(side))
            if obj is None:  # (a deleted rig has nothing to put back)
                continue
            try:
                hands.check_joints({side: obj})
            except hands.NoHandsError as exc:
                left.append(f"{exc}; it keeps the candidate shown, not put back as it was before the candidates")
                continue
            if not (keep_posed and side in written and _posed_since(obj, written[side])):
                _restore(obj, saved)
    return left


def _shown_rigs(state) -> dict[str, object]:
    """The rigs the candidates pose that are still there, by side."""
    names, uids = json.loads(state.rig_names or "{}"), json.loads(state.rig_uids or "{}")
    found = {side: _find_rig(names.get(side, ""), uids.get(side)) for side in state.posed_sides.split(",") if side}
    return {side: rig for side, rig in found.items() if rig is not None}


def end_browse(context, restore: bool) -> list[str]:
    """Forget the candidates; ``restore``: first put the previewed rigs back as they were. Returns what was not
    put back (``take_off_preview``)."""
    state = browse_state(context)
    left = take_off_preview(state) if restore else []
    state.candidates.clear()
    _set_index(state, 1)
    state.previous = state.rig_names = state.rig_uids = state.posed_sides = state.anchor_side = state.message = ""
    state.summary = state.shown = ""
    return left


def _posed_since(rig, written: dict) -> bool:
    """Whether the artist changed ``rig`` since the add-on wrote ``written`` (its ``_snapshot``) on it, on the frame
    it was written on (on another, keys may have posed it)."""
    return written["frame"] == _frame_of(rig) and _snapshot(rig)["bones"] != written["bones"]


def end_browse_for_keys(context, objects, what: str) -> str:
    """End the browse where its candidates pose one of ``objects``, about to be keyed by ``what`` (a motion), the rigs
    put back as they were before the candidates first: left browsing, Cancel put that pose over the new keys (the
    viewport showed a fist where the keys, a render and an export gave the motion) and Apply kept the candidate over
    them. The note for the report ('' when none of them was browsed), as Key Pose ends a browse."""
    if not browsing(context):
        return ""
    keyed = {obj.session_uid for obj in objects}
    browsed = [rig for rig in _shown_rigs(browse_state(context)).values() if rig.session_uid in keyed]
    if not browsed:
        return ""
    end_browse(context, restore=True)
    return (f"the interaction candidates shown on {' and '.join(repr(rig.name) for rig in browsed)} were put away "
            f"(browsing ended): {what} keys {'it' if len(browsed) == 1 else 'them'} now")


def _tweaked(state) -> list[str]:
    """The posed sides whose rig the artist changed since the preview wrote it (``_posed_since``)."""
    shown_pose = json.loads(state.shown or "{}")
    rigs = _browse_rigs(state)
    return [side for side, saved in shown_pose.items() if side in rigs and _posed_since(rigs[side], saved)]


def _step(operator, context, delta: int) -> int:
    """Show the candidate ``delta`` from the shown one; changes the artist made to the shown one (which Apply keeps)
    are replaced, and said so (they went unsaid)."""
    state = browse_state(context)
    _check_in_scene(_browse_rigs(state), context.scene)
    tweaked, before = _tweaked(state), state.index
    _set_index(state, (state.index - 1 + delta) % len(state.candidates) + 1)
    show_candidate(state)
    if state.message:
        raise ValueError(state.message)
    if tweaked:
        operator.report({"WARNING"}, f"candidate {state.index} replaced your changes to {_the_hands(tweaked)} over "
                                     f"candidate {before} (to keep a changed candidate, Apply it before Next or Previous)")
    return state.index


# ---------------------------------------------------------------------- operators
class HANDFORGE_OT_sample_interaction(_SampleOptions, jobs.JobOperator, bpy.types.Operator):
    """Sample the other hand around the anchor hand (or both hands) on the backend, then browse the candidates on the rigs, best first"""

    modal_from_ui = True  # a button runs it modally: progress, Esc cancels

    bl_idname = "handforge.sample_interaction"
    bl_label = "Sample Interaction"
    bl_options = {"REGISTER"}  # only a preview: Apply or Key Candidates make the undo step
    job_kind = JOB_KIND
    made_from_scene = True  # made for the anchor's pose: an undo or redo while it runs may change it
    changes_hands = True  # the candidates pose the other hand

    def job_prepare(self, context):
        """The preview taken off, once as the job starts: not when the request is read again after an Undo or Redo,
        where it put the pose from before the candidates over one the artist gave a hand since, and took that
        for what the add-on wrote (``job_apply``'s ``keep_posed`` then saw no pose of the artist's)."""
        if browsing(context):  # the anchor is read as the artist posed it, not a preview; the candidates
            state = browse_state(context)  # stay until new ones arrive (``job_not_applied``)
            take_off_preview(state)
            # the pose put back is what the add-on wrote last: Apply pressed while it runs took it for the artist's
            # changes to the candidate shown, and kept it; and a hand the artist poses meanwhile is told apart from
            # it (``job_apply``)
            state.shown = json.dumps({side: _snapshot(rig) for side, rig in _shown_rigs(state).items()})
            # not on the hands until ◀ / ▶ or Apply shows it again: a hand posed meanwhile, then Apply, was reported
            # as "applied candidate k (score …) with your changes" of a pose that candidate never had
            state.message = (f"Candidate {shown_number(state)} is not shown: new candidates are being sampled (the "
                             "hands show their pose from before the candidates)")

    def job_request(self, context):
        side, found = anchor_and_rigs(context, self.anchor)
        model = next(iter(found.values())).handforge.hand_model
        ok, why = connection.hand_model_status(model)
        if not ok and connection.BACKEND.capabilities is not None:
            raise ValueError(f"the hands are {model} hands, which the backend cannot use: {why}")
        arrays, anchor = {}, None
        if side != "none":
            hands.check_finite([found[side]])  # (a NaN wrist location was "transl has a non-finite value …")
            pose = pose_conv.read_pose(found[side])
            arrays = {f"anchor.{name}": np.asarray(getattr(pose, name), np.float32) for name in SENT_FIELDS}
            anchor = {name: np.asarray(getattr(pose, name)).tolist() for name in KEPT_FIELDS}
        else:  # both free: sampled for the shape the rigs show them with (the backend drew one: 1 mm became 4.5 mm)
            arrays = {"anchor.betas": np.asarray(pose_conv.rig_betas(found["left"]), np.float32)}
        reference = found[reference_side(side)]
        for rig in found.values():  # rigs of one scale (checked before sending)
            pose_conv.relative_transform(np.array(reference.matrix_world), np.array(rig.matrix_world))
        self._request = {"anchor_side": side, "model": model, "reference": reference.name,
                         "sampled_for": json.dumps({"anchor": anchor, "frame": _frame_of(found[reference_side(side)])}),
                         "rigs": {s: rig.name for s, rig in found.items()},
                         "uids": {s: rig.session_uid for s, rig in found.items()}}
        params = {"engine": self.engine, "model": model, "anchor_side": side, "count": self.count, "seed": self.seed,
                  "separation": self.separation, "touch": self.touch}
        if self.engine == "learned":  # (the backend refuses them for the templates engine, which reads none)
            params.update(steps=self.steps, cfg_scale=variety_cfg(self.variety),
                          penetration_guidance=self.penetration_guidance, contact_guidance=self.contact_guidance,
                          guidance_steps=min(GUIDANCE_STEPS, self.steps))
        return JOB_KIND, params, arrays

    def job_not_applied(self, context):
        """Refused, cancelled or failed: the candidates being browsed are shown again, but not over a hand the artist
        posed while it ran (it was posed over, unasked): that pose stays, a change to the candidate shown."""
        if not browsing(context):
            return
        state = browse_state(context)
        written = json.loads(state.shown or "{}")
        posed = [side for side, rig in _shown_rigs(state).items()
                 if side in written and _posed_since(rig, written[side])]
        if not posed:
            show_candidate(state)
            return
        # the panel still names candidate k and its score: said that it is not on the hands (Apply keeps the pose)
        one = len(posed) == 1
        state.message = (f"Candidate {shown_number(state)} is not shown: {_the_hands(posed)} "
                         f"{'keeps' if one else 'keep'} the pose you gave {'it' if one else 'them'} while the sampling "
                         f"ran (◀ / ▶ show a candidate over {'it' if one else 'them'}, Apply keeps your pose)")

    def job_apply(self, context, result):
        request, arrays = self._request, result.arrays
        count = min(int(np.asarray(arrays["score"]).shape[0]), MAX_CANDIDATES)
        rigs = _rigs(request["rigs"], request["uids"], "the request")
        # taken out of the scene while it ran (unlinked, still in the file): shown there, every browse button refused
        away = [rig for rig in rigs.values() if not any(o == rig for o in context.scene.objects)]  # (not by name)
        if away:
            names = " and ".join(repr(rig.name) for rig in away)
            raise ValueError(f"the hand rig(s) {names} it was made for are no longer in the scene, so the candidates "
                             "were not shown: Sample Interaction again on the hands there now")
        hands.check_not_in_edit_mode(rigs.values())  # (Tab pressed while it ran: the candidates pose the rigs)
        anchor_side = request["anchor_side"]
        sampled = json.loads(request["sampled_for"])
        why = _posed_anew(rigs, anchor_side, sampled)  # (not by an undo: read again there)
        # the candidates fit the pose sent: shown around the new one, deep in it or apart, with the score of 1.0
        # they had for the old (as the motion buttons refuse keys edited while they ran)
        if why == "frame":  # (scrubbed while it ran: the anchor's animation poses it otherwise on this frame)
            raise ValueError(f"the frame changed from {keys.frame_text(sampled['frame'])} to "
                             f"{keys.frame_text(_frame_of(rigs[anchor_side]))} while it ran, where the {anchor_side} "
                             "hand's animation poses it otherwise, and the candidates were made for its pose on "
                             f"frame {keys.frame_text(sampled['frame'])}, so they were not shown: Sample Interaction "
                             "again on the frame you want them for")
        if why:
            raise ValueError(f"the {anchor_side} hand was posed anew while it ran, and the candidates were made "
                             "for its pose before, so they were not shown: Sample Interaction again to fit them to "
                             "it (or undo the change)")
        reference = np.array(rigs[reference_side(request["anchor_side"])].matrix_world)
        posed = [s for s in SIDES if s != request["anchor_side"]]
        per_side = {}
        for side, rig in rigs.items():
            pose = {name: np.asarray(arrays[f"{side}.{name}"], np.float64)[:count] for name in SENT_FIELDS}
            shapes = {name: pose[name].shape for name in KEPT_FIELDS}
            if shapes != {"global_orient": (count, 3), "hand_pose": (count, 45), "transl": (count, 3)}:
                raise ValueError(f"the backend sent {side} poses of shapes {shapes} for {count} candidates")
            pose_conv.relative_transform(reference, np.array(rig.matrix_world))  # (scaled while it ran: refused)
            per_side[side] = pose  # kept in the reference rig's space: placed where the rigs stand when used
        if browsing(context):  # the old candidates give way to a usable result (previewed again during the job, perhaps)
            # a hand the artist posed while it ran keeps that pose, which Cancel gives back, as without old candidates
            # (the pose from before them was put over it)
            take_off_preview(browse_state(context), keep_posed=True)
            end_browse(context, restore=False)
        state = browse_state(context)
        state.candidates.clear()
        templates = result.data.get("templates") or [""] * count
        for i in range(count):
            item = state.candidates.add()
            for name in ("score", "max_depth", "gap", "limit"):
                setattr(item, name, float(np.asarray(arrays[name])[i]))
            item.template = str(templates[i])
            item.poses = json.dumps({side: {name: per_side[side][name][i].tolist() for name in KEPT_FIELDS}
                                     for side in rigs})
        state.anchor_side, state.posed_sides = request["anchor_side"], ",".join(posed)
        state.rig_names = json.dumps(request["rigs"])
        state.rig_uids = json.dumps(request["uids"])
        state.previous = json.dumps({side: _snapshot(rigs[side]) for side in posed})
        state.summary = f"{result.data.get('engine', self.engine)} engine, {request['model']} hands"
        state.sampled_for = request["sampled_for"]
        _set_index(state, 1)
        show_candidate(state)
        notes = []
        anchor = request["anchor_side"]
        shaped = reference_side(anchor)  # the hand whose shape was sent (the left one's when both are free)
        other = other_side(shaped)
        if np.abs(pose_conv.rig_betas(rigs[other]) - pose_conv.rig_betas(rigs[shaped])).max() > 1e-4:
            notes.append(f" (the {other} hand's shape differs from the {shaped} one's, which the candidates "
                         "were made for: Set Shape matches them)")
        if result.data.get("warning"):  # (the backend's, e.g. every candidate still inside the anchor: unshown)
            notes.append(f"; {result.data['warning']}")
        best = state.candidates[0]
        # a note says what did not go as asked (a shape the candidates were not made for): a warning
        return (jobs.Noted if notes else str)(f"{count} candidates, best score {best.score:.3f} (max depth ≈ {best.max_depth * 1000:.1f} mm, gap "
                f"{best.gap * 1000:.1f} mm): Next/Previous to browse, Apply to keep{''.join(notes)}")



class _BrowseOperator:
    keeps = False  # True for the buttons that keep candidates on the rigs (an undo step each)

    @classmethod
    def poll(cls, context):
        if not browsing(context):
            cls.poll_message_set("No interaction candidates: press Sample Interaction first")
            return False
        return not cls.keeps or hands.poll_nothing_in_edit_mode(cls, context)  # (an undo step: see its poll)


class HANDFORGE_OT_interaction_next(_BrowseOperator, bpy.types.Operator):
    """Show the next interaction candidate on the rig(s)"""

    bl_idname = "handforge.interaction_next"
    bl_label = "Next Candidate"
    bl_options = {"REGISTER"}  # a preview, not an undo step

    @reports_errors
    def execute(self, context):
        _step(self, context, +1)
        return {"FINISHED"}


class HANDFORGE_OT_interaction_previous(_BrowseOperator, bpy.types.Operator):
    """Show the previous interaction candidate on the rig(s)"""

    bl_idname = "handforge.interaction_previous"
    bl_label = "Previous Candidate"
    bl_options = {"REGISTER"}

    @reports_errors
    def execute(self, context):
        _step(self, context, -1)
        return {"FINISHED"}


class HANDFORGE_OT_interaction_apply(_BrowseOperator, bpy.types.Operator):
    """Keep the shown interaction candidate on the rig(s) (one undo step) and end browsing"""

    bl_idname = "handforge.interaction_apply"
    bl_label = "Apply Candidate"
    bl_options = {"REGISTER", "UNDO"}
    keeps = True

    @reports_errors
    def execute(self, context):
        state = browse_state(context)
        hands.check_not_in_edit_mode(_browse_rigs(state).values())
        # the artist's changes to the shown candidate (a finger turned, a preset) are kept: posed again, they were
        # lost unsaid; else it is shown again, following rigs moved since (and frames whose keys posed it)
        tweaked = _tweaked(state)
        if tweaked:
            _check_in_scene(_browse_rigs(state), context.scene)
        # posed by the artist where the candidate was not shown (while a new sampling runs, or over one that failed
        # or was cancelled: ``state.message`` says so): the hands hold the artist's pose, not the candidate's, whose
        # score says nothing of it
        unshown = bool(tweaked and state.message)
        index = state.index if tweaked else _step(self, context, 0)
        score = shown(state).score
        _warn_if_changed(self, state)
        rigs = _browse_rigs(state)
        posed = {side: rig for side, rig in rigs.items() if side != state.anchor_side}
        autokey = context.scene.tool_settings.use_keyframe_insert_auto
        if autokey:  # keyed as the pose tools key theirs (else the next frame change took it away on a keyed rig)
            for side, rig in posed.items():
                pose = pose_conv.read_pose(rig) if side in tweaked or unshown else _candidate_pose(state, shown(state),
                                                                                                    side, rigs)
                fingers.posed(context.scene, rig, pose, fingers_only=False)
        keyed = [rig for rig in posed.values() if not autokey and keys.animated_paths(rig)]
        end_browse(context, restore=False)
        if unshown:
            self.report({"INFO"}, f"kept your pose of {_the_hands(tweaked)}: candidate {index} was not "
                                  "shown on it")
        else:
            self.report({"INFO"}, f"applied candidate {index} (score {score:.3f})"
                                  + (f" with your changes to {_the_hands(tweaked)}" if tweaked else ""))
        for rig in keyed:  # Blender poses a keyed rig from its keys at the next frame change: the candidate went unseen
            self.report({"WARNING"}, f"{rig.name!r} has keys, which pose it again at the next frame change: "
                                     "Key Pose (or Key Candidates) to keep this candidate")
        return {"FINISHED"}


class HANDFORGE_OT_interaction_cancel(_BrowseOperator, bpy.types.Operator):
    """Stop browsing the interaction candidates and put the rig(s) back as they were"""

    bl_idname = "handforge.interaction_cancel"
    bl_label = "Cancel Candidates"
    bl_options = {"REGISTER"}  # back to the state of the last undo step

    @reports_errors
    def execute(self, context):
        for note in end_browse(context, restore=True):
            self.report({"WARNING"}, note)
        return {"FINISHED"}


def _posed_anew(rigs: dict[str, object], anchor_side: str, sampled: dict) -> str:
    """Whether the anchor rig's pose now differs from ``sampled["anchor"]``, the one the candidates were made for
    (beyond the float32 round trip): "frame" where the frame shown is not the one it was sampled on (its animation
    poses it otherwise here: the artist went to another frame, nothing to undo), "pose" on the same frame (posed
    anew), "" when it does not differ or both hands were free."""
    if not sampled.get("anchor") or anchor_side not in rigs:
        return ""
    now = pose_conv.read_pose(rigs[anchor_side])
    if not any(np.abs(np.asarray(getattr(now, name)) - value).max() > POSE_TOLERANCE
               for name, value in sampled["anchor"].items()):
        return ""
    frame, shown = sampled.get("frame"), _frame_of(rigs[anchor_side])
    moved_on = frame is not None and shown is not None and abs(shown - frame) > 1e-6
    # (another frame is the reason only where an animation poses the hand: a hand without one was posed anew)
    return "frame" if moved_on and _pose_animated(rigs[anchor_side]) else "pose"


def _pose_animated(rig) -> bool:
    """Whether an animation (an action, NLA strips, drivers) may pose the rig otherwise on another frame."""
    ad = rig.animation_data
    return ad is not None and (ad.action is not None or any(t.strips for t in ad.nla_tracks) or len(ad.drivers) > 0)


def changed_since_sampling(state) -> str:
    """What changed since the candidates were sampled that they do not follow ('' when nothing): the anchor
    hand posed anew. Apply kept a candidate 7 cm from the hand it was made to clasp, its score of 1.0
    reported as if it still held. (Rigs moved against each other are followed: a candidate is placed from
    the anchor where the rigs stand when it is shown, applied or keyed.)"""
    rigs, sampled = _browse_rigs(state), json.loads(state.sampled_for or "{}")
    why = _posed_anew(rigs, state.anchor_side, sampled)
    if why == "frame":  # (the artist went to another frame: nothing was posed, nothing to undo)
        return (f"on frame {keys.frame_text(_frame_of(rigs[state.anchor_side]))} the {state.anchor_side} hand's "
                f"animation poses it otherwise than on frame {keys.frame_text(sampled['frame'])}, where the "
                "candidates were sampled")
    if why:
        return f"the {state.anchor_side} hand was posed anew since the candidates were sampled"
    return ""


def _to_fit(state, posed: str) -> str:
    """What to do about ``changed_since_sampling``: go back to the sampling's frame, or (``posed``, where the
    anchor was posed anew) sample again."""
    sampled = json.loads(state.sampled_for or "{}")
    if _posed_anew(_browse_rigs(state), state.anchor_side, sampled) == "frame":
        return f"go back to frame {keys.frame_text(sampled['frame'])}, or Sample Interaction again here"
    return posed


def _warn_if_changed(operator, state) -> None:
    changed = changed_since_sampling(state)
    if changed:
        operator.report({"WARNING"}, f"{changed}: they fit the hands as they were then, their scores no longer "
                                     f"hold; {_to_fit(state, 'Sample Interaction again to fit them now')}")


def _check_in_scene(rigs: dict[str, object], scene) -> None:
    """Refuse candidates whose rigs are not in ``scene`` (another scene is shown): their keys would go
    on the other scene's rigs at this scene's frame, where the artist does not look."""
    away = [rig for rig in rigs.values() if not any(o == rig for o in scene.objects)]  # (not by name)
    if away:
        names = " and ".join(repr(rig.name) for rig in away)
        where = sorted({s.name for rig in away for s in rig.users_scene})
        home = f"the scene {' / '.join(map(repr, where))}" if where else "no scene"
        raise ValueError(f"the candidates are for the hand(s) {names} in {home}, not in this scene {scene.name!r}: "
                         "switch to that scene to browse, apply or key them (at its frame), or Cancel and sample here")


class HANDFORGE_OT_interaction_key(_BrowseOperator, bpy.types.Operator):
    """Key interaction candidates on consecutive frames from the current one, on both hands (generated keys, on frames without your keys), and end browsing"""

    bl_idname = "handforge.interaction_key"
    bl_label = "Key Candidates"
    bl_options = {"REGISTER", "UNDO"}
    keeps = True

    count: IntProperty(name="Count", default=0, min=0, max=MAX_CANDIDATES,
                       description="How many candidates, best first (0: all)")

    @reports_errors
    def execute(self, context):
        state = browse_state(context)
        available = len(state.candidates)
        count = self.count or available
        if count > available:
            raise ValueError(f"only {_candidates(available)} to key: key at most {available} or sample more (Count)")
        _check_not_before_zero(context.scene.frame_current, count)
        rigs = _browse_rigs(state)
        hands.check_editable(rigs.values())  # both are keyed (sampling checked only the posed one)
        hands.check_not_in_edit_mode(rigs.values())
        scene = context.scene
        _check_in_scene(rigs, scene)
        models = {rig.handforge.hand_model for rig in rigs.values()}
        if len(models) != 1:
            raise ValueError(f"the hands are of different hand models ({', '.join(sorted(models))}) now: sample again")
        changed = changed_since_sampling(state)
        if changed:  # each pair keys the anchor as sampled: the artist's new pose went back unsaid
            raise ValueError(f"{changed}, and each pair keys it as it was then: "
                             f"{_to_fit(state, 'Sample Interaction again to fit them to it (or undo the change)')}")
        rows = [json.loads(c.poses) for c in list(state.candidates)[:count]]
        model = models.pop()
        # (in the reference rig's space: placed on each keyed frame below, once nothing refuses them)
        clip = _candidates_clip(rows, rigs, state.anchor_side, keys.scene_fps(scene), model)
        start = scene.frame_current
        # whole pairs only: around an artist's key a frame held a candidate's hand beside the artist's other
        # hand (or a candidate with the artist's keyed finger), which no dataset wants
        taken = keys.artist_frames(rigs, start, start + count - 1)
        anchor = state.anchor_side
        if anchor in taken:  # the anchor keyed where it was sampled (a change since is refused above):
            # its key is the pose the candidates were made for (Key Pose, then sample, then key them)
            taken[anchor] = [f for f in taken[anchor] if abs(f - start) >= keys.KEPT_KEY_REACH]
            if not taken[anchor]:
                del taken[anchor]
        if taken:
            where = "; ".join(f"the {side} hand at {keys.frame_list(frames)}" for side, frames in taken.items())
            raise ValueError(f"{_frames(start, count)} {'holds' if count == 1 else 'hold'} your keys ({where}): Key "
                             "Candidates puts whole pairs on frames without them: go to a frame past them, or "
                             "delete those keys")
        try:
            frames = keys.check_import(scene, clip, rigs, start)  # a refusal keeps the candidates to browse
            # each candidate placed from the anchor as the rigs stand on its own frame: their parents (keys,
            # constraints) may move them apart between frames, and the frame it was sampled on held for all
            # of them put the other hand off the anchor by what the parents moved
            worlds = _worlds_on(scene, rigs, frames)
            clip = _candidates_clip(rows, rigs, state.anchor_side, clip.fps, model, worlds, frames)
            end_browse(context, restore=True)  # the keys define the pose now; the channels go back first
            summary = keys.import_clip(context, clip, rigs, start)
        except ValueError as exc:  # (PoseFormatError is one)
            raise ValueError(f"the candidates could not be keyed: {exc}") from None
        for warning in summary["warnings"]:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"keyed {_candidates(count)} on {_frames(start, count)} "
                              f"({summary['keys']} keys)" + "".join(f"; {move}" for move in summary["range"]))
        return {"FINISHED"}


def _check_not_before_zero(start: int, count: int) -> None:
    """Refuse keying candidates on frames before 0, as the motion buttons refuse them (``properties.scene_range``):
    keyed there, Blender plays none of them, and they were only said to be unplayed after the keys were made."""
    if start < 0:
        raise ValueError(f"{_frames(start, count)}: frames before 0 cannot be asked for "
                         f"(Key Candidates keys from the current frame, {start}): go to frame 0 or later")


def _frames(start: int, count: int) -> str:
    """The frames ``count`` candidates are keyed on from ``start``: "frame 5" for one (not "frames 5-5")."""
    if count == 1:
        return f"frame {keys.frame_text(start)}"
    return f"frames {keys.range_text(start, start + count - 1)}"


def _candidates(count: int) -> str:
    return f"{count} candidate{'' if count == 1 else 's'}"


def _the_hands(sides) -> str:
    """"the right hand", or "the left and right hands" (a message about both, as sampled without an anchor)."""
    sides = list(sides)
    return f"the {' and '.join(sides)} hand{'' if len(sides) == 1 else 's'}"


def _worlds_on(scene, rigs: dict[str, object], frames) -> list[dict[str, np.ndarray]]:
    """The rigs' matrix_world on each of ``frames`` (``placement.worlds_over``), the rigs' channels (a preview, a
    pose not keyed) as they were after: evaluating a frame puts them back on their keys."""
    frames = list(frames)
    if not any(placement.moves_as_object(rig) for rig in rigs.values()):  # no frame evaluated: nothing to put back
        return [{side: np.array(rig.matrix_world) for side, rig in rigs.items()}] * len(frames)
    saved = {side: _snapshot(rig) for side, rig in rigs.items()}
    try:
        worlds = placement.worlds_over(scene, rigs, frames)
    finally:
        for side, rig in rigs.items():
            _restore(rig, saved[side])
    return [{side: worlds[side][i] for side in rigs} for i in range(len(frames))]


def _candidates_clip(rows: list[dict], rigs: dict[str, object], anchor_side: str, fps: float, model: str,
                     worlds: list | None = None, frames=()) -> MotionClip:
    """Candidate i (``rows``: their poses' JSON) on clip frame i, each hand in its own rig's space as the rigs
    stand in ``worlds[i]`` (keyed on ``frames[i]``); ``worlds`` None: as kept, for the checks before any change."""
    reference = reference_side(anchor_side)
    per_frame = []
    for i, row in enumerate(rows):
        if worlds is None:
            per_frame.append({side: row[side] for side in rigs})
            continue
        try:
            per_frame.append({side: placed(row, side, reference, rigs, worlds[i]) for side in rigs})
        except ValueError as exc:  # (a parent's scale keyed: the rigs scaled apart on that frame)
            raise ValueError(f"on frame {keys.frame_text(frames[i])}, {exc}") from None
    hands_out = {side: HandPose(betas=np.repeat(pose_conv.rig_betas(rig)[None], len(rows), axis=0),
                                **{name: np.array([poses[side][name] for poses in per_frame], np.float64)
                                   for name in KEPT_FIELDS})
                 for side, rig in rigs.items()}
    return MotionClip(hands_out, fps=fps, hand_model=model)


def variety_cfg(variety: float) -> float:
    """Variety 0 … 1 as the learned engine's classifier-free guidance s, 0.1 (its default) … −0.8
    (towards the unconditional sample). Around one hand the conditional model gives near copies of
    one answer (its training pairs give each template pose one partner); measured on the validation
    split's held-out hands: s −0.5 (variety 2/3) spreads 16 candidates by 0.07 rad and 8 mm at nearly
    the default's Fréchet distance (12.3 against 12.2), s −0.8 by 0.6 rad and 9–18 cm at 31."""
    return round(0.1 - 0.9 * variety, 4)


def draw_panel(layout, context) -> None:
    """The Interaction panel's contents (``HANDFORGE_PT_interaction``)."""
    settings = context.scene.handforge_interaction
    col = layout.column(align=True)
    col.prop(settings, "anchor")
    col.prop(settings, "engine")
    row = col.row(align=True)
    row.prop(settings, "count")
    row.prop(settings, "seed")
    if settings.engine == "learned":
        row = col.row(align=True)
        row.prop(settings, "steps")
        row.prop(settings, "variety")
        row = col.row(align=True)
        row.prop(settings, "penetration_guidance", text="Guidance")
        row.prop(settings, "contact_guidance", text="Contact")
    # the templates engine settles its candidates around the artist's hand by them too (sent either way: hidden, one
    # unticked for the learned engine left the templates' candidates in or apart from the hand, unseen)
    if settings.engine == "learned" or settings.anchor != "NONE":
        row = col.row(align=True)
        row.prop(settings, "separation")
        row.prop(settings, "touch")
    op = layout.operator(HANDFORGE_OT_sample_interaction.bl_idname, icon="HAND")
    jobs.copy_options(op, settings, _SampleOptions)
    state = browse_state(context)
    if not len(state.candidates):
        return
    box = layout.box()
    if jobs.running(HANDFORGE_OT_sample_interaction.bl_idname):
        _draw_resampling(box, state)
    else:
        _draw_candidate(box, state)
    row = box.row(align=True)
    row.operator(HANDFORGE_OT_interaction_apply.bl_idname, text="Apply", icon="CHECKMARK")
    row.operator(HANDFORGE_OT_interaction_cancel.bl_idname, text="Cancel", icon="CANCEL")
    row = box.row(align=True)
    row.prop(settings, "key_count", text="Key")
    row.operator(HANDFORGE_OT_interaction_key.bl_idname, icon="KEY_HLT").count = settings.key_count


def _draw_candidate(box, state) -> None:
    """The candidate shown on the rig(s): its number, ◀ / ▶, its score."""
    row = box.row(align=True)
    row.operator(HANDFORGE_OT_interaction_previous.bl_idname, text="", icon="TRIA_LEFT")
    row.prop(state, "index", text=f"Candidate (of {len(state.candidates)})")
    row.operator(HANDFORGE_OT_interaction_next.bl_idname, text="", icon="TRIA_RIGHT")
    candidate = shown(state)
    box.label(text=f"Score {candidate.score:.3f}   depth ≈ {candidate.max_depth * 1000:.1f} mm   "
                   f"gap {candidate.gap * 1000:.1f} mm")
    if candidate.template:
        box.label(text=f"Template: {candidate.template}")
    if state.message:
        box.label(text=state.message, icon="ERROR")


def _draw_resampling(box, state) -> None:
    """While a new sampling runs the candidate is off the rig (its request read the anchor as the artist posed it):
    naming it and its score said it was shown. Apply still keeps it."""
    number = shown_number(state)
    _wrapped(box, f"Sampling new candidates… The hands show their pose from before the candidates until they land; "
                  f"Apply keeps candidate {number} (of {len(state.candidates)})", icon="SORTTIME")


class HANDFORGE_PT_interaction(_Panel, bpy.types.Panel):
    bl_label = "Interaction"

    def draw(self, context):
        _engine_note(self.layout, context, "interaction")
        draw_panel(self.layout, context)


CLASSES = (HANDFORGE_PG_interaction_candidate, HANDFORGE_PG_interaction_browse, HANDFORGE_PG_interaction_settings,
           HANDFORGE_OT_sample_interaction, HANDFORGE_OT_interaction_next, HANDFORGE_OT_interaction_previous,
           HANDFORGE_OT_interaction_apply, HANDFORGE_OT_interaction_cancel, HANDFORGE_OT_interaction_key,
           HANDFORGE_PT_interaction)
ENGINES = ()  # none: the Backend panel keeps interaction.sample's Run Job button too (the engine's note in its box)


@persistent
def _forget_on_load(*_args) -> None:
    """Another file: the candidates named rigs of the one before."""
    state = getattr(bpy.context.window_manager, "handforge_interaction", None)
    if state is not None and len(state.candidates):
        end_browse(bpy.context, restore=False)


@persistent
def _forget_on_undo(*_args) -> None:
    """An undo (or redo) while candidates are shown ends the browse, the hands left as the undo made them:
    what Cancel would restore was saved before it, and Cancel wrote the undone pose back onto one hand."""
    state = getattr(bpy.context.window_manager, "handforge_interaction", None)
    if state is not None and len(state.candidates):
        end_browse(bpy.context, restore=False)


_SHOWN_AT_SAVE: dict[int, dict] = {}  # the previewed rigs' channels while a file is written, by session_uid


@persistent
def _save_without_preview(*_args) -> None:
    """A file saved while a candidate is shown holds the rigs as they were before the candidates: the
    preview is no undo step, and opening the file drops the candidates, so a saved preview could not be
    taken back. What is shown (a candidate, tweaked or not) comes back after the write
    (``_shown_again_after_save``)."""
    state = getattr(bpy.context.window_manager, "handforge_interaction", None)
    _SHOWN_AT_SAVE.clear()
    if state is not None and len(state.candidates) and state.previous:
        names, uids = json.loads(state.rig_names or "{}"), json.loads(state.rig_uids or "{}")
        for side in json.loads(state.previous):
            rig = _find_rig(names.get(side, ""), uids.get(side))
            if rig is not None and not rig_build.missing_bones(rig):  # (one that lost a joint is not taken off)
                _SHOWN_AT_SAVE[rig.session_uid] = _snapshot(rig)
        take_off_preview(state)


@persistent
def _shown_again_after_save(*_args) -> None:
    for uid, shown in _SHOWN_AT_SAVE.items():
        rig = jobs.by_uid(bpy.data.objects, uid)
        if rig is not None:
            _restore(rig, shown)
    _SHOWN_AT_SAVE.clear()


HANDLERS = (("load_post", _forget_on_load), ("save_pre", _save_without_preview), ("save_post", _shown_again_after_save),
            ("save_post_fail", _shown_again_after_save),  # (a save that failed: no save_post)
            ("undo_post", _forget_on_undo), ("redo_post", _forget_on_undo))


def register() -> None:
    app_handlers.add(*HANDLERS)
    bpy.types.WindowManager.handforge_interaction = PointerProperty(
        type=HANDFORGE_PG_interaction_browse, name="Interaction Candidates",
        description="The sampled interaction candidates being browsed in this session")
    bpy.types.Scene.handforge_interaction = PointerProperty(
        type=HANDFORGE_PG_interaction_settings, name="Interaction Settings",
        description="What the Interaction panel's Sample Interaction button sends")


def shutdown() -> None:
    """The add-on disabled (also by an upgrade, or Blender quitting) while candidates are browsed: the browse ends
    with the rigs put back as they were before the candidates, as Cancel does. The candidates and the channels
    Cancel writes back live in the window manager's property, gone with the add-on, and the save handlers that
    take the preview off a saved file with it: the candidate stayed on the rig, and a file saved then held it as
    the hand's pose, the artist's lost. Called before the add-on's other parts stop (the frame handlers that move
    keyed sliders' fingers, used when the frame changed while browsing). Never raises, so that the add-on is
    still unregistered: where the rigs cannot be put back (a context Blender restricts, without ``bpy.data``) it
    says so on the console, naming them."""
    try:
        wm = bpy.context.window_manager  # (a restricted context has it too)
        state = getattr(wm, "handforge_interaction", None)
        if state is None or not len(state.candidates):
            return
        names = json.loads(state.rig_names or "{}")
        context = SimpleNamespace(window_manager=wm)  # what end_browse reads
    except Exception as exc:  # noqa: BLE001 - unregister goes on
        print(f"HandForge: the interaction candidates could not be ended on disabling ({exc!r})", file=sys.stderr)
        return
    try:
        end_browse(context, restore=True)
    except Exception as exc:  # noqa: BLE001 - unregister goes on; the artist is told which rigs
        print(f"HandForge: the hand rig(s) {', '.join(map(repr, names.values()))} could not be put back as they "
              f"were before the interaction candidates on disabling HandForge ({exc!r}): the candidate shown may "
              f"stay on them (Ctrl-Z, or pose them again)", file=sys.stderr)
        try:
            end_browse(context, restore=False)
        except Exception:  # noqa: BLE001 - (the property goes with the add-on anyway)
            pass


def unregister() -> None:
    shutdown()  # (already done by the add-on's unregister; here too for a caller of this one alone)
    app_handlers.remove(*HANDLERS)
    del bpy.types.Scene.handforge_interaction
    del bpy.types.WindowManager.handforge_interaction
