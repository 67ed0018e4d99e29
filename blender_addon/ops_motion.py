"""Motion from the backend's motion engine, onto the rigs as GENERATED keys (one undo step each):

- *In-between* (``motion.inbetween``): the artist's keys on the chosen hands in a frame range are
  the constraints (per frame and part: wrist rotation, each finger joint, wrist location), the
  parts left free are generated; the other hand in the scene goes along as it is animated.
- *Follow Wrist Path* (``motion.trajectory``): a curve object (its centre line, travelled at constant
  speed over the range) or any animated object (an empty) drives each wrist; the fingers are generated.
- *Generate Motion* (``motion.generate``): two-hand motion over the range from nothing.
- *Regenerate*: the last of these buttons that ran to its end, again with the next seed, as a fresh
  sample (variation 1 unless one was set), on the keys and paths as they are now; its GENERATED keys
  are replaced. Forgotten when another file is opened.

The artist's keys on the parts In-between keeps (*Kept*), and the wrist keys along a wrist path (its
location; its rotation too when kept as animated), are never changed: ``keys.import_clip`` writes there
only where no other key is (per F-curve). On the parts In-between leaves out of Kept, the parts Follow
Wrist Path generates, and everywhere for Generate Motion, the artist's keys inside the range are replaced
with the rest (kept, each was a one-frame jump to the old pose), said in the report, and back with the
same undo (``_MotionJob.generated_parts``).
Everything is checked in Blender before a request is sent (rigs, range, keys, hand model, path objects).
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from typing import Any

import bpy
import numpy as np
from bpy.app.handlers import persistent
from bpy.props import EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import app_handlers, fcurves, hands, importers, jobs, keys, placement
from . import pose as pose_conv
from .errors import USER_ERRORS
from .ops_pose import _target, sides_option
from .panels import _engine_note, _Panel
from .properties import ONE_SHOT, SCENE_FRAME_END, SCENE_FRAME_START, scene_range
from handforge_shared.client import motion_clips
from handforge_shared.poses import KEY_PARTS, MOTION_MAX_FRAMES, TRANSL_LIMIT, HandPose, MotionClip, hand_array_name
from handforge_shared.skeleton import JOINT_NAMES, MODEL_TO_BLENDER, SIDES

KINDS = ("motion.inbetween", "motion.trajectory", "motion.generate")
WRIST_LOCATION = keys.WRIST_LOCATION
WRIST = JOINT_NAMES[0]

ENGINE_ITEMS = [("learned", "Learned", "The diffusion model (the backend's motion.checkpoint)"),
                ("spline", "Spline", "Rotation splines and cubic wrist paths through the keys")]
FIXED_ITEMS = [("WRIST_ROTATION", "Wrist Rotation", "Your wrist rotation keys are kept; otherwise it is generated"),
               ("WRIST_LOCATION", "Wrist Location", "Your wrist location keys are kept; otherwise it is generated"),
               ("FINGERS", "Fingers", "Your finger keys are kept; otherwise the fingers are generated")]
FIXED_COLUMNS = {"WRIST_ROTATION": [0], "FINGERS": list(range(1, KEY_PARTS - 1)), "WRIST_LOCATION": [WRIST_LOCATION]}
KEPT_LABELS = {name: label for name, label, _ in FIXED_ITEMS}  # Kept's choice of each part, as its menu says
ROTATION_ITEMS = [("GENERATE", "Generate", "The wrist rotation is generated along the path"),
                  ("ANIMATION", "Keep Animation", "The wrist keeps its own animated rotation")]
APART_ITEMS = [("default", "Default", "In-between: Repair; wrist paths and generation: When Close"),
               ("repair", "Repair", "Generate, then move the hands out of each other where one goes into the "
                                    "other, keys kept (learned engine)"),
               ("auto", "When Close", "Steer the hands apart while the wrists are within 20 cm, then repair "
                                      "(learned engine)"),
               ("on", "Always", "Steer the hands apart throughout, then repair (learned engine)"),
               ("off", "Off", "No steering: the hands may pass through each other")]

# The last motion button that ran to its end: its operator, its options and the params it sent.
# Regenerate runs that button again with the next seed, on the keys and paths as they are by then.
LAST_RUN: dict[str, Any] = {}
SEED_LIMIT = 2 ** 31  # seeds are 0 … 2³¹ − 1 (the job's schema)
FPS_LIMITS = (1.0, 1000.0)  # the frame rates the motion jobs take (their schema's fps)


# ---------------------------------------------------------------------- reading the scene
def frame_range(scene, start: int, end: int) -> tuple[int, int]:
    """The operator's range (-1: the scene's), at least 2 and at most MOTION_MAX_FRAMES frames. A refusal says
    which end is the scene's: with the panel's Start and End at -1, "set End after Start" sent the artist to
    fields that showed -1, and "split it" did not say where a shorter range is set."""
    asked = (start, end)
    start, end = scene_range(scene, start, end)
    taken = [name for name, frame in zip(("Start", "End"), asked) if frame < 0]
    what = (f"the frame range {start}-{end}" if not taken else f"the scene's frame range {start}-{end}" if
            len(taken) == 2 else f"the frame range {start}-{end} ({taken[0]} -1: the scene's {taken[0].lower()})")
    where = " in the Motion panel" if taken else ""
    if end <= start:
        raise ValueError(f"{what} has fewer than 2 frames: set End after Start{where}")
    if end - start + 1 > MOTION_MAX_FRAMES:
        raise ValueError(f"{what} has {end - start + 1} frames; the motion engine takes at most {MOTION_MAX_FRAMES}: "
                         f"split it into shorter ranges, setting Start and End{where} for each")
    return start, end


def check_fps(scene) -> float:
    """The scene's frame rate, refused here, naming Blender's settings, where the motion jobs cannot take it (the
    backend's refusal named its own field: "params.fps: must be between 1.0 and 1000.0, got 0.5")."""
    fps = keys.scene_fps(scene)
    low, high = FPS_LIMITS
    if not low <= fps <= high:
        raise ValueError(f"the scene's frame rate is {fps:g} fps (Frame Rate {scene.render.fps} / Base "
                         f"{scene.render.fps_base:g}); the motion engine takes {low:g} to {high:g} fps: set the Frame "
                         "Rate in Output Properties > Format (Custom: FPS and Base), or key the motion at another rate "
                         "and retime it")
    return fps


def check_replacing_action(rigs: dict[str, object]) -> None:
    """Refuse a hand to be keyed whose action plays over NLA strips blended (Combine, Add, …) or at an influence
    under 1: the motion is made from the pose shown and keyed into the action, so the strips' pose was added to it
    again (an in-between over a base layer doubled the base on its generated frames, its keyed ones as they were)."""
    for side, rig in rigs.items():
        ad = rig.animation_data
        if ad is None or ad.action is None or not ad.use_nla or ad.use_tweak_mode:  # (tweak mode: refused elsewhere)
            continue
        if not any(not track.mute and len(track.strips) for track in ad.nla_tracks):
            continue  # (no strips under it: Blender plays the action as it is, whatever its blending)
        if ad.action_blend_type != "REPLACE" or ad.action_influence < 1.0:
            blending = ad.bl_rna.properties["action_blend_type"].enum_items[ad.action_blend_type].name
            raise ValueError(f"the {side} hand {rig.name!r} plays its action {ad.action.name!r} over NLA strips with "
                             f"Blending {blending} and Influence {ad.action_influence:g}: the motion is made from the "
                             "pose shown and keyed into that action, which would add the strips' pose to it again; "
                             "set the action's Blending to Replace and Influence to 1 (NLA editor > Sidebar > "
                             "Animation Data), or push it down and key the motion on a new action")


def motion_hands(context, target: str, whole_target: bool = True) -> tuple[dict[str, object], dict[str, object]]:
    """(hands to write, every hand of the scene), checked to be of one hand model and evaluated (read
    frame by frame where limits, NLA or drivers are on, and shown with their new keys). With
    ``whole_target``, Both needs both hands: In-between and Generate Motion moved just the one there,
    unsaid (Follow Wrist Path writes the hands its paths name, and refuses a path for a missing one)."""
    chosen = hands.scene_hands(context.scene, target, edit=True)
    missing = [side for side in hands.TARGET_SIDES[target] if side not in chosen]
    if whole_target and missing:
        there = next(iter(chosen))  # (none at all: scene_hands said so)
        raise hands.NoHandsError(f"both hands are chosen, but the scene has no {missing[0]} hand, only the {there} "
                                 f"hand {chosen[there].name!r}: add the {missing[0]} hand with HandForge > Add Hands "
                                 f"(Hands: {missing[0].title()}), or choose {there.title()} as the hands to move")
    every = hands.scene_hands(context.scene, "BOTH")
    hands.check_not_in_edit_mode(every.values())  # (as the buttons' poll: a hand read in Edit Mode is in flux too)
    hand_model(every)
    hands.check_evaluated(context.view_layer, every.values())
    keys.check_scene_time(every)
    return chosen, every


def hand_model(every: dict[str, object]) -> str:
    return hands.one_hand_model(every, "the motion engine")


def _part_curves(arm_obj):
    """(part, F-curve) of each curve of the rig's action that animates a pose part (key-mask column), plays and holds
    keys (a muted curve plays nothing: the pose sent there is not its keys', so they constrain nothing)."""
    bag = fcurves.find_channelbag(arm_obj)
    if bag is None:
        return
    part_of = keys.key_parts(arm_obj)
    for fc in bag.fcurves:
        part = part_of.get(fc.data_path)
        if part is not None and fcurves.plays(fc) and len(fc.keyframe_points):
            yield part, fc


def artist_key_mask(arm_obj, start: int, end: int, columns: list[int] | None = None) -> np.ndarray:
    """(T, 17) bool: where the artist's (not GENERATED) keys are, per frame of [start, end] and part.
    An artist key between frames on one of ``columns`` (the kept parts) is refused: the motion is made
    on whole frames, so it would have gone past that key, generated keys either side of it."""
    return _key_mask(arm_obj, start, end, columns, artist_only=True)


def _key_mask(arm_obj, start: int, end: int, columns: list[int] | None, artist_only: bool) -> np.ndarray:
    """(T, 17) bool: where keys are, per whole frame of [start, end] and part: the artist's only
    (``artist_key_mask``, which refuses those between frames), or any key (the artist's or generated)."""
    mask = np.zeros((end - start + 1, KEY_PARTS), bool)
    between: set[float] = set()
    parts: set[str] = set()  # the Kept choices those keys are on
    generated = fcurves.enum_value(bpy.types.Keyframe, "type", fcurves.GENERATED)
    for part, fc in _part_curves(arm_obj):
        co = np.empty(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        frames = co[0::2].astype(np.float64)
        if artist_only:
            frames = frames[fcurves.key_types(fc) != generated]
        rows = np.rint(frames)
        whole = np.abs(frames - rows) < 1e-3
        on = whole & (rows >= start) & (rows <= end)
        mask[(rows[on] - start).astype(int), part] = True
        if artist_only and (columns is None or part in columns):
            off = frames[~whole & (frames > start) & (frames < end)].round(3).tolist()
            between.update(off)
            if off:
                parts.add(next(label for name, label in KEPT_LABELS.items() if part in FIXED_COLUMNS[name]))
    if between:
        named = [label for label in KEPT_LABELS.values() if label in parts]  # (in the Kept menu's order)
        kept = {label for name, label in KEPT_LABELS.items() if columns is None or set(FIXED_COLUMNS[name]) & set(columns)}
        # (leaving every kept part out is refused: "no part is kept")
        other = (" or leave " + f"{', '.join(named[:-1]) + ' and ' if len(named) > 1 else ''}{named[-1]} out of Kept"
                 if kept - set(named) else "")
        raise ValueError(f"{arm_obj.name!r} has your keys between frames (at {keys.frame_list(sorted(between))}) in "
                         f"{start}-{end}: in-betweening goes through keys on whole frames only; move them onto "
                         f"frames (Key > Snap > Selection to Nearest Frame){other}")
    return mask


def keyed_extent(arm_obj) -> dict[int, tuple[float, float]]:
    """Per part (key-mask column), the first and last frame of any key on it (the artist's or generated) on an
    unmuted curve; a part absent has none."""
    extent: dict[int, tuple[float, float]] = {}
    for part, fc in _part_curves(arm_obj):
        first, last = fc.keyframe_points[0].co[0], fc.keyframe_points[-1].co[0]  # (Blender keeps them sorted)
        was = extent.get(part, (first, last))
        extent[part] = (min(was[0], first), max(was[1], last))
    return extent


def never_keyed(arm_obj, columns: list[int]) -> frozenset[int]:
    """The parts of ``columns`` with no key at all: In-between holds them as they are (``held_as_animated``) and
    writes no key on them (``key_motion``'s ``leave``), so that the next run, or Regenerate, holds them again."""
    extent = keyed_extent(arm_obj)
    return frozenset(c for c in columns if c not in extent)


def held_as_animated(arm_obj, mask: np.ndarray, columns: list[int], start: int, end: int) -> np.ndarray:
    """``mask`` (the artist's keys on the kept ``columns``) with what the animation shows kept too: a kept part with
    no key at all at every frame (it stays as it is: the learned engine moved an unkeyed wrist by centimetres), and a
    kept part keyed beyond an edge of the range at that edge (the motion joins the animation there: it held the
    first key's pose from the range's start, and the curve from a key before the range bent to meet it)."""
    mask = mask.copy()
    extent = keyed_extent(arm_obj)
    for c in columns:
        if c not in extent:
            mask[:, c] = True
            continue
        first, last = extent[c]
        mask[0, c] |= first < start - 1e-3
        mask[-1, c] |= last > end + 1e-3
    return mask


def animated_poses(context, every: dict[str, object], start: int, end: int) -> dict[str, HandPose]:
    """Every hand's pose at each frame of [start, end] as Export Motion reads it (``keys.export_clip``):
    from the F-curves in bulk (the keys' values where keyed), or frame by frame where joint limits,
    keyed finger sliders, NLA or drivers change what is shown."""
    return dict(keys.export_clip(context, every, start, end).hands)


def _pose_arrays(side: str, poses: HandPose, fields=("global_orient", "hand_pose", "transl")) -> dict[str, np.ndarray]:
    out = {hand_array_name(side, f): np.asarray(getattr(poses, f), np.float64) for f in fields}
    out[hand_array_name(side, "betas")] = np.asarray(poses.betas[0], np.float64)
    return out


# what In-between's refusal of a hand keyed on fewer than 2 frames advises; Regenerate, which keeps the last run's range
# and hands, says its own (``REGENERATE_FEW_KEYS_ADVICE``)
FEW_KEYS_ADVICE = "key the pose at another frame (Key Pose), widen the range, or choose the other hand only"
_regenerating = False  # True while Regenerate runs a button (``HANDFORGE_OT_motion_regenerate._run``)
REGENERATE_FEW_KEYS_ADVICE = ("key the pose at another frame (Key Pose), or run In-between again over a wider range "
                              "or on the other hand only")


def _generated_frames(arm_obj, start: int, end: int, columns: list[int]) -> int:
    """How many frames of [start, end] hold generated keys (imported or made by a job) on ``columns``."""
    found = ~artist_key_mask(arm_obj, start, end, columns) & _key_mask(arm_obj, start, end, None, artist_only=False)
    return int(found[:, columns].any(axis=1).sum())


def inbetween_arrays(context, chosen: dict, every: dict, start: int, end: int, fixed: set[str]) -> dict[str, np.ndarray]:
    """Keys of the chosen hands (the fixed parts at the artist's keyed frames) and the other hand's
    animation at every frame (so that the generated hands move with it)."""
    columns = [c for part in fixed for c in FIXED_COLUMNS[part]]
    if not columns:
        raise ValueError("no part is kept: choose at least one of Wrist Rotation, Wrist Location, Fingers "
                         "(use Generate Motion for motion without keys)")
    arrays: dict[str, np.ndarray] = {}
    for side, obj in every.items():
        if side in chosen:
            found = artist_key_mask(obj, start, end, columns)
            mask = np.zeros_like(found)
            mask[:, columns] = found[:, columns]
            keyed = np.flatnonzero(mask.any(axis=1)) + start
            if len(keyed) < 2:
                where = f"only at frame {keyed[0]}" if len(keyed) else "on no frame"
                ad = obj.animation_data
                nla = (" (keys in NLA strips are not read: in-betweening works on the rig's active action)"
                       if ad is not None and any(t.strips for t in ad.nla_tracks) else "")
                if ad is not None and ad.action is not None and fcurves.find_channelbag(obj) is None:
                    slot = getattr(ad.action_slot, "name_display", "") if hasattr(ad, "action_slot") else ""
                    nla += (f" (its action {ad.action.name!r} has no keys in the slot the rig uses"
                            f"{f', {slot!r}' if slot else ''}: choose the rig's slot in the Action editor)")
                # (not for Regenerate: the generated keys there are the last run's, which it replaces)
                imported = 0 if _regenerating else _generated_frames(obj, start, end, columns)
                if imported:  # the hand holds keys there, just not the artist's: "keyed on no frame" read as a bug
                    raise ValueError(
                        f"the {side} hand ({obj.name!r}) has your own keys {where} of {start}-{end} (on the kept "
                        f"parts){nla}: its keys on {imported} frame{'s' if imported != 1 else ''} there are imported "
                        "or generated, not your own, and in-betweening goes through your own keys only (on at least "
                        "2 frames): turn them into yours with Make Mine (Animation panel, Generated keys) and press "
                        f"In-between again, or {FEW_KEYS_ADVICE}")
                raise ValueError(f"the {side} hand ({obj.name!r}) is keyed {where} of {start}-{end} (on the kept "
                                 f"parts){nla}: in-betweening needs keys on at least 2 frames; {FEW_KEYS_ADVICE}")
            mask = held_as_animated(obj, mask, columns, start, end)
        else:
            mask = np.ones((end - start + 1, KEY_PARTS), bool)
        arrays[hand_array_name(side, "mask")] = mask.astype(np.uint8)
    for side, poses in animated_poses(context, every, start, end).items():  # after the checks: may be frame by frame
        arrays.update(_pose_arrays(side, poses))
    return arrays


def _centre_line(obj) -> np.ndarray:
    """(N, 3) local points along a curve object's one spline, as Blender tessellates it (its
    resolution), without what dresses it: bevel, extrusion, offset and modifiers (a tube's or a
    geometry-nodes result's vertices are not the path). Read from a temporary copy, removed after."""
    if obj.mode == "EDIT":  # the copy would hold the curve as it was before Edit Mode: its edits go in first
        obj.update_from_editmode()
    data = obj.data.copy()
    data.bevel_depth, data.extrude, data.offset = 0.0, 0.0, 0.0
    data.bevel_object = data.taper_object = None
    plain = bpy.data.objects.new("HandForge path probe", data)  # linked to no scene: no modifiers, never drawn
    try:
        mesh = plain.to_mesh()
        if mesh is None:
            return np.zeros((0, 3))
        points = np.empty(len(mesh.vertices) * 3, np.float64)
        mesh.vertices.foreach_get("co", points)
        plain.to_mesh_clear()
        return points.reshape(-1, 3)
    finally:
        bpy.data.objects.remove(plain)
        bpy.data.curves.remove(data)


def _object_positions(scene, obj, start: int, end: int) -> np.ndarray:
    """(T, 3) world positions: along a curve at constant speed, else the object's own (animated) location."""
    if obj.type == "CURVE":
        count = len(obj.data.splines)
        if count != 1:
            raise ValueError(f"the curve {obj.name!r} has " + (
                "no spline: a wrist path is one; draw it in Edit Mode (Add > Curve adds one with it)" if not count else
                f"{count} splines: a wrist path is one; separate the others (Edit Mode: select one, P > Selection) "
                "or delete them"))
        local = _centre_line(obj)
        if len(local) < 2:
            raise ValueError(f"the curve {obj.name!r} has no length: draw a path with at least two points")
        # on each frame, the curve where it stands then (carried by an animated parent, keyed, constrained): the
        # wrist on its centre line as it moves; read at the frame shown, the wrist went along the curve where it
        # stood on that frame, another path for each frame the button was pressed on
        matrices = _world_matrices(scene, obj, start, end)
        out, along = np.empty((end - start + 1, 3)), {}
        for i, matrix in enumerate(matrices):
            key = matrix.tobytes()
            if key not in along:  # (a curve that stands still: once)
                points = local @ matrix[:3, :3].T + matrix[:3, 3]
                arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))])
                along[key] = points, arc, np.linspace(0.0, arc[-1], end - start + 1)
            points, arc, at = along[key]
            out[i] = [np.interp(at[i], arc, points[:, k]) for k in range(3)]
        if max(arc[-1] for _, arc, _ in along.values()) < STILL_M:  # (the wrist stood still, keyed over the range)
            raise ValueError(f"the curve {obj.name!r} has no length (its points coincide, or it is scaled to 0): "
                             "draw a path with at least two points apart, or clear its scale (Alt-S)")
        return out
    out = []
    with placement.evaluating_frames(scene):
        for frame in range(start, end + 1):
            scene.frame_set(frame)
            out.append(np.array(obj.matrix_world.translation, np.float64))
    return np.array(out)


