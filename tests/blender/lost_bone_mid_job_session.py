"""Blender session: a joint of a hand rig renamed (a bone renamed by the artist) while a job runs whose result
lands on that rig: In-between, and Sample Interaction with the renamed joint on the anchor or on the sampled hand."""

from __future__ import annotations

import bpy
from session import Session, as_user, hand, while_a_job_runs

s = Session()
s.install()
ops = bpy.ops.handforge
JOINT = 3  # a finger joint (index3 on the open hand)


s.start_backend()
assert ops.add_hands() == {"FINISHED"}
bpy.context.view_layer.objects.active = hand("left")


def renaming(side: str):
    """A job's act that renames the rig's joint once; the joint's name, for naming it back."""
    renamed = []

    def act():
        if not renamed:
            bone = hand(side).data.bones[JOINT]
            renamed.append(bone.name)
            bone.name = f"{bone.name} renamed"
    return renamed, act


def name_back(side: str, renamed: list) -> None:
    if renamed:
        hand(side).data.bones[JOINT].name = renamed[0]


def inbetween_with_a_joint_renamed():
    scene = bpy.context.scene
    for frame in (1, 10):
        scene.frame_set(frame)
        assert as_user(ops.key_pose, sides="BOTH")[0] == ["FINISHED"]
    scene.frame_set(5)
    renamed, act = renaming("right")
    with while_a_job_runs(act):
        made = as_user(ops.motion_inbetween, frame_start=1, frame_end=10, engine="spline", sides="BOTH")
    name_back("right", renamed)
    return {"renamed": renamed, "made": made}


def sampling_with_a_joint_renamed(side: str):
    renamed, act = renaming(side)
    with while_a_job_runs(act):
        sampled = as_user(ops.sample_interaction, engine="templates", count=3, seed=2, anchor="LEFT")
    state = bpy.context.window_manager.handforge_interaction
    found = {"renamed": renamed, "sampled": sampled, "count": len(state.candidates), "message": state.message}
    name_back(side, renamed)
    if found["count"]:
        ops.interaction_cancel()
    return found


def browsing_with_a_joint_renamed():
    """The joint renamed while candidates are browsed: Next and Apply say so."""
    assert as_user(ops.sample_interaction, engine="templates", count=3, seed=2, anchor="LEFT")[0] == ["FINISHED"]
    renamed, act = renaming("right")
    act()
    found = {"renamed": renamed, "next": as_user(ops.interaction_next), "apply": as_user(ops.interaction_apply)}
    name_back("right", renamed)
    ops.interaction_cancel()
    return found


s.check("inbetween", inbetween_with_a_joint_renamed)
s.check("browsing", browsing_with_a_joint_renamed)
s.check("anchor", lambda: sampling_with_a_joint_renamed("left"))
s.check("sampled", lambda: sampling_with_a_joint_renamed("right"))
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
