"""Blender session: the artist presses Ctrl-Z or Ctrl-Shift-Z while a job runs (the job's wait loop pumps
the connection; ``while_a_job_runs`` undoes or redoes there, as the modal job lets the artist do): In-between
(spline engine) and Sample Interaction (templates engine) made from keys or a pose the undo or redo changed."""

from __future__ import annotations

import importlib
import io
from contextlib import redirect_stdout

import bpy
import numpy as np
from session import ADDON_MODULE, Session, hand, init_undo, ui_context, while_a_job_runs

s = Session()
s.install()
a = s.args
UI = ui_context()
ops = bpy.ops.handforge
SIDES = ("left", "right")


def as_user(op, **kwargs):
    """Call an operator as a button does (UI context, undo push); (result, printed reports or its error)."""
    printed = io.StringIO()
    try:
        with redirect_stdout(printed), bpy.context.temp_override(**UI):
            result = sorted(op("EXEC_DEFAULT", True, **kwargs))
    except RuntimeError as exc:  # the operator's error report
        return ["CANCELLED"], printed.getvalue() + str(exc)
    return result, printed.getvalue()


def undo():
    with bpy.context.temp_override(**UI):
        assert bpy.ops.ed.undo() == {"FINISHED"}


def redo():
    with bpy.context.temp_override(**UI):
        assert bpy.ops.ed.redo() == {"FINISHED"}


def once(action):
    """``action`` at the first pump of the job only (one Ctrl-Z, not one per pump)."""
    done = []
    return lambda: done or done.append(action() or True)


def key_frames() -> dict:
    """Per hand and key type, the frames keyed."""
    fcurves = importlib.import_module(f"{ADDON_MODULE}.fcurves")
    out = {}
    for side in SIDES:
        bag = fcurves.find_channelbag(hand(side))
        for fc in bag.fcurves if bag is not None else ():
            for kp in fc.keyframe_points:
                out.setdefault(f"{side} {kp.type}", set()).add(kp.co[0])
    return {k: sorted(v) for k, v in out.items()}


def running() -> int:
    return len(importlib.import_module(f"{ADDON_MODULE}.jobs").RUNNING)


def channels(side: str) -> list:
    return [list(pb.rotation_quaternion) + list(pb.rotation_euler) + list(pb.location) for pb in hand(side).pose.bones]


def start():
    s.start_backend()
    assert ops.add_hands() == {"FINISHED"}
    init_undo()
    scene = bpy.context.scene
    for frame in (1, 20):
        scene.frame_set(frame)
        assert as_user(ops.key_pose, sides="BOTH")[0] == ["FINISHED"]


s.check("start", start)


def key_a_bent_finger(frame: int) -> None:
    """The artist's last edit, one undo step: the right index finger bent and keyed at ``frame``."""
    bpy.context.scene.frame_set(frame)
    hand("right").pose.bones["index2"].rotation_euler.x = 0.8
    assert as_user(ops.key_pose, sides="RIGHT")[0] == ["FINISHED"]


def inbetween():
    return as_user(ops.motion_inbetween, frame_start=1, frame_end=20, engine="spline", sides="BOTH")


def inbetween_undo():
    """In-between made from a key that Ctrl-Z takes away while it runs."""
    key_a_bent_finger(10)
    with while_a_job_runs(once(undo)):
        result, printed = inbetween()
    found = {"result": result, "printed": printed, "keys": key_frames(), "running": running(),
             "poll": ops.motion_inbetween.poll()}
    found["again"] = inbetween()[0]  # run again: made from the keys there now
    found["again_keys"] = key_frames()
    undo()  # one undo takes the run away again
    found["again_undone"] = key_frames()
    return found


s.check("inbetween_undo", inbetween_undo)


def inbetween_redo():
    """In-between made without a key that Ctrl-Shift-Z brings back while it runs."""
    key_a_bent_finger(10)
    undo()
    with while_a_job_runs(once(redo)):
        result, printed = inbetween()
    found = {"result": result, "printed": printed, "keys": key_frames(), "running": running(),
             "poll": ops.motion_inbetween.poll()}
    undo()  # (the frame-10 key away again: the next check starts from the first two keys)
    return found


s.check("inbetween_redo", inbetween_redo)