OBJECT_KINDS = {"MESH": "a mesh", "EMPTY": "an empty", "FONT": "a text object", "SURFACE": "a surface",
                "CURVES": "a hair curves object", "CAMERA": "a camera", "LIGHT": "a light",
                "ARMATURE": "an armature"}  # (the other hand's rig, a character's: "a armature object")
STILL_M = 1e-6  # a path object that moves less than this over the range stands still


def check_moving_path(obj, side: str, positions: np.ndarray, start: int, end: int, rig_moves: bool) -> None:
    """Refuse a wrist path that is not a curve and stands still over the range (a static mesh or empty)
    while the hand's rig stands still too: the wrist would have been held at its origin while the fingers
    moved, sent and keyed. A still target for a rig that moves (a character's hand pinned to a table
    point) is a path relative to the rig."""
    if obj.type == "CURVE" or rig_moves or np.ptp(positions, axis=0).max() >= STILL_M:
        return
    kind = OBJECT_KINDS.get(obj.type, f"a {obj.type.lower().replace('_', ' ')} object")
    raise ValueError(f"the {side} wrist path {obj.name!r} is {kind}, not a curve, and does not move over frames "
                     f"{start}-{end}, so the wrist would stand still: choose a curve object (Add > Curve) as the "
                     "wrist path, or key its location at two frames of the range (an animated empty)")


