"""Blender session: Key Candidates on frames before 0 (refused before anything is keyed, as the motion buttons
refuse them), and the Interaction panel while a new sampling runs over the candidates being browsed (the rig shows
its pose from before the candidates then, not the candidate the panel named)."""

from __future__ import annotations

import bpy
from session import Session, as_user, hand, recorded_layout, while_a_job_runs

s = Session()
s.install()
scene = bpy.context.scene
ops = bpy.ops.handforge

s.start_backend()
assert ops.add_hands() == {"FINISHED"}
bpy.context.view_layer.objects.active = hand("left")


def sample(**kwargs):
    return as_user(ops.sample_interaction, **{"engine": "templates", "count": 3, "anchor": "LEFT", **kwargs})


def state():
    return bpy.context.window_manager.handforge_interaction


def key_count() -> int:
    total = 0
    for side in ("left", "right"):
        ad = hand(side).animation_data
        if ad is not None and ad.action is not None:
            total += sum(len(fc.keyframe_points) for layer in ad.action.layers for strip in layer.strips
                         for bag in strip.channelbags for fc in bag.fcurves)
    return total


def key_before_zero():
    assert sample(seed=2)[0] == ["FINISHED"]
    scene.frame_set(-3)
    try:
        found = {"keys_before": key_count(), "result": as_user(ops.interaction_key, count=0)}
        found.update(keys_after=key_count(), still_browsed=len(state().candidates), frame=scene.frame_current)
    finally:
        scene.frame_set(1)
    return found


s.check("before_zero", key_before_zero)


def key_partly_before_zero_and_one_before_zero():
    """Frames -1 to 1 (partly before 0), and one candidate on frame -3: each refused, naming its frames."""
    if not len(state().candidates):
        assert sample(seed=2)[0] == ["FINISHED"]
    found = {}
    try:
        for name, frame, count in (("partly", -1, 3), ("one", -3, 1)):
            scene.frame_set(frame)
            before = key_count()
            found[name] = {"result": as_user(ops.interaction_key, count=count), "keyed": key_count() - before,
                           "still_browsed": len(state().candidates)}
    finally:
        scene.frame_set(1)
    return found


s.check("before_zero_partly_and_one", key_partly_before_zero_and_one_before_zero)


def panel() -> dict:
    calls = recorded_layout(bpy.types.HANDFORGE_PT_interaction.draw)
    return {"labels": [c[2].get("text", "") for c in calls if c[0] == "label"],
            "props": [c[1][1] for c in calls if c[0] == "prop" and len(c[1]) > 1],
            "operators": [c[1][0] for c in calls if c[0] == "operator"],
            "bad": [c[1] for c in calls if c[0] == "bad"]}


def panel_while_resampling():
    """Candidate 2 shown, Sample Interaction again: the panel drawn while it runs, and after."""
    if not len(state().candidates):
        assert sample(seed=2)[0] == ["FINISHED"]
    assert as_user(ops.interaction_next)[0] == ["FINISHED"]
    drawn = []
    with while_a_job_runs(lambda: drawn or drawn.append(panel())):
        resampled = sample(seed=5)
    return {"resampled": resampled, "while": drawn[0] if drawn else None, "after": panel()}


s.check("panel_while_resampling", panel_while_resampling)
def key_one_candidate():
    """One candidate keyed on frame 4: said as one candidate on one frame."""
    if not len(state().candidates):
        assert sample(seed=2)[0] == ["FINISHED"]
    scene.frame_set(4)
    try:
        return {"result": as_user(ops.interaction_key, count=1), "keys": key_count()}
    finally:
        scene.frame_set(1)


s.check("one_candidate", key_one_candidate)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
