"""Blender session: Reload Scripts (F3 › Reload Scripts) with HandForge enabled and hands in the scene: HandForge is
enabled again on its files read anew, with what it registers once, and its buttons work on the hands."""

from __future__ import annotations

import importlib
import os
import sys

import bpy
from session import ADDON_MODULE, Session, error_of

s = Session()
s.install()


def registered() -> dict:
    """What HandForge has registered: its classes and its application handlers (by list, module and name)."""
    handlers = sorted(f"{name}: {fn.__module__}.{fn.__name__}" for name in dir(bpy.app.handlers)
                      if isinstance(fns := getattr(bpy.app.handlers, name), list) for fn in fns
                      if getattr(fn, "__module__", "").startswith(ADDON_MODULE))
    return {"classes": sorted(name for name in dir(bpy.types) if name.startswith("HANDFORGE_")), "handlers": handlers}


def setup():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    return registered()


s.check("before", setup)


def reload_scripts():
    # What Reload Scripts runs: bpy.ops.script.reload() leaves it to Blender's event loop, which the bpy module has not
    bpy.utils.load_scripts(reload_scripts=True)
    keys = importlib.import_module(f"{ADDON_MODULE}.keys")
    return {"enabled": ADDON_MODULE in bpy.context.preferences.addons,
            "preset": error_of(lambda: bpy.ops.handforge.apply_preset(preset="fist", sides="BOTH")),
            "one_copy": keys.HandPose is sys.modules["handforge_shared.poses"].HandPose, **registered()}


s.check("reloaded", reload_scripts)
s.finish()
sys.stdout.flush()
os._exit(0)  # (the bpy module hangs in its exit handlers after scripts were reloaded)
