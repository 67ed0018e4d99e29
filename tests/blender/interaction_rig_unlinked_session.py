"""Blender session: the hand rig to be sampled taken out of the scene (unlinked from its collection, still in the
file) while Sample Interaction runs."""

from __future__ import annotations

import bpy
from session import Session, as_user, hand, while_a_job_runs

s = Session()
s.install()
ops = bpy.ops.handforge


s.start_backend()
assert ops.add_hands() == {"FINISHED"}
bpy.context.view_layer.objects.active = hand("left")


def unlinked_mid_job():
    rig = hand("right")
    done = []

    def unlink():
        if not done:
            done.append(True)
            for obj in (rig, *rig.children):
                for collection in list(obj.users_collection):
                    collection.objects.unlink(obj)

    with while_a_job_runs(unlink):
        result = as_user(ops.sample_interaction, engine="templates", count=3, seed=2, anchor="LEFT")
    state = bpy.context.window_manager.handforge_interaction
    found = {"unlinked": bool(done), "in_scene": rig.name in bpy.context.scene.objects, "result": result,
             "count": len(state.candidates)}
    if found["count"]:
        found["next"] = as_user(ops.interaction_next)
        ops.interaction_cancel()
    return found


s.check("unlinked_mid_job", unlinked_mid_job)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
