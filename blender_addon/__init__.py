"""HandForge: two-hand (MANO) rigs in Blender — posing, keyframing, and a backend for generation.

Every module registers its classes here (an engine's own ``ops_<engine>.py`` is found: ``engine_modules``); the
manifest (``blender_manifest.toml``) is written by ``build_addon.py``, which also vendors the project's ``shared``
package and the pyzmq wheels.
"""

from __future__ import annotations

import atexit
import importlib
import os
import pkgutil
import sys
from functools import partial

import bpy

SHARED = "handforge_shared"  # the project's shared package: the add-on's own copy comes from its wheel


def _from_extension_wheels(module) -> bool:
    """Whether ``module`` was loaded from the wheels Blender unpacks for its extensions (``<extensions>/.local``:
    HandForge's ``handforge_shared`` wheel), not from another copy on the path (a developer's install, a script's
    own), which is not the add-on's to drop."""
    file = getattr(module, "__file__", None)
    try:
        wheels = os.path.realpath(bpy.utils.user_resource("EXTENSIONS", path=".local"))
        return file is not None and os.path.realpath(file).startswith(wheels + os.sep)
    except Exception:  # noqa: BLE001 - (no extensions folder: not from it)
        return False


def _forget_loaded() -> None:
    """Drop from ``sys.modules`` the add-on's submodules and its wheel's ``handforge_shared`` loaded before this
    package ran: its files are being read anew (Blender dropped the package and submodules to upgrade it, by
    Install from Disk over it or uninstall then install, or after an enabling that failed), and the shared code
    must be read anew with them: the new add-on ran on the old ``handforge_shared`` still loaded ("cannot import
    name 'check_reach' from 'handforge_shared.poses'", HandForge left disabled, or the old shared code silently).
    Here, not in unregister(): an upgrade from a HandForge without this is mended too, and a plain disable and
    enable keeps the add-on's modules (Blender does not read them again), which hold the shared modules they
    imported: dropped, a fresh import beside them (rig.py's forearm, a script's) loaded a second copy. Nothing else
    holds the old ones by then (the old add-on's handlers, timers, threads and classes went with its unregister);
    a script's own reference stays valid. A ``handforge_shared`` from elsewhere on the path is not the add-on's."""
    names = [name for name in sys.modules if name.startswith(__name__ + ".")]
    if _from_extension_wheels(sys.modules.get(SHARED)):
        names += [name for name in sys.modules if name == SHARED or name.startswith(SHARED + ".")]
    for name in names:
        sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if parent == __name__:
            # Reload Scripts re-runs this file in the same package object, which still holds the old submodules as
            # attributes: `from . import preferences` then took the old one, gone from sys.modules, and Blender could
            # not read its classes' annotations ("name 'StringProperty' is not defined"), HandForge left disabled
            globals().pop(child, None)


_forget_loaded()


def _check_pyzmq() -> None:
    """pyzmq, which the add-on talks to the backend with, importable: Blender installs it from the wheels in the zip,
    and a zip built without them (``build_addon.py --no-wheels``, for local tests) failed to enable with no more
    than "No module named 'zmq'"."""
    try:
        import zmq  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"HandForge needs pyzmq in Blender's Python, and it cannot be imported ({exc}): a zip built "
                          "with build_addon.py --no-wheels carries none; install one built by python build_addon.py, "
                          "which carries pyzmq for every platform Blender runs on",
                          name=__name__) from exc  # (Blender's handler needs the name: None ended in its TypeError)


_check_pyzmq()

from . import (connection, keying_set, library, ops_backend, ops_export, ops_hands, ops_keys, ops_library, ops_pose,
               panels, preferences, properties)
from . import fingers  # frame-change and update handlers: sliders follow the bones, animated sliders move them
from . import jobs  # the running jobs, forgotten on unregister

# The panels after the operators they draw; each engine's own buttons (below) after them.
_CLASS_MODULES = (preferences, ops_hands, ops_pose, ops_keys, ops_backend, ops_export, ops_library, keying_set, panels)
_engine_modules: list = []  # those registered, for unregister


