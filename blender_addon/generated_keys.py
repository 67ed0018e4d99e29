"""The generated keys of a hand as a set: select them, delete them, or make them the artist's."""

from __future__ import annotations

import bpy
import numpy as np

from .fcurves import GENERATED, POINT_BOOLS, enum_value, hand_channels, hand_fcurves, key_types, read_points, write_points


def select_generated(arm_obj) -> int:
    """Select exactly the generated keys (others deselected, handles too); returns how many."""
    generated = enum_value(bpy.types.Keyframe, "type", GENERATED)
    count = 0
    for fc in hand_fcurves(arm_obj):
        is_generated = key_types(fc) == generated
        for name in POINT_BOOLS:
            fc.keyframe_points.foreach_set(name, is_generated if name == "select_control_point" else np.zeros_like(is_generated))
        fc.select = bool(is_generated.any())
        count += int(is_generated.sum())
    return count


def delete_generated(arm_obj) -> int:
    """Delete every generated key (all other keys stay exactly); returns how many were deleted."""
    generated = enum_value(bpy.types.Keyframe, "type", GENERATED)
    count = 0
    for _, bag in hand_channels(arm_obj):
        for fc in list(bag.fcurves):
            is_generated = key_types(fc) == generated
            if not is_generated.any():
                continue
            count += int(is_generated.sum())
            if is_generated.all() and not len(fc.modifiers):  # as Blender deletes a curve whose last key goes
                bag.fcurves.remove(fc)
                continue
            kept = {k: v[~is_generated] for k, v in read_points(fc.keyframe_points).items()}
            fc.keyframe_points.clear()
            fc.keyframe_points.add(len(kept["co"]))
            write_points(fc.keyframe_points, kept)
            fc.update()
    return count


def generated_to_artist(arm_obj) -> int:
    """Turn generated keys into ordinary keys (KEYFRAME): imports then leave them alone."""
    generated = enum_value(bpy.types.Keyframe, "type", GENERATED)
    keyframe = enum_value(bpy.types.Keyframe, "type", "KEYFRAME")
    count = 0
    for fc in hand_fcurves(arm_obj):
        kinds = key_types(fc)
        is_generated = kinds == generated
        if is_generated.any():
            kinds[is_generated] = keyframe
            fc.keyframe_points.foreach_set("type", kinds)
            count += int(is_generated.sum())
    return count


__all__ = ["delete_generated", "generated_to_artist", "select_generated"]
