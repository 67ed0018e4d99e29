"""Blender session: the buttons that key or pose the hands pressed while another object (a prop the hand holds)
is in Edit Mode, with an edit of it not yet out of Edit Mode: what each does to the hands, and whether the prop keeps its edit."""

from __future__ import annotations

import importlib

import bpy
import bmesh  # (after bpy: it is Blender's)
import numpy as np

from session import ADDON_MODULE, Session, as_user, hand, init_undo, ui_context, while_a_job_runs

s = Session()
s.install()
a = s.args
ops = bpy.ops.handforge
UI = ui_context()
MOVED = (0.0, 0.0, 0.25)  # the prop's first vertex, where its edit puts it


def hands_state() -> dict:
    """The hands' channels and keys (frames and types), rounded: what the buttons change."""
    fcurves = importlib.import_module(f"{ADDON_MODULE}.fcurves")
    out = {}
    for side in ("left", "right"):
        obj = hand(side)
        out[f"{side} channels"] = np.round([np.array(pb.matrix_basis) for pb in obj.pose.bones], 5).tolist()
        bag = fcurves.find_channelbag(obj)
        out[f"{side} keys"] = sorted({(round(kp.co[0], 3), kp.type) for fc in (bag.fcurves if bag else ())
                                      for kp in fc.keyframe_points})
    return out


def fresh_scene(name: str):
    """Hands keyed at 1 and 20 (flat, then fist) at frame 10, and a cup in Edit Mode with its first vertex moved."""
    scene = bpy.data.scenes.new(name)
    bpy.context.window.scene = scene
    scene.frame_start, scene.frame_end = 1, 20
    assert ops.add_hands() == {"FINISHED"}
    scene.frame_set(1)
    assert ops.key_pose(sides="BOTH") == {"FINISHED"}
    assert ops.apply_preset(preset="fist", sides="BOTH") == {"FINISHED"}
    scene.frame_set(20)
    assert ops.key_pose(sides="BOTH") == {"FINISHED"}
    scene.frame_set(10)
    bpy.context.view_layer.objects.active = hand("right")  # (Sample Interaction's anchor)
    mesh = bpy.data.meshes.new(f"Cup {name}")
    mesh.from_pydata([(0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.0, 0.1, 0.0)], [], [(0, 1, 2)])
    cup = bpy.data.objects.new(f"Cup {name}", mesh)
    scene.collection.objects.link(cup)
    init_undo()
    return cup


def edit(cup) -> None:
    """Into the cup's Edit Mode, and move its first vertex there (an edit only Edit Mode's undo holds)."""
    bpy.context.view_layer.objects.active = cup
    with bpy.context.temp_override(**UI):
        bpy.ops.object.mode_set(mode="EDIT")
        bm = bmesh.from_edit_mesh(cup.data)
        bm.verts.ensure_lookup_table()
        bm.verts[0].co = MOVED
        bmesh.update_edit_mesh(cup.data)
        bpy.ops.ed.undo_push(message="move the cup's vertex")


def cup_vertex(cup) -> list[float]:
    if cup.mode == "EDIT":
        bm = bmesh.from_edit_mesh(cup.data)
        bm.verts.ensure_lookup_table()
        return [round(c, 4) for c in bm.verts[0].co]
    return [round(c, 4) for c in cup.data.vertices[0].co]


CALLS = {
    "key_pose": (ops.key_pose, {"sides": "RIGHT"}),
    "import_motion": (ops.import_motion, {"filepath": a["clip"], "frame_start": 5}),
    "delete_generated_keys": (ops.delete_generated_keys, {"sides": "BOTH"}),
    "make_artist_keys": (ops.make_artist_keys, {"sides": "BOTH"}),
    "motion_inbetween": (ops.motion_inbetween, {"engine": "spline", "sides": "RIGHT", "frame_start": 1,
                                                "frame_end": 20}),
    "interaction_apply": (ops.interaction_apply, {}),
    "interaction_key": (ops.interaction_key, {"count": 1}),
    "select_generated_keys": (ops.select_generated_keys, {"sides": "BOTH"}),
}


def pressed(name: str) -> dict:
    """``name``'s button pressed with the cup in Edit Mode: greyed? what it said and changed (before: the keys or pose,
    which one Ctrl-Z then left as they were: it undid the cup's last edit step alone), the cup's edit kept?"""
    cup = fresh_scene(name)
    if name in ("delete_generated_keys", "make_artist_keys"):  # (generated keys for them to change)
        assert ops.import_motion(filepath=a["clip"], frame_start=5) == {"FINISHED"}
    if name.startswith("interaction"):
        assert ops.sample_interaction(engine="templates", count=2, seed=3) == {"FINISHED"}
        assert ops.interaction_next() == {"FINISHED"}  # (candidate 2 shown: Apply changes the pose kept)
    bpy.context.scene.frame_set(10)
    init_undo()
    before = hands_state()
    edit(cup)
    op, kwargs = CALLS[name]
    out = {"poll": op.poll(), "result": as_user(op, **kwargs)}
    out["changed"] = hands_state() != before
    out["mode_after"] = cup.mode
    with bpy.context.temp_override(**UI):
        bpy.ops.object.mode_set(mode="OBJECT")
    out["cup_kept"] = cup_vertex(cup)
    return out


def tab_into_the_cup_while_a_motion_runs():
    """In-between running when the artist presses Tab on the cup: its keys would land where Ctrl-Z cannot take
    them away, so its result is not keyed."""
    cup = fresh_scene("tab")
    before = hands_state()

    def tab():
        if cup.mode != "EDIT":
            edit(cup)

    with while_a_job_runs(tab):
        kwargs = CALLS["motion_inbetween"][1]
        result = as_user(ops.motion_inbetween, **kwargs)
    out = {"result": result, "changed": hands_state() != before, "cup": cup_vertex(cup)}
    with bpy.context.temp_override(**UI):
        bpy.ops.object.mode_set(mode="OBJECT")
    return out


def preview_while_the_cup_is_edited():
    """Sample Interaction, a preview without an undo step (Apply and Key Candidates make it), is not greyed."""
    cup = fresh_scene("preview")
    edit(cup)
    out = {"poll": ops.sample_interaction.poll(),
           "result": as_user(ops.sample_interaction, engine="templates", count=2, seed=3, anchor="RIGHT")}
    out["cancel"] = as_user(ops.interaction_cancel)
    with bpy.context.temp_override(**UI):
        bpy.ops.object.mode_set(mode="OBJECT")
    out["cup"] = cup_vertex(cup)
    return out


def probe():
    s.start_backend()
    clip = importlib.import_module("handforge_shared.poses")
    pose = clip.HandPose.zeros((5,))
    clip.MotionClip(hands={"right": pose, "left": pose}, fps=bpy.context.scene.render.fps).save(a["clip"])
    return {name: pressed(name) for name in CALLS}


s.check("probe", probe)
s.check("tab", tab_into_the_cup_while_a_motion_runs)
s.check("preview", preview_while_the_cup_is_edited)
s.finish()
