"""Blender session: an engine's own buttons in one add-on file. An ``ops_tiny.py`` written into the installed
extension before it is enabled is registered (operator, panel, property), its engine gets no Run Job buttons
in the Backend panel, and disabling the add-on takes it all away again. A file that fails to load or to
register fails the enabling with its name, and leaves nothing registered; the sidebar's panels keep their order."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import bpy

from session import ADDON_MODULE, Session, recorded_layout

TINY = '''
import bpy

from .panels import _Panel

ENGINES = ("tiny",)


class HANDFORGE_OT_tiny_run(bpy.types.Operator):
    """Run the tiny engine's job"""

    bl_idname = "handforge.tiny_run"
    bl_label = "Tiny"

    def execute(self, context):
        return {"FINISHED"}


class HANDFORGE_PT_tiny(_Panel, bpy.types.Panel):
    bl_label = "Tiny"

    def draw(self, context):
        self.layout.operator("handforge.tiny_run")


CLASSES = (HANDFORGE_OT_tiny_run, HANDFORGE_PT_tiny)


def register():
    bpy.types.Scene.handforge_tiny = bpy.props.IntProperty(name="Tiny", description="the tiny engine's setting")


def unregister():
    del bpy.types.Scene.handforge_tiny
'''

REGISTER_RAISES = '''
import bpy

ENGINES = ("zzz",)
CLASSES = ()


def register():
    bpy.types.Scene.handforge_zzz = bpy.props.IntProperty(name="Zzz", description="set before it fails")
    raise ValueError("the zzz engine's setting could not be made")


def unregister():
    del bpy.types.Scene.handforge_zzz
'''

CLASS_FAILS = '''
import bpy

from .panels import _Panel

ENGINES = ("zzz",)


class HANDFORGE_PT_zzz(_Panel, bpy.types.Panel):
    bl_label = "Zzz"
    bl_space_type = "NO_SUCH_SPACE"

    def draw(self, context):
        pass


