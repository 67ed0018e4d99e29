"""Keyframes: key the current pose, write motion clips in bulk, read the rigs back into clips.

Bulk writes use ``keyframe_points.add`` + ``foreach_set`` (two orders of magnitude faster than a
``keyframe_insert`` loop, see ``benchmarks/blender_import.py``); the F-curves are found through
``fcurves``, which knows the action APIs of every Blender the add-on runs on.

Generated keys have keyframe type ``GENERATED``. Writing a clip replaces earlier generated keys in
its frame range and never touches any other key: where the artist has a key, the artist's key
stays and the generated one is left out. A motion job asks for one exception: on the parts it
generated (``import_clip``'s ``replace``), the artist's keys in its range are replaced too.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from . import placement
from . import pose as pose_conv
from . import rig as rig_build
from .fcurves import (FRAME_EPS, GENERATED, FCurves, ensure_channelbag, enum_value, find_channelbag, generated_types,
                      hand_channels, is_pose_path, key_types, new_points, plays, read_points, shown, write_points)
from handforge_shared import anatomy
from handforge_shared.poses import KEY_PARTS, HandPose, MotionClip, PoseFormatError, check_reach, stack_poses
from handforge_shared.rotations import axis_angle_to_matrix
from handforge_shared.skeleton import FINGERS, JOINT_NAMES, NUM_JOINTS

LAST_FRAME = 1048574  # Blender's largest frame (MAXFRAME): frame fields stop there
_NO_FRAMES = np.empty(0, np.float32)


@dataclass
class Channel:
    data_path: str
    index: int
    group: str
    values: np.ndarray  # (T,) one value per frame written
    part: int = -1  # the pose part it animates (KEY_PARTS column: 0 wrist rotation, 1-15 finger joints, 16 wrist location)


WRIST_LOCATION_PART = KEY_PARTS - 1
PART_NAMES = {0: "wrist rotation", **{k: "fingers" for k in range(1, NUM_JOINTS)}, WRIST_LOCATION_PART: "wrist location"}


# ---------------------------------------------------------------------- bulk writing
KEPT_KEY_REACH = 0.5  # frames: a generated key closer than this to a kept key is left out


def _free_frames(kept_frames: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Which of ``frames`` have no key of ``kept_frames`` (sorted) within half a frame: a clip retimed
    onto the scene (30 fps into 29.97) lands between frames, and a generated key 0.02 frames before the
    artist's would have made a jump right beside it."""
    if not len(kept_frames):
        return np.ones(len(frames), bool)
    pos = np.searchsorted(kept_frames, frames)
    before = kept_frames[np.clip(pos - 1, 0, len(kept_frames) - 1)]
    after = kept_frames[np.clip(pos, 0, len(kept_frames) - 1)]
    return np.minimum(np.abs(before - frames), np.abs(after - frames)) >= KEPT_KEY_REACH - FRAME_EPS


def blend_towards(co: np.ndarray, artist: np.ndarray, frames: int, periodic: bool) -> np.ndarray:
    """Generated keys ``co`` (n, 2) eased into and out of the artist keys ``artist`` (m, 2): a key
    d frames from the nearest artist key moves towards its value with weight smoothstep(1 - d/(frames+1)),
    so the motion arrives at the artist's pose instead of jumping to it. ``periodic``: angles, the
    artist's value taken by whole turns nearest the generated one."""
    if frames <= 0 or not len(artist) or not len(co):
        return co
    artist = artist[np.argsort(artist[:, 0])]
    pos = np.clip(np.searchsorted(artist[:, 0], co[:, 0]), 1, max(len(artist) - 1, 1))
    candidates = np.stack([pos - 1, np.minimum(pos, len(artist) - 1)], axis=1)
    dist = np.abs(artist[candidates, 0] - co[:, 0:1])
    nearest = candidates[np.arange(len(co)), dist.argmin(axis=1)]
    w = np.clip(1.0 - dist.min(axis=1) / (frames + 1), 0.0, 1.0)
    w = w * w * (3.0 - 2.0 * w)
    value = co[:, 1].astype(np.float64)
    target = artist[nearest, 1].astype(np.float64)
    if periodic:
        target = value + (target - value + np.pi) % (2 * np.pi) - np.pi
    out = co.copy()
    out[:, 1] = (1.0 - w) * value + w * target
    return out


def write_generated(fc, co: np.ndarray, blend: int = 0, replace_artist: bool = False) -> tuple[np.ndarray, int]:
    """Write generated keys ``co`` ((n, 2) float32 frame, value) onto one F-curve; returns the
    frames left out because another key is there, and how many of the artist's keys were replaced.

    Earlier GENERATED keys inside the clip's frame range are replaced; every other key is kept
    exactly, and frames where such a key exists are skipped. ``replace_artist``: the artist's keys
    inside the range are replaced as well (a part a motion job generated: kept, each was a one-frame
    jump to the old pose). ``blend`` > 0: keys that many frames around an artist key ease into it
    (``blend_towards``)."""
    kps = fc.keyframe_points
    n_old = len(kps)
    if n_old == 0:  # a new curve: the floor of bpy writing (add + foreach_set + update)
        kps.add(len(co))
        kps.foreach_set("co", co.ravel())
        kps.foreach_set("type", generated_types(len(co)))
        fc.update()
        return _NO_FRAMES, 0
    generated = enum_value(bpy.types.Keyframe, "type", GENERATED)
    old_co = np.empty((n_old, 2), np.float32)
    old_type = np.empty(n_old, np.int32)
    kps.foreach_get("co", old_co.ravel())
    kps.foreach_get("type", old_type)
    frames = co[:, 0]
    lo, hi = frames.min() - FRAME_EPS, frames.max() + FRAME_EPS
    in_range = (old_co[:, 0] >= lo) & (old_co[:, 0] <= hi)
    drop = in_range & ((old_type == generated) | replace_artist)
    replaced = int((drop & (old_type != generated)).sum())
    free = _free_frames(np.sort(old_co[~drop, 0]), frames)
    new_co = blend_towards(co[free], old_co[~drop & (old_type != generated)], blend,
                           fc.data_path.endswith("rotation_euler"))
    count = len(new_co)
    if drop.any():  # rebuild the curve from the kept keys (all their attributes) and the new ones
        kept = {k: v[~drop] for k, v in read_points(kps).items()}
        new = new_points(new_co)
        kps.clear()
        kps.add(len(kept["co"]) + count)
        write_points(kps, {k: np.concatenate([kept[k], new[k]]) for k in new})
    elif count:  # append: new points get the user's default interpolation and handle types
        kps.add(count)
        kps.foreach_set("co", np.concatenate([old_co, new_co]).ravel())
        kps.foreach_set("type", np.concatenate([old_type, np.full(count, generated, np.int32)]))
    fc.update()  # sorts by frame and recalculates the auto handles
    return frames[~free], replaced