def check_path_reach(name: str, side: str, transl: np.ndarray, start: int) -> None:
    """Refuse a wrist path that puts the wrist where no job takes it: a point that is not a number, or further than
    ``TRANSL_LIMIT`` along an axis (it came back from the backend as "arrays.right.transl: has values above 100.0")."""
    bad = ~np.isfinite(transl).all(axis=-1)
    if bad.any():
        raise ValueError(f"the {side} wrist path {name!r} puts the wrist at a point that is not a number (NaN) on frame "
                         f"{start + int(np.flatnonzero(bad)[0])}: fix that curve point (or key) in Edit Mode")
    far = np.abs(transl).max(axis=-1) > TRANSL_LIMIT
    if far.any():
        t = int(np.flatnonzero(far)[0])
        raise ValueError(f"the {side} wrist path {name!r} puts the wrist {np.abs(transl[t]).max():g} m from its rig's "
                         f"origin on frame {start + t}, beyond the {TRANSL_LIMIT:g} m a hand may go: draw the path "
                         "near the hand (scene units are metres)")


def _world_matrices(scene, obj, start: int, end: int) -> np.ndarray:
    """(T, 4, 4) ``obj.matrix_world`` at each frame of [start, end] (read once when it cannot move)."""
    return placement.worlds_over(scene, {"": obj}, range(start, end + 1))[""]


