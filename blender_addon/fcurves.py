"""F-curves of the hands, whichever Blender: the channel containers of the layered/slotted action API
(Blender 4.4+: action → layer → keyframe strip → channelbag for the ID's slot; Blender 5.0 removed
``Action.fcurves``; the legacy ``Action.fcurves`` kept only for 4.2/4.3), their keys read and written in
bulk (``foreach_get``/``foreach_set``), and which curves animate a hand's pose.

Generated keys have keyframe type ``GENERATED`` (``keys`` writes them, ``generated_keys`` acts on them).
"""

from __future__ import annotations

import functools

import bpy
import numpy as np

from . import rig as rig_build
from handforge_shared.skeleton import JOINT_NAMES

GENERATED = "GENERATED"
FRAME_EPS = 1e-3  # frames closer than this are one frame
# Keyframe attributes copied when an F-curve is rebuilt, so kept keys come back unchanged.
_POINT_FLOATS = {"co": 2, "handle_left": 2, "handle_right": 2, "back": 1, "amplitude": 1, "period": 1}
_POINT_ENUMS = ("handle_left_type", "handle_right_type", "interpolation", "type", "easing")
POINT_BOOLS = ("select_control_point", "select_left_handle", "select_right_handle")


@functools.cache
def enum_value(struct, prop: str, item: str) -> int:
    return struct.bl_rna.properties[prop].enum_items[item].value


@functools.lru_cache(maxsize=4)
def generated_types(n: int) -> np.ndarray:
    """The keyframe type of n generated keys, shared by every curve of an import (read-only)."""
    types = np.full(n, enum_value(bpy.types.Keyframe, "type", GENERATED), np.int32)
    types.flags.writeable = False
    return types


@functools.cache
def layered() -> bool:
    return hasattr(bpy.types, "ActionChannelbag") or hasattr(bpy.types, "ActionChannelBag")


def ensure_channelbag(id_block, action_name: str):
    """The channel container of ``id_block``'s action (created if needed): a channelbag of its
    slot on Blender 4.4+, the action itself before."""
    ad = id_block.animation_data or id_block.animation_data_create()
    if ad.action is None:
        ad.action = bpy.data.actions.new(action_name)
    action = ad.action
    if not layered():
        return action
    if ad.action_slot is None:
        slot = next(iter(ad.action_suitable_slots), None)
        if slot is None:
            slot = action.slots.new(id_type=id_block.id_type, name=id_block.name)
        ad.action_slot = slot
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbag(ad.action_slot, ensure=True)


def find_channelbag(id_block):
    """The existing channel container of ``id_block``, or None."""
    ad = id_block.animation_data
    if ad is None or ad.action is None:
        return None
    return slot_channelbag(ad.action, getattr(ad, "action_slot", None))


def slot_channelbag(action, slot):
    """The channels of ``action`` for ``slot`` (the action itself before Blender 4.4), or None."""
    if not layered():
        return action
    if slot is None:
        return None
    for layer in action.layers:
        for strip in layer.strips:
            bag = strip.channelbag(slot)
            if bag is not None:
                return bag
    return None


class FCurves:
    """The F-curves of one channel container, found or created by (data path, index).

    The existing curves and groups are listed once: a ``fcurves.find`` per channel searches every curve
    (104 searches per hand import)."""

    def __init__(self, bag) -> None:
        self.bag = bag
        self.curves = {(fc.data_path, fc.array_index): fc for fc in bag.fcurves}
        self.groups = {g.name: g for g in bag.groups} if layered() else {}

    def ensure(self, data_path: str, index: int, group: str):
        fc = self.curves.get((data_path, index))
        if fc is not None:
            return fc
        if layered():
            fc = self.bag.fcurves.new(data_path, index=index)
            grp = self.groups.get(group)
            if grp is None:
                grp = self.groups[group] = self.bag.groups.new(group)
            fc.group = grp
        else:
            fc = self.bag.fcurves.new(data_path, index=index, action_group=group)
        self.curves[data_path, index] = fc
        return fc


def read_points(kps) -> dict[str, np.ndarray]:
    n = len(kps)
    out: dict[str, np.ndarray] = {}
    for name, width in _POINT_FLOATS.items():
        buf = np.empty(n * width, dtype=np.float32)
        kps.foreach_get(name, buf)
        out[name] = buf.reshape(n, width) if width > 1 else buf
    for name in _POINT_ENUMS:
        buf = np.empty(n, dtype=np.int32)
        kps.foreach_get(name, buf)
        out[name] = buf
    for name in POINT_BOOLS:
        buf = np.empty(n, dtype=bool)
        kps.foreach_get(name, buf)
        out[name] = buf
    return out


