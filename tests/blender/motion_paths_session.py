"""Blender session: Follow Wrist Path over the artist's keys (the parts it generates replaced, the wrist location
keys kept, one undo brings them back; spline engine), Regenerate's own undo step (learned engine), and a scene with
one hand through In-between, Follow Wrist Path and Regenerate (both engines), through a real backend the add-on
starts."""

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
bpy.context.scene.render.fps, bpy.context.scene.render.fps_base = 30, 1.0
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
    scene, right = bpy.context.scene, hand("right")
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


def follow_path(wrist_rotation: str | None) -> dict:
    """Follow Wrist Path of the right wrist over the artist's keys (``None``: Wrist Rotation not given); then one
    undo."""
    chosen = {} if wrist_rotation is None else {"wrist_rotation": wrist_rotation}
    result, printed = as_user(ops.motion_follow_path, frame_start=START, frame_end=END, engine="spline",
                              right_path="Wrist Target", left_path="", **chosen)
    keyed = snapshot()
    undo()
    return {"result": result, "printed": printed, "keys": keyed, "undone": snapshot()}


s.check("path", lambda: follow_path("GENERATE"))
s.check("path_rotation_kept", lambda: follow_path("ANIMATION"))
# a call without Wrist Rotation right after Keep Animation: its default (Generate), not the last call's choice
s.check("path_rotation_not_given", lambda: follow_path(None))


def not_remembered():
    """Per motion operator, whether each option is left out of Blender's last-used values (SKIP_SAVE)."""
    return {name: {p.identifier: p.is_skip_save for p in getattr(ops, name).get_rna_type().properties
                   if p.identifier != "rna_type"}
            for name in ("motion_inbetween", "motion_follow_path", "motion_generate", "motion_regenerate")}


s.check("not_remembered", not_remembered)


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


def remove_rig(obj) -> None:
    for child in list(obj.children):
        bpy.data.objects.remove(child)
    bpy.data.objects.remove(obj)


def wrist_world(obj) -> list[float]:
    return list(obj.matrix_world @ obj.pose.bones["wrist"].head)


def one_hand(keep: str, moved: bool = False) -> dict:
    """Only the ``keep`` hand in the scene (the other rig deleted; ``moved``: its rig moved and turned as an object):
    In-between of its keys and Follow Wrist Path along a curve, each engine, then Regenerate; every one undone
    after; a path for the hand that is not there refused."""
    other, scene = "left" if keep == "right" else "right", bpy.context.scene
    for obj in [o for o in scene.objects if o.type == "ARMATURE" and o.handforge.is_hand]:
        remove_rig(obj)
    with bpy.context.temp_override(**UI):
        assert ops.add_hands() == {"FINISHED"}
    remove_rig(hand(other))
    rig = hand(keep)
    if moved:
        rig.location, rig.rotation_euler = (0.3, -0.2, 0.05), (0.0, 0.0, 0.7)
    for frame in (101, 110, 120):
        scene.frame_set(frame)
        rig.pose.bones["index2"].rotation_euler[0] = 0.03 * (frame - 100)
        assert as_user(ops.key_pose, sides=keep.upper())[0] == ["FINISHED"]
    scene.frame_set(101)
    bag = importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(rig)
    for fc in [fc for fc in bag.fcurves if fc.data_path == 'pose.bones["wrist"].location']:
        bag.fcurves.remove(fc)  # (keys of the wrist's place would keep it off the path there: said, tested above)
    data = bpy.data.curves.new(f"One Hand Path {keep}", "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new("BEZIER")
    spline.bezier_points.add(2)
    points = [(0.0, 0.0, 0.1), (0.1, 0.05, 0.15), (0.2, 0.0, 0.2)]
    for point, co in zip(spline.bezier_points, points):
        point.co = co
        point.handle_left_type = point.handle_right_type = "AUTO"
    path = bpy.data.objects.new(data.name, data)
    scene.collection.objects.link(path)
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo_push(message="the one hand")
    before = snapshot()
    out = {"ends": [points[0], points[-1]]}
    path_name = path.name  # (an undo replaces the objects: found again by name)
    paths = {"left_path": "", "right_path": "", f"{keep}_path": path_name}
    for engine in ("spline", "learned"):
        for name, op, kwargs in (
                ("inbetween", ops.motion_inbetween, {"sides": keep.upper()}),
                ("inbetween_scene", ops.motion_inbetween, {"sides": "SCENE"}),  # the panel's hands: Both
                ("inbetween_apart", ops.motion_inbetween, {"sides": keep.upper(), "keep_apart": "on"}),
                ("path", ops.motion_follow_path, paths)):
            try:
                result, printed = as_user(op, frame_start=101, frame_end=120, engine=engine, steps=2, **kwargs)
            except RuntimeError as exc:
                result, printed = ["CANCELLED"], str(exc)
            found = {"result": result, "printed": printed,
                     "generated": sum(p[2] == "GENERATED" for v in snapshot().values() for p in v)}
            scene = bpy.context.scene  # (an undo replaces it)
            if name == "path" and result == ["FINISHED"]:
                found["wrist"] = []
                for frame in (101, 120):
                    scene.frame_set(frame)
                    found["wrist"].append(wrist_world(hand(keep)))
                scene.frame_set(101)
                again, again_printed = as_user(ops.motion_regenerate)
                found.update(again=again, again_printed=again_printed)
                undo()
            if result == ["FINISHED"]:
                undo()
            found["undone"] = snapshot() == before
            out[f"{engine} {name}"] = found
    # the wrist rotation kept as animated: its keys at 101, 110, 120 are kept, the wrist location (no keys) on its path
    result, printed = as_user(ops.motion_follow_path, frame_start=101, frame_end=120, engine="spline",
                              wrist_rotation="ANIMATION", **paths)
    out["path_rotation_kept"] = {"result": result, "printed": printed}
    if result == ["FINISHED"]:
        undo()
    try:
        as_user(ops.motion_follow_path, frame_start=101, frame_end=120, engine="spline", **{f"{other}_path": path_name,
                                                                                             f"{keep}_path": ""})
        out["missing_hand"] = ""
    except RuntimeError as exc:
        out["missing_hand"] = str(exc)
    out["missing_hand_unchanged"] = snapshot() == before
    bpy.data.objects.remove(bpy.data.objects[path_name])
    return out


s.check("one_right_hand", lambda: one_hand("right"))
s.check("one_left_hand", lambda: one_hand("left", moved=True))
s.finish()