def wrist_translations(arm_obj, world: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """World wrist positions (T, 3) → the rig's ``transl``, through the armature's ``matrix_world`` at
    each frame (T, 4, 4; a rig carried by an animated parent missed the path by as far as it moved):
    the wrist head is rest head + M·transl in armature space (``pose``: loc = F₀ᵀ·transl, B₀ = M·F₀)."""
    inverse = np.linalg.inv(matrices)
    local = np.einsum("tij,tj->ti", inverse[:, :3, :3], world) + inverse[:, :3, 3]
    return (local - np.array(arm_obj.data.bones[WRIST].head_local)) @ MODEL_TO_BLENDER


def trajectory_arrays(context, every: dict, paths: dict[str, str], start: int, end: int,
                      wrist_rotation: str) -> dict[str, np.ndarray]:
    """Each driven wrist's path (and its animated rotation if kept); an undriven hand of the scene
    follows its own animated wrist, so that the generated hands move with it."""
    scene = context.scene
    arrays: dict[str, np.ndarray] = {}
    positions = {}
    for side, name in paths.items():
        if side not in every:
            raise ValueError(f"a path is set for the {side} hand, which the scene does not have: add hands first "
                             "(HandForge > Add Hands) or clear that path")
        obj = scene.objects.get(name)
        if obj is None:
            raise ValueError(f"the {side} wrist path {name!r} is not an object of this scene: choose a curve or an "
                             "animated empty")
        if obj == every[side] or obj.parent == every[side]:
            raise ValueError(f"the {side} wrist path {name!r} is (part of) the hand itself: choose a curve or an empty")
        # followed as Blender moves it frame by frame: not at all if not evaluated (a curve that stands still is read
        # from its own data and placement; one that moves is followed where it stands on each frame, as evaluated)
        if obj.type != "CURVE" or placement.moves_as_object(obj):
            hands.check_evaluated(context.view_layer, [obj], what=f"{side} wrist path")
        positions[side] = _object_positions(scene, obj, start, end)
        check_moving_path(obj, side, positions[side], start, end, placement.moves_as_object(every[side]))
    for side, poses in animated_poses(context, every, start, end).items():
        if side in paths:
            matrices = _world_matrices(scene, every[side], start, end)
            arrays[hand_array_name(side, "transl")] = wrist_translations(every[side], positions[side], matrices)
            check_path_reach(paths[side], side, arrays[hand_array_name(side, "transl")], start)
            arrays[hand_array_name(side, "betas")] = np.asarray(poses.betas[0], np.float64)
            if wrist_rotation == "ANIMATION":
                arrays[hand_array_name(side, "global_orient")] = poses.global_orient
        else:
            arrays.update(_pose_arrays(side, poses, ("global_orient", "transl")))
    return arrays


# ---------------------------------------------------------------------- writing the result
def result_clip(result, request: dict[str, Any]) -> MotionClip:
    """The chosen sample of a motion result (``client.motion_clips``), for the hands the request writes, checked."""
    if result.data.get("motion") is None:
        raise ValueError("the backend's result holds no motion: update the backend")
    clips = motion_clips(result)
    if clips[0].num_frames != request["frames"]:
        raise ValueError(f"the backend sent {clips[0].num_frames} frames for a {request['frames']}-frame range")
    sample = request.get("sample", 0)
    clip = clips[sample] if sample < len(clips) else clips[0]
    chosen = {side: clip.hands[side] for side in request["write"] if side in clip.hands}
    if not chosen:
        raise ValueError("the backend's motion has none of the hands asked for")
    return MotionClip(hands=chosen, fps=clip.fps, hand_model=clip.hand_model, extra=dict(clip.extra))


def rig_placement(scene, every: dict[str, Any], start: int, end: int) -> dict[str, Any]:
    """Where each hand's armature is on each frame of [start, end] (``matrix_world``, (T, 4, 4)), its rest
    wrist head (for the poses), and the rig whose armature space a request is in (the left one's when there
    is one), frame by frame: the motion engine sees both hands in one space, so rigs moved as objects keep
    their places (a right rig moved next to the left one was sent as if still 21 cm away, and Keep Apart
    could not see the overlap), and so do rigs whose parents move differently over the range (their places
    read on one frame put the other hand off the reference one by what the parents moved since)."""
    reference = "left" if "left" in every else next(iter(every))
    world = placement.worlds_over(scene, every, range(start, end + 1))
    for side in world:  # rigs of one scale, else said now
        frames = _distinct_frames(world[side], world[reference])
        for i in frames:
            try:
                pose_conv.relative_transform(world[side][i], world[reference][i])
            except ValueError as exc:  # (a parent's scale keyed: the rigs scaled apart on that frame)
                raise ValueError(f"on frame {start + i}, {exc}" if len(frames) > 1 else str(exc)) from None
    return {"reference": reference, "world": world,
            "head": {side: np.array(obj.data.bones[JOINT_NAMES[0]].head_local, np.float64) for side, obj in every.items()}}


def _distinct_frames(own: np.ndarray, shared: np.ndarray) -> list[int]:
    """The frames (indices) where the pair of placements differs from the frame before (0 first)."""
    changes = np.any(own[1:] != own[:-1], axis=(1, 2)) | np.any(shared[1:] != shared[:-1], axis=(1, 2))
    return [0] + (np.flatnonzero(changes) + 1).tolist()


def _between_rigs(placement: dict[str, Any], side: str, global_orient, transl, into_reference: bool):
    """A hand's (T, 3) global_orient (or None) and transl moved from its own armature's space into the
    reference rig's, or back, frame by frame as the rigs stand there; unchanged where the two armatures
    are placed alike."""
    own, shared = placement["world"][side], placement["world"][placement["reference"]]
    if np.array_equal(own, shared):
        return global_orient, transl
    transl = np.asarray(transl, np.float64)
    orient = np.zeros_like(transl) if global_orient is None else np.asarray(global_orient, np.float64)
    moved = {"global_orient": orient.copy(), "transl": transl.copy()}
    starts = _distinct_frames(own, shared)
    for first, stop in zip(starts, starts[1:] + [len(transl)]):  # runs of frames with the rigs placed alike
        source, target = (own[first], shared[first]) if into_reference else (shared[first], own[first])
        run = pose_conv.into_rig_space({"global_orient": orient[first:stop], "transl": transl[first:stop]},
                                       source, target, placement["head"][side])
        moved["global_orient"][first:stop], moved["transl"][first:stop] = run["global_orient"], run["transl"]
    return (None if global_orient is None else moved["global_orient"]), moved["transl"]


def into_shared_space(arrays: dict[str, np.ndarray], placement: dict[str, Any]) -> dict[str, np.ndarray]:
    """A motion request's arrays with every hand in the reference rig's armature space."""
    out = dict(arrays)
    for side in placement["world"]:
        orient_name, transl_name = hand_array_name(side, "global_orient"), hand_array_name(side, "transl")
        if transl_name in out:
            orient, out[transl_name] = _between_rigs(placement, side, out.get(orient_name), out[transl_name], True)
            if orient is not None:
                out[orient_name] = orient
    return out


def out_of_shared_space(clip: MotionClip, placement: dict[str, Any]) -> MotionClip:
    """A result (in the reference rig's space) with each hand in its own rig's armature space."""
    hands_out = {}
    for side, poses in clip.hands.items():
        orient, transl = _between_rigs(placement, side, poses.global_orient, poses.transl, False)
        hands_out[side] = HandPose(global_orient=orient, hand_pose=poses.hand_pose, betas=poses.betas, transl=transl)
    return MotionClip(hands=hands_out, fps=clip.fps, hand_model=clip.hand_model, present=dict(clip.present),
                      extra=dict(clip.extra))


def job_rigs(context, request: dict[str, Any]) -> dict[str, object]:
    """The rigs a motion was made for that are still in the scene, by side, found by identity (a renamed
    one too), not the scene's hands of now."""
    by_uid = {o.session_uid: o for o in context.scene.objects}
    return {side: by_uid[uid] for side, (_, uid) in request["rigs"].items() if uid in by_uid}


def changed_arrays(sent: dict[str, np.ndarray], now: dict[str, np.ndarray], sides: set[str]) -> list[str]:
    """Names of the arrays of ``sides`` that ``now`` holds different from ``sent`` (or no longer holds)."""
    return [name for name, value in sent.items() if name.split(".", 1)[0] in sides
            and (name not in now or np.shape(now[name]) != np.shape(value)
                 or not np.allclose(now[name], value, rtol=0.0, atol=1e-6))]


def write_result(context, result, request: dict[str, Any]) -> str:
    """Key the motion on the rigs it was made for; the report, ``jobs.Noted`` when it says what did not happen as
    asked (the learned engine's fallback, keys left out, a setting ignored)."""
    clip = out_of_shared_space(result_clip(result, request), request["placement"])
    made_at, now = request["params"]["fps"], keys.scene_fps(context.scene)
    refit = ""
    if abs(now - made_at) > 1e-6:  # changed while the job ran: the frames asked for, one key each
        clip = MotionClip(hands=clip.hands, fps=now, hand_model=clip.hand_model, extra=clip.extra)
        refit = (f"made for {made_at:g} fps, the scene is now at {now:g} fps: keyed frame for frame on the frames "
                 "asked for (run it again for this frame rate's timing)")
    there = job_rigs(context, request)
    rigs = {}
    for side in clip.hands:
        if side not in request["rigs"]:  # (no rig of that side was there when it was sent)
            continue
        if side not in there:
            name = current_name(bpy.data.objects, *request["rigs"][side])  # (renamed, then taken out of the scene)
            raise hands.NoHandsError(f"the {side} hand {name!r} this motion was made for is no "
                                     "longer in the scene, so nothing was keyed: run it again on the hands there now")
        rigs[side] = there[side]
    if not rigs:
        raise hands.NoHandsError("the hands this motion was made for are no longer in the scene: add hands and run it again")
    hands.check_not_in_edit_mode(rigs.values())  # (Tab pressed while it ran: keys there could not be undone)
    # (every rig here is one of a side the clip animates)
    summary, browse_ended = importers.key_motion(context, clip, rigs, request["frame_start"], "the motion",
                                                 replace=request["replace"], leave=request.get("leave") or {})
    # frames the artist keyed are left out on the parts kept, on purpose: not worth a warning, but along a wrist
    # path a wrist location key there is a jump off the path (26 cm, unsaid); said of a hand whose wrist location
    # keys were kept, not of one whose kept keys are its wrist rotation's alone (its wrist is on its path)
    path = request["kind"] == "motion.trajectory"
    kept = "your keys were kept"
    first, last = request["frame_start"], request["frame_start"] + request["frames"] - 1
    off_path = tuple(f"{side} hand: {kept}" for side, rig in rigs.items()
                     if path and wrist_location_keyed(rig, first, last))
    notes = [w + (": where they key the wrist, it is where you keyed it, not on its path" if w.startswith(off_path)
                  else "") for w in summary["warnings"] if path or kept not in w]
    why = "not kept" if request["kind"] == "motion.inbetween" else "generated"
    for side, parts in summary["replaced"].items():
        names = [name for name in ("wrist rotation", "fingers", "wrist location") if name in parts]
        notes.append(f"{side} hand: replaced {sum(parts.values())} of your keys on the "
                     f"{', '.join(names[:-1]) + ' and ' if len(names) > 1 else ''}{names[-1]} ({why}); "
                     "Ctrl-Z brings them back")
    notes += driven_notes(rigs)
    notes += [note for note in (keys.unshown_keys_note(side, rig) for side, rig in rigs.items()) if note]
    engine = result.data.get("engine", request["params"].get("engine", ""))
    if result.data.get("warning"):
        notes.append(str(result.data["warning"]))
    if browse_ended:
        notes.append(browse_ended)
    if refit:
        notes.append(refit)
    if engine == "spline" and request["kind"] == "motion.inbetween":
        notes += spline_unkept(request["replace"])
    unkept = keep_apart_unused(engine, request.get("keep_apart", "default"), len(request["rigs"]))
    if unkept:
        notes.append(unkept)
    seconds = result.data.get("seconds")
    text = (f"{request['label']}: {summary['keys']} keys on the {' and '.join(rigs)} hand, frames "
            f"{keys.range_text(summary['frame_start'], summary['frame_end'])} ({engine}"
            + (f", seed {request['params']['seed']}" if engine == "learned" else "")
            + (f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else "") + ")"
            + "".join(f"; {move}" for move in summary["range"]))
    return (jobs.Noted if notes else str)(text + "".join(f"; {n}" for n in notes))


def spline_unkept(replaced: dict[str, frozenset[int]]) -> list[str]:
    """In-between's note for parts left out of Kept that the Spline engine made: it has nothing to generate them
    from, so they take Add Hands' pose and placement (flat fingers, palms down, the hands side by side), which
    moved an artist's hands 15-25 cm unsaid."""
    free = {part for parts in replaced.values() for part in parts}
    names = [label for name, label in KEPT_LABELS.items() if free & set(FIXED_COLUMNS[name])]
    if not names:
        return []
    return [f"the Spline engine does not generate: {', '.join(names)} (not kept) took Add Hands' pose and placement "
            "(flat fingers, palms down, the hands side by side); the Learned engine generates them"]


def driven_notes(rigs: dict[str, object]) -> list[str]:
    """What to say of what a driver sets on the keyed hands (``keys.driven_note``): it shows the driver's value there,
    not the motion's keys."""
    notes = [keys.driven_note(side, rig, range(KEY_PARTS), "these keys") for side, rig in rigs.items()]
    return [note + " to see them" for note in notes if note]


def wrist_location_keyed(arm_obj, start: int, end: int) -> bool:
    """Whether the artist's (not GENERATED) keys on the wrist location of ``arm_obj`` lie in [start, end]."""
    return bool(artist_key_mask(arm_obj, start, end, columns=[])[:, WRIST_LOCATION].any())


def keep_apart_unused(engine: str, keep_apart: str, scene_hands: int) -> str:
    """Why a Keep Apart asked for (not Default or Off) kept nothing apart ('' when it did): the spline engine does
    not steer, and a scene of one hand has no other hand to keep apart from. One place for both, worded alike."""
    if keep_apart in ("default", "off"):
        return ""
    if engine == "spline":
        return "Keep Apart steers the learned engine only: this spline motion was not kept apart"
    if scene_hands < 2:
        return "Keep Apart steers two hands apart: the scene has one hand, so this motion was not kept apart"
    return ""


# ---------------------------------------------------------------------- operators
class _MotionOptions:
    """The options every motion request takes, declared once for the panel's settings (kept with the
    scene) and the operators (Blender reads property annotations from mixin classes).

    Each is ONE_SHOT (SKIP_SAVE): an operator's call without it takes its default, not the last call's value
    (Blender's last-used values; a script's Follow Wrist Path after a Regenerate ran with Regenerate's seed, its
    engine after a spline call the spline). The panel's buttons copy them from its settings; on the settings
    (saved with the scene) the flag changes nothing."""

    frame_start: IntProperty(**SCENE_FRAME_START)  # (remembered with the panel)
    frame_end: IntProperty(**SCENE_FRAME_END)
    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="learned", description="Motion engine",
                         options=ONE_SHOT)
    steps: IntProperty(name="Steps", default=20, min=1, max=1000, description="Denoising steps (learned engine)",
                       options=ONE_SHOT)
    variation: FloatProperty(name="Variation", default=0.0, min=0.0, max=1.0, options=ONE_SHOT,
                             description="How far the motion may stray from the keys' plain in-between (1: a fresh "
                                         "sample; small values stay close to it; 0: the job's default, 0.8 for "
                                         "in-betweens, 1 for wrist paths and generation)")
    seed: IntProperty(name="Seed", default=0, min=0, options=ONE_SHOT,
                      description="Random seed of the learned engine: the same seed and keys give the same motion")
    num_samples: IntProperty(name="Samples", default=1, min=1, max=8, description="Motions to generate",
                             options=ONE_SHOT)
    keep_apart: EnumProperty(name="Keep Apart", items=APART_ITEMS, default="default", options=ONE_SHOT,
                             description="Steering the hands apart where they would pass through each other")
    sample: IntProperty(name="Keyed Sample", default=0, min=0, max=7, options=ONE_SHOT,
                        description="Which of the generated motions is keyed (0: the first)")