def artist_frames(hands: dict[str, object], first: float, last: float) -> dict[str, list[float]]:
    """Per hand, the frames in [first, last] (within half a frame, as ``write_generated`` skips them) where
    the artist keyed the rig or its correctives: keys that a generated clip leaves in place."""
    found = {side: key_frames(obj, first, last, generated=False) for side, obj in hands.items()}
    return {side: frames for side, frames in found.items() if frames}


def key_frames(arm_obj, first: float, last: float, generated: bool) -> list[float]:
    """The frames in [first, last] (within half a frame) of the rig's (and its correctives') generated keys, or
    (``generated`` False) of the artist's."""
    generated_type = enum_value(bpy.types.Keyframe, "type", GENERATED)
    mesh_obj = rig_build.hand_mesh(arm_obj)
    frames = set()
    for id_block in (arm_obj, mesh_obj.data.shape_keys if mesh_obj is not None else None):
        bag = find_channelbag(id_block) if id_block is not None else None
        for fc in (bag.fcurves if bag is not None else ()):
            n = len(fc.keyframe_points)
            co, kind = np.empty(2 * n, np.float32), np.empty(n, np.int32)
            fc.keyframe_points.foreach_get("co", co)
            fc.keyframe_points.foreach_get("type", kind)
            at = co[0::2][(kind == generated_type) == generated]
            reach = KEPT_KEY_REACH - FRAME_EPS
            frames.update(at[(at > first - reach) & (at < last + reach)].tolist())
    return sorted(frames)


def kept_said(side: str, arm_obj, skipped: list[float], clip_first: float, clip_last: float) -> list[str]:
    """What to say of a clip's frames ``skipped`` (keyed from ``clip_first`` to ``clip_last``) for the keys kept
    beside them: the artist's, named where they are (a retimed clip's frames skipped beside them fall between
    frames: a key at 2 was said "kept at frame 2.429"), and an earlier motion's just outside the clip's frames
    (the clip's frame 17.2 beside another clip's key at 17.5 was said "your keys were kept at frame 17.2")."""
    def beside(frames, of):
        return [f for f in frames if min(abs(f - c) for c in of) < KEPT_KEY_REACH]

    first, last = skipped[0], skipped[-1]
    artist = beside(key_frames(arm_obj, first, last, generated=False), skipped)
    earlier = beside([f for f in key_frames(arm_obj, first, last, generated=True)
                      if not clip_first - FRAME_EPS <= f <= clip_last + FRAME_EPS], skipped)
    said = []
    if artist or not earlier:
        kept = artist or skipped
        said.append(f"{side} hand: your keys were kept at frame{'s' if len(kept) > 1 else ''} {frame_list(kept)}, "
                    "so the clip was not keyed there")
    if earlier:
        left_out = beside(skipped, earlier)
        said.append(f"{side} hand: an earlier motion's keys at frame{'s' if len(earlier) > 1 else ''} "
                    f"{frame_list(earlier)}, just outside this clip's frames, were kept, so the clip was not keyed at "
                    f"frame{'s' if len(left_out) > 1 else ''} {frame_list(left_out)}, within half a frame of them "
                    "(delete those keys first to key the whole clip)")
    return said


def placing_note(clip: MotionClip, fps: float, start: float) -> str:
    """Why a clip's keys landed between whole frames, for a report: its rate is not the scene's (a 30 fps clip of
    30 frames into a 24 fps scene was said "at frames 1-24.2", a fractional end unexplained), or its start is
    between frames."""
    frames = start + np.arange(clip.num_frames) * (fps / clip.fps)  # (import_clip's placing)
    between = np.abs(frames - np.round(frames)).max() > FRAME_EPS
    if clip.num_frames > 1 and abs(clip.fps - fps) >= 1e-6 * fps:  # (one frame: nothing retimed)
        return (f" (a {clip.fps:g} fps clip retimed to the scene's {fps:g} fps"
                + (": its keys fall between whole frames)" if between else ")"))
    return f" (started at frame {frame_text(start)}: its keys fall between whole frames)" if between else ""


