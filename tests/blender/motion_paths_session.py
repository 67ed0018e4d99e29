"""Blender session: Follow Wrist Path over the artist's keys (the parts it generates replaced, the wrist location
keys kept, one undo brings them back; spline engine) and Regenerate's own undo step (learned engine), through a real
backend the add-on starts."""

from __future__ import annotations

import importlib
import io
import os
from contextlib import redirect_stdout

import bpy
from mathutils import Quaternion
from session import ADDON_MODULE, Session, hand, init_undo, ui_context

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
SIDES = ("left", "right")
UI = ui_context()
ops = bpy.ops.handforge
ARTIST_FRAMES = (1, 10, 20, 30)  # the range is 1-20: the key at 30 is after it
START, END = 1, 20


def as_user(op, **kwargs):
    """Call an operator the way a button does (UI context, one undo push); returns (result, printed reports)."""
    printed = io.StringIO()
    with redirect_stdout(printed), bpy.context.temp_override(**UI):
        result = op("EXEC_DEFAULT", True, **kwargs)
    return sorted(result), printed.getvalue()


def undo() -> None:
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo()


def snapshot() -> dict:
    """Every key of the rigs present: data path|index → [[frame, value, type], ...]."""
    fcurves = importlib.import_module(f"{ADDON_MODULE}.fcurves")
    out = {}
    for side in SIDES:
        obj = hand(side)
        bag = fcurves.find_channelbag(obj) if obj is not None else None
        for fc in bag.fcurves if bag is not None else ():
            out[f"{side}|{fc.data_path}|{fc.array_index}"] = [[kp.co[0], kp.co[1], kp.type]
                                                               for kp in fc.keyframe_points]
    return out


def start():
    os.environ["HANDFORGE_MOTION_CHECKPOINT"] = a["checkpoint"]  # the backend inherits this environment
    s.start_backend()
    with bpy.context.temp_override(**UI):
        assert ops.add_hands() == {"FINISHED"}
    init_undo()
    # (the add-on running is the one built from this work tree)
    return {"ops_motion": importlib.import_module(f"{ADDON_MODULE}.ops_motion").__file__}


s.check("start", start)


def key_the_artist_poses():
    """The right hand keyed by the artist at 1, 10, 20 and 30, its fingers bent differently on each key."""
    right = hand("right")
    rest_wrist = right.pose.bones["wrist"].rotation_quaternion.copy()
    for i, frame in enumerate(ARTIST_FRAMES):
        scene.frame_set(frame)
        for name in ("index2", "middle2", "ring2"):
            right.pose.bones[name].rotation_euler[0] = 0.4 * (i % 2) + 0.1 * i
        wrist = right.pose.bones["wrist"]
        wrist.rotation_quaternion = Quaternion((0.0, 0.0, 1.0), 0.2 * i) @ rest_wrist
        assert as_user(ops.key_pose, sides="RIGHT")[0] == ["FINISHED"]
    scene.frame_set(START)
    path = bpy.data.objects.new("Wrist Target", None)
    scene.collection.objects.link(path)
    for frame, location in ((START, (0.1, 0.05, 0.02)), (END, (0.25, 0.15, 0.1))):
        path.location = location
        path.keyframe_insert("location", frame=frame)
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo_push(message="the path")
    return snapshot()


s.check("artist", key_the_artist_poses)


def follow_path(wrist_rotation: str) -> dict:
    """Follow Wrist Path of the right wrist over the artist's keys; then one undo."""
    result, printed = as_user(ops.motion_follow_path, frame_start=START, frame_end=END, engine="spline",
                              right_path="Wrist Target", left_path="", wrist_rotation=wrist_rotation)
    keyed = snapshot()
    undo()
    return {"result": result, "printed": printed, "keys": keyed, "undone": snapshot()}


s.check("path", lambda: follow_path("GENERATE"))
s.check("path_rotation_kept", lambda: follow_path("ANIMATION"))


def regenerate_undone():
    """Generate Motion (learned: each seed another motion), then Regenerate, then one undo: the scene as before the
    Regenerate, the first motion still there (Regenerate made no undo step: the undo went back to before Generate)."""
    result, printed = as_user(ops.motion_generate, frame_start=40, frame_end=59, engine="learned", steps=2,
                              sides="RIGHT")
    generated = snapshot()
    again, again_printed = as_user(ops.motion_regenerate)
    regenerated = snapshot()
    undo()
    undone = snapshot()
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.redo()
    redone = snapshot()
    undo()
    undo()  # (the artist's keys again, for the checks after)
    return {"result": result, "printed": printed, "again": again, "again_printed": again_printed,
            "generated": generated, "regenerated": regenerated, "undone": undone, "redone": redone,
            "back": snapshot()}


s.check("regenerate_undone", regenerate_undone)
s.finish()