class _MotionJob(_MotionOptions, jobs.JobOperator):
    """What every motion button sends and how its result lands on the rigs."""

    modal_from_ui = True  # a button runs it modally: progress, Esc cancels
    one_at_a_time = "motion"
    made_from_scene = True  # made from the keys: an undo or redo while it runs may change them
    changes_hands = True

    # the settings' range, not remembered by the operators: a later call without one takes the scene's
    frame_start: IntProperty(**SCENE_FRAME_START, options=ONE_SHOT)
    frame_end: IntProperty(**SCENE_FRAME_END, options=ONE_SHOT)

    def motion_request(self, context, start: int, end: int) -> tuple[str, dict, dict, list[str], dict]:
        """(kind, extra params, arrays, hands to write, every hand) of this button."""
        raise NotImplementedError

    def read_arrays(self, context, chosen: dict, every: dict, start: int, end: int) -> dict[str, np.ndarray]:
        """The request's arrays read from the hands ``chosen`` (to write) and ``every`` hand (rig-local
        spaces); called again with the same rigs when the result lands (``check_inputs_unchanged``)."""
        raise NotImplementedError

    def generated_parts(self) -> frozenset[int]:
        """The parts (KEY_PARTS columns) this button generates on the hands it writes, the artist's keys there
        ignored: their keys in the range are replaced (kept, each was a one-frame jump to the old pose)."""
        return frozenset(range(KEY_PARTS))

    def unwritten_parts(self, every: dict, write: list[str]) -> dict[str, frozenset[int]]:
        """Per hand written, the parts (KEY_PARTS columns) left without keys: none by default."""
        return {}

    def job_request(self, context):
        scene = context.scene
        start, end = frame_range(scene, self.frame_start, self.frame_end)
        fps = check_fps(scene)
        if self.sample >= self.num_samples:
            raise ValueError(f"Keyed Sample {self.sample} does not exist with {self.num_samples} sample(s): "
                             f"choose 0-{self.num_samples - 1}")
        kind, extra, read, write, every = self.motion_request(context, start, end)
        # refused before the job runs, not when its result lands (a learned run's time lost); every hand:
        # with one action shared, writing the left hand's keys moved the right hand too, unsaid
        keys.check_own_actions(every)
        keys.check_keyable({side: every[side] for side in write})
        check_replacing_action({side: every[side] for side in write})
        placement = rig_placement(scene, every, start, end)
        arrays = into_shared_space(read, placement)
        params = {"engine": self.engine, "hand_model": hand_model(every), "fps": fps,
                  "num_samples": self.num_samples, "first_frame": start, **extra}
        if self.engine == "learned":  # the diffusion model's settings: the backend refuses them for the spline
            params["seed"] = self.seed  # (the spline's one motion is every seed's: the backend says so of one sent)
            params["steps"] = self.steps
            if self.variation > 0:  # else the job kind's own default (its smallest is 0.01)
                params["variation"] = max(self.variation, 0.01)
            if self.keep_apart != "default":  # else the job kind's own default
                params["penetration_guidance"] = self.keep_apart
        self._request = {"kind": kind, "params": params, "arrays": arrays, "write": write, "frame_start": start,
                         "frames": end - start + 1, "sample": self.sample, "label": self.bl_label,
                         "placement": placement, "read": read, "keep_apart": self.keep_apart,
                         "replace": {side: self.generated_parts() for side in write},
                         "leave": self.unwritten_parts(every, write),
                         "rigs": {side: (obj.name, obj.session_uid) for side, obj in every.items()},
                         "modes": {side: keys.rotation_modes(every[side]) for side in write}}
        return kind, params, arrays

    def check_inputs_unchanged(self, context) -> None:
        """The keys and paths the motion was made from, read again from the same rigs (and paths) as it lands:
        a key moved while it ran (no Undo involved) left the motion going round the old value, with a jump
        at the new one, reported as done. The panel's hands changed, another pair added or a path renamed
        meanwhile do not count."""
        request = self._request
        rigs = job_rigs(context, request)
        if set(request["write"]) - set(rigs):
            return  # a rig written is gone: ``write_result`` refuses, saying which
        hands.check_joints(rigs)  # (a bone renamed while it ran: its keys are read by joint name)
        for side, modes in request.get("modes", {}).items():  # (said as "keys or wrist path changed": the channel read did)
            now = keys.rotation_modes(rigs[side]) if side in rigs else modes
            moved = [f"{name} {before} -> {after}" for name, before, after in zip(JOINT_NAMES, modes, now)
                     if before != after]
            if moved:
                raise ValueError(f"the {side} hand's rotation mode changed while it ran ({', '.join(moved)}), so "
                                 "nothing was keyed: set it back, or run it again on the hands as they are now")
        start = request["frame_start"]
        try:
            read = self.read_arrays(context, {side: rigs[side] for side in request["write"]}, rigs, start,
                                    start + request["frames"] - 1)
        except USER_ERRORS as exc:  # e.g. a key deleted: fewer than 2 left
            raise ValueError(f"the keys or paths it was made from could not be read again ({exc}), so nothing was "
                             "keyed: run it again on the scene as it is now") from None
        changed = changed_arrays(request["read"], read, set(rigs))
        if changed:
            sides = sorted({name.split(".", 1)[0] for name in changed})
            whose = "the left and right hands'" if len(sides) == 2 else f"the {sides[0]} hand's"
            raise ValueError(f"{whose} keys or wrist path changed while it ran, so nothing was keyed: run it again "
                             "on the keys as they are now")

    def job_apply(self, context, result):
        self.check_inputs_unchanged(context)
        text = write_result(context, result, self._request)
        LAST_RUN.clear()  # only a motion that landed: a cancelled or refused one is not what Regenerate repeats
        options = {p.identifier: getattr(self, p.identifier) for p in self.properties.bl_rna.properties
                   if p.identifier != "rna_type"}
        # the frames it made, not "the scene's range" (-1): a range narrowed since redid other frames, or refused
        start = self._request["frame_start"]
        options.update(frame_start=start, frame_end=start + self._request["frames"] - 1)
        written = self._request["write"]
        if "sides" in options:  # the hands it keyed, not "the panel's" (switched since, it keyed the other hand)
            options["sides"] = "BOTH" if len(written) == 2 else written[0].upper()
        LAST_RUN.update(operator=type(self).bl_idname, params=self._request["params"],
                        paths=getattr(self, "_path_uids", {}), options=options,
                        scene=(context.scene.name, context.scene.session_uid),
                        rigs={side: self._request["rigs"][side] for side in written})
        return text