def write_points(kps, points: dict[str, np.ndarray]) -> None:
    for name, arr in points.items():
        kps.foreach_set(name, np.ascontiguousarray(arr).ravel())


def new_points(co: np.ndarray) -> dict[str, np.ndarray]:
    """Attributes of new generated keys at ``co`` (n, 2), for a curve that is rebuilt."""
    n = len(co)
    kf = bpy.types.Keyframe
    return {
        "co": co, "handle_left": co.copy(), "handle_right": co.copy(),  # recalculated by update()
        "back": np.full(n, 1.70158, np.float32), "amplitude": np.full(n, 0.8, np.float32),
        "period": np.full(n, 4.1, np.float32),
        "handle_left_type": np.full(n, enum_value(kf, "handle_left_type", "AUTO_CLAMPED"), np.int32),
        "handle_right_type": np.full(n, enum_value(kf, "handle_right_type", "AUTO_CLAMPED"), np.int32),
        "interpolation": np.full(n, enum_value(kf, "interpolation", "BEZIER"), np.int32),
        "type": np.full(n, enum_value(kf, "type", GENERATED), np.int32),
        "easing": np.full(n, enum_value(kf, "easing", "AUTO"), np.int32),
        "select_control_point": np.zeros(n, bool), "select_left_handle": np.zeros(n, bool),
        "select_right_handle": np.zeros(n, bool),
    }


def plays(fc) -> bool:
    """Whether Blender plays ``fc``'s keys, a curve of a rig's active action: not muted, and on Blender before 4.4 not
    in a muted group. Blender 4.4+ (layered actions) plays a muted group's curves all the same (its evaluation no
    longer looks at the group; checked on 4.5.15; the Graph Editor's mute button on a group mutes each curve too),
    so there keys in such a group count and are written to as anywhere (they were taken for muted: not kept, nor
    written)."""
    if fc is None or fc.mute:
        return False
    return layered() or fc.group is None or not fc.group.mute


def shown(fc) -> bool:
    """Whether Blender evaluates ``fc`` (``BKE_fcurve_is_empty``): a curve left without keys, e.g. by
    Delete Generated Keys, is skipped and the channel keeps its value (reading it gave 0: a flat hand
    at the origin was exported while the viewport showed the pose)."""
    return (plays(fc)
            and bool(len(fc.keyframe_points) or len(fc.sampled_points)
                     or any(m.type in ("GENERATOR", "FNGENERATOR") and not m.mute for m in fc.modifiers)))


def hand_fcurves(arm_obj, pose_only: bool = False) -> list:
    """Every F-curve that animates a hand: its armature's and its correctives' shape keys'. ``pose_only``:
    only those of the hand's pose (joint bones, correctives, finger sliders), not the other channels an
    artist keys on the same objects (the object's transform, custom properties)."""
    return [fc for _, bag in hand_channels(arm_obj) for fc in bag.fcurves if not pose_only or is_pose_path(fc.data_path)]


def hand_channels(arm_obj) -> list:
    """(ID, its channelbag) of the hand's armature and of its correctives' shape keys (those animated)."""
    mesh_obj = rig_build.hand_mesh(arm_obj)
    id_blocks = (arm_obj, mesh_obj.data.shape_keys if mesh_obj is not None else None)
    return [(i, bag) for i, bag in ((i, find_channelbag(i)) for i in id_blocks if i is not None) if bag is not None]


_POSE_PREFIXES = (*(f'pose.bones["{name}"].' for name in JOINT_NAMES), 'key_blocks["pose_', "handforge.")


def is_pose_path(path: str) -> bool:
    return path.startswith(_POSE_PREFIXES)


def key_types(fc) -> np.ndarray:
    kinds = np.empty(len(fc.keyframe_points), np.int32)
    fc.keyframe_points.foreach_get("type", kinds)
    return kinds


__all__ = ["FCurves", "FRAME_EPS", "GENERATED", "POINT_BOOLS", "ensure_channelbag", "enum_value", "find_channelbag",
           "generated_types", "hand_channels", "hand_fcurves", "is_pose_path", "key_types", "layered", "new_points", "plays",
           "read_points", "shown", "slot_channelbag", "write_points"]
