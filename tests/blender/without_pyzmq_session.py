"""Blender session: the add-on installed where pyzmq cannot be imported (a zip built with --no-wheels in a Blender
without pyzmq): what enabling it says."""

from __future__ import annotations

import bpy
from session import ADDON_MODULE, Session, error_of

s = Session()


def install():
    error = error_of(lambda: bpy.ops.extensions.package_install_files(filepath=s.zip, repo="user_default",
                                                                          enable_on_install=True))
    return {"error": error, "enabled": ADDON_MODULE in bpy.context.preferences.addons}


s.check("install", install)
s.finish()
