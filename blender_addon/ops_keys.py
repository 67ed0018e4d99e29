"""Keyframing operators: key the pose, import and export motion clips (.npz)."""

from __future__ import annotations

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty
from bpy_extras.io_utils import ExportHelper, ImportHelper

from . import hands, keys
from .errors import reports_errors
from .ops_pose import SIDES_WITH_SCENE, _target
from handforge_shared.poses import MotionClip


class HANDFORGE_OT_key_pose(bpy.types.Operator):
    """Insert keyframes of the current pose of the hands at the current frame"""

    bl_idname = "handforge.key_pose"
    bl_label = "Key Pose"
    bl_options = {"REGISTER", "UNDO"}

    sides: EnumProperty(name="Hands", items=SIDES_WITH_SCENE, default="SCENE")

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, _target(self, context))
        frame = context.scene.frame_current
        total = sum(keys.key_pose(obj, frame) for obj in found.values())
        self.report({"INFO"}, f"keyed {total} channels at frame {frame}")
        return {"FINISHED"}


class HANDFORGE_OT_import_motion(bpy.types.Operator, ImportHelper):
    """Import a HandForge motion clip (.npz) onto the hands as generated keyframes (your own keys stay)"""

    bl_idname = "handforge.import_motion"
    bl_label = "Import Motion"
    bl_options = {"REGISTER", "UNDO"}

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    frame_start: IntProperty(name="Start Frame", default=-1, description="Where the clip's first frame goes (-1: the current frame)")

    @reports_errors
    def execute(self, context):
        clip = MotionClip.load(bpy.path.abspath(self.filepath))
        start = context.scene.frame_current if self.frame_start < 0 else self.frame_start
        summary = keys.import_clip(context, clip, hands.scene_hands(context.scene, "BOTH"), start)
        for warning in summary["warnings"]:
            self.report({"WARNING"}, warning)
        self.report({"INFO"}, f"imported {clip.num_frames} frames ({summary['keys']} keys) at frames "
                              f"{summary['frame_start']:g}-{summary['frame_end']:g}")
        return {"FINISHED"}


class HANDFORGE_OT_export_motion(bpy.types.Operator, ExportHelper):
    """Export the animation of the hands over a frame range as a HandForge motion clip (.npz)"""

    bl_idname = "handforge.export_motion"
    bl_label = "Export Motion"

    filename_ext = ".npz"
    filter_glob: StringProperty(default="*.npz", options={"HIDDEN"})
    frame_start: IntProperty(name="Start", default=-1, description="First frame (-1: the scene's start)")
    frame_end: IntProperty(name="End", default=-1, description="Last frame (-1: the scene's end)")
    sides: EnumProperty(name="Hands", items=SIDES_WITH_SCENE, default="BOTH")

    @reports_errors
    def execute(self, context):
        scene = context.scene
        start = scene.frame_start if self.frame_start < 0 else self.frame_start
        end = scene.frame_end if self.frame_end < 0 else self.frame_end
        clip = keys.export_clip(context, hands.scene_hands(scene, _target(self, context)), start, end)
        path = clip.save(bpy.path.abspath(self.filepath))
        self.report({"INFO"}, f"wrote {clip.num_frames} frames to {path}")
        return {"FINISHED"}


CLASSES = (HANDFORGE_OT_key_pose, HANDFORGE_OT_import_motion, HANDFORGE_OT_export_motion)
