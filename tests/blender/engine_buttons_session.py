"""Blender session: an engine's own buttons in one add-on file. An ``ops_tiny.py`` written into the installed
extension before it is enabled is registered (operator, panel, property), its engine gets no Run Job buttons
in the Backend panel, and disabling the add-on takes it all away again."""

from __future__ import annotations

import importlib
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

s = Session()
assert bpy.ops.extensions.package_install_files(filepath=s.zip, repo="user_default", enable_on_install=False) == {
    "FINISHED"}
folder = Path(bpy.utils.user_resource("EXTENSIONS", path="user_default")) / "handforge"


def enable_with_a_broken_file(text: str) -> dict:
    """An ops_<engine>.py that fails to import (a library its engine needs, not installed), or has no CLASSES: the
    add-on's classes were registered before it was imported, and stayed so when the enabling failed, so the next
    enabling, the file fixed, failed too ('already registered as a subclass') until Blender was restarted."""
    broken = folder / "ops_broken.py"
    broken.write_text(text)
    try:
        bpy.ops.preferences.addon_enable(module=ADDON_MODULE)
        said = ""
    except RuntimeError as exc:
        said = str(exc)
    finally:
        broken.unlink()
    return {"said": said, "left_registered": hasattr(bpy.types, "HANDFORGE_PT_backend")}


s.check("broken_file", lambda: enable_with_a_broken_file("import no_such_library_anywhere\n"))
s.check("no_classes", lambda: enable_with_a_broken_file("ENGINES = ('broken',)\n"))
(folder / "ops_tiny.py").write_text(TINY)
bpy.ops.preferences.addon_enable(module=ADDON_MODULE)


def registered() -> dict:
    return {"operator": "tiny_run" in dir(bpy.ops.handforge), "panel": hasattr(bpy.types, "HANDFORGE_PT_tiny"),
            "property": hasattr(bpy.types.Scene, "handforge_tiny"),
            "transfer_panel": hasattr(bpy.types, "HANDFORGE_PT_transfer")}


def backend_panel() -> list[str]:
    """The Run Job buttons of the Backend panel for a welcome with the tiny, transfer and interaction engines."""
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    props = bpy.context.window_manager.handforge
    connection.BACKEND.capabilities = {
        "engines": {name: {"available": True, "reason": "", "hint": ""}
                    for name in ("tiny", "transfer", "interaction")},
        "kinds": {"tiny.go": {"engine": "tiny"}, "image.transfer": {"engine": "transfer"},
                  "interaction.sample": {"engine": "interaction"}}}
    try:
        connection._sync_capabilities(props)
        calls = recorded_layout(bpy.types.HANDFORGE_PT_backend.draw)
    finally:
        connection.BACKEND.capabilities = None
        connection._sync_capabilities(props)
    return [c[3] for c in calls if c[0] == "set" and c[1] == "handforge.run_job"]


s.check("enabled", registered)
s.check("run_job_buttons", backend_panel)
s.check("ran", lambda: sorted(bpy.ops.handforge.tiny_run()))
bpy.ops.preferences.addon_disable(module=ADDON_MODULE)
s.check("disabled", registered)
s.finish()
