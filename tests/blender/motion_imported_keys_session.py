"""Blender session: In-between on a hand whose keys over the range are all imported (generated keys, not the
artist's): the refusal says so and names Make Mine as the Animation panel labels it; after Make Mine the same
button runs."""

from __future__ import annotations

import importlib

import bpy
from session import ADDON_MODULE, Session, as_user, error_of, hand, recorded_layout

s = Session()
s.install()
scene = bpy.context.scene
ops = bpy.ops.handforge
fcurves = importlib.import_module(f"{ADDON_MODULE}.fcurves")

s.start_backend()
assert ops.add_hands() == {"FINISHED"}
INBETWEEN = dict(frame_start=1, frame_end=48, engine="spline", sides="RIGHT")


def keyed_as_imported() -> int:
    """Keys on frames 1, 24 and 48 of both hands, turned into generated keys as Import Motion makes them."""
    for frame in (1, 24, 48):
        scene.frame_set(frame)
        as_user(ops.key_pose, sides="BOTH")
    count = 0
    for side in ("left", "right"):
        for fc in fcurves.find_channelbag(hand(side)).fcurves:
            for key in fc.keyframe_points:
                key.type = fcurves.GENERATED
                count += 1
    return count


def make_mine_label() -> str:
    """The text of the Make Artist Keys button in the Animation panel."""
    calls = recorded_layout(bpy.types.HANDFORGE_PT_animation.draw)
    return next(c[2]["text"] for c in calls if c[0] == "operator" and c[1] == ["handforge.make_artist_keys"])


def refused_then_made_mine():
    count = keyed_as_imported()
    refused = error_of(lambda: ops.motion_inbetween(**INBETWEEN))
    made_mine = as_user(ops.make_artist_keys, sides="RIGHT")
    return {"keys": count, "refused": refused, "label": make_mine_label(), "made_mine": made_mine,
            "after": as_user(ops.motion_inbetween, **INBETWEEN)}


s.check("imported", refused_then_made_mine)
s.finish()
