"""Blender session: a motion button's keys landing on a hand whose interaction candidates are browsed (In-between
pressed while one is shown), then Cancel."""

from __future__ import annotations

import bpy
import numpy as np
from session import Session, as_user, channels, hand, ui_context

s = Session()
s.install()
UI = ui_context()
ops = bpy.ops.handforge


s.start_backend()
assert ops.add_hands() == {"FINISHED"}
bpy.context.view_layer.objects.active = hand("left")


def inbetween_over_candidates():
    """The right hand keyed as a fist on frames 1 and 10; on frame 5, candidates browsed on it; In-between keeps
    only its wrist location, so its fingers are generated (flat: no finger keys to go through)."""
    scene = bpy.context.scene
    assert as_user(ops.apply_preset, preset="fist", sides="RIGHT")[0] == ["FINISHED"]
    for frame in (1, 10):
        scene.frame_set(frame)
        assert as_user(ops.key_pose, sides="RIGHT")[0] == ["FINISHED"]
    scene.frame_set(5)
    sampled = as_user(ops.sample_interaction, engine="templates", count=3, seed=2, anchor="LEFT")
    made = as_user(ops.motion_inbetween, frame_start=1, frame_end=10, engine="spline", sides="RIGHT",
                   fixed={"WRIST_LOCATION"})
    browsed_after = len(bpy.context.window_manager.handforge_interaction.candidates)
    cancelled = as_user(ops.interaction_cancel) if ops.interaction_cancel.poll() else None
    shown = channels("right")  # what the viewport shows now
    scene.frame_set(6)
    scene.frame_set(5)
    keyed = channels("right")  # what the keys (a render, an export) give on this frame
    return {"sampled": sampled, "made": made, "browsed_after": browsed_after, "cancelled": cancelled,
            "shown_is_keyed": bool(np.allclose(shown, keyed, atol=1e-5))}


s.check("inbetween_over_candidates", inbetween_over_candidates)
def import_over_candidates():
    """Import Motion onto frames that hold a hand whose candidates are browsed: the same, with its keys. The clip:
    the right hand's flat-fingered in-between just made; before sampling, the right hand is posed a fist (not
    keyed) on frame 20, inside the frames the clip lands on."""
    scene = bpy.context.scene
    clip = str(s.work / "clip.npz")
    assert as_user(ops.export_motion, filepath=clip, frame_start=1, frame_end=10, sides="BOTH")[0] == ["FINISHED"]
    scene.frame_set(20)
    assert as_user(ops.apply_preset, preset="fist", sides="RIGHT")[0] == ["FINISHED"]
    sampled = as_user(ops.sample_interaction, engine="templates", count=3, seed=2, anchor="LEFT")
    imported = as_user(ops.import_motion, filepath=clip, frame_start=15)
    browsed_after = len(bpy.context.window_manager.handforge_interaction.candidates)
    cancelled = as_user(ops.interaction_cancel) if ops.interaction_cancel.poll() else None
    shown = channels("right")
    scene.frame_set(21)
    scene.frame_set(20)
    return {"sampled": sampled, "imported": imported, "browsed_after": browsed_after, "cancelled": cancelled,
            "shown_is_keyed": bool(np.allclose(shown, channels("right"), atol=1e-5))}


s.check("import_over_candidates", import_over_candidates)
def run_job_over_candidates():
    """Run Job (the Backend panel) bringing back a motion, keyed from the current frame: the same. The motion: flat
    hands for 5 frames (echoed by the backend); the right hand posed a fist (not keyed) on frame 40 first."""
    import json

    from handforge_shared.poses import HandPose, MotionClip

    scene = bpy.context.scene
    zeros = {"global_orient": np.zeros((5, 3)), "hand_pose": np.zeros((5, 45)), "betas": np.zeros((5, 10)),
             "transl": np.zeros((5, 3))}
    clip = MotionClip(hands={side: HandPose(**zeros) for side in ("left", "right")})
    inputs = str(s.work / "echo.npz")
    np.savez(inputs, **clip.to_arrays())
    scene.frame_set(40)
    assert as_user(ops.apply_preset, preset="fist", sides="RIGHT")[0] == ["FINISHED"]
    sampled = as_user(ops.sample_interaction, engine="templates", count=3, seed=2, anchor="LEFT")
    ran = as_user(ops.run_job, kind="echo", params=json.dumps({"data": {"motion": clip.metadata()}}), inputs=inputs)
    browsed_after = len(bpy.context.window_manager.handforge_interaction.candidates)
    cancelled = as_user(ops.interaction_cancel) if ops.interaction_cancel.poll() else None
    shown = channels("right")
    scene.frame_set(41)
    scene.frame_set(40)
    return {"sampled": sampled, "ran": ran, "browsed_after": browsed_after, "cancelled": cancelled,
            "shown_is_keyed": bool(np.allclose(shown, channels("right"), atol=1e-5))}


s.check("run_job_over_candidates", run_job_over_candidates)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
