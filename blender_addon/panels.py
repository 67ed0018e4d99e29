"""The sidebar tab *HandForge* (3D viewport)."""

from __future__ import annotations

import textwrap

import bpy

from . import hands, job_previews, keys, library
from .presets import label
from handforge_shared import pose_library
from handforge_shared.protocol import sentence
from handforge_shared.skeleton import FINGERS, JOINT_NAMES


class _Panel:
    """A panel of the sidebar's HandForge tab. Blender orders a region's panels by ``bl_order``, then as registered
    (rna_Panel_register, source/blender/makesrna/intern/rna_ui.cc): the tab's top panels (``TOP``: Hands, Pose,
    Animation, and Generate Image, whose file is registered after the others) at Blender's default, so that the tab
    keeps its place among other add-ons' tabs (ordered by their first panel); the rest (Backend, Jobs, then each
    engine's own panel as its file is found) below them."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "HandForge"
    bl_order = 1


TOP = 0  # the bl_order of a panel above the Backend panel


class HANDFORGE_MT_presets(bpy.types.Menu):
    """Named poses of the HandForge pose library, one column per category"""

    bl_idname = "HANDFORGE_MT_presets"
    bl_label = "Presets"

    def draw(self, context):
        row = self.layout.row()
        for category in pose_library.categories():
            col = row.column()
            col.label(text=category.capitalize())
            for name in pose_library.names(category):
                col.operator("handforge.apply_preset", text=label(name)).preset = name


class HANDFORGE_PT_hands(_Panel, bpy.types.Panel):
    bl_label = "Hands"
    bl_order = TOP

    def draw(self, context):
        layout = self.layout
        props = context.scene.handforge
        layout.operator("handforge.add_hands", icon="VIEW_PAN")
        col = layout.column(align=True)
        col.prop(props, "left")
        col.prop(props, "right")
        row = layout.row(align=True)
        row.operator("handforge.set_shape", icon="SHAPEKEY_DATA")
        row.operator("handforge.update_correctives", text="", icon="FILE_REFRESH")
        found = hands.scene_hands(context.scene, "BOTH", required=False)
        if found:
            row = layout.row(align=True)
            for side, obj in found.items():
                row.prop(obj.handforge, "use_limits", text=f"Limits {side.capitalize()}", toggle=True)


class HANDFORGE_PT_pose(_Panel, bpy.types.Panel):
    bl_label = "Pose"
    bl_order = TOP

    def draw(self, context):
        layout = self.layout
        props = context.scene.handforge
        layout.row().prop(props, "target", expand=True)
        layout.menu("HANDFORGE_MT_presets", icon="PRESET")
        row = layout.row(align=True)
        row.operator("handforge.mirror_pose", text="L → R").direction = "LEFT_TO_RIGHT"
        row.operator("handforge.mirror_pose", text="R → L").direction = "RIGHT_TO_LEFT"
        row = layout.row(align=True)
        row.operator("handforge.reset_pose", icon="LOOP_BACK")
        row.operator("handforge.copy_pose", text="", icon="COPYDOWN")
        row.operator("handforge.paste_pose", text="", icon="PASTEDOWN")
        found = hands.scene_hands(context.scene, props.target, required=False)
        for side in hands.TARGET_SIDES[props.target]:  # a chosen rig left out for a lost joint: said, not just gone
            chosen = getattr(props, side)
            lost = (side not in found and chosen is not None and chosen.name in context.scene.objects
                    and chosen.type == "ARMATURE" and chosen.handforge.is_hand and hands.lost_joints(side, chosen))
            if lost:
                _wrapped(layout.box(), sentence(lost), icon="ERROR")
        for side, obj in found.items():
            box = layout.box()
            box.label(text=f"{side.capitalize()} hand: curl / spread")
            why = hands.in_edit_mode(obj)
            if why:  # a slider moved nothing there (the armature) or could not be undone (the mesh)
                box.enabled = False
                box.label(text=sentence(why), icon="INFO")
            driven = keys.driven_note(side, obj, range(1, len(JOINT_NAMES)), "what the sliders and pose tools set")
            if driven:  # (a slider moved nothing there, unsaid)
                _wrapped(box, sentence(driven), icon="DRIVER")
            for finger in FINGERS:
                row = box.row(align=True)
                row.prop(obj.handforge, f"curl_{finger}")
                row.prop(obj.handforge, f"spread_{finger}", text="")


class HANDFORGE_PT_pose_library(_Panel, bpy.types.Panel):
    """Thumbnails of the library poses and your own, applied to the hands chosen above (Both, Left or Right)"""

    bl_label = "Pose Library"
    bl_parent_id = "HANDFORGE_PT_pose"

    def draw(self, context):
        layout = self.layout
        props = context.scene.handforge
        layout.prop(props, "pose_search", text="", icon="VIEWZOOM")
        grid = layout.grid_flow(row_major=True, columns=0, even_columns=True, align=False)
        for name in library.builtin_names(props.pose_search):
            cell = grid.column(align=True)
            cell.template_icon(icon_value=library.thumbnail_icon(name), scale=4.0)
            cell.operator("handforge.apply_preset", text=label(name)).preset = name
        box = layout.box()
        box.label(text="Your poses", icon="USER")
        try:
            mine = library.user_names(props.pose_search)
        except ValueError as exc:  # an unreadable user library: say so, the built-in poses still work
            _wrapped(box, str(exc), icon="ERROR")
            mine = []
        for name in mine:
            row = box.row(align=True)
            row.operator("handforge.apply_user_pose", text=name, icon="ARMATURE_DATA").name = name
            row.operator("handforge.delete_user_pose", text="", icon="X").name = name
        row = box.row(align=True)
        row.prop(props, "user_pose_name", text="")
        row.operator("handforge.save_user_pose", icon="ADD").name = props.user_pose_name


class HANDFORGE_PT_animation(_Panel, bpy.types.Panel):
    bl_label = "Animation"
    bl_order = TOP

    def draw(self, context):
        layout = self.layout
        layout.operator("handforge.key_pose", icon="KEY_HLT")
        row = layout.row(align=True)
        row.operator("handforge.import_motion", icon="IMPORT")
        row.operator("handforge.export_motion", icon="EXPORT")
        layout.operator("handforge.export_renders", icon="RENDER_STILL")
        col = layout.column(align=True)
        col.label(text="Generated keys")
        row = col.row(align=True)
        row.operator("handforge.select_generated_keys", text="Select", icon="RESTRICT_SELECT_OFF")
        row.operator("handforge.delete_generated_keys", text="Delete", icon="TRASH")
        row.operator("handforge.make_artist_keys", text="Make Mine", icon="KEYTYPE_KEYFRAME_VEC")


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 42) -> None:
    """``text`` as labels of at most ``width`` characters; its own line breaks (config snippets) kept."""
    lines = [piece for paragraph in text.splitlines() for piece in textwrap.wrap(paragraph, width, break_long_words=False,
                                                                              break_on_hyphens=False) or [""]]
    for i, line in enumerate(lines or [""]):
        layout.label(text=line, icon=icon if i == 0 else "BLANK1")


# Engines whose kinds have their buttons elsewhere in the add-on (Add Hands, Export Renders) or are only for diagnostics
_HIDDEN_ENGINES = {"builtin", "hands", "export"}
# engines with buttons of their own in an ops_<engine>.py (its ENGINES, added as the add-on registers it)
OWN_BUTTONS: set[str] = set()


class HANDFORGE_PT_backend(_Panel, bpy.types.Panel):
    bl_label = "Backend"

    def draw(self, context):
        layout = self.layout
        props = context.window_manager.handforge
        _wrapped(layout.box(), props.status, icon="LINKED" if props.connected else "UNLINKED")
        row = layout.row(align=True)
        row.operator("handforge.start_backend", icon="PLAY")
        row.operator("handforge.connect", icon="URL")
        row.operator("handforge.stop_backend", text="", icon="CANCEL")
        if not props.connected and not props.kinds:
            return
        # a local backend that exited keeps its last capabilities on show, greyed out (the status says why)
        layout = layout.column()
        layout.enabled = props.connected
        col = layout.column(align=True)
        col.label(text="Hand models")
        for model in props.hand_models:
            row = col.row(align=True)
            row.enabled = model.available and props.connected
            op = row.operator("handforge.backend_hands", text=f"Add {model.name} hands",
                              icon="CHECKMARK" if model.available else "ERROR")
            op.model = model.name
        layout.operator("handforge.check_backend", icon="MOD_MESHDEFORM")
        for engine in props.engines:
            kinds = [kind.name for kind in props.kinds if kind.engine == engine.name]
            # no kinds: an image engine, said in the Image panel
            if engine.name in _HIDDEN_ENGINES or engine.name in OWN_BUTTONS or not kinds:
                continue
            box = layout.box()
            box.label(text=engine.name.capitalize(), icon="CHECKMARK" if engine.available else "ERROR")
            if engine.reason:  # why it cannot run, or what it lacks (a note)
                _wrapped(box, engine.reason, icon="NONE" if not engine.available else "INFO")
            for kind in kinds:
                row = box.row()
                row.enabled = engine.available
                row.operator("handforge.run_job", text=kind).kind = kind


class HANDFORGE_PT_jobs(_Panel, bpy.types.Panel):
    bl_label = "Jobs"

    @classmethod
    def poll(cls, context):
        return len(context.window_manager.handforge.jobs) > 0

    def draw(self, context):
        for job in context.window_manager.handforge.jobs:
            row = self.layout.row(align=True)
            row.progress(factor=job.fraction, type="BAR", text=f"{job.label}: {job.message}")
            row.operator("handforge.cancel_job", text="", icon="CANCEL").job_id = job.job_id
            preview = job_previews.icon(job.job_id)  # an image engine's latest step, while it runs
            if preview:
                self.layout.template_icon(icon_value=preview, scale=8.0)


CLASSES = (HANDFORGE_MT_presets, HANDFORGE_PT_hands, HANDFORGE_PT_pose, HANDFORGE_PT_animation,
           HANDFORGE_PT_backend, HANDFORGE_PT_jobs)
CLASSES += (HANDFORGE_PT_pose_library,)


def _engine_note(layout, context, name: str) -> None:
    """What the connected backend's engine ``name`` lacks while it runs (e.g. its learned model: a simpler
    engine answers instead), said where its buttons are, before they are pressed."""
    found = next((e for e in context.window_manager.handforge.engines if e.name == name), None)
    if found is not None and found.available and found.reason:
        _wrapped(layout.box(), found.reason, icon="INFO")

