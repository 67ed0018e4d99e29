"""Blender session: motion buttons refusing what they cannot use, before anything is sent, the scene left as
it was — a wrist path that is not a curve and does not move (a mesh, an empty, a text object); both hands
asked for in a scene with one hand; and a wrist path curve left in Edit Mode, followed as edited."""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from contextlib import redirect_stdout

import bpy
import numpy as np
from session import ADDON_MODULE, Session, error_of, hand, in_another_scene, record_submits, ui_context

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
ops = bpy.ops.handforge
connection = importlib.import_module(f"{ADDON_MODULE}.connection")
SENT: list[str] = []
SENT_ARRAYS: list[dict] = []


def start():
    os.environ["HANDFORGE_MOTION_CHECKPOINT"] = a["checkpoint"]  # the backend inherits this environment
    s.start_backend()
    record_submits(connection.BACKEND.client, SENT, SENT_ARRAYS)  # what was sent to the backend
    assert ops.add_hands() == {"FINISHED"}


s.check("start", start)


def scene_state() -> dict:
    """What a refused button must leave as it was: the objects, the frame, the hands' keys and poses."""
    out = {"objects": sorted(o.name for o in scene.objects), "frame": scene.frame_current}
    for side in ("left", "right"):
        obj = hand(side)
        if obj is None:
            continue
        action = obj.animation_data.action if obj.animation_data else None
        out[side] = {"action": action.name if action else None,
                     "pose": [list(pb.matrix_basis.col[3]) + list(pb.rotation_quaternion) + list(pb.rotation_euler)
                              for pb in obj.pose.bones]}
    return out


def refused(call) -> dict:
    before, sent = scene_state(), len(SENT)
    message = error_of(call)
    return {"message": message, "sent": SENT[sent:], "unchanged": scene_state() == before}


def static_paths():
    """Follow Wrist Path along objects that are not curves and stand still over the range: the wrist would
    have stood still at one point (the object's origin) while the fingers moved."""
    mesh = bpy.data.meshes.new("Cube")
    mesh.from_pydata([(0, 0, 0), (0.1, 0, 0), (0, 0.1, 0)], [], [(0, 1, 2)])
    objects = {"mesh": bpy.data.objects.new("Cube", mesh), "empty": bpy.data.objects.new("Target", None),
               "text": bpy.data.objects.new("Label", bpy.data.curves.new("Label", "FONT")),
               "armature": bpy.data.objects.new("Character", bpy.data.armatures.new("Character"))}
    for obj in objects.values():
        scene.collection.objects.link(obj)
    objects["empty"].location = (0.2, 0.1, 0.0)
    offered = importlib.import_module(f"{ADDON_MODULE}.ops_motion").is_path_object  # the pickers' filter
    try:
        out = {what: refused(lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline",
                                                          right_path=obj.name))
               for what, obj in objects.items()}
        out["offered"] = {what: offered(None, obj) for what, obj in objects.items()}
        out["still_target_moving_rig"] = still_target_of_a_moving_rig(objects["empty"])
        out["still_target_bone_carried_rig"] = still_target_of_a_bone_carried_rig(objects["empty"])
        # a hand with its own (bone) keys does not move as an object: its action made it count as moving
        assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
        out["keyed_hand"] = refused(lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline",
                                                                   right_path=objects["empty"].name))
        hand("right").animation_data_clear()
        return out
    finally:
        for obj in objects.values():
            bpy.data.objects.remove(obj)


def still_target_of_a_bone_carried_rig(target) -> dict:
    """The right rig parented to a bone of an armature whose bone keys move it (a character's arm)."""
    arm = bpy.data.objects.new("Character", bpy.data.armatures.new("Character"))
    scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    bone = arm.data.edit_bones.new("arm")
    bone.head, bone.tail = (0.0, 0.0, 0.0), (0.0, 0.0, 0.2)
    bpy.ops.object.mode_set(mode="OBJECT")
    for frame, x in ((1, 0.0), (10, 0.3)):
        arm.pose.bones["arm"].location.x = x
        arm.pose.bones["arm"].keyframe_insert("location", frame=frame)
    return _follow_carried(target, arm, parent_type="BONE", parent_bone="arm")


def still_target_of_a_moving_rig(target) -> dict:
    """The right rig carried by an animated empty (a character), its wrist pinned to the still ``target``."""
    carrier = bpy.data.objects.new("Carrier", None)
    scene.collection.objects.link(carrier)
    for frame, x in ((1, 0.0), (10, 0.3)):
        carrier.location.x = x
        carrier.keyframe_insert("location", frame=frame)
    return _follow_carried(target, carrier)


