"""HandForge: two-hand (MANO) rigs in Blender — posing, keyframing, and a backend for generation.

Every module registers its classes here (an engine's own ``ops_<engine>.py`` is found: ``engine_modules``); the
manifest (``blender_manifest.toml``) is written by ``build_addon.py``, which also vendors the project's ``shared``
package and the pyzmq wheels.
"""

from __future__ import annotations

import atexit
import importlib
import pkgutil

import bpy

from . import (connection, keying_set, ops_backend, ops_export, ops_hands, ops_image, ops_keys, ops_pose, panels,
               preferences, properties)
from . import fingers  # frame-change and update handlers: sliders follow the bones, animated sliders move them
from . import jobs  # the running jobs, forgotten on unregister
from . import ops_library  # the pose browser's user library
from . import ops_interaction  # Sample Interaction, its candidates browsed, applied or keyed
from . import ops_motion  # motion engine buttons: In-between, Follow Wrist Path, Generate, Regenerate

# The panels after the operators they draw; an engine's own panel (below) after the main ones.
_CLASS_MODULES = (preferences, ops_hands, ops_pose, ops_keys, ops_backend, ops_export, ops_image, keying_set,
                  ops_interaction, ops_motion, panels)
_engine_modules: list = []  # those registered, for unregister


def engine_modules() -> list:
    """An engine's own buttons: each ``ops_*.py`` not imported above (e.g. ``ops_transfer.py``, Transfer Pose),
    in name order: its ``CLASSES``, then its ``register()``; its ``ENGINES`` get no Run Job buttons in the
    Backend panel. Found, not listed, so that adding one touches no other add-on file."""
    listed = {module.__name__ for module in (*_CLASS_MODULES, ops_library)}
    names = [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__) if info.name.startswith("ops_")]
    return [_engine_module(name) for name in sorted(names) if name not in listed]


def _engine_module(name: str):
    file = f"{name.rpartition('.')[2]}.py"
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # (a library its engine needs, not installed; a typo)
        raise ImportError(f"HandForge: the add-on file {file}, an engine's own buttons, failed to load ({exc}): "
                          f"fix it, or remove {file} from the add-on, then enable HandForge again") from exc
    if not isinstance(getattr(module, "CLASSES", None), (tuple, list)):  # (register() met it half done)
        raise ImportError(f"HandForge: the add-on file {file}, an engine's own buttons, has no CLASSES (its operators "
                          f"and panels): add it, or remove {file} from the add-on, then enable HandForge again")
    return module


def register() -> None:
    # imported first: one that fails to load fails the enabling before anything is registered (Blender unregisters
    # nothing then, and the next enabling, the file fixed, was refused as 'already registered')
    _engine_modules[:] = engine_modules()
    properties.register()
    for module in _CLASS_MODULES:
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
    for module in _engine_modules:
        for cls in module.CLASSES:
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()
        panels.OWN_BUTTONS.update(getattr(module, "ENGINES", ()))
    ops_image.register()
    ops_interaction.register()
    ops_motion.register()
    fingers.register()
    ops_library.register()
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
    for module in reversed(_engine_modules):
        panels.OWN_BUTTONS.difference_update(getattr(module, "ENGINES", ()))
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
    _engine_modules.clear()
    ops_image.unregister()
    ops_interaction.unregister()
    ops_motion.unregister()
    for module in reversed(_CLASS_MODULES):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
    properties.unregister()
