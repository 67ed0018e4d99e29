"""Blender session: motion buttons on rigs each parented to its own animated empty, the parents moving
differently over the range — In-between (spline) through the artist's keys and Generate Motion (learned)
through a real backend the add-on starts. Each result (recorded as it lands, in the request's shared space)
is compared with where Blender shows the wrists on every frame."""

from __future__ import annotations

import importlib
import io
import os
from contextlib import redirect_stdout

import bpy
import numpy as np
from mathutils import Euler, Quaternion
from session import ADDON_MODULE, Session, hand, ui_context

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
SIDES = ("left", "right")
UI = ui_context()
ops = bpy.ops.handforge
ops_motion = importlib.import_module(f"{ADDON_MODULE}.ops_motion")
skeleton = importlib.import_module("handforge_shared.skeleton")
rotations = importlib.import_module("handforge_shared.rotations")
LANDED: list = []  # each result's clip as it lands, in the request's shared space (the left rig's)


def as_user(op, **kwargs):
    printed = io.StringIO()
    with redirect_stdout(printed), bpy.context.temp_override(**UI):
        result = op("EXEC_DEFAULT", True, **kwargs)
    return sorted(result), printed.getvalue()


def start():
    os.environ["HANDFORGE_MOTION_CHECKPOINT"] = a["checkpoint"]  # the backend inherits this environment
    s.start_backend()
    result_clip = ops_motion.result_clip

    def recorded(result, request):
        clip = result_clip(result, request)
        LANDED.append(clip)
        return clip

    ops_motion.result_clip = recorded
    assert ops.add_hands() == {"FINISHED"}


s.check("start", start)


def parent_to_moving_empties():
    """Each rig under its own empty; the two empties move (and turn) differently over frames 1-40."""
    for side, moves in (("left", [(1, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), (40, (0.3, 0.1, 0.0), (0.0, 0.0, 0.9))]),
                        ("right", [(1, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0)), (40, (-0.1, -0.25, 0.2), (-0.7, 0.3, 0.0))])):
        empty = bpy.data.objects.new(f"{side.title()} Carrier", None)
        scene.collection.objects.link(empty)
        for frame, location, rotation in moves:
            empty.location, empty.rotation_euler = location, rotation
            empty.keyframe_insert("location", frame=frame)
            empty.keyframe_insert("rotation_euler", frame=frame)
        scene.frame_set(1)
        hand(side).parent = empty  # (the empty stands at the origin on frame 1: the rig stays where it was)
    scene.frame_set(1)


def key_artist_poses():
    """The artist's keys on both hands at frames 1 and 12 (wrist moved and turned, a finger bent)."""
    for frame, shift, turn in ((1, (0.0, 0.0, 0.0), 0.0), (12, (0.04, -0.03, 0.05), 0.6)):
        scene.frame_set(frame)
        for side in SIDES:
            bones = hand(side).pose.bones
            bones["wrist"].location = shift
            bones["wrist"].rotation_quaternion = Quaternion((1.0, 0.0, 0.0), turn)
            bones["index1"].rotation_euler = Euler((turn, 0.0, 0.0), bones["index1"].rotation_mode)
        as_user(ops.key_pose, sides="BOTH")


parent_to_moving_empties()
key_artist_poses()


def artist_keys() -> dict:
    out = {}
    for side in SIDES:
        bag = importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(hand(side))
        for fc in bag.fcurves:
            out[f"{side}|{fc.data_path}|{fc.array_index}"] = [
                [kp.co[0], kp.co[1], kp.interpolation] for kp in fc.keyframe_points if kp.type != "GENERATED"]
    return out


def misplacement(clip, start: int) -> dict:
    """On each frame of the clip, how far each wrist Blender shows is from where the clip puts it: the clip in
    the left rig's armature space as that rig stands on the frame (metres; radians for the wrist's turn)."""
    M = skeleton.MODEL_TO_BLENDER
    left = hand("left")
    out = {side: {"position_m": [], "rotation_rad": []} for side in clip.hands}
    for i in range(clip.num_frames):
        scene.frame_set(start + i)
        reference = np.array(left.matrix_world)
        for side, poses in clip.hands.items():
            rig = hand(side)
            head = np.array(rig.data.bones["wrist"].head_local)
            rest = np.array(rig.data.bones["wrist"].matrix_local)[:3, :3]
            expected_at = reference @ np.append(head + M @ np.asarray(poses.transl[i]), 1.0)
            expected_turn = reference[:3, :3] @ M @ rotations.axis_angle_to_matrix(
                np.asarray(poses.global_orient[i], np.float64)) @ M.T @ rest
            shown = np.array(rig.matrix_world @ rig.pose.bones["wrist"].matrix)
            out[side]["position_m"].append(float(np.linalg.norm(shown[:3, 3] - expected_at[:3])))
            cos = (np.trace(expected_turn.T @ shown[:3, :3]) - 1.0) / 2.0
            out[side]["rotation_rad"].append(float(np.arccos(np.clip(cos, -1.0, 1.0))))
    scene.frame_set(1)
    return out


def inbetween():
    before = artist_keys()
    LANDED.clear()
    result, printed = as_user(ops.motion_inbetween, frame_start=1, frame_end=12, engine="spline", sides="BOTH")
    out = {"result": result, "printed": printed, "artist_kept": artist_keys() == before, "landed": len(LANDED)}
    if LANDED:
        out.update(misplacement(LANDED[0], 1))
    return out


s.check("inbetween", inbetween)


def generate():
    LANDED.clear()
    result, printed = as_user(ops.motion_generate, frame_start=20, frame_end=31, engine="learned", steps=2,
                              seed=3, sides="BOTH", keep_apart="off")
    out = {"result": result, "printed": printed, "landed": len(LANDED)}
    if LANDED:
        out.update(misplacement(LANDED[0], 20))
    return out


s.check("generate", generate)


def unkeyed_kept():
    """The rigs move as objects, so the job evaluates frames 1-12 (reading where they stand, and again as the
    result lands): each put every animated value back on its keys, and a prop the artist moved (and a keyed
    custom property changed), not keyed yet, went back to its keys unsaid."""
    prop = bpy.data.objects.new("Prop", None)
    scene.collection.objects.link(prop)
    prop["weight"] = 0.0
    for frame, x in ((1, 0.0), (40, 1.0)):
        prop.location = (x, 0.0, 0.0)
        prop["weight"] = x
        prop.keyframe_insert("location", frame=frame)
        prop.keyframe_insert('["weight"]', frame=frame)
    scene.frame_set(5)
    prop.location, prop["weight"] = (0.5, 2.0, 3.0), 7.0  # the artist's changes, not keyed
    result, printed = as_user(ops.motion_inbetween, frame_start=1, frame_end=12, engine="spline", sides="BOTH")
    out = {"result": result, "printed": printed, "frame": scene.frame_current, "location": list(prop.location),
           "weight": prop["weight"]}
    bpy.data.objects.remove(prop)
    return out


s.check("unkeyed", unkeyed_kept)
s.check("stop", lambda: sorted(ops.stop_backend()))
s.finish()
