"""Blender session: the motion buttons in scene states an animator has — a frame rate under 1 fps (Frame Rate
1, Base 2) refused in Blender before anything is sent, and a finger slider set by a driver, whose finger shows
the driver's pose, not the motion's keys: said with the result."""

from __future__ import annotations

import importlib
import os

import bpy
from session import ADDON_MODULE, Session, as_user, error_of, hand, record_submits, while_a_job_runs

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
ops = bpy.ops.handforge
connection = importlib.import_module(f"{ADDON_MODULE}.connection")
SENT: list[str] = []


def start():
    os.environ["HANDFORGE_MOTION_CHECKPOINT"] = a["checkpoint"]  # the backend inherits this environment
    s.start_backend()
    record_submits(connection.BACKEND.client, SENT)  # what was sent to the backend
    assert ops.add_hands() == {"FINISHED"}
    for frame, angle in ((1, 0.0), (10, 0.4)):  # both hands keyed at two frames
        scene.frame_set(frame)
        for side in ("left", "right"):
            hand(side).pose.bones["index1"].rotation_quaternion = (1.0, angle, 0.0, 0.0)
        assert ops.key_pose(sides="BOTH") == {"FINISHED"}
    scene.frame_set(1)


s.check("start", start)


def slow_frame_rate():
    """Frame Rate 1 with Base 2: 0.5 fps (a time-lapse). The backend refused it as 'params.fps: must be between
    1.0 and 1000.0', naming no setting of Blender's."""
    scene.render.fps, scene.render.fps_base = 1, 2.0
    try:
        out = {}
        for name, call in (("inbetween", lambda: ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline")),
                           ("generate", lambda: ops.motion_generate(frame_start=1, frame_end=10, engine="spline"))):
            sent = len(SENT)
            out[name] = {"message": error_of(call), "sent": SENT[sent:]}
        return out
    finally:
        scene.render.fps, scene.render.fps_base = 30, 1.0


s.check("slow_frame_rate", slow_frame_rate)


def driven_slider():
    """The right hand's index curl slider driven (a character's grip control): the finger shows the driver's
    value on every frame, whatever its bones' keys; Generate Motion keyed it and said nothing."""
    rig = hand("right")
    curve = rig.driver_add("handforge.curl_index")
    curve.driver.type = "SCRIPTED"
    curve.driver.expression = "0.7"
    try:
        result, printed = as_user(ops.motion_generate, frame_start=1, frame_end=10, engine="spline", sides="RIGHT")
        left = as_user(ops.motion_generate, frame_start=1, frame_end=10, engine="spline", sides="LEFT")
    finally:
        rig.driver_remove("handforge.curl_index")
    # a driver on a bone's own rotation (a rig's grip set-up) overrides its keys as well
    bone = rig.pose.bones["middle2"]
    path = "rotation_quaternion" if bone.rotation_mode == "QUATERNION" else "rotation_euler"
    for curve in bone.driver_add(path):
        curve.driver.expression = "0.0"
    try:
        bone_result = as_user(ops.motion_generate, frame_start=1, frame_end=10, engine="spline", sides="RIGHT")
    finally:
        bone.driver_remove(path)
    return {"result": result, "printed": printed, "left": left, "bone": bone_result}


s.check("driven_slider", driven_slider)
def scene_range():
    """The panel's Start and End at -1 (the scene's range): a scene of one frame, or of 600 frames."""
    start, end = scene.frame_start, scene.frame_end
    out = {}
    try:
        for name, (first, last) in (("one_frame", (10, 10)), ("long", (1, 600))):
            scene.frame_start, scene.frame_end = first, last
            sent = len(SENT)
            out[name] = {"message": error_of(lambda: ops.motion_generate(engine="spline")), "sent": SENT[sent:]}
        out["end_only"] = error_of(lambda: ops.motion_generate(frame_start=50, engine="spline"))
        out["own"] = error_of(lambda: ops.motion_generate(frame_start=1, frame_end=600, engine="spline"))
    finally:
        scene.frame_start, scene.frame_end = start, end
    return out


s.check("scene_range", scene_range)


def index_shown(frames) -> list[list[float]]:
    bone = hand("right").pose.bones["index1"]
    out = []
    for frame in frames:
        scene.frame_set(frame)
        out.append([round(v, 5) for v in bone.matrix_basis.to_quaternion()])
    return out


def bend(rig, euler) -> None:
    """The index finger's first joint rotated by ``euler`` (whatever its rotation mode)."""
    from mathutils import Euler

    bone = rig.pose.bones["index1"]
    bone.rotation_quaternion = Euler(euler).to_quaternion()
    bone.rotation_euler = euler


def layered_action():
    """The right hand's keys an additive layer (Blending Combine, or Influence 0.5) over an NLA strip that bends its
    index finger: In-between keyed the pose shown into the layer, the base added again on the generated frames."""
    rig = hand("right")
    rig.animation_data_clear()  # (Generate Motion above made its keys generated ones): the artist's keys again
    for frame, angle in ((1, 0.0), (10, 0.4)):
        scene.frame_set(frame)
        bend(rig, (angle, 0.0, 0.0))
        assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
    scene.frame_set(1)
    ad = rig.animation_data
    layer, base = ad.action, bpy.data.actions.new("Base Layer")
    ad.action = base
    bend(rig, (0.0, 0.0, 0.9))
    assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
    ad.action = layer
    track = ad.nla_tracks.new()
    track.strips.new("Base Layer", 1, base)
    out = {}
    try:
        for name, blend, influence in (("combine", "COMBINE", 1.0), ("half", "REPLACE", 0.5)):
            ad.action_blend_type, ad.action_influence = blend, influence
            before, sent = index_shown(range(1, 11)), len(SENT)
            message = error_of(lambda: ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline",
                                                           sides="RIGHT"))
            out[name] = {"message": message, "sent": SENT[sent:], "unchanged": index_shown(range(1, 11)) == before}
        ad.action_blend_type, ad.action_influence = "REPLACE", 1.0  # plays the action alone: taken
        out["replace"] = sorted(ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline", sides="RIGHT"))
        track.mute = True  # the strip muted: nothing under the layer, taken as it is blended
        ad.action_blend_type = "COMBINE"
        out["muted"] = sorted(ops.motion_inbetween(frame_start=1, frame_end=10, engine="spline", sides="RIGHT"))
    finally:
        ad.action_blend_type, ad.action_influence = "REPLACE", 1.0
        ad.nla_tracks.remove(track)
    return out


s.check("layered_action", layered_action)


def rotation_mode_changed():
    """The index finger's rotation mode switched after it was keyed (its keys on the other channel): In-between wrote
    keys on the channel shown over the artist's frames and said nothing; switched while the job ran, the result
    was refused as "keys or wrist path changed"."""
    rig = hand("right")

    def keyed_afresh():
        rig.animation_data_clear()
        for frame, angle in ((1, 0.0), (10, 0.4)):
            scene.frame_set(frame)
            bend(rig, (angle, 0.0, 0.0))
            assert ops.key_pose(sides="RIGHT") == {"FINISHED"}
        scene.frame_set(1)

    keyed_afresh()
    bone = rig.pose.bones["index1"]
    mode = bone.rotation_mode
    other = "XYZ" if mode == "QUATERNION" else "QUATERNION"
    out = {"mode": mode}
    try:
        bone.rotation_mode = other
        out["before"] = as_user(ops.motion_inbetween, frame_start=1, frame_end=10, engine="spline", sides="RIGHT")
        bone.rotation_mode = mode
        with while_a_job_runs(lambda: setattr(bone, "rotation_mode", other)):
            out["while"] = as_user(ops.motion_inbetween, frame_start=1, frame_end=10, engine="spline", sides="RIGHT")
        bone.rotation_mode = mode
        keyed_afresh()  # (the first wrote its keys on the other channel)
        out["same"] = as_user(ops.motion_inbetween, frame_start=1, frame_end=10, engine="spline", sides="RIGHT")
    finally:
        bone.rotation_mode = mode
    return out


s.check("rotation_mode_changed", rotation_mode_changed)
s.finish()
