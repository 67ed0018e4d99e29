"""Blender session: HandForge upgraded in a running Blender, as an artist does: the installed zip (``zip``) enabled
and used, then a newer one (``args["upgraded"]``, whose add-on and handforge_shared both have a name the first
lacks) installed over it (Install from Disk), then a plain disable and enable, then uninstall and install of the
first zip again: each time the add-on enabled runs the handforge_shared installed with it, one copy."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import bpy
from session import ADDON_MODULE, Session, error_of

s = Session()
s.install()


def state() -> dict:
    """Enabled? Which handforge_shared runs (its file, the probe the upgraded one has) and whether the add-on's
    modules hold the one in sys.modules (one copy)."""
    found = {"enabled": ADDON_MODULE in bpy.context.preferences.addons,
             "operators": hasattr(bpy.types, "HANDFORGE_OT_add_hands")}
    poses = sys.modules.get("handforge_shared.poses")
    found["shared_file"] = str(Path(poses.__file__).resolve()) if poses is not None else None
    found["shared_probe"] = getattr(poses, "upgrade_probe", lambda: None)()
    if found["enabled"]:
        keys = importlib.import_module(f"{ADDON_MODULE}.keys")
        found["addon_probe"] = getattr(keys, "upgrade_probe", lambda: None)()
        found["one_copy"] = keys.HandPose is poses.HandPose
        found["add_hands"] = sorted(bpy.ops.handforge.add_hands())
        found["preset"] = sorted(bpy.ops.handforge.apply_preset(preset="fist", sides="BOTH"))
    return found


s.check("first", state)


def upgrade():
    done = []
    error = error_of(lambda: done.extend(bpy.ops.extensions.package_install_files(
        filepath=s.args["upgraded"], repo="user_default", enable_on_install=True)))
    return {"installed": sorted(done), "error": error, **state()}


s.check("upgraded", upgrade)


def disable_enable():
    bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
    error = error_of(lambda: bpy.ops.preferences.addon_enable(module=ADDON_MODULE))
    return {"error": error, **state()}


s.check("disable_enable", disable_enable)


def reinstall_first():
    repo = next(i for i, r in enumerate(bpy.context.preferences.extensions.repos) if r.module == "user_default")
    bpy.ops.extensions.package_uninstall(repo_index=repo, pkg_id="handforge")
    done = []
    error = error_of(lambda: done.extend(bpy.ops.extensions.package_install_files(
        filepath=s.zip, repo="user_default", enable_on_install=True)))
    return {"installed": sorted(done), "error": error, **state()}


s.check("reinstalled", reinstall_first)
s.finish()