class HANDFORGE_OT_motion_inbetween(_MotionJob, bpy.types.Operator):
    """Generate the motion between your keys in the frame range: your keys stay, the rest become generated keys"""

    bl_idname = "handforge.motion_inbetween"
    bl_label = "In-between"
    job_kind = "motion.inbetween"

    sides: sides_option()
    # (SKIP_SAVE: Blender otherwise gives a call without it the last call's Kept, and the parts left out have their
    # keys in the range replaced: a script's call would delete keys an earlier call's choice left unkept)
    fixed: EnumProperty(name="Kept", items=FIXED_ITEMS, options={"ENUM_FLAG", "SKIP_SAVE"},
                        default={"WRIST_ROTATION", "WRIST_LOCATION", "FINGERS"},
                        description="Which of your keys the motion goes through; the other parts are generated, "
                                    "your keys on them in the range replaced (Ctrl-Z brings them back)")

    def motion_request(self, context, start, end):
        chosen, every = motion_hands(context, _target(self, context))
        return self.job_kind, {}, self.read_arrays(context, chosen, every, start, end), list(chosen), every

    def read_arrays(self, context, chosen, every, start, end):
        return inbetween_arrays(context, chosen, every, start, end, set(self.fixed))

    def generated_parts(self):
        return frozenset(range(KEY_PARTS)) - {c for part in self.fixed for c in FIXED_COLUMNS[part]}

    def unwritten_parts(self, every, write):
        # (kept parts with no key at all: held as they are, and left so for the next run; ``never_keyed``)
        columns = [c for part in self.fixed for c in FIXED_COLUMNS[part]]
        return {side: never_keyed(every[side], columns) for side in write}


