"""Blender session: what a motion keyed by Run Job's import says of frames that do not land on whole frames (a
start between frames, a clip of another frame rate)."""

from __future__ import annotations

import importlib

import bpy

from session import ADDON_MODULE, Session, printed_by

s = Session()
s.install()
a = s.args


def import_messages():
    from handforge_shared.poses import MotionClip

    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 24, 1.0
    importers = importlib.import_module(f"{ADDON_MODULE}.importers")
    out = {}
    for name, start in (("same_rate", 10), ("same_rate_subframe", 10.5), ("retimed", 10), ("doubled", 10)):
        out[name] = importers.import_motion(bpy.context, MotionClip.load(a[name.replace("_subframe", "")]),
                                            frame_start=start)
    out["operator_retimed"] = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["retimed"], frame_start=100))
    return out


s.check("messages", import_messages)
s.finish()