def write_channels(id_block, frames: np.ndarray, channels: list[Channel], action_name: str, blend: int = 0,
                   replace: frozenset[int] = frozenset()) -> tuple[int, set[float], list[str], dict[str, int]]:
    """Write channels as generated keys; returns (keys written, frames skipped for other keys, the groups
    of the channels skipped because the artist muted their F-curves, the artist's keys replaced per part
    name). ``replace``: the parts (``Channel.part``) whose artist keys in the range are replaced."""
    if not channels:
        return 0, set(), [], {}
    curves = FCurves(ensure_channelbag(id_block, action_name))
    co = np.empty((len(channels), len(frames), 2), np.float32)  # every channel's keys, built at once
    co[:, :, 0] = frames
    co[:, :, 1] = np.stack([ch.values for ch in channels])
    written, skipped, muted, replaced = 0, set(), [], {}
    for ch, ch_co in zip(channels, co):
        fc = curves.curves.get((ch.data_path, ch.index))
        if fc is not None and not plays(fc):
            # switched off by the artist: keys written there showed nothing and were left behind, unsaid
            muted += [ch.group] if ch.group not in muted else []
            continue
        left_out, count = write_generated(curves.ensure(ch.data_path, ch.index, ch.group), ch_co, blend,
                                          ch.part in replace)
        written += len(ch_co) - len(left_out)
        if len(left_out):
            skipped.update(left_out.tolist())
        if count:
            replaced[PART_NAMES[ch.part]] = replaced.get(PART_NAMES[ch.part], 0) + count
    return written, skipped, muted, replaced


# ---------------------------------------------------------------------- rig channels
def pose_channels(arm_obj, poses: HandPose) -> list[Channel]:
    """The animation channels (rotation per bone in its mode, wrist location) for (T,) poses.

    The bone-local rotation Fᵀ·R(a)·F of ``pose.params_to_local`` is R(Fᵀ·a): turning a rotation
    into another orthonormal frame turns its axis, so one (T, 16, 3) product replaces two
    (T, 16, 3, 3) matrix products, and the channels come from these axis-angles without matrices
    (building and converting matrices was a third of an import's time)."""
    frames = pose_conv.bone_frames(arm_obj)
    aa = np.concatenate([poses.global_orient[:, None], poses.hand_pose.reshape(-1, NUM_JOINTS - 1, 3)], axis=1)
    # Fᵀ·a per joint, in float32: F-curves store float32 anyway (the math adds < 3e-6 rad), and numpy's
    # float32 sin/cos are vectorised: the conversion takes 1.7 ms per hand and 600 frames instead of 4.3.
    # One (16, T, 3) @ (16, 3, 3) product: 16 matrix products in C (a loop of them takes 2.5x as long,
    # a (T, 16, 1, 3) @ (16, 3, 3) product of T·16 tiny ones 7x).
    bone_aa = np.matmul(aa.transpose(1, 0, 2), frames).transpose(1, 0, 2).astype(np.float32)
    location = poses.transl @ frames[0]  # = F₀ᵀ·transl
    channels = []
    for mode, (joints, current) in pose_conv.read_channels(arm_obj.pose.bones).items():  # one conversion per mode
        # the first frame near the rig's channels where float32 holds that, else nearest zero (``channels_near``):
        # going on from a bone holding NaN keyed NaN, from 1e6 rad (a script's) keys off by float32's steps there
        first = np.array([pose_conv.channels_near(axis_angle_to_matrix(bone_aa[0, k].astype(np.float64)), mode,
                                                  values)[1] for k, values in zip(joints, current)])
        prop, values = pose_conv.rotation_channels(bone_aa[:, joints], mode, first)
        values = np.moveaxis(values, 0, -1)  # (joints, C, T): each channel's values contiguous
        for i, k in enumerate(joints):
            name = JOINT_NAMES[k]
            channels += [Channel(f'pose.bones["{name}"].{prop}', c, name, values[i, c], k)
                         for c in range(values.shape[1])]
    wrist = JOINT_NAMES[0]
    channels += [Channel(f'pose.bones["{wrist}"].location', i, wrist, location[:, i], WRIST_LOCATION_PART)
                 for i in range(3)]
    return channels


SLIDER_GROUP = "HandForge Sliders"  # the F-curve group of keyed finger sliders (as fingers' auto-keying names it)


def keyed_sliders(arm_obj) -> list[tuple[str, str]]:
    """(kind, finger) of the finger sliders the rig's action keys and plays (a muted curve moves nothing: its
    slider is left to the bones, and its keys alone)."""
    bag = find_channelbag(arm_obj)
    curves = [(kind, finger, bag.fcurves.find(slider_path(kind, finger)) if bag is not None else None)
              for finger in FINGERS for kind in SLIDER_KINDS]
    return [(kind, finger) for kind, finger, fc in curves
            if plays(fc)]


def slider_channels(arm_obj, poses: HandPose) -> list[Channel]:
    """The keyed finger sliders' channels for (T,) poses: the curl and spread each pose shows. A keyed slider
    moves its finger to its own value on every frame change (``fingers.follow_animation``), so bone keys
    written without it were overridden there: Key Candidates and motion on such a rig showed other fingers."""
    keyed = keyed_sliders(arm_obj)
    if not keyed:
        return []
    angles = anatomy.hand_pose_to_anatomical(poses.hand_pose, pose_conv.bone_frames(arm_obj), arm_obj.handforge.side)
    shown = [dict(zip(SLIDER_KINDS, anatomy.curl_spread_of(a))) for a in np.asarray(angles, np.float64)]
    # (a slider moves its finger's joints: the fingers' part, named by the finger's first joint)
    return [Channel(slider_path(kind, finger), 0, SLIDER_GROUP,
                    np.array([frame[kind][finger] for frame in shown], np.float32), JOINT_NAMES.index(f"{finger}1"))
            for kind, finger in keyed]