def _follow_carried(target, carrier, **parenting) -> dict:
    """Follow Wrist Path to ``target`` with the right rig parented to ``carrier`` (removed after)."""
    rig = hand("right")
    rig.parent = carrier
    for name, value in parenting.items():
        setattr(rig, name, value)
    sent = len(SENT)
    try:
        result = ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline", right_path=target.name)
    finally:
        rig.parent = None
        bpy.data.objects.remove(carrier)
    return {"result": sorted(result), "sent": SENT[sent:]}


s.check("static_paths", static_paths)


def moving_path():
    """An empty keyed to move over the range is a wrist path (sent)."""
    empty = bpy.data.objects.new("Moving Target", None)
    scene.collection.objects.link(empty)
    for frame, x in ((1, 0.0), (10, 0.2)):
        empty.location.x = x
        empty.keyframe_insert("location", frame=frame)
    sent = len(SENT)
    offered = importlib.import_module(f"{ADDON_MODULE}.ops_motion").is_path_object(None, empty)
    try:
        result = ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline", right_path=empty.name)
    finally:
        bpy.data.objects.remove(empty)
    return {"result": sorted(result), "sent": SENT[sent:], "offered": offered}


s.check("moving_path", moving_path)


def curves_of_other_than_one_spline():
    """A curve with no spline, or with two: refused, saying how to make it one (it only said the count)."""
    out = {}
    for count in (0, 2):
        data = bpy.data.curves.new(f"Path {count}", "CURVE")
        for i in range(count):
            spline = data.splines.new("POLY")
            spline.points.add(1)
            spline.points[1].co = (0.1, 0.05 * i, 0.0, 1.0)
        obj = bpy.data.objects.new(f"Path {count}", data)
        scene.collection.objects.link(obj)
        try:
            out[str(count)] = refused(lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline",
                                                              right_path=obj.name))
            out[str(count)]["offered"] = importlib.import_module(f"{ADDON_MODULE}.ops_motion").is_path_object(None, obj)
        finally:
            bpy.data.objects.remove(obj)
            bpy.data.curves.remove(data)
    out["hand"] = importlib.import_module(f"{ADDON_MODULE}.ops_motion").is_path_object(None, hand("left"))
    return out


s.check("spline_counts", curves_of_other_than_one_spline)


@contextlib.contextmanager
def two_point_curve(name: str, end: tuple[float, float, float], scale=(1.0, 1.0, 1.0)):
    """A curve object of one POLY spline from the origin to ``end``, in the scene for the block."""
    data = bpy.data.curves.new(name, "CURVE")
    spline = data.splines.new("POLY")
    spline.points.add(1)
    spline.points[1].co = (*end, 1.0)
    obj = bpy.data.objects.new(name, data)
    obj.scale = scale
    scene.collection.objects.link(obj)
    try:
        yield obj
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.curves.remove(data)


def curves_of_no_length():
    """A curve whose two points coincide, or one scaled to 0: refused (before: followed, the wrist keyed standing
    still over the range and the artist's keys on the range replaced; one point alone was refused)."""
    out = {}
    for case, end, scale in (("coincide", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), ("scaled", (0.1, 0.05, 0.0), (0.0, 0.0, 0.0))):
        with two_point_curve(f"Zero {case}", end, scale) as obj:
            out[case] = refused(lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline",
                                                               right_path=obj.name))
    return out


s.check("curves_of_no_length", curves_of_no_length)


