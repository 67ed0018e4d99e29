"""Per-finger curl and spread sliders: offsets on the finger's current pose, keyable.

A slider's change moves its finger by the difference of the anatomical angles its old and new
values stand for (``anatomy.slider_angles``): the flexion of the finger's three joints for curl,
the MCP (thumb: CMC) abduction for spread. Every other angle, finger and the wrist stay exactly,
so a slider set to the value it shows moves nothing, and a nudge after a preset keeps the rest of
the preset (an OK ring stays closed).

The bones are the truth. A slider shows what the bones show (``anatomy.curl_spread_of``) and is
re-read after every pose operator, every frame change and every change of the rig, so it follows
keyed bones when scrubbing. A slider can be keyed itself (I over it): on every frame change an
animated slider moves its finger to the keyed value, on top of what the bones' own keys give.
With auto-keying on, a slider tweak keys the bones it moved (and the slider, when it is animated).
"""

from __future__ import annotations

import math

import bpy
import numpy as np
from bpy.app.handlers import persistent

from . import app_handlers, fcurves, keys
from . import pose as pose_conv
from . import rig
from handforge_shared import anatomy
from handforge_shared.poses import PoseFormatError
from handforge_shared.skeleton import FINGERS, JOINT_NAMES

# Sliders are float32: a value within this of what the bones show is the same value.
SAME_VALUE = 1e-6

_syncing = False  # set while sliders are written from the pose, so their callbacks do nothing