def corrective_channels(arm_obj, poses: HandPose) -> list[Channel]:
    keys = rig_build.corrective_keys(arm_obj)
    if not keys:
        return []
    aa = np.concatenate([poses.global_orient[:, None], poses.hand_pose.reshape(-1, NUM_JOINTS - 1, 3)], axis=1)
    values = rig_build.corrective_values(axis_angle_to_matrix(aa))
    # corrective i is vec(R_j - I)[i % 9] of finger joint j = 1 + i // 9: that joint's part
    return [Channel(f'key_blocks["{kb.name}"].value', 0, "Pose Correctives", values[:, i], 1 + i // 9)
            for i, kb in enumerate(keys)]


def frame_text(frame: float) -> str:
    """A frame as the artist reads it: whole frames without a decimal point and in full (1000000, not
    ``:g``'s 1e+06), subframes to a thousandth (10.5)."""
    value = float(frame)
    return str(int(value)) if value.is_integer() else f"{value:.3f}".rstrip("0")


def frame_list(frames) -> str:
    """Frames as the artist reads them: sorted (1, 10.5, 20)."""
    return ", ".join(frame_text(f) for f in sorted(frames))


def range_text(start: float, end: float) -> str:
    """"10-30", or "-20 to -11" where a minus sign would run into the dash."""
    return f"{frame_text(start)}{' to ' if start < 0 or end < 0 else '-'}{frame_text(end)}"


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


def check_own_actions(hands: dict[str, object]) -> None:
    """Refuse hands animated through one action slot (Link Animation Data): the same channels, so the
    second hand's keys would replace the first's (Import Motion, Key Pose of both hands)."""
    bags = {}
    for obj in hands.values():
        bag = find_channelbag(obj)
        if bag is not None and bag.as_pointer() in bags:
            first = bags[bag.as_pointer()]
            raise PoseFormatError(f"{first.name!r} and {obj.name!r} share one action "
                                  f"({obj.animation_data.action.name!r}): give each hand its own "
                                  "(Object > Relations > Make Single User > Object Animation) first")
        if bag is not None:
            bags[bag.as_pointer()] = obj


def others_on_the_same_keys(arm_obj, besides=()) -> list:
    """Objects other than ``arm_obj`` (and ``besides``) animated by the same action and slot as it: keys
    written for it move them too."""
    ad = arm_obj.animation_data
    if ad is None or ad.action is None:
        return []
    slot = getattr(ad, "action_slot", None)
    skip = {arm_obj.as_pointer(), *(o.as_pointer() for o in besides)}
    return [o for o in bpy.data.objects if o.as_pointer() not in skip and o.animation_data is not None
            and o.animation_data.action == ad.action and getattr(o.animation_data, "action_slot", None) == slot]


def sharing_warning(arm_obj, besides=(), change: str = "the new keys move it too") -> str:
    """What to warn of when keys of ``arm_obj`` change (``change``: how that affects the others) and other objects
    share them (``others_on_the_same_keys``), or "". A linked duplicate (Alt-D) moves with the keys it shares:
    right, but said, as it was not (Import Motion; Key Pose changed the other hand's pose at the frame unsaid)."""
    sharing = others_on_the_same_keys(arm_obj, besides)
    if not sharing:
        return ""
    return (f"{', '.join(repr(o.name) for o in sharing[:3])}{' and more' if len(sharing) > 3 else ''} "
            f"share{'s' if len(sharing) == 1 else ''} the action of {arm_obj.name!r} (a linked duplicate): {change} "
            "(Object > Relations > Make Single User > Object Animation gives it its own)")


def check_keyable(hands: dict[str, object]) -> None:
    """Refuse hands whose keys live in an action linked from another file (a library override keeps the
    library's action): Blender skips every key inserted there with a console warning, and a script's
    changes to it are not saved, so Key Pose said done and nothing was keyed."""
    for obj in hands.values():
        mesh_obj = rig_build.hand_mesh(obj)
        for id_block in (obj, mesh_obj.data.shape_keys if mesh_obj is not None else None):
            ad = id_block.animation_data if id_block is not None else None
            if ad is not None and ad.action is not None and not ad.action.is_editable:
                source = ad.action.library.filepath if ad.action.library is not None else "a library"
                raise PoseFormatError(f"the keys of {obj.name!r} are in the action {ad.action.name!r}, linked from "
                                      f"{source}, which cannot be keyed here: give the hand a local copy "
                                      "(Object > Relations > Make Single User > Object Animation) first")


def check_import(scene, clip: MotionClip, hands: dict[str, object], frame_start: float) -> np.ndarray:
    """What ``import_clip`` refuses, checked before any change (callers that change the scene first, e.g.
    to end a preview, call it before); returns the scene frame of each clip frame."""
    check_scene_time(hands)
    missing = [s for s in clip.hands if s not in hands]
    if len(missing) == len(clip.hands):
        raise PoseFormatError(f"the clip animates the {' and '.join(missing)} hand, which this scene does not have: "
                              "add hands first (HandForge > Add Hands)")
    animated = {side: hands[side] for side in clip.hands if side in hands}
    for side in animated:  # (a clip's hand 1e30 m away, finite and so a valid clip, was keyed there)
        check_reach(clip.hands[side], side, clip.present[side])
    check_own_actions(animated)
    check_keyable(animated)
    all_frames = frame_start + np.arange(clip.num_frames) * (scene_fps(scene) / clip.fps)
    if all_frames[-1] > LAST_FRAME:
        raise PoseFormatError(f"the clip would end at frame {all_frames[-1]:.0f}, beyond Blender's last frame "
                              f"({LAST_FRAME}): start it at frame {LAST_FRAME - (all_frames[-1] - frame_start):.0f} "
                              "or earlier")
    if all_frames[0] < -LAST_FRAME:  # (said as the end's case, with a later frame still out of range as its fix)
        raise PoseFormatError(f"the clip would start at frame {all_frames[0]:.0f}, before Blender's first frame "
                              f"(-{LAST_FRAME}): start it at frame -{LAST_FRAME} or later")
    return all_frames


def import_clip(context, clip: MotionClip, hands: dict[str, object], frame_start: float, blend: int = 0,
                replace: dict[str, frozenset[int]] | None = None,
                leave: dict[str, frozenset[int]] | None = None) -> dict:
    """Write ``clip`` onto the rigs as generated keys starting at ``frame_start``.

    Clip frame i lands on scene frame ``frame_start + i · scene_fps / clip_fps`` (same time).
    ``blend`` > 0: the clip eases into and out of the artist's keys over that many frames.
    ``replace``: per side, the parts (``Channel.part``) whose artist keys inside the clip's frames are
    replaced (a motion job's generated parts); elsewhere the artist's keys stay. ``leave``: per side, the parts
    given no keys at all (In-between's kept parts that had none: held as they are).
    Returns a summary: keys written, frame range, frames skipped per side, the artist's keys replaced per
    side and part name, warnings for the user."""
    scene = context.scene
    all_frames = check_import(scene, clip, hands, frame_start)
    missing = [s for s in clip.hands if s not in hands]
    warnings = [f"the clip has no {s} hand" for s in hands if s not in clip.hands]
    warnings += [f"the scene has no {s} hand: its motion was skipped" for s in missing]
    written = 0
    skipped_frames: dict[str, list[float]] = {}
    replaced_keys: dict[str, dict[str, int]] = {}
    for side, poses in clip.hands.items():
        arm_obj = hands.get(side)
        if arm_obj is None:
            continue
        if arm_obj.handforge.hand_model != clip.hand_model:
            warnings.append(f"the clip was made for the {clip.hand_model} hand, the {side} rig is "
                            f"{arm_obj.handforge.hand_model}: its joint angles were keyed as they are, on another "
                            f"skeleton (its joints sit elsewhere); for the clip's own hands, import it onto "
                            f"{clip.hand_model} hands (Add Hands from Backend)")
        present = clip.present[side]
        if not present.any():
            continue
        sel = poses if present.all() else poses[np.flatnonzero(present)]
        if np.abs(sel.betas - pose_conv.rig_betas(arm_obj)).max() > 1e-4:
            warnings.append(f"the clip's {side} hand shape differs from the rig's: the rig keeps its shape (Set Shape changes it)")
        frames = all_frames[present]
        under_strips = only_in_strips(arm_obj)
        parts = (replace or {}).get(side, frozenset())
        left = (leave or {}).get(side, frozenset())
        channels = [ch for ch in pose_channels(arm_obj, sel) + slider_channels(arm_obj, sel) if ch.part not in left]
        count, skipped, muted, replaced = write_channels(arm_obj, frames, channels, f"{arm_obj.name} Action", blend,
                                                         parts)
        written += count
        sharing = sharing_warning(arm_obj, hands.values())
        if sharing:
            warnings.append(sharing)
        if under_strips:  # (as Blender's own keying does: said, since it hides the strips everywhere)
            warnings.append(f"{arm_obj.name!r} was animated by NLA strips alone: its new keys are in a new action, "
                            f"{arm_obj.animation_data.action.name!r}, which overrides the strips on every frame (push "
                            "it down in the NLA editor to layer it over them, or undo)")
        mesh_obj = rig_build.hand_mesh(arm_obj)
        correctives = [ch for ch in corrective_channels(arm_obj, sel) if ch.part not in left]
        if correctives and mesh_obj is not None:
            count, _, muted_keys, replaced_correctives = write_channels(
                mesh_obj.data.shape_keys, frames, correctives, f"{mesh_obj.name} Correctives", blend, parts)
            written += count
            muted += muted_keys  # (the corrective shape keys' group, muted: said with the bones')
            for name, n in replaced_correctives.items():
                replaced[name] = replaced.get(name, 0) + n
        if replaced:
            replaced_keys[side] = replaced
        if muted:
            warnings.append(f"{side} hand: {', '.join(muted)} {'is' if len(muted) == 1 else 'are'} muted, so "
                            f"{'its' if len(muted) == 1 else 'their'} channels were left as they are (unmute and run "
                            "it again to key them)")
        if skipped:
            skipped_frames[side] = sorted(skipped)
            warnings += kept_said(side, arm_obj, sorted(skipped), float(all_frames[0]), float(all_frames[-1]))
    range_moves = _play_whole(scene, float(all_frames[0]), float(all_frames[-1]))
    # No scene.frame_set in general: each curve's update() tags its action's animation, so the next depsgraph
    # update (Blender's redraw) shows the new keys and the sliders follow (fingers' depsgraph handler);
    # evaluating the whole scene and its frame handlers now cost 4 ms, a third of a 2 × 600-frame import.
    # Keyed sliders move their fingers on frame changes only (fingers.follow_animation): then it is needed,
    # for these rigs alone (a frame change put every other object moved by hand, not keyed yet, back on its keys)
    sliding = [arm_obj for arm_obj in hands.values() if arm_obj is not None and animated_sliders(arm_obj)]
    if sliding:
        placement.show_animation(scene, [i for arm_obj in sliding for i in rig_build.hand_ids(arm_obj)])
    return {"keys": written, "frame_start": float(all_frames[0]), "frame_end": float(all_frames[-1]),
            "warnings": warnings, "skipped": skipped_frames, "replaced": replaced_keys, "range": range_moves}


def _play_whole(scene, first: float, last: float) -> list[str]:
    """Widen the scene's frame range to play keys from ``first`` to ``last`` (keys outside it were out of
    playback, renders and exports of the range), and say how: a scene setting changed unsaid showed up
    unexplained."""
    start_before, end_before = scene.frame_start, scene.frame_end
    if int(np.ceil(last)) > scene.frame_end:
        scene.frame_end = int(np.ceil(last))
    if int(np.floor(first)) < scene.frame_start:
        scene.frame_start = max(int(np.floor(first)), 0)  # (Blender's Start is 0 at the least)
    # (before frame 0: said whether Start moved to 0 or stood there already)
    unplayed = (f"frames {range_text(first, min(last, -1))} are keyed, but Blender plays no frame before 0"
                if first < scene.frame_start else "")
    moves = []
    if scene.frame_start != start_before:
        moves.append(f"the scene's Start moved from {start_before} to {scene.frame_start} "
                     + (f"({unplayed})" if unplayed else "to play it whole"))
    elif unplayed:
        moves.append(unplayed)
    if scene.frame_end != end_before:
        moves.append(f"the scene's End moved from {end_before} to {scene.frame_end} to play it whole")
    return moves


def only_in_strips(obj) -> bool:
    """Whether the object's animation is in NLA strips alone (no active action, not in tweak mode): new keys
    go to a new active action, which then overrides the strips on every frame."""
    ad = obj.animation_data
    return (ad is not None and ad.action is None and not ad.use_tweak_mode
            and any(not track.mute and len(track.strips) for track in ad.nla_tracks))


def animated_paths(arm_obj) -> set[str]:
    """Data paths of the rig's own properties that an active F-curve or driver sets."""
    paths: set[str] = set()
    bag = find_channelbag(arm_obj)
    if bag is not None:
        paths |= {fc.data_path for fc in bag.fcurves if plays(fc) and len(fc.keyframe_points)}
    ad = arm_obj.animation_data
    if ad is not None:
        paths |= {d.data_path for d in ad.drivers if not d.mute}
    return paths


SLIDER_KINDS = ("curl", "spread")  # the finger sliders: handforge.<kind>_<finger> (properties.py; fingers.py moves them)


def slider_path(kind: str, finger: str) -> str:
    return f"handforge.{kind}_{finger}"


def animated_sliders(arm_obj) -> list[tuple[str, str]]:
    """(kind, finger) of the rig's finger sliders that an F-curve or driver animates."""
    paths = animated_paths(arm_obj)
    return [(kind, finger) for finger in FINGERS for kind in SLIDER_KINDS if slider_path(kind, finger) in paths]


WRIST_LOCATION = KEY_PARTS - 1  # the key mask's last column: the wrist's location (0: its rotation, 1-15 the fingers)


def key_parts(arm_obj) -> dict[str, int]:
    """The key part (column of a key mask) of each F-curve data path of a hand rig."""
    pbones = arm_obj.pose.bones
    part_of = {f'pose.bones["{name}"].{pose_conv.channel_prop(pbones[name].rotation_mode)}': k
               for k, name in enumerate(JOINT_NAMES)}
    part_of[f'pose.bones["{JOINT_NAMES[0]}"].location'] = WRIST_LOCATION
    return part_of


def driven_note(side: str, arm_obj, parts, shown: str) -> str:
    """Where an unmuted driver sets any of the rig's ``parts`` (key-mask columns) or a finger slider (which moves its
    finger to the driver's value at every frame change, ``fingers.follow_animation``), what to say: it shows the
    driver's value, not ``shown`` (e.g. "this pose", "these keys"); '' where none does."""
    ad = arm_obj.animation_data
    paths = {d.data_path for d in ad.drivers if not d.mute} if ad is not None else set()
    if not paths:
        return ""
    parts = set(parts)
    driven = [f"{finger} {kind} slider" for kind, finger in animated_sliders(arm_obj)
              if slider_path(kind, finger) in paths]
    driven += [f"{JOINT_NAMES[part] if part < WRIST_LOCATION else JOINT_NAMES[0]} "
               f"{'location' if part == WRIST_LOCATION else 'rotation'}"
               for path, part in key_parts(arm_obj).items() if path in paths and part in parts]
    if not driven:
        return ""
    return (f"{side} hand: its {', '.join(driven)} {'are' if len(driven) > 1 else 'is'} driven, so it shows the "
            f"driver's value, not {shown}: mute the driver or remove it (right-click the property > Delete Driver)")


ROTATION_PROPS = ("rotation_quaternion", "rotation_euler", "rotation_axis_angle")


def rotation_modes(arm_obj) -> list[str]:
    """Each joint's rotation mode, in JOINT_NAMES order: which rotation channel it shows (and its keys are on)."""
    return [arm_obj.pose.bones[name].rotation_mode for name in JOINT_NAMES]


def unshown_keys_note(side: str, arm_obj) -> str:
    """Where a joint has keys on a rotation channel its rotation mode does not show (keyed in Euler, the mode then
    set to Quaternion), what to say: Blender shows none of them, and the motion tools read and write the channel
    shown (an In-between there wrote Quaternion keys over the artist's frames, unsaid); '' where none has."""
    bag = find_channelbag(arm_obj)
    if bag is None:
        return ""
    keyed = {fc.data_path for fc in bag.fcurves if len(fc.keyframe_points)}
    shown = key_parts(arm_obj)
    named = []
    for name in JOINT_NAMES:
        unshown = [prop.split("_", 1)[1] for prop in ROTATION_PROPS
                   if f'pose.bones["{name}"].{prop}' in keyed and f'pose.bones["{name}"].{prop}' not in shown]
        if unshown:
            mode = pose_conv.channel_prop(arm_obj.pose.bones[name].rotation_mode).split("_", 1)[1]
            named.append(f"{name} (keyed as {' and '.join(unshown)}, its mode {mode})")
    if not named:
        return ""
    return (f"{side} hand: {', '.join(named)}: keys on a rotation its rotation mode does not show, neither read nor "
            "shown: set the mode back (Bone Properties > Transform > Mode) to use them")


def curves_alone(arm_obj) -> bool:
    """Whether the rig shows exactly its action's F-curves: no NLA, drivers, keyed sliders or active
    constraints (joint limits) between the keys and the pose, so the pose can be read from the curves in bulk."""
    ad = arm_obj.animation_data
    if ad is not None and (len(ad.nla_tracks) or len(ad.drivers)):
        return False
    bag = find_channelbag(arm_obj)
    if bag is not None and any(fc.data_path.startswith("handforge.") for fc in bag.fcurves):
        return False  # keyed finger sliders move the bones on each frame (fingers.follow_animation)
    if any(".constraints[" in path for path in animated_paths(arm_obj)):
        return False  # a constraint keyed or driven on and off: off at the frame shown is not off at every frame
    return not pose_conv.constrained(arm_obj)


def _sample(fc, frames: np.ndarray) -> np.ndarray:
    evaluate = fc.evaluate
    return np.fromiter((evaluate(f) for f in frames), np.float64, len(frames))


def sample_channels(arm_obj, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bone-local rotations (T, 16, 3, 3) and wrist locations (T, 3) read from the F-curves at
    ``frames``, a channel without a curve keeping its current value."""
    bag = find_channelbag(arm_obj)
    pbones = arm_obj.pose.bones
    local = np.empty((len(frames), NUM_JOINTS, 3, 3))
    for k, name in enumerate(JOINT_NAMES):
        pb = pbones[name]
        path = f'pose.bones["{name}"].{pose_conv.channel_prop(pb.rotation_mode)}'
        current = pose_conv.channel_values(pb)
        values = np.repeat(current[None], len(frames), axis=0)
        for c in range(len(current)):
            fc = bag.fcurves.find(path, index=c) if bag is not None else None
            if shown(fc):
                values[:, c] = _sample(fc, frames)
        local[:, k] = pose_conv.channels_to_matrix(values, pb.rotation_mode)
    location = np.repeat(np.array(pbones[JOINT_NAMES[0]].location, dtype=np.float64)[None], len(frames), axis=0)
    for c in range(3):
        fc = bag.fcurves.find(f'pose.bones["{JOINT_NAMES[0]}"].location', index=c) if bag is not None else None
        if shown(fc):
            location[:, c] = _sample(fc, frames)
    return local, location


def check_scene_time(hands: dict[str, object]) -> None:
    """Refuse rigs whose keys are edited in NLA tweak mode through a strip that is moved or scaled: the
    keys live in the strip's action time, the tools read and write scene frames (in-betweening read the
    wrong frames and keyed where nothing showed). A strip left where its action's frames show is fine."""
    for obj in hands.values():
        ad = obj.animation_data
        if ad is None or not ad.use_tweak_mode:
            continue
        if any(abs(ad.nla_tweak_strip_time_to_scene(t) - t) > 1e-6 for t in (0.0, 100.0)):
            raise ValueError(f"{obj.name!r} is in NLA tweak mode on a strip that is moved or scaled: its keys are in "
                             "the strip's own time; leave tweak mode (Tab in the NLA editor) first, or place the "
                             "strip where its action's frames show (start at its first frame, scale 1)")


MAX_EXPORT_FRAMES = 100_000  # ~1.3 GB and ~12 s read at once (measured: 50,000 frames, 665 MB, 5.9 s)


def check_export(hands: dict[str, object], frame_start: int, frame_end: int, step: int = 1) -> str:
    """The clip's hand model, after checking what can be checked before any work. The limit counts the frames
    read, every ``step``-th of the range (a long range at a large Step reads few)."""
    if frame_end < frame_start:
        raise ValueError(f"the frame range {frame_start}..{frame_end} is empty: set End at or after Start")
    count = len(range(frame_start, frame_end + 1, step))
    if count > MAX_EXPORT_FRAMES and step == 1:  # read whole in memory, before the first progress step
        raise ValueError(f"the frame range {frame_start}..{frame_end} has {count:,} frames; an "
                         f"export reads at most {MAX_EXPORT_FRAMES:,} at once (over an hour at 24 fps): export it in parts")
    if count > MAX_EXPORT_FRAMES:
        raise ValueError(f"the frame range {frame_start}..{frame_end} at Step {step} has {count:,} frames to read; "
                         f"an export reads at most {MAX_EXPORT_FRAMES:,} at once: raise Step or export it in parts")
    models = {obj.handforge.hand_model for obj in hands.values()}
    if len(models) != 1:
        raise PoseFormatError(f"the hands are of different hand models ({', '.join(sorted(models))}): export them one at a time")
    return models.pop()


def export_steps(context, hands: dict[str, object], frame_start: int, frame_end: int, result: dict, step: int = 1):
    """Sample the rigs at every ``step``-th frame of [frame_start, frame_end] into ``result["clip"]`` (what is
    shown; its fps the scene's over ``step``).

    A generator: it yields the fraction done, so an operator can show progress and stop early. A
    rig that shows just its keys is read from its F-curves in one go; one with joint limits, NLA
    or drivers is evaluated frame by frame (``scene.frame_set``), the scene as it was after
    (``placement.evaluating_frames``: its frame, and the artist's changes not keyed yet)."""
    hand_model = check_export(hands, frame_start, frame_end, step)
    scene = context.scene
    frames = np.arange(frame_start, frame_end + 1, step, dtype=np.float64)
    bulk = {s: obj for s, obj in hands.items() if curves_alone(obj)}
    slow = {s: obj for s, obj in hands.items() if s not in bulk}
    per_side: dict[str, HandPose] = {}
    for side, obj in bulk.items():
        local, location = sample_channels(obj, frames)
        rotation_bad = ~np.isfinite(local.reshape(len(frames), NUM_JOINTS, -1)).all(axis=-1)
        location_bad = ~np.isfinite(location).all(axis=-1)
        if rotation_bad.any() or location_bad.any():
            t = int(np.flatnonzero(rotation_bad.any(axis=1) | location_bad)[0])
            bone = JOINT_NAMES[int(np.flatnonzero(rotation_bad[t])[0])] if rotation_bad[t].any() else JOINT_NAMES[0]
            _refuse_not_a_number(obj, bone, "rotation" if rotation_bad[t].any() else "location", frames[t])
        params = pose_conv.local_to_params(pose_conv.bone_frames(obj), local, location)
        per_side[side] = HandPose(betas=np.repeat(pose_conv.rig_betas(obj)[None], len(frames), axis=0), **params)
    if slow:
        sampled: dict[str, list[HandPose]] = {s: [] for s in slow}
        with placement.evaluating_frames(scene):
            for i, frame in enumerate(range(frame_start, frame_end + 1, step)):
                scene.frame_set(frame)
                for side, obj in slow.items():
                    found = pose_conv.not_a_number(obj)
                    if found:
                        _refuse_not_a_number(obj, *found, frame)
                    # what is shown: the artist's own constraints too (``read_pose``)
                    sampled[side].append(pose_conv.read_pose(obj))
                yield (i + 1) / len(frames)
        per_side.update({s: stack_poses(p) for s, p in sampled.items()})
    result["clip"] = MotionClip(hands={s: per_side[s] for s in hands}, fps=scene_fps(scene) / step,
                                hand_model=hand_model, extra={"source": "blender", "frame_start": frame_start})
    yield 1.0


def _refuse_not_a_number(arm_obj, bone: str, what: str, frame: float) -> None:
    """A rig's animation gives ``bone`` a ``what`` that is not a number on ``frame`` (a NaN key, a driver's): said in
    the artist's terms (it was "global_orient has a non-finite value (NaN or inf) at index [0, 0]")."""
    raise PoseFormatError(f"the bone {bone!r} of the hand {arm_obj.name!r} has a {what} that is not a number (NaN) on "
                          f"frame {frame_text(frame)}: a key or a driver gives it there; key the bone again on that "
                          "frame (Key Pose), or delete that key (Graph Editor)")


def export_clip(context, hands: dict[str, object], frame_start: int, frame_end: int, step: int = 1) -> MotionClip:
    """Sample the rigs at every ``step``-th frame of [frame_start, frame_end] into a clip (all at once)."""
    result: dict = {}
    for _ in export_steps(context, hands, frame_start, frame_end, result, step):
        pass
    return result["clip"]


def key_pose(arm_obj, frame: float) -> int:
    """Insert ordinary (artist) keys of the rig's current pose at ``frame`` (KEYFRAME keys, also where
    generated keys were: Key Pose over a generated frame makes it the artist's)."""
    pose_conv.update_correctives(arm_obj)  # bones may have been rotated by hand since
    count = 0
    for name in JOINT_NAMES:
        pb = arm_obj.pose.bones[name]
        prop = pose_conv.channel_prop(pb.rotation_mode)
        pb.keyframe_insert(prop, frame=frame, group=name)
        count += 4 if prop != "rotation_euler" else 3
    arm_obj.pose.bones[JOINT_NAMES[0]].keyframe_insert("location", frame=frame, group=JOINT_NAMES[0])
    keys = rig_build.corrective_keys(arm_obj)
    for kb in keys or ():
        kb.keyframe_insert("value", frame=frame, group="Pose Correctives")
    retype_pose_keys(arm_obj, frame, "KEYFRAME")
    return count + 3 + len(keys or ())


def retype_pose_keys(arm_obj, frame: float, keytype: str) -> None:
    """Make the hand's pose keys at scene ``frame`` of type ``keytype``: ``keyframe_insert`` over an existing
    key keeps that key's type, so a generated key overwritten by the artist would stay GENERATED (and
    Regenerate or Delete Generated Keys would take the artist's fix away). In NLA tweak mode the keys
    are in the tweaked strip's action time, where ``keyframe_insert`` put them (the scene frame missed them)."""
    for id_block, bag in hand_channels(arm_obj):
        ad = id_block.animation_data
        at = ad.nla_tweak_strip_time_to_scene(frame, invert=True) if ad is not None and ad.use_tweak_mode else frame
        _retype([fc for fc in bag.fcurves if is_pose_path(fc.data_path)], at, keytype)


def _retype(fcurves, frame: float, keytype: str) -> None:
    wanted = enum_value(bpy.types.Keyframe, "type", keytype)
    for fc in fcurves:
        n = len(fc.keyframe_points)
        if not n:
            continue
        co = np.empty(2 * n, np.float64)
        fc.keyframe_points.foreach_get("co", co)
        at = np.flatnonzero(np.abs(co[0::2] - frame) < 1e-4)
        if len(at):
            kinds = key_types(fc)
            if (kinds[at] != wanted).any():
                kinds[at] = wanted
                fc.keyframe_points.foreach_set("type", kinds)


