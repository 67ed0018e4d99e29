"""Imported by the scripts that run inside Blender: install and enable the add-on, hand back results.

Only the add-on's operators (``bpy.ops.handforge.*``) and plain bpy are used to drive it; nothing
imports the add-on's internals.
"""

from __future__ import annotations

import io
import json
import sys
import traceback
import contextlib
import importlib
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import bpy
import numpy as np

ADDON_MODULE = "bl_ext.user_default.handforge"


class Session:
    def __init__(self) -> None:
        spec = json.loads(Path(sys.argv[1]).read_text())
        self.zip = spec["zip"]
        self.work = Path(spec["work"])
        self.args: dict[str, Any] = spec["args"]
        self.results: dict[str, Any] = {}
        self.arrays: dict[str, np.ndarray] = {}

    def install(self) -> None:
        """Install the zip as an extension into the (temporary) user repository and enable it."""
        result = bpy.ops.extensions.package_install_files(filepath=self.zip, repo="user_default", enable_on_install=True)
        self.results["install"] = sorted(result)
        self.results["enabled"] = ADDON_MODULE in bpy.context.preferences.addons
        # Blender unpacks the extension's wheel for this platform into its own site-packages
        site = Path(bpy.utils.user_resource("EXTENSIONS", path=".local"))
        self.results["unpacked_wheels"] = sorted(p.name for p in site.glob("lib/python*/site-packages/*.dist-info"))
        import handforge_shared  # the add-on's own copy (from its wheel), not the development install

        self.results["shared_from"] = str(Path(handforge_shared.__file__).resolve())
        self.results["extension_site"] = str(site.resolve())
        for obj in list(bpy.data.objects):  # the startup scene's cube, light and camera
            bpy.data.objects.remove(obj)

    def start_backend(self) -> None:
        """Start the local backend through the add-on's button, on the test's port and command (``args``)."""
        prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
        prefs.address = f"tcp://127.0.0.1:{self.args['port']}"
        prefs.server_command = self.args["command"]
        prefs.connect_timeout = 90.0
        assert bpy.ops.handforge.start_backend() == {"FINISHED"}

    def check(self, name: str, fn) -> None:
        """Run one check; an exception is recorded (with traceback) instead of ending the session."""
        try:
            value = fn()
            if value is not None:
                self.results[name] = value
        except Exception:  # noqa: BLE001 - reported to pytest
            self.results[f"{name}__error"] = traceback.format_exc()

    def finish(self) -> None:
        if self.arrays:
            np.savez(self.work / "arrays.npz", **self.arrays)
        (self.work / "results.json").write_text(json.dumps(self.results, indent=1, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return str(value)


@contextlib.contextmanager
def while_a_job_runs(act):
    """While the block runs, ``act()`` at every pump of the add-on's connection while a job runs: on the main
    thread, from the job's wait loop, as the artist's own edits meanwhile would be (a scene shown instead, a
    rig deleted or renamed)."""
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    pump = connection.pump

    def pump_and_act(*args, **kwargs):
        if jobs.RUNNING:
            act()
        return pump(*args, **kwargs)

    connection.pump = pump_and_act
    try:
        yield
    finally:
        connection.pump = pump


def record_submits(client, kinds: list[str], copies: list[dict] | None = None) -> None:
    """From now on each job ``client`` submits is recorded: its kind in ``kinds`` and, when given, a copy of its
    arrays in ``copies`` (what a button sent to the backend, or that it sent nothing)."""
    submit = client.submit

    def recorded(kind, params=None, arrays=None, **kwargs):
        kinds.append(kind)
        if copies is not None:
            copies.append({k: v.copy() for k, v in (arrays or {}).items()})
        return submit(kind, params, arrays, **kwargs)

    client.submit = recorded


def error_of(call) -> str:
    """The message of the RuntimeError an operator raises (what the user sees), or ''."""
    try:
        call()
    except RuntimeError as exc:
        return str(exc)
    return ""


def in_another_scene(call):
    """``call()``'s result with a new, empty scene shown in the window (a button pressed there), the scene
    shown before put back and the new one removed after."""
    window = bpy.context.window_manager.windows[0]
    shown, other = window.scene, bpy.data.scenes.new("Other Scene")
    window.scene = other
    try:
        return call()
    finally:
        window.scene = shown
        bpy.data.scenes.remove(other)


def printed_by(call) -> tuple[list[str], str]:
    """An operator's result and what it printed (its reports, in blender -b)."""
    out = io.StringIO()
    with redirect_stdout(out):
        result = call()
    return sorted(result), out.getvalue()


def as_user(op, **kwargs) -> tuple[list[str], str]:
    """Call an operator as a button does (the main window's context, one undo push): its result and what it
    printed; a refusal as (["CANCELLED"], its message)."""
    out = io.StringIO()
    with redirect_stdout(out), bpy.context.temp_override(**ui_context()):
        try:
            result = sorted(op("EXEC_DEFAULT", True, **kwargs))
        except RuntimeError as exc:
            return ["CANCELLED"], str(exc)
    return result, out.getvalue()


def ui_context() -> dict[str, Any]:
    """A context override with the main window, for operators that want one (undo). No area:
    an area override crashes Blender 4.5 in background mode when it pushes an undo step."""
    window = bpy.context.window_manager.windows[0]
    return {"window": window, "screen": window.screen}


@contextlib.contextmanager
def as_in_a_window(*module_names: str):
    """The add-on's modules ``module_names`` (e.g. "jobs") see a Blender whose ``bpy.app.background`` is False,
    as Blender's UI runs: a button's job then runs modally, as an artist's does (blender -b would run it to
    its end at once)."""

    class App:
        background = False

        def __getattr__(self, name):
            return getattr(bpy.app, name)

    class Blender:
        app = App()

        def __getattr__(self, name):
            return getattr(bpy, name)

    modules = [importlib.import_module(f"{ADDON_MODULE}.{name}") for name in module_names]
    for module in modules:
        module.bpy = Blender()
    try:
        yield
    finally:
        for module in modules:
            module.bpy = bpy


def init_undo() -> None:
    """Background mode starts with undo off; the first explicit push turns it on."""
    with bpy.context.temp_override(**ui_context()):
        bpy.ops.ed.undo_push(message="HandForge test start")


def add_camera(name: str, location, target=(0.0, 0.0, 0.0)):
    """A camera object at ``location`` looking at ``target`` (image up towards +Z), linked to the scene."""
    from mathutils import Vector

    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    bpy.context.scene.collection.objects.link(cam)
    cam.location = location
    cam.rotation_euler = (Vector(target) - Vector(location)).to_track_quat("-Z", "Y").to_euler()
    return cam


def hand(side: str):
    return getattr(bpy.context.scene.handforge, side)


def channels(side: str) -> np.ndarray:
    """Every pose bone's matrix_basis of ``side``'s rig: the channels as written."""
    return np.array([np.array(pb.matrix_basis) for pb in hand(side).pose.bones])


def evaluated_vertices(arm_obj) -> np.ndarray:
    """The deformed mesh of a hand, in the armature's space (= world space here), (V, 3)."""
    mesh_obj = next(c for c in arm_obj.children if c.type == "MESH")
    depsgraph = bpy.context.evaluated_depsgraph_get()
    ev = mesh_obj.evaluated_get(depsgraph)
    co = np.empty(len(ev.data.vertices) * 3, dtype=np.float32)
    ev.data.vertices.foreach_get("co", co)
    mw = np.array(mesh_obj.matrix_world)
    pts = co.reshape(-1, 3).astype(np.float64)
    return pts @ mw[:3, :3].T + mw[:3, 3]


def pixels_of(image) -> np.ndarray:
    """An image datablock's RGBA pixels, flat float32."""
    pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels


def images_through_a_save(blend: str, marker: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The images holding the property ``marker``, saved to ``blend`` and opened again: their names before and
    after, and per name whether its pixels and ``handforge_*`` properties came back the same; and the reopened
    images by name."""
    saved = {i.name: (pixels_of(i), {k: i[k] for k in i.keys() if k.startswith("handforge_")})
             for i in bpy.data.images if marker in i}
    bpy.ops.wm.save_as_mainfile(filepath=blend)
    bpy.ops.wm.open_mainfile(filepath=blend)
    reopened = {i.name: i for i in bpy.data.images if marker in i}
    back = [n for n in saved if n in reopened]
    return {"saved": sorted(saved), "reopened": sorted(reopened),
            "pixels": {n: bool(np.array_equal(pixels_of(reopened[n]), saved[n][0])) for n in back},
            "properties": {n: {k: reopened[n].get(k) for k in saved[n][1]} == saved[n][1] for n in back}}, reopened


def bone_rotation(arm_obj, name: str) -> np.ndarray:
    """A pose bone's rotation channels as a bone-local matrix (3, 3) (any rotation mode)."""
    pb = arm_obj.pose.bones[name]
    return np.array(pb.matrix_basis)[:3, :3]


_ICONS: set[str] = set()


def recorded_layout(draw, context=None) -> list[list]:
    """Run ``draw(self, context)`` (a panel's, an operator's dialog) on a stand-in for its UILayout that
    records every call, in order: ``[method, args, kwargs]`` (values as JSON-ready text where they are
    not plain), ``["attr", name, value]`` for each attribute set on a layout (``active``, ``enabled``),
    ``["set", operator id, property, value]`` for each property set on an operator button,
    and ``["bad", what]`` for a property that does not exist or an icon Blender does not know."""
    if not _ICONS:
        _ICONS.update(bpy.types.UILayout.bl_rna.functions["operator"].parameters["icon"].enum_items.keys())
    calls: list[list] = []

    def plain(value: Any) -> Any:
        return value if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__

    class Button:  # what layout.operator returns: the button's operator properties
        def __init__(self, idname: str) -> None:
            object.__setattr__(self, "idname", idname)

        def __setattr__(self, name: str, value: Any) -> None:
            calls.append(["set", self.idname, name, plain(value) if not isinstance(value, (set, list)) else
                          sorted(value)])

    class Layout:
        def __setattr__(self, name: str, value: Any) -> None:  # e.g. ``active``: recorded, in order
            calls.append(["attr", name, plain(value)])

        def __getattr__(self, name: str):
            def call(*args, **kwargs):
                icon = kwargs.get("icon", "NONE")
                if isinstance(icon, str) and icon not in _ICONS:
                    calls.append(["bad", f"icon {icon}"])
                if name == "prop" and len(args) > 1 and not hasattr(args[0], args[1]):
                    calls.append(["bad", f"property {args[1]}"])
                calls.append([name, [plain(a) for a in args], {k: plain(v) for k, v in kwargs.items()}])
                return Button(args[0]) if name == "operator" else Layout()
            return call

    draw(type("Owner", (), {"layout": Layout()})(), context or bpy.context)
    return calls
