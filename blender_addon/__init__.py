"""HandForge: two-hand (MANO) rigs in Blender — posing, keyframing, and a backend for generation.

Every module registers its classes here; the manifest (``blender_manifest.toml``) is written by
``build_addon.py``, which also vendors the project's ``shared`` package and the pyzmq wheels.
"""

from __future__ import annotations

import atexit

import bpy

from . import (connection, keying_set, ops_backend, ops_export, ops_hands, ops_image, ops_keys, ops_pose, panels,
               preferences, properties)
from . import fingers  # frame-change and update handlers: sliders follow the bones, animated sliders move them
from . import jobs  # the running jobs, forgotten on unregister
from . import ops_library  # the pose browser's user library
from . import ops_interaction  # Sample Interaction, its candidates browsed, applied or keyed
from . import ops_motion  # motion engine buttons: In-between, Follow Wrist Path, Generate, Regenerate
from . import ops_transfer  # Transfer Pose (image.transfer)

# The panels after the operators they draw; Transfer Pose's own panel after the main ones.
_CLASS_MODULES = (preferences, ops_hands, ops_pose, ops_keys, ops_backend, ops_export, ops_image, keying_set,
                  ops_interaction, ops_motion, panels, ops_transfer)


def register() -> None:
    properties.register()
    for module in _CLASS_MODULES:
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    ops_image.register()
    ops_interaction.register()
    ops_motion.register()
    fingers.register()
    ops_library.register()
    ops_transfer.register()
    connection.register()
    jobs.register()  # Ctrl-Z / Ctrl-Shift-Z while a job runs
    atexit.register(connection.shutdown)  # never leave a backend we started running


def unregister() -> None:
    atexit.unregister(connection.shutdown)
    jobs.shutdown()
    jobs.unregister()
    connection.shutdown()
    connection.unregister()
    fingers.unregister()
    ops_library.unregister()
    ops_transfer.unregister()
    ops_image.unregister()
    ops_interaction.unregister()
    ops_motion.unregister()
    for module in reversed(_CLASS_MODULES):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
    properties.unregister()