class HANDFORGE_OT_motion_follow_path(_MotionJob, bpy.types.Operator):
    """Move the wrists along curves or animated empties over the frame range; the fingers are generated"""

    bl_idname = "handforge.motion_follow_path"
    bl_label = "Follow Wrist Path"
    job_kind = "motion.trajectory"

    left_path: StringProperty(name="Left Path", default="", options=ONE_SHOT,
                              description="Curve or animated object the left wrist follows")
    right_path: StringProperty(name="Right Path", default="", options=ONE_SHOT,
                               description="Curve or animated object the right wrist follows")
    # (ONE_SHOT: Blender otherwise gives a call without it the last call's choice: after a Keep Animation, the
    # wrist rotation was kept where the default generates it, your keys on it replaced)
    wrist_rotation: EnumProperty(name="Wrist Rotation", items=ROTATION_ITEMS, default="GENERATE", options=ONE_SHOT,
                                 description="Whether the wrist rotation is generated (your keys on it in the range "
                                             "replaced; Ctrl-Z brings them back) or kept as animated")

    def motion_request(self, context, start, end):
        paths = {side: name for side, name in (("left", self.left_path), ("right", self.right_path)) if name.strip()}
        if not paths:
            raise ValueError("no wrist path: choose a curve or an animated empty for the left and/or right wrist")
        if len(paths) == 2 and paths["left"] == paths["right"]:  # (both wrists on one line, through each other)
            raise ValueError(f"the left and right wrist paths are the same object, {paths['left']!r}, which would move "
                             "both wrists along one line, through each other: choose a different path for one wrist, "
                             "or leave one empty")
        _, every = motion_hands(context, "BOTH", whole_target=False)  # (the hands of the paths: checked below)
        arrays = trajectory_arrays(context, every, paths, start, end, self.wrist_rotation)
        # Regenerate (and the check as the result lands) follow these objects, renamed or not (by name,
        # another object that took it)
        self._path_uids = {f"{side}_path": context.scene.objects[name].session_uid for side, name in paths.items()}
        return self.job_kind, {}, arrays, [s for s in SIDES if s in paths], every

    def read_arrays(self, context, chosen, every, start, end):
        by_uid = {o.session_uid: o.name for o in context.scene.objects}
        gone = [prop.removesuffix("_path") for prop, uid in self._path_uids.items() if uid not in by_uid]
        if gone:
            raise ValueError(f"the {gone[0]} wrist path is no longer in the scene")
        paths = {prop.removesuffix("_path"): by_uid[uid] for prop, uid in self._path_uids.items()}
        return trajectory_arrays(context, every, paths, start, end, self.wrist_rotation)

    def generated_parts(self):
        # what the path does not drive is generated: the fingers, and the wrist rotation unless kept as animated
        # (their keys in the range were kept, each a one-frame snap to the old pose, as In-between's parts left
        # out of Kept); the wrist location keys stay, said (a wrist keyed there is off its path)
        kept = {"WRIST_LOCATION"} | ({"WRIST_ROTATION"} if self.wrist_rotation == "ANIMATION" else set())
        return frozenset(range(KEY_PARTS)) - {c for part in kept for c in FIXED_COLUMNS[part]}


class HANDFORGE_OT_motion_generate(_MotionJob, bpy.types.Operator):
    """Generate two-hand motion over the frame range from nothing (placed around the hands' origin)"""

    bl_idname = "handforge.motion_generate"
    bl_label = "Generate Motion"
    job_kind = "motion.generate"

    sides: sides_option()

    def motion_request(self, context, start, end):
        chosen, every = motion_hands(context, _target(self, context))
        return (self.job_kind, {"num_frames": end - start + 1}, self.read_arrays(context, chosen, every, start, end),
                list(chosen), every)

    def read_arrays(self, context, chosen, every, start, end):
        return {hand_array_name(s, "betas"): pose_conv.rig_betas(obj) for s, obj in every.items()}


SPLINE_REGENERATED = ("Regenerate: the spline engine draws one motion through the keys, the same for every seed: "
                      "it is made again on the keys as they are now; choose the Learned engine for another take")


class HANDFORGE_OT_motion_regenerate(bpy.types.Operator):
    """Run the last motion button again with a new seed, on your keys and paths as they are now"""

    bl_idname = "handforge.motion_regenerate"
    bl_label = "Regenerate"
    bl_options = {"REGISTER"}  # the motion button it runs makes the undo step (``_run``)

    seed: IntProperty(name="Seed", default=-1, min=-1, max=SEED_LIMIT - 1, options=ONE_SHOT,  # (else: that seed again)
                      description="Seed of the new motion (-1: the last seed + 1)")

    @classmethod
    def poll(cls, context):
        if not LAST_RUN:
            cls.poll_message_set("no motion yet: run In-between, Follow Wrist Path or Generate Motion first")
            return False
        return _button(LAST_RUN["operator"]).poll(context)  # (its reason, if any, is the one shown)

    def invoke(self, context, event):
        return self._run("INVOKE_DEFAULT")

    def execute(self, context):
        return self._run("EXEC_DEFAULT")

    def _run(self, how: str) -> set[str]:
        if not LAST_RUN:
            self.report({"ERROR"}, "no motion yet: run In-between, Follow Wrist Path or Generate Motion first")
            return {"CANCELLED"}
        why = _not_where_made(bpy.context)
        if why:
            self.report({"ERROR"}, why)
            return {"CANCELLED"}
        options = dict(LAST_RUN["options"])
        last_seed = LAST_RUN["params"].get("seed")  # (none: a spline motion, the same for every seed)
        if self.seed >= 0 or last_seed is not None:  # (else the artist's Seed option is kept, not set to 1)
            options["seed"] = (last_seed + 1) % SEED_LIMIT if self.seed < 0 else self.seed
        # A fresh sample (from pure noise) unless the artist set a Variation: an in-between's default (0.8)
        # eases through the gap much the same on every seed, and Regenerate is asked for another take.
        if options.get("variation", 0.0) <= 0.0:
            options["variation"] = 1.0
        for prop, uid in LAST_RUN.get("paths", {}).items():  # a wrist path renamed since is still followed
            path = jobs.by_uid(bpy.data.objects, uid)
            if path is None:  # (the button said "choose a curve ...": Regenerate has no path to choose)
                self.report({"ERROR"}, f"the {prop.removesuffix('_path')} wrist path the last Follow Wrist Path "
                                       "followed is gone: run Follow Wrist Path again with a path")
                return {"CANCELLED"}
            options[prop] = path.name
        button = getattr(bpy.ops.handforge, LAST_RUN["operator"].split(".", 1)[1])
        global _regenerating
        held, refused = _HeldErrors(sys.stdout), ""
        try:
            _regenerating = True
            with contextlib.redirect_stdout(held):
                # undo=True: the button's own undo step, as if pressed (called from an operator it made none, and
                # Ctrl-Z took back the motion Regenerate replaced too); none still inside an operator that makes
                # one, or from a script's call without undo
                outcome = button(how, True, **options)
        except RuntimeError as exc:  # the button's own refusal (e.g. its rig is gone)
            refused = str(exc)
        finally:
            _regenerating = False
            held.release(refused)
        if refused:  # as one line, printed once; its advice as Regenerate can take it (it keeps the range and hands)
            self.report({"ERROR"}, refused.strip().removeprefix("Error: ").replace(FEW_KEYS_ADVICE,
                                                                                  REGENERATE_FEW_KEYS_ADVICE))
            return {"CANCELLED"}
        if LAST_RUN["params"].get("engine") == "spline":  # (it redid the same motion, unsaid)
            self.report({"INFO"}, SPLINE_REGENERATED)
        return {"FINISHED"} if "RUNNING_MODAL" in outcome else outcome  # modal: the button carries on


class _HeldErrors(io.TextIOBase):
    """stdout while Regenerate runs its button: Blender prints the button's error reports there as well as raising
    them, and Regenerate reports that error itself (it was printed twice). Blender writes a report in one call,
    "<Type> Error: message\n" (a message may hold newlines; one over 1000 bytes comes cut, its "... truncated"
    in a second call): such a write is held with what follows it until a write ends a line, the rest passes at
    once. ``release`` writes the held reports the raised error does not hold."""

    REPORT = re.compile(r"^(\w+ )*Error: ")

    def __init__(self, out) -> None:
        super().__init__()
        self.out, self.held = out, []

    def write(self, text: str) -> int:
        if self.held and not self.held[-1].endswith(("\n", "... truncated")):  # the rest of a held report
            self.held[-1] += text
        elif self.REPORT.match(text):
            self.held.append(text)
        else:
            self.out.write(text)
        return len(text)

    def flush(self) -> None:
        self.out.flush()

    def fileno(self) -> int:
        return self.out.fileno()

    def isatty(self) -> bool:
        return self.out.isatty()

    def release(self, raised: str = "") -> None:
        for report in self.held:
            head = report.strip().split("\n")[0].removesuffix("... truncated")
            if head not in raised:
                self.out.write(report if report.endswith("\n") else report + "\n")
        self.held = []


