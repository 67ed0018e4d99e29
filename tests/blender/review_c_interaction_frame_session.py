"""Blender session (review C): interaction candidates sampled on one frame of an animated anchor hand, then used on
another frame (the artist went there; nothing posed), or the frame changed while the sampling ran."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import bpy
from session import Session, ui_context, while_a_job_runs

s = Session()
s.install()
UI = ui_context()
ops = bpy.ops.handforge


def as_user(op, **kwargs):
    out = io.StringIO()
    with redirect_stdout(out), bpy.context.temp_override(**UI):
        try:
            result = sorted(op("EXEC_DEFAULT", True, **kwargs))
        except RuntimeError as exc:
            return ["CANCELLED"], str(exc)
    return result, out.getvalue()


def sample():
    return as_user(ops.sample_interaction, engine="templates", anchor="LEFT", count=2, seed=1)


s.start_backend()
assert ops.add_hands() == {"FINISHED"}
for frame, preset in ((1, "flat"), (20, "fist")):  # the anchor animated: another pose on every frame between
    bpy.context.scene.frame_set(frame)
    assert as_user(ops.apply_preset, preset=preset, sides="LEFT")[0] == ["FINISHED"]
    assert as_user(ops.key_pose, sides="LEFT")[0] == ["FINISHED"]


def on_another_frame():
    bpy.context.scene.frame_set(5)
    found = {"sampled": sample()[0]}
    bpy.context.scene.frame_set(40)
    found["key"] = as_user(ops.interaction_key, count=2)
    found["apply"] = as_user(ops.interaction_apply)
    return found


s.check("on_another_frame", on_another_frame)


def frame_changed_mid_job():
    bpy.context.scene.frame_set(5)
    done = []

    def scrub():
        if not done:
            done.append(True)
            bpy.context.scene.frame_set(12)

    with while_a_job_runs(scrub):
        found = {"sampled": sample()}
    found["count"] = len(bpy.context.window_manager.handforge_interaction.candidates)
    return found


s.check("frame_changed_mid_job", frame_changed_mid_job)
s.finish()