def add_an_empty():
    """An edit the requests do not read, one undo step (as a camera moved)."""
    assert as_user(bpy.ops.object.empty_add, location=(3.0, 0.0, 0.0))[0] == ["FINISHED"]


def inbetween_unrelated_undo():
    """In-between while Ctrl-Z takes away an empty added after the keys: the keys it was made from are there."""
    add_an_empty()
    with while_a_job_runs(once(undo)):
        result, printed = inbetween()
    found = {"result": result, "printed": printed, "keys": key_frames(), "running": running(),
             "empties": sum(o.type == "EMPTY" for o in bpy.data.objects)}
    if result == ["FINISHED"]:
        undo()  # (the generated keys away: the next check starts from the first two keys)
    return found


s.check("inbetween_unrelated_undo", inbetween_unrelated_undo)


def sample_around_the_left_hand(action) -> dict:
    """Sample Interaction around the left hand, ``action`` at its first pump: what came of it."""
    bpy.context.view_layer.objects.active = hand("left")
    right_before = channels("right")
    with while_a_job_runs(once(action)):
        result, printed = as_user(ops.sample_interaction, engine="templates", count=2, seed=3, anchor="LEFT")
    return {"result": result, "printed": printed, "running": running(),
            "candidates": len(bpy.context.window_manager.handforge_interaction.candidates),
            "right_unchanged": bool(np.array_equal(channels("right"), right_before))}


def sample_interaction(action, unrelated=False):
    """Sample Interaction around the left hand, posed (one undo step) before it runs; ``action`` while it runs
    (``unrelated``: an empty added after the pose, the step ``action`` undoes)."""
    bpy.context.scene.frame_set(30)
    left = hand("left")
    for name in ("index1", "index2", "middle1"):
        left.pose.bones[name].rotation_euler.x = 0.9
    assert as_user(ops.key_pose, sides="LEFT")[0] == ["FINISHED"]
    if action is redo:
        undo()  # the pose undone: the redo while it runs brings it back
    if unrelated:
        add_an_empty()
    found = sample_around_the_left_hand(action)
    found["poll"] = ops.sample_interaction.poll()
    found["empties"] = sum(o.type == "EMPTY" for o in bpy.data.objects)
    state = bpy.context.window_manager.handforge_interaction
    if len(state.candidates):
        ops.interaction_cancel()
    if action is redo or unrelated:
        undo()
    return found


s.check("interaction_undo", lambda: sample_interaction(undo))
s.check("interaction_redo", lambda: sample_interaction(redo))
s.check("interaction_unrelated_undo", lambda: sample_interaction(undo, unrelated=True))


def tab_into_the_right_hand():
    for obj in bpy.context.view_layer.objects:
        obj.select_set(False)
    bpy.context.view_layer.objects.active = hand("right")
    hand("right").select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")


def inbetween_while(action):
    """In-between with ``action`` at its first pump, then back in Object Mode: what came of it."""
    before = key_frames()
    with while_a_job_runs(once(action)):
        result, printed = inbetween()
    found = {"result": result, "printed": printed, "unkeyed": key_frames() == before, "running": running()}
    bpy.ops.object.mode_set(mode="OBJECT")
    return found


def inbetween_tab():
    """Tab into the right hand's Edit Mode while In-between runs: its keys would land where Ctrl-Z cannot take
    them away (the job's start checked the mode, its end did not)."""
    return inbetween_while(tab_into_the_right_hand)


s.check("inbetween_tab", inbetween_tab)


def inbetween_undo_and_tab():
    """Ctrl-Z of an unrelated empty, then Tab into the right hand, while In-between runs: reading its request
    again stops at the Edit Mode, and the message says that, not that the undo changed the keys."""
    add_an_empty()

    def undo_and_tab():
        undo()
        tab_into_the_right_hand()

    return inbetween_while(undo_and_tab)


s.check("inbetween_undo_and_tab", inbetween_undo_and_tab)


def interaction_tab():
    """Tab into the right hand's Edit Mode while Sample Interaction runs around the left: its candidates would
    pose the right hand there."""
    found = sample_around_the_left_hand(tab_into_the_right_hand)
    bpy.ops.object.mode_set(mode="OBJECT")
    return found


s.check("interaction_tab", interaction_tab)


def stop():
    assert ops.stop_backend() == {"FINISHED"}


s.check("stop", stop)
s.finish()
