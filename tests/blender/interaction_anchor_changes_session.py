"""Blender session: interaction candidates and an anchor hand that changes under them. Posed anew while the job
runs (a preset, no undo): the candidates made for the pose before are not shown around the new one as if they fit
it; the hand being sampled posed meanwhile changes nothing. Then the anchor animated: candidates sampled on one frame
and used on another (the artist went there; nothing posed), or the frame changed while the sampling ran."""

from __future__ import annotations

import bpy
import numpy as np
from session import Session, as_user, channels, hand, ui_context, while_a_job_runs

s = Session()
s.install()
UI = ui_context()
ops = bpy.ops.handforge


def sample(**kwargs):
    return as_user(ops.sample_interaction, **{"engine": "templates", "count": 2, "seed": 2, **kwargs})


s.start_backend()
assert ops.add_hands() == {"FINISHED"}


def anchor_posed_mid_job():
    right_before = channels("right")
    done = []

    def pose_the_anchor():
        if not done:
            done.append(True)
            with bpy.context.temp_override(**UI):
                assert ops.apply_preset(preset="fist", sides="LEFT") == {"FINISHED"}

    with while_a_job_runs(pose_the_anchor):
        result, said = sample(anchor="LEFT")
    state = bpy.context.window_manager.handforge_interaction
    return {"posed": bool(done), "result": result, "said": said, "count": len(state.candidates),
            "right_unchanged": bool(np.array_equal(channels("right"), right_before))}


s.check("anchor_posed_mid_job", anchor_posed_mid_job)


def posed_other_hand_mid_job():
    """The hand being sampled posed meanwhile changes nothing the candidates were made for: they land."""
    done = []

    def pose_the_other():
        if not done:
            done.append(True)
            with bpy.context.temp_override(**UI):
                assert ops.apply_preset(preset="flat", sides="RIGHT") == {"FINISHED"}

    with while_a_job_runs(pose_the_other):
        result, said = sample(anchor="LEFT")
    state = bpy.context.window_manager.handforge_interaction
    found = {"result": result, "said": said, "count": len(state.candidates)}
    if found["count"]:
        ops.interaction_cancel()
    return found


s.check("posed_other_hand_mid_job", posed_other_hand_mid_job)


def unanimated_posed_on_another_frame():
    """An anchor with no animation, sampled on frame 1, posed anew on frame 10: posed anew (going back to frame 1
    would not bring its pose back), not 'its animation poses it otherwise'."""
    bpy.context.scene.frame_set(1)
    found = {"sampled": sample(anchor="LEFT")[0], "animated": hand("left").animation_data is not None}
    bpy.context.scene.frame_set(10)
    assert as_user(ops.apply_preset, preset="flat", sides="LEFT")[0] == ["FINISHED"]
    found["key"] = as_user(ops.interaction_key, count=2)
    ops.interaction_cancel()
    bpy.context.scene.frame_set(1)
    return found


s.check("unanimated_posed_on_another_frame", unanimated_posed_on_another_frame)

for frame, preset in ((1, "flat"), (20, "fist")):  # the anchor animated: another pose on every frame between
    bpy.context.scene.frame_set(frame)
    assert as_user(ops.apply_preset, preset=preset, sides="LEFT")[0] == ["FINISHED"]
    assert as_user(ops.key_pose, sides="LEFT")[0] == ["FINISHED"]


def on_another_frame():
    bpy.context.scene.frame_set(5)
    found = {"sampled": sample(anchor="LEFT", seed=1)[0]}
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
        found = {"sampled": sample(anchor="LEFT", seed=1)}
    found["count"] = len(bpy.context.window_manager.handforge_interaction.candidates)
    return found


s.check("frame_changed_mid_job", frame_changed_mid_job)
s.finish()