def _not_where_made(context) -> str:
    """Why Regenerate cannot redo the last motion here ('' when it can): it redoes it on the rigs it keyed, in
    its scene (another scene's hands, or a rig added in place of one, never had that motion)."""
    (scene_name, scene_uid), label = LAST_RUN["scene"], _button(LAST_RUN["operator"]).bl_label
    # named as they are called now (renamed since, a message named them by their old names): the stored name only
    # for what is gone
    rigs = {side: (current_name(bpy.data.objects, name, uid), uid) for side, (name, uid) in LAST_RUN["rigs"].items()}
    if context.scene.session_uid != scene_uid:
        made_in = jobs.by_uid(bpy.data.scenes, scene_uid)
        if made_in is None:
            return f"the scene {scene_name!r} the last motion ({label}) was made in is gone: run {label} here"
        return (f"the last motion ({label}) was made in the scene {made_in.name!r}: show that scene to regenerate it, "
                f"or run {label} here")
    there = {o.session_uid for o in context.scene.objects}
    gone = [(side, name) for side, (name, uid) in rigs.items() if uid not in there]
    if gone:
        which = " and ".join(f"{side} hand {name!r}" for side, name in gone)
        return (f"the {which} the last motion ({label}) keyed {'is' if len(gone) == 1 else 'are'} no longer in the "
                f"scene: add hands with HandForge > Add Hands and run {label} on them")
    # the button takes the panel's Left and Right Hand: another pair chosen since (Add Hands chooses its own)
    # would get the motion the last one had; so would the first hand of the scene the button takes for a side the
    # panel names none of (its field cleared: Regenerate keyed another pair, which never had the motion, unsaid)
    # (the panel's own pointers: scene_hands leaves out a rig that lost bones, which the button refuses itself)
    chosen = {side: getattr(context.scene.handforge, side) for side in rigs}
    chosen = {side: obj if obj is not None and obj.name in context.scene.objects else None
              for side, obj in chosen.items()}
    if None in chosen.values():  # the rig the button takes there (None: none it takes, which it refuses itself)
        with contextlib.suppress(*USER_ERRORS):
            taken = hands.scene_hands(context.scene, "BOTH", required=False)
            chosen.update({side: taken.get(side) for side, obj in chosen.items() if obj is None})
    other = [(side, name) for side, (name, uid) in rigs.items()
             if chosen[side] is not None and chosen[side].session_uid != uid]
    if other:
        which = " and ".join(f"{side} hand {name!r}" for side, name in other)
        unnamed = [side for side, _ in other if getattr(context.scene.handforge, side) is None]
        why = (f"which the panel no longer names as its hands (it names no {' or '.join(unnamed)} hand, so "
               f"{label} would key {' and '.join(repr(chosen[side].name) for side in unnamed)})" if unnamed else
               "which the panel no longer names as its hands")
        return (f"the last motion ({label}) keyed the {which}, {why}: choose "
                f"{'it' if len(other) == 1 else 'them'} as the Left/Right Hand to regenerate it, or run {label} on "
                "the hands chosen now")
    return ""


def current_name(collection, name: str, uid: int) -> str:
    """The name of the ID of session id ``uid`` in ``collection`` (``bpy.data.objects``, ``.scenes``) now, or
    ``name``, the one it had, where it is gone."""
    found = jobs.by_uid(collection, uid)
    return name if found is None else found.name


def _button(idname: str) -> type:
    return next(c for c in (HANDFORGE_OT_motion_inbetween, HANDFORGE_OT_motion_follow_path,
                            HANDFORGE_OT_motion_generate) if c.bl_idname == idname)


@persistent
def _forget_on_load(*_args) -> None:
    """Another file: the last motion named rigs, keys and paths of the one before."""
    LAST_RUN.clear()


# ---------------------------------------------------------------------- panel settings
def is_path_object(_settings, obj) -> bool:
    """What the wrist path pickers offer: curves, empties (a still one is a target for a rig that moves) and
    objects that move (animated, driven or constrained, as Follow Wrist Path takes them); a production
    scene's hundreds of static meshes are not listed."""
    if obj.type == "ARMATURE" and obj.handforge.is_hand:
        return False
    return obj.type in ("CURVE", "EMPTY") or placement.moves_as_object(obj)


class HANDFORGE_PG_motion(_MotionOptions, bpy.types.PropertyGroup):
    """What the Motion panel's buttons send (``Scene.handforge_motion``)."""

    fixed: EnumProperty(name="Kept", items=FIXED_ITEMS, options={"ENUM_FLAG"},
                        default={"WRIST_ROTATION", "WRIST_LOCATION", "FINGERS"},
                        description="Which of your keys In-between goes through; the other parts are generated, your "
                                    "keys on them in the range replaced (Ctrl-Z brings them back)")
    left_path: PointerProperty(name="Left Path", type=bpy.types.Object, poll=is_path_object,
                               description="Curve or animated object the left wrist follows")
    right_path: PointerProperty(name="Right Path", type=bpy.types.Object, poll=is_path_object,
                                description="Curve or animated object the right wrist follows")
    wrist_rotation: EnumProperty(name="Wrist Rotation", items=ROTATION_ITEMS, default="GENERATE",
                                 description="Whether the wrist rotation along a path is generated or kept as animated")


def draw_panel(layout, context) -> None:
    """The Motion panel (``HANDFORGE_PT_motion``): settings, then one button per job."""
    settings = context.scene.handforge_motion
    layout.row().prop(context.scene.handforge, "target", expand=True)  # the hands In-between and Generate key
    row = layout.row(align=True)
    row.prop(settings, "frame_start")
    row.prop(settings, "frame_end")
    layout.row().prop(settings, "engine", expand=True)
    col = layout.column(align=True)
    learned = col.column(align=True)
    learned.active = settings.engine == "learned"  # greyed for the spline engine, which ignores them
    learned.prop(settings, "steps")
    learned.prop(settings, "variation")
    learned.prop(settings, "seed")
    row = learned.row(align=True)
    row.prop(settings, "num_samples")
    sample = row.row(align=True)
    sample.active = settings.num_samples > 1
    sample.prop(settings, "sample")
    learned.prop(settings, "keep_apart")
    layout.row().prop(settings, "fixed", expand=True)
    op = layout.operator(HANDFORGE_OT_motion_inbetween.bl_idname, icon="IPO_BEZIER")
    jobs.copy_options(op, settings, _MotionOptions)
    op.fixed = settings.fixed
    col = layout.column(align=True)
    col.prop(settings, "left_path")
    col.prop(settings, "right_path")
    col.prop(settings, "wrist_rotation", text="")
    op = layout.operator(HANDFORGE_OT_motion_follow_path.bl_idname, icon="CURVE_PATH")
    jobs.copy_options(op, settings, _MotionOptions)
    op.left_path = settings.left_path.name if settings.left_path else ""
    op.right_path = settings.right_path.name if settings.right_path else ""
    op.wrist_rotation = settings.wrist_rotation
    row = layout.row(align=True)
    jobs.copy_options(row.operator(HANDFORGE_OT_motion_generate.bl_idname, icon="ANIM"), settings, _MotionOptions)
    row.operator(HANDFORGE_OT_motion_regenerate.bl_idname, icon="FILE_REFRESH")


class HANDFORGE_PT_motion(_Panel, bpy.types.Panel):
    """The motion engine's buttons"""

    bl_label = "Motion"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        _engine_note(self.layout, context, "motion")
        draw_panel(self.layout, context)


CLASSES = (HANDFORGE_OT_motion_inbetween, HANDFORGE_OT_motion_follow_path, HANDFORGE_OT_motion_generate,
           HANDFORGE_OT_motion_regenerate, HANDFORGE_PT_motion)
ENGINES = ("motion",)  # its kinds run from this panel: no Run Job buttons of them in the Backend panel


def register() -> None:
    app_handlers.add(("load_post", _forget_on_load))
    bpy.utils.register_class(HANDFORGE_PG_motion)
    bpy.types.Scene.handforge_motion = PointerProperty(type=HANDFORGE_PG_motion, name="Motion Settings",
                                                       description="What the Motion panel's buttons send")


def unregister() -> None:
    app_handlers.remove(("load_post", _forget_on_load))
    # forgotten, as an upgrade's fresh module does: a file opened while HandForge is disabled reaches no handler, and
    # Regenerate, enabled again, was offered there and said its scene was gone ('Scene' shown, another datablock)
    LAST_RUN.clear()
    del bpy.types.Scene.handforge_motion
    bpy.utils.unregister_class(HANDFORGE_PG_motion)
