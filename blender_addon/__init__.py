"""HandForge: two-hand (MANO) rigs in Blender — posing, keyframing, and a backend for generation.

Every module registers its classes here; the manifest (``blender_manifest.toml``) is written by
``build_addon.py``, which also vendors the project's ``shared`` package and the pyzmq wheels.
"""

from __future__ import annotations

import bpy

from . import ops_hands, ops_keys, ops_pose, panels, properties

_CLASS_MODULES = (ops_hands, ops_pose, ops_keys, panels)


def register() -> None:
    properties.register()
    for module in _CLASS_MODULES:
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)


def unregister() -> None:
    for module in reversed(_CLASS_MODULES):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
    properties.unregister()
