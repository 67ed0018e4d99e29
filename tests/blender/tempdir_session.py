"""Blender session that ends as a killed or crashed Blender does, without its exit handlers (which remove its
session temp dir): it reports where that temp dir was."""

from __future__ import annotations

import os

import bpy
from session import Session

s = Session()
s.results["tempdir"] = bpy.app.tempdir
s.finish()
os._exit(0)  # no exit handlers: Blender's temp dir is not removed by Blender
