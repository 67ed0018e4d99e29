"""Blender session: Follow Wrist Path along a curve object that moves over the range (keyed here; a
curve carried by an animated parent is the same), pressed on two different frames."""

from __future__ import annotations

import bpy
from session import Session, as_user, hand

s = Session()
s.install()
ops = bpy.ops.handforge


def wrist_world(side: str) -> list[float]:
    obj = hand(side)
    return list(obj.matrix_world @ obj.pose.bones["wrist"].head)


s.start_backend()
assert ops.add_hands() == {"FINISHED"}


def moving_curve():
    scene = bpy.context.scene
    data = bpy.data.curves.new("Carried Path", "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new("POLY")
    spline.points.add(1)
    spline.points[0].co, spline.points[1].co = (0.0, 0.0, 0.0, 1.0), (0.2, 0.0, 0.0, 1.0)
    curve = bpy.data.objects.new("Carried Path", data)
    scene.collection.objects.link(curve)
    for frame, z in ((1, 0.0), (20, 0.5)):  # lifted 50 cm over the range, linearly
        curve.location.z = z
        curve.keyframe_insert("location", index=2, frame=frame)
    for fc in curve.animation_data.action.layers[0].strips[0].channelbag(curve.animation_data.action_slot).fcurves:
        for kp in fc.keyframe_points:
            kp.interpolation = "LINEAR"
    found = {}
    for pressed_at in (1, 20):
        scene.frame_set(pressed_at)
        result = as_user(ops.motion_follow_path, engine="spline", left_path=curve.name, frame_start=1, frame_end=20)
        wrists, targets = [], []
        for frame in range(1, 21):
            scene.frame_set(frame)
            wrists.append(wrist_world("left"))
            targets.append([0.2 * (frame - 1) / 19, 0.0, 0.5 * (frame - 1) / 19])  # on the curve where it is then
        found[str(pressed_at)] = {"result": result[0], "wrists": wrists, "targets": targets}
    return found


s.check("moving_curve", moving_curve)


def hidden_curves():
    """A curve Blender does not evaluate (hidden in the viewport) keeps the placement it had when hidden: one that
    moves is refused (the wrist went along a still copy of it, unsaid); one that stands still is followed."""
    scene = bpy.context.scene
    found = {}
    for name, moves in (("Hidden Moving Path", True), ("Hidden Still Path", False)):
        data = bpy.data.curves.new(name, "CURVE")
        data.dimensions = "3D"
        spline = data.splines.new("POLY")
        spline.points.add(1)
        spline.points[0].co, spline.points[1].co = (0.0, 0.0, 0.0, 1.0), (0.2, 0.0, 0.0, 1.0)
        curve = bpy.data.objects.new(name, data)
        scene.collection.objects.link(curve)
        if moves:
            for frame, z in ((1, 0.0), (20, 0.5)):
                curve.location.z = z
                curve.keyframe_insert("location", index=2, frame=frame)
        curve.hide_viewport = True
        scene.frame_set(1)
        found[name] = as_user(ops.motion_follow_path, engine="spline", left_path=curve.name, frame_start=1,
                              frame_end=20)
    return found


s.check("hidden_curves", hidden_curves)
s.finish()
