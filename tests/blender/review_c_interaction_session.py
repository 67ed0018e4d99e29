"""Blender session (review C): Sample Interaction when the anchor hand is posed anew while the job runs (a preset,
no undo): the candidates made for the pose before are not shown around the new one as if they fit it."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import bpy
import numpy as np
from session import Session, hand, ui_context, while_a_job_runs

s = Session()
s.install()
UI = ui_context()
ops = bpy.ops.handforge


def channels(side: str) -> np.ndarray:
    return np.array([np.array(pb.matrix_basis) for pb in hand(side).pose.bones])


def sample(**kwargs):
    """(result, what it printed); a refusal as ['CANCELLED'] and its message."""
    out = io.StringIO()
    with redirect_stdout(out), bpy.context.temp_override(**UI):
        try:
            result = sorted(ops.sample_interaction("EXEC_DEFAULT", True, **{"engine": "templates", "count": 2,
                                                                              "seed": 2, **kwargs}))
        except RuntimeError as exc:
            return ["CANCELLED"], str(exc)
    return result, out.getvalue()


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
s.finish()