CLASSES = (HANDFORGE_PT_zzz,)
'''

s = Session()
registered_panels: list = []  # the HandForge tab's panel classes, in the order Blender registered them
_register_class = bpy.utils.register_class


def _recording_register_class(cls):
    _register_class(cls)
    if issubclass(cls, bpy.types.Panel) and getattr(cls, "bl_category", "") == "HandForge":
        registered_panels.append(cls)


bpy.utils.register_class = _recording_register_class  # (the add-on calls it through bpy.utils)
assert bpy.ops.extensions.package_install_files(filepath=s.zip, repo="user_default", enable_on_install=False) == {
    "FINISHED"}
folder = Path(bpy.utils.user_resource("EXTENSIONS", path="user_default")) / "handforge"


def enable_with_a_broken_file(text: str) -> dict:
    """An ops_<engine>.py that fails to import (a library its engine needs, not installed), or has no CLASSES: the
    add-on's classes were registered before it was imported, and stayed so when the enabling failed, so the next
    enabling, the file fixed, failed too ('already registered as a subclass') until Blender was restarted."""
    said = enable_with_file("ops_broken.py", text)
    return {"said": said, "left_registered": hasattr(bpy.types, "HANDFORGE_PT_backend"), "leftovers": leftovers()}


def enable_with_file(name: str, text: str) -> str:
    """Enable the add-on with the engine file ``name`` holding ``text`` (removed after): what the enabling said."""
    file = folder / name
    file.write_text(text)
    try:
        bpy.ops.preferences.addon_enable(module=ADDON_MODULE)
        return ""
    except RuntimeError as exc:
        return str(exc)
    finally:
        file.unlink()


def leftovers() -> list[str]:
    """What of the add-on is registered: its classes, its properties on Blender's types, its application
    handlers, and the engines whose Run Job buttons it hides."""
    found = [name for name in dir(bpy.types) if name.startswith("HANDFORGE_")]
    found += [f"{owner.__name__}.{name}" for owner in (bpy.types.Scene, bpy.types.Object, bpy.types.WindowManager)
              for name in owner.bl_rna.properties.keys() if name.startswith("handforge")]
    lists = {name: getattr(bpy.app.handlers, name) for name in dir(bpy.app.handlers)}
    found += [f"{name}: {fn.__name__}" for name, fns in lists.items() if isinstance(fns, list) for fn in fns
              if getattr(fn, "__module__", "").startswith(ADDON_MODULE)]
    panels = sys.modules.get(f"{ADDON_MODULE}.panels")
    return found + sorted(getattr(panels, "OWN_BUTTONS", ()))


def _order(cls) -> int:
    return getattr(cls, "bl_order", 0)  # (Blender's default)


def sidebar() -> list[str]:
    """The HandForge tab's panels top to bottom (a sub-panel after its parent, with ›), as Blender orders the panel
    types it registers: each after the last one registered before it whose bl_order is not larger (Blender's
    rna_Panel_register, source/blender/makesrna/intern/rna_ui.cc); the region shows them in that order."""
    ordered: list = []
    for cls in registered_panels:
        after = max((i for i, other in enumerate(ordered) if _order(other) <= _order(cls)), default=-1)
        ordered.insert(after + 1, cls)
    parents = [cls for cls in ordered if not getattr(cls, "bl_parent_id", "")]
    return [label for parent in parents for label in
            [parent.bl_label] + [f"{parent.bl_label} › {child.bl_label}" for child in ordered
                                 if getattr(child, "bl_parent_id", "") == parent.__name__]]


s.check("broken_file", lambda: enable_with_a_broken_file("import no_such_library_anywhere\n"))
s.check("no_classes", lambda: enable_with_a_broken_file("ENGINES = ('broken',)\n"))


def enable_with_a_file_that_fails_to_register(text: str) -> dict:
    """An ops_zzz.py (registered last: after every other engine's file) whose register() raises, or one of whose
    CLASSES Blender refuses: the add-on was left registered up to it (Blender unregisters nothing when an add-on's
    register() raises), and the next enabling, the file removed, failed ('already registered') until Blender was
    restarted. Written over the one before: its new text is read (before, the old one was still imported)."""
    return {"said": enable_with_file("ops_zzz.py", text), "leftovers": leftovers()}


s.check("register_raises", lambda: enable_with_a_file_that_fails_to_register(REGISTER_RAISES))
s.check("class_fails", lambda: enable_with_a_file_that_fails_to_register(CLASS_FAILS))
registered_panels.clear()
s.check("enabled_again", lambda: sorted(bpy.ops.preferences.addon_enable(module=ADDON_MODULE)))  # the file removed
s.check("sidebar_alone", sidebar)  # the add-on as shipped
bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
(folder / "ops_tiny.py").write_text(TINY)
registered_panels.clear()
bpy.ops.preferences.addon_enable(module=ADDON_MODULE)


def registered() -> dict:
    return {"operator": "tiny_run" in dir(bpy.ops.handforge), "panel": hasattr(bpy.types, "HANDFORGE_PT_tiny"),
            "property": hasattr(bpy.types.Scene, "handforge_tiny"),
            "transfer_panel": hasattr(bpy.types, "HANDFORGE_PT_transfer")}


def backend_panel() -> list[str]:
    """The Run Job buttons of the Backend panel for a welcome with the tiny, transfer, image, motion and interaction
    engines."""
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    props = bpy.context.window_manager.handforge
    connection.BACKEND.capabilities = {
        "engines": {name: {"available": True, "reason": "", "hint": ""}
                    for name in ("tiny", "transfer", "image", "motion", "interaction")},
        "kinds": {"tiny.go": {"engine": "tiny"}, "image.transfer": {"engine": "transfer"},
                  "image.generate": {"engine": "image"}, "motion.generate": {"engine": "motion"},
                  "interaction.sample": {"engine": "interaction"}}}
    try:
        connection._sync_capabilities(props)
        calls = recorded_layout(bpy.types.HANDFORGE_PT_backend.draw)
    finally:
        connection.BACKEND.capabilities = None
        connection._sync_capabilities(props)
    return [c[3] for c in calls if c[0] == "set" and c[1] == "handforge.run_job"]


s.check("enabled", registered)
s.check("sidebar", sidebar)
s.check("run_job_buttons", backend_panel)
s.check("ran", lambda: sorted(bpy.ops.handforge.tiny_run()))
bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
s.check("disabled", registered)
s.check("disabled_leftovers", leftovers)
s.finish()
