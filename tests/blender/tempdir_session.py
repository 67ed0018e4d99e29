"""Blender session that ends as a killed or crashed Blender does, without its exit handlers (which remove its
session temp dir): it reports where that temp dir was, and the HANDFORGE_MANO_DIR it was given."""

from __future__ import annotations

import os

import bpy
from session import Session

s = Session()
s.results["tempdir"] = bpy.app.tempdir
s.results["mano_dir"] = os.environ.get("HANDFORGE_MANO_DIR")  # (the harness's unset)
s.finish()
os._exit(0)  # no exit handlers: Blender's temp dir is not removed by Blender