def not_a_number_keyed():
    """A NaN in a key of the right wrist's rotation (frame 5): In-between and Export Motion said "global_orient has a
    non-finite value (NaN or inf) at index [0, 0]", and Key Pose on that frame keyed the NaN again."""
    right, fcurves = hand("right"), importlib.import_module(f"{ADDON_MODULE}.fcurves")
    for frame in (1, 5, 9):
        scene.frame_set(frame)
        assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
    curve = next(fc for fc in fcurves.find_channelbag(right).fcurves
                 if fc.data_path.startswith('pose.bones["wrist"].rotation'))
    key = next(k for k in curve.keyframe_points if k.co[0] == 5)
    key.co[1] = float("nan")
    curve.update()
    scene.frame_set(1)
    try:
        found = {"inbetween": refused(lambda: ops.motion_inbetween(engine="spline", sides="RIGHT", frame_start=1,
                                                                 frame_end=9)),
                 "export": error_of(lambda: ops.export_motion(filepath=os.path.join(a["work"], "nan.npz"),
                                                              sides="RIGHT", frame_start=1, frame_end=9))}
        scene.frame_set(5)
        keyed = [(fc.data_path, fc.array_index, len(fc.keyframe_points)) for fc in fcurves.find_channelbag(right).fcurves]
        found["key_pose"] = refused(lambda: ops.key_pose(sides="RIGHT"))
        # (the scene state holds the NaN shown, which compares unequal to itself: the keys instead)
        found["key_pose"]["unchanged"] = keyed == [(fc.data_path, fc.array_index, len(fc.keyframe_points))
                                                   for fc in fcurves.find_channelbag(right).fcurves]
        found["key_pose"]["still_nan"] = bool(np.isnan(next(k for k in curve.keyframe_points if k.co[0] == 5).co[1]))
        found["written"] = os.path.exists(os.path.join(a["work"], "nan.npz"))
        found["name"] = right.name
        return found
    finally:
        right.animation_data_clear()
        for pb in right.pose.bones:
            pb.rotation_quaternion, pb.rotation_euler = (1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        scene.frame_set(1)


s.check("not_a_number_keyed", not_a_number_keyed)


def paths_beyond_reach():
    """A wrist path curve with a point at 1e12 m: refused before sending (the backend said "arrays.right.transl: has
    values above 100.0")."""
    with two_point_curve("Far Path", (1e12, 0.0, 0.0)) as obj:
        return refused(lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline", right_path=obj.name))


s.check("paths_beyond_reach", paths_beyond_reach)


def frames_before_zero_and_a_shared_action():
    """Start/End before frame 0 were clamped to -1 (the scene's start or end): In-between over -20 to -5 ran
    over the scene's whole range, unsaid. Hands sharing one action were refused only once the job's result
    came (a learned run's time lost); with Left chosen, the right hand moved too, unsaid."""
    out = {"inbetween": refused(lambda: ops.motion_inbetween(frame_start=-20, frame_end=-5, engine="spline",
                                                             sides="BOTH")),
           "export_motion": refused(lambda: ops.export_motion(filepath=os.path.join(a["work"], "m.npz"),
                                                              frame_start=-20, frame_end=-5))}
    left, right = hand("left"), hand("right")
    for frame in (1, 10):
        scene.frame_set(frame)
        assert ops.key_pose(sides="LEFT") == {"FINISHED"}
    scene.frame_set(1)
    right.animation_data_create()
    right.animation_data.action = left.animation_data.action
    right.animation_data.action_slot = left.animation_data.action_slot
    scene.frame_set(1)  # (the right hand posed by the shared action before the state is taken)
    try:
        for sides in ("LEFT", "BOTH"):
            out[sides] = refused(lambda: ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline",
                                                              sides=sides))
    finally:
        action = left.animation_data.action
        right.animation_data.action = None
        left.animation_data.action = None
        bpy.data.actions.remove(action)
    return out


s.check("before_zero_shared", frames_before_zero_and_a_shared_action)


def one_hand():
    """Only a right hand in the scene: Generate Motion and In-between for both hands moved just that hand;
    a wrist path for that hand is still followed."""
    left = hand("left")
    for child in list(left.children):
        bpy.data.objects.remove(child)
    bpy.data.objects.remove(left)
    scene.handforge.target = "BOTH"
    out = {"generate": refused(lambda: ops.motion_generate(frame_start=1, frame_end=10, steps=1, sides="BOTH")),
           "panel": refused(lambda: ops.motion_generate(frame_start=1, frame_end=10, steps=1)),  # the panel's Both
           "inbetween": refused(lambda: ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline",
                                                             sides="BOTH"))}
    out["path"] = moving_path()
    return out


s.check("one_hand", one_hand)


def path_edited_in_edit_mode():
    """A wrist path curve left in Edit Mode after moving its end: refused, with the reason, as every button that
    keys the hands is while an object is in Edit Mode (its keys could not be undone there); once Tab is pressed,
    followed as edited."""
    data = bpy.data.curves.new("Edited Path", "CURVE")
    data.dimensions = "3D"
    spline = data.splines.new("POLY")
    spline.points.add(1)
    spline.points[1].co = (0.1, 0.0, 0.0, 1.0)
    obj = bpy.data.objects.new("Edited Path", data)
    scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    obj.data.splines[0].points[1].co = (0.0, 0.2, 0.05, 1.0)  # (as a grab in the viewport leaves it)
    follow = lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline",  # noqa: E731
                                            right_path=obj.name)
    try:
        sent = len(SENT_ARRAYS)
        out = {"poll": ops.motion_follow_path.poll(), "in_edit_mode": error_of(follow)}
        out["sent"] = len(SENT_ARRAYS) - sent
        bpy.ops.object.mode_set(mode="OBJECT")
        assert sorted(follow()) == ["FINISHED"]
        transl = SENT_ARRAYS[-1]["right.transl"]
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.curves.remove(data)
    out["moved"] = float(np.linalg.norm(transl[-1] - transl[0]))  # the edited path's length, (0, 0.2, 0.05)
    return out