def engine_modules() -> list:
    """An engine's own buttons: each ``ops_*.py`` not listed above (``ops_image``, ``ops_interaction``,
    ``ops_motion``, ``ops_transfer``, ...), in name order: its ``CLASSES``, then its ``register()``; its
    ``ENGINES`` get no Run Job buttons in the Backend panel; on unregister its ``shutdown()``, if any, first
    (while the rest of the add-on still runs; it must not raise), its ``unregister()`` later. Found, not listed,
    so that adding one touches no other add-on file."""
    listed = {module.__name__ for module in _CLASS_MODULES}
    names = [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__) if info.name.startswith("ops_")]
    return [_engine_module(name) for name in sorted(names) if name not in listed]


def _engine_module(name: str):
    file = _file(name)
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # (a library its engine needs, not installed; a typo)
        raise ImportError(f"HandForge: the add-on file {file}, an engine's own buttons, failed to load ({exc}): "
                          f"fix it, or remove {file} from the add-on, then enable HandForge again") from exc
    if not isinstance(getattr(module, "CLASSES", None), (tuple, list)):  # (register() met it half done)
        _forget(module)
        raise ImportError(f"HandForge: the add-on file {file}, an engine's own buttons, has no CLASSES (its operators "
                          f"and panels): add it, or remove {file} from the add-on, then enable HandForge again")
    return module


def _file(name: str) -> str:
    return f"{name.rpartition('.')[2]}.py"


def _forget(module) -> None:
    """A file that failed is read anew at the next enabling (Blender forgets only the add-on's package: its
    modules stay imported, and the file fixed, its old text failed again)."""
    sys.modules.pop(module.__name__, None)


def register() -> None:
    """All or nothing: a step that fails takes back every step before it, in reverse (Blender unregisters nothing
    when an add-on's register() raises, and the next enabling was refused as 'already registered')."""
    # imported first: one that fails to load fails the enabling before anything is registered
    engines = engine_modules()
    undo: list = []  # how to take back each step done
    module = properties
    try:
        properties.register()
        undo.append(properties.unregister)
        for module in (*_CLASS_MODULES, *engines):
            for cls in module.CLASSES:
                bpy.utils.register_class(cls)
                undo.append(partial(bpy.utils.unregister_class, cls))
            if module in engines:
                # its unregister() first: a register() that fails half way is taken back as far as it goes
                if hasattr(module, "unregister"):
                    undo.append(module.unregister)
                if hasattr(module, "register"):
                    module.register()
                panels.OWN_BUTTONS.update(getattr(module, "ENGINES", ()))
                undo.append(partial(panels.OWN_BUTTONS.difference_update, getattr(module, "ENGINES", ())))
        for module in (fingers, connection, jobs):  # jobs: Ctrl-Z / Ctrl-Shift-Z while a job runs
            module.register()
            undo.append(module.unregister)
    except Exception as exc:
        for step in reversed(undo):
            try:
                step()
            except Exception as also:  # noqa: BLE001 - the rest is still taken back; said on the console
                print(f"HandForge: taking back {getattr(step, '__qualname__', step)} failed too: {also!r}",
                      file=sys.stderr)
        if module in engines:
            _forget(module)
        raise RuntimeError(_not_registered(module, engines, exc)) from exc
    _engine_modules[:] = engines
    atexit.register(connection.shutdown)  # never leave a backend we started running


def _not_registered(module, engines: list, exc: Exception) -> str:
    file = _file(module.__name__)
    if module in engines:
        return (f"HandForge: the add-on file {file}, an engine's own buttons, failed to register ({exc}); nothing "
                f"of HandForge stays registered: fix it, or remove {file} from the add-on, then enable HandForge "
                f"again")
    return (f"HandForge: its file {file} failed to register ({exc}); nothing of HandForge stays registered: "
            f"another add-on may use the same names (disable it), else reinstall HandForge, then enable it again")


def unregister() -> None:
    atexit.unregister(connection.shutdown)
    for module in reversed(_engine_modules):  # first, while every part of the add-on still runs
        if hasattr(module, "shutdown"):
            module.shutdown()
    jobs.shutdown()
    jobs.unregister()
    connection.shutdown()
    connection.unregister()
    fingers.unregister()
    library.unregister()  # the pose thumbnails' previews
    for module in reversed(_engine_modules):
        panels.OWN_BUTTONS.difference_update(getattr(module, "ENGINES", ()))
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
    _engine_modules.clear()
    for module in reversed(_CLASS_MODULES):
        for cls in reversed(module.CLASSES):
            bpy.utils.unregister_class(cls)
    properties.unregister()
