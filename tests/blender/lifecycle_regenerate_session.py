"""Blender session: a motion made, HandForge disabled, another file opened (the same file again) and HandForge enabled:
Regenerate has no last motion to run again, as after a file opened while it is enabled."""

from __future__ import annotations

import bpy
from session import ADDON_MODULE, Session, as_user

s = Session()
s.install()
s.start_backend()
ops = bpy.ops.handforge


def made_then_file_opened_while_disabled():
    assert ops.add_hands() == {"FINISHED"}
    found = {"made": as_user(ops.motion_generate, engine="spline", frame_start=1, frame_end=10)}
    bpy.ops.wm.save_as_mainfile(filepath=str(s.work / "made.blend"))
    bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
    bpy.ops.wm.open_mainfile(filepath=str(s.work / "made.blend"))
    bpy.ops.preferences.addon_enable(module=ADDON_MODULE)
    s.start_backend()  # (the disabling stopped it)
    found["can_regenerate"] = bool(ops.motion_regenerate.poll())
    found["regenerated"] = as_user(ops.motion_regenerate)
    return found


s.check("reopened", made_then_file_opened_while_disabled)
s.finish()
