"""Blender session: Regenerate after the panel's Left/Right Hand fields were cleared. The motion buttons
then take the scene's first hand of each side: with two pairs, another pair than the one the motion keyed."""

from __future__ import annotations

import importlib

import bpy
from session import ADDON_MODULE, Session, as_user, hand

s = Session()
s.install()
ops = bpy.ops.handforge


def key_count(obj) -> int:
    bag = importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(obj)
    return 0 if bag is None else sum(len(fc.keyframe_points) for fc in bag.fcurves)


def remove_hands() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


s.start_backend()


def two_pairs_fields_cleared():
    assert ops.add_hands() == {"FINISHED"}
    first = {side: hand(side) for side in ("left", "right")}
    assert ops.add_hands() == {"FINISHED"}  # chosen in the panel now
    second = {side: hand(side) for side in ("left", "right")}
    made = as_user(ops.motion_generate, engine="spline", frame_start=1, frame_end=10)
    scene = bpy.context.scene
    scene.handforge.left = scene.handforge.right = None  # the fields cleared (their X)
    regenerated = as_user(ops.motion_regenerate)
    found = {"made": made, "regenerated": regenerated,
             "first_keys": {side: key_count(obj) for side, obj in first.items()},
             "second_keys": {side: key_count(obj) for side, obj in second.items()},
             "first_names": {side: obj.name for side, obj in first.items()}}
    remove_hands()
    return found


s.check("two_pairs", two_pairs_fields_cleared)


def one_pair_fields_cleared():
    """One pair: the buttons take it all the same, so Regenerate still runs."""
    assert ops.add_hands() == {"FINISHED"}
    pair = {side: hand(side) for side in ("left", "right")}
    made = as_user(ops.motion_generate, engine="spline", frame_start=1, frame_end=10)
    bpy.context.scene.handforge.left = bpy.context.scene.handforge.right = None
    found = {"made": made, "regenerated": as_user(ops.motion_regenerate),
             "keys": {side: key_count(obj) for side, obj in pair.items()}}
    remove_hands()
    return found


s.check("one_pair", one_pair_fields_cleared)


def fewer_keys_since():
    """In-between over 1-20, then the artist's key at 20 deleted: Regenerate's refusal advises what it can take
    (it keeps the last run's range and hands: "widen the range" was In-between's advice, passed on)."""
    assert ops.add_hands() == {"FINISHED"}
    for frame, preset in ((1, "flat"), (20, "fist")):
        bpy.context.scene.frame_set(frame)
        assert as_user(ops.apply_preset, preset=preset, sides="BOTH")[0] == ["FINISHED"]
        assert as_user(ops.key_pose, sides="BOTH")[0] == ["FINISHED"]
    found = {"inbetween": as_user(ops.motion_inbetween, engine="spline", frame_start=1, frame_end=20)}
    bag = importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(hand("left"))
    for fc in bag.fcurves:
        for kp in list(fc.keyframe_points):
            if kp.co[0] == 20.0 and kp.type != "GENERATED":
                fc.keyframe_points.remove(kp)
    found["regenerated"] = as_user(ops.motion_regenerate)
    found["inbetween_again"] = as_user(ops.motion_inbetween, engine="spline", frame_start=1, frame_end=20)
    remove_hands()
    return found


s.check("fewer_keys", fewer_keys_since)
s.finish()