def _finger_angles(arm_obj, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The channels' bone-local rotations (16, 3, 3) and their anatomical angles (15, 3)."""
    local, _ = pose_conv.read_local(arm_obj, visual=False)
    world = pose_conv.world_from_local(frames, local)
    return local, anatomy.matrix_to_anatomical(world[1:], frames, arm_obj.handforge.side)


def move_fingers(arm_obj, sliders) -> list[int]:
    """Move the fingers of ``sliders`` ((kind, finger) pairs) from what the bones show to the
    sliders' values, as offsets. Returns the joints (1..15) whose channels were written."""
    props = arm_obj.handforge
    frames = pose_conv.bone_frames(arm_obj)
    local, angles = _finger_angles(arm_obj, frames)
    shown = dict(zip(keys.SLIDER_KINDS, anatomy.curl_spread_of(angles)))
    exact = dict(zip(keys.SLIDER_KINDS, anatomy.curl_spread_of(angles, clip=False)))
    delta = np.zeros_like(angles)
    for kind, finger in sliders:
        wanted = getattr(props, f"{kind}_{finger}")
        if abs(wanted - shown[kind][finger]) <= SAME_VALUE:  # set to what it shows: nothing moves
            continue
        # from where the finger is, not from the slider's clipped value: a finger beyond the slider's range
        # (thumbs_up's thumb, curl -0.11) set to 0.5 went to 0.39, and the slider then showed that
        now = exact[kind][finger]
        if kind == "curl":
            delta += anatomy.slider_angles(finger, wanted, 0.0) - anatomy.slider_angles(finger, now, 0.0)
        else:
            delta += anatomy.slider_angles(finger, 0.0, wanted) - anatomy.slider_angles(finger, 0.0, now)
    joints = [int(row) + 1 for row in np.flatnonzero(np.any(delta != 0.0, axis=1))]
    if not joints:
        return []
    world = anatomy.anatomical_to_matrix(angles + delta, frames, props.side)
    local[1:] = pose_conv.local_from_world(frames[1:], world)
    pose_conv.write_local(arm_obj, local, None, joints=joints)
    pose_conv.update_correctives(arm_obj)
    return joints


def slider_changed(context, arm_obj, kind: str, finger: str) -> None:
    """A slider was set (UI or script): move its finger, and auto-key when Blender would."""
    if _syncing:
        return
    if not math.isfinite(getattr(arm_obj.handforge, f"{kind}_{finger}")):  # a script's NaN, an expression typed
        sync_sliders(arm_obj)  # back to what the bones show: NaN went into the rotations (and the keys)
        return
    joints = move_fingers(arm_obj, [(kind, finger)])
    if context.scene.tool_settings.use_keyframe_insert_auto:
        _autokey(context.scene, arm_obj, joints, keys.slider_path(kind, finger))


def check_autokeyable(scene, rigs) -> None:
    """With auto-keying on, refuse ``rigs`` (a pose tool's, checked before it poses any) whose keys cannot be
    inserted (``keys.check_keyable``: an action linked from another file). Blender skipped each key with a warning,
    the tool said done, and the next frame change took the new pose away."""
    if scene.tool_settings.use_keyframe_insert_auto:
        try:
            keys.check_keyable(dict(enumerate(rigs)))
        except PoseFormatError as exc:
            raise PoseFormatError(f"{exc}, or turn auto-keying off to pose it without keys") from None


def posed(scene, arm_obj, pose, fingers_only: bool) -> str:
    """A pose tool's pose on the rig (Apply Preset, Paste Pose, Mirror, Reset, a library pose): the sliders
    show it, and with auto-keying on it is keyed, as Blender's own pose tools (Paste Pose) key theirs (before,
    the next frame change took it away on a keyed rig, unsaid). Returns what to say where a driver sets what it
    posed (``keys.driven_note``: the tool had done nothing there, unsaid), else ''."""
    pose_conv.write_pose(arm_obj, pose, fingers_only=fingers_only)
    sync_sliders(arm_obj)
    joints = list(range(1 if fingers_only else 0, len(JOINT_NAMES)))
    if scene.tool_settings.use_keyframe_insert_auto:
        _autokey(scene, arm_obj, joints, None, location=not fingers_only)
    return keys.driven_note(arm_obj.handforge.side, arm_obj, joints + ([] if fingers_only else [keys.WRIST_LOCATION]),
                            "this pose")


def key_shown_sliders(arm_obj, frame: float, keytype: str) -> int:
    """Key the rig's keyed finger sliders at the curl and spread its bones show now; returns how many. A keyed
    slider moves its finger to its own value on every frame change, so a pose keyed without it came back
    changed (Apply Preset, then Key Pose: the next frame change took the preset's curl away)."""
    keyed = [keys.slider_path(kind, finger) for kind, finger in keys.keyed_sliders(arm_obj)]
    if keyed:
        sync_sliders(arm_obj)  # the keyed ones too: what is keyed is what the bones show
        for path in keyed:
            arm_obj.keyframe_insert(path, frame=frame, group=keys.SLIDER_GROUP, keytype=keytype)
    return len(keyed)


def _autokey(scene, arm_obj, joints: list[int], slider: str | None, location: bool = False) -> None:
    """Key what a slider (or, ``slider`` None, a pose tool) moved at the current frame, as Blender's
    auto-keying keys a transform: with the chosen key type, only channels that have curves when "Only
    Insert Available" is on."""
    only_available = bpy.context.preferences.edit.use_keyframe_insert_available
    bag = fcurves.find_channelbag(arm_obj)

    def wanted(path: str) -> bool:
        return not only_available or (bag is not None and bag.fcurves.find(path) is not None)

    frame, keytype = scene.frame_current_final, scene.tool_settings.keyframe_type
    for k in joints:
        name = JOINT_NAMES[k]
        prop = pose_conv.channel_prop(arm_obj.pose.bones[name].rotation_mode)
        if wanted(f'pose.bones["{name}"].{prop}'):
            arm_obj.pose.bones[name].keyframe_insert(prop, frame=frame, group=name, keytype=keytype)
    if location and wanted(f'pose.bones["{JOINT_NAMES[0]}"].location'):
        arm_obj.pose.bones[JOINT_NAMES[0]].keyframe_insert("location", frame=frame, group=JOINT_NAMES[0],
                                                           keytype=keytype)
    correctives = rig.corrective_keys(arm_obj) if joints else None
    for kb in correctives or ():
        kb.keyframe_insert("value", frame=frame, group="Pose Correctives", keytype=keytype)
    if slider is None:  # a pose tool: the keyed sliders would take its pose back at the next frame change
        key_shown_sliders(arm_obj, frame, keytype)
    elif slider in keys.animated_paths(arm_obj):  # else the slider's own curve would undo the tweak
        arm_obj.keyframe_insert(slider, frame=frame, group=keys.SLIDER_GROUP, keytype=keytype)
    # keyframe_insert keeps an overwritten key's type: a tweak over a generated frame is the artist's
    keys.retype_pose_keys(arm_obj, frame, keytype)


def sync_sliders(arm_obj, keep=()) -> None:
    """Set the sliders to the curl and spread the bones show (except ``keep``: animated sliders,
    which the animation sets). Writes only sliders that differ, so it can run on every update."""
    global _syncing
    props = arm_obj.handforge
    _, angles = _finger_angles(arm_obj, pose_conv.bone_frames(arm_obj))
    shown = dict(zip(keys.SLIDER_KINDS, anatomy.curl_spread_of(angles)))
    _syncing = True
    try:
        for finger in FINGERS:
            for kind in keys.SLIDER_KINDS:
                name = f"{kind}_{finger}"
                # (not "<=": a NaN slider differs from every value)
                if (kind, finger) not in keep and not abs(getattr(props, name) - shown[kind][finger]) <= SAME_VALUE:
                    setattr(props, name, shown[kind][finger])
    finally:
        _syncing = False


def follow_animation(arm_obj) -> None:
    """After the animation set the channels: animated sliders move their fingers, the others follow the bones."""
    animated = keys.animated_sliders(arm_obj)
    if animated:
        move_fingers(arm_obj, animated)
    sync_sliders(arm_obj, keep=animated)


def posable(obj) -> bool:
    """A complete HandForge rig outside edit mode (not one being built or reshaped)."""
    return (obj.type == "ARMATURE" and obj.handforge.is_hand and obj.mode != "EDIT"
            and not rig.missing_bones(obj))


def _hands(scene):
    return [obj for obj in scene.objects if posable(obj)]


@persistent
def _on_frame_change(scene, depsgraph=None):
    for arm_obj in _hands(scene):
        follow_animation(arm_obj)


@persistent
def _on_depsgraph_update(scene, depsgraph):
    """Bones rotated by hand (or by a script): the sliders show the new pose."""
    if _syncing:
        return
    changed = {update.id.original for update in depsgraph.updates if isinstance(update.id, bpy.types.Object)}
    for arm_obj in _hands(scene):
        if arm_obj in changed:
            sync_sliders(arm_obj, keep=keys.animated_sliders(arm_obj))


_HANDLERS = (("frame_change_post", _on_frame_change), ("depsgraph_update_post", _on_depsgraph_update))


def register() -> None:
    app_handlers.add(*_HANDLERS)


def unregister() -> None:
    app_handlers.remove(*_HANDLERS)
