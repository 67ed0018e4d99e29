"""Pose browser operators: apply, save and delete the artist's own poses (``library``).

Built-in poses are applied by ``handforge.apply_preset``; these act on the user library.
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import fingers, hands, library
from .errors import reports_errors
from .ops_pose import _target, fingers_pose, posed_all, sides_option
from .properties import ONE_SHOT

ONE_SIDE = [("RIGHT", "Right", "The right hand"), ("LEFT", "Left", "The left hand")]


class HANDFORGE_OT_apply_user_pose(bpy.types.Operator):
    """Pose the fingers of the hands with one of your saved poses"""

    bl_idname = "handforge.apply_user_pose"
    bl_label = "Apply User Pose"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    name: StringProperty(name="Name", options=ONE_SHOT, description="The saved pose to apply")
    sides: sides_option()

    @reports_errors
    def execute(self, context):
        angles = library.user_pose(self.name)
        found = hands.scene_hands(context.scene, _target(self, context), edit=True)
        fingers.check_autokeyable(context.scene, found.values())
        posed_all(self, context, [(obj, fingers_pose(obj, library.hand_pose_of(angles, obj))) for obj in found.values()],
                  fingers_only=True)
        return {"FINISHED"}


def _default_side(context) -> str:
    """The hand chosen in the panel; with Both, the right one unless the scene has only a left hand."""
    target = context.scene.handforge.target
    if target == "BOTH":
        return "LEFT" if list(hands.scene_hands(context.scene, required=False)) == ["left"] else "RIGHT"
    return target


class HANDFORGE_OT_save_user_pose(bpy.types.Operator):
    """Save the finger pose of one hand to your user pose library (kept across add-on updates)"""

    bl_idname = "handforge.save_user_pose"
    bl_label = "Save Pose"

    name: StringProperty(name="Name", options=ONE_SHOT, description="The name to save the pose under")
    side: EnumProperty(name="From", items=ONE_SIDE, description="The hand whose finger pose is saved")
    overwrite: BoolProperty(name="Overwrite", default=False, options=ONE_SHOT,  # never without being asked
                            description="Replace a saved pose of the same name")

    def invoke(self, context, event):
        self.side = _default_side(context)
        self.name = self.name or context.scene.handforge.user_pose_name
        return context.window_manager.invoke_props_dialog(self)

    @reports_errors
    def execute(self, context):
        obj = hands.scene_hands(context.scene, self.side)[self.side.lower()]
        hands.check_evaluated(context.view_layer, [obj])
        hands.check_finite([obj])
        hands.check_pose_shown([obj])
        path = library.save_user_pose(self.name, library.finger_angles(obj), overwrite=self.overwrite)
        self.report({"INFO"}, f"saved {library.check_name(self.name)!r} to {path}")
        return {"FINISHED"}


class HANDFORGE_OT_delete_user_pose(bpy.types.Operator):
    """Delete one of your saved poses from the user pose library"""

    bl_idname = "handforge.delete_user_pose"
    bl_label = "Delete User Pose"

    name: StringProperty(name="Name", options=ONE_SHOT, description="The saved pose to delete")

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    @reports_errors
    def execute(self, context):
        self.report({"INFO"}, f"deleted {library.delete_user_pose(self.name)!r}")
        return {"FINISHED"}


CLASSES = (HANDFORGE_OT_apply_user_pose, HANDFORGE_OT_save_user_pose, HANDFORGE_OT_delete_user_pose)