s.check("edited_path", path_edited_in_edit_mode)


def keys_of(obj) -> list:
    """Every key of a rig, as stored."""
    bag = importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(obj)
    return sorted([fc.data_path, fc.array_index, [list(k.co) + [k.type] for k in fc.keyframe_points]]
                  for fc in (bag.fcurves if bag is not None else ()))


def regenerate_after_a_bone_is_deleted():
    """Regenerate after a finger bone of the rig the last motion keyed was deleted in Edit Mode: refused, the
    rig's bones blamed (it said the panel no longer named the hand), once in what it prints; nothing changed."""
    with bpy.context.temp_override(**ui_context()):
        assert ops.add_hands() == {"FINISHED"}  # a fresh pair, chosen in the panel
    rig = hand("right")
    for frame in (1, 10):
        scene.frame_set(frame)
        assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
    made = sorted(ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline", sides="RIGHT"))
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    rig.data.edit_bones.remove(rig.data.edit_bones["index3"])
    bpy.ops.object.mode_set(mode="OBJECT")
    before, keys_before, sent = scene_state(), keys_of(rig), len(SENT)
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            result, message = sorted(ops.motion_regenerate()), ""
    except RuntimeError as exc:
        result, message = ["CANCELLED"], str(exc)
    return {"made": made, "result": result, "message": message, "printed": out.getvalue(), "sent": SENT[sent:],
            "unchanged": scene_state() == before and keys_of(rig) == keys_before, "rig": rig.name}


s.check("regenerate_lost_bone", regenerate_after_a_bone_is_deleted)


def one_path_for_both_wrists():
    """The same curve as the left and the right wrist path: both wrists went along one line, through each other."""
    with bpy.context.temp_override(**ui_context()):
        assert ops.add_hands() == {"FINISHED"}  # (a pair with all its bones)
    curve = bpy.data.curves.new("Shared Path", "CURVE")
    spline = curve.splines.new("POLY")
    spline.points.add(1)
    spline.points[1].co = (0.3, 0.0, 0.0, 1.0)
    path = bpy.data.objects.new("Shared Path", curve)
    scene.collection.objects.link(path)
    try:
        return refused(lambda: ops.motion_follow_path(frame_start=1, frame_end=10, engine="spline",
                                                      left_path=path.name, right_path=path.name))
    finally:
        bpy.data.objects.remove(path)


s.check("one_path", one_path_for_both_wrists)


def regenerate_after_renames():
    """The rig the last motion keyed and its scene renamed since: Regenerate's refusals named them by their old
    names (a rig or a scene of that name, to choose or show, that is not there)."""
    rig = hand("right")
    for frame in (1, 10):
        scene.frame_set(frame)
        assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
    made = sorted(ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline", sides="RIGHT"))
    old_rig, old_scene = rig.name, scene.name
    rig.name, scene.name = "Renamed Right", "Renamed Scene"
    with bpy.context.temp_override(**ui_context()):
        assert ops.add_hands() == {"FINISHED"}  # another pair, chosen in the panel
    other_pair = error_of(lambda: ops.motion_regenerate())
    try:
        elsewhere = in_another_scene(lambda: error_of(lambda: ops.motion_regenerate()))
    finally:
        scene.name = old_scene
    return {"made": made, "old_rig": old_rig, "other_pair": other_pair, "elsewhere": elsewhere}


s.check("regenerate_renamed", regenerate_after_renames)


def fallback_reported():
    """The learned engine unavailable (no checkpoint where the backend looks), the spline engine made the motion:
    said only on an INFO line, read as a plain success. In-between learned, then spline (a plain success)."""
    assert ops.stop_backend() == {"FINISHED"}
    os.environ["HANDFORGE_MOTION_CHECKPOINT"] = os.path.join(a["work"], "no such checkpoint")
    s.start_backend()
    for frame in (1, 10):
        scene.frame_set(frame)
        assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
    out = {}
    for engine in ("learned", "spline"):
        printed = io.StringIO()
        with redirect_stdout(printed):
            result = sorted(ops.motion_inbetween(frame_start=1, frame_end=10, engine=engine, sides="RIGHT"))
        reports = [line for line in printed.getvalue().splitlines() if line.startswith(("Info:", "Warning:", "Error:"))]
        out[engine] = {"result": result, "reports": reports, "said": printed.getvalue().count("no motion checkpoint")}
    return out


s.check("fallback", fallback_reported)
s.finish()
