"""Posing operators: presets, mirror, reset, copy and paste."""

from __future__ import annotations

import json

import numpy as np

import bpy
from bpy.props import BoolProperty, EnumProperty, StringProperty

from . import fingers, hands, presets
from . import pose as pose_conv
from .errors import reports_errors
from .properties import ONE_SHOT, TARGET_ITEMS
from handforge_shared.files import parse_json
from handforge_shared.poses import HandPose, PoseFormatError, check_reach, check_rotations
from handforge_shared.skeleton import other_side

CLIPBOARD_FORMAT = "handforge.pose"
_last_copied = ""


def _target(op, context) -> str:
    return op.sides if op.sides != "SCENE" else context.scene.handforge.target


SIDES_DESCRIPTION = "Which hands to act on (Panel Setting: the hands chosen in the HandForge panel)"
SIDES_WITH_SCENE = [("SCENE", "Panel Setting", "The hands chosen in the HandForge panel")] + TARGET_ITEMS


def sides_option(default: str = "SCENE", description: str = SIDES_DESCRIPTION):
    """An operator's Hands option. One-shot: Blender would give a button's call the last call's value (one
    Redo-panel change to Left, and every later Apply Preset posed the left hand alone while the panel said Both)."""
    return EnumProperty(name="Hands", items=SIDES_WITH_SCENE, default=default, description=description,
                        options=ONE_SHOT)


def posed_all(op, context, posed: list[tuple[object, HandPose]], fingers_only: bool) -> None:
    """Each (rig, pose) of ``posed`` on its rig (``fingers.posed``); where a driver sets what it posed, said as a
    warning of ``op`` (the tool had reported nothing, the finger unmoved)."""
    for obj, pose in posed:
        note = fingers.posed(context.scene, obj, pose, fingers_only)
        if note:
            op.report({"WARNING"}, note)


def fingers_pose(obj, hand_pose) -> HandPose:
    """A pose to write with ``fingers_only``: ``hand_pose`` on the rig's default wrist, which is not written (a
    bone's own rotation does not depend on its parents'). Not the rig's pose read back: a NaN in the very
    finger bone the tool replaces refused it ("hand_pose has a non-finite value"), while Reset fixed it."""
    return hands.DEFAULT_PLACEMENT[obj.handforge.side].replace(hand_pose=hand_pose)


class HANDFORGE_OT_apply_preset(bpy.types.Operator):
    """Pose the fingers of the hands with a named pose from the HandForge pose library"""

    bl_idname = "handforge.apply_preset"
    bl_label = "Apply Preset"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    preset: EnumProperty(name="Preset", items=presets.enum_items, description="The named pose to apply")
    sides: sides_option()

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, _target(self, context), edit=True)
        fingers.check_autokeyable(context.scene, found.values())
        posed_all(self, context, [(obj, fingers_pose(obj, presets.hand_pose(self.preset, obj))) for obj in found.values()],
                  fingers_only=True)
        return {"FINISHED"}


class HANDFORGE_OT_mirror_pose(bpy.types.Operator):
    """Give one hand the mirror image of the other hand's pose"""

    bl_idname = "handforge.mirror_pose"
    bl_label = "Mirror Pose"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    direction: EnumProperty(name="Direction", description="Which hand gives its pose to the other", items=[
        ("LEFT_TO_RIGHT", "Left → Right", "Pose the right hand like the left"),
        ("RIGHT_TO_LEFT", "Right → Left", "Pose the left hand like the right")])
    include_placement: BoolProperty(name="Include Placement", default=False,
                                    description="Mirror the wrist's orientation and position too, not only the fingers "
                                                "(in the world, through the giving hand's armature YZ plane)")

    @reports_errors
    def execute(self, context):
        source = "left" if self.direction == "LEFT_TO_RIGHT" else "right"
        found = hands.scene_hands(context.scene, "BOTH", edit=True)
        if len(found) < 2:
            raise ValueError("mirroring needs both hands in the scene: add them with Add Hands")
        src, dst = found[source], found[other_side(source)]
        hands.check_evaluated(context.view_layer, [src])
        hands.check_finite([src])
        hands.check_pose_shown([src])
        fingers.check_autokeyable(context.scene, [dst])
        given = pose_conv.read_pose(src)
        if self.include_placement:
            mirrored = pose_conv.world_mirrored(given, src, dst)
        else:
            mirrored = fingers_pose(dst, given.mirrored().hand_pose)
        posed_all(self, context, [(dst, mirrored)], fingers_only=not self.include_placement)
        return {"FINISHED"}


class HANDFORGE_OT_reset_pose(bpy.types.Operator):
    """Straighten the fingers (the flat hand); optionally put the hands back where Add Hands placed them"""

    bl_idname = "handforge.reset_pose"
    bl_label = "Reset Pose"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    sides: sides_option()
    include_placement: BoolProperty(name="Include Placement", default=False,
                                    description="Also reset the wrist's orientation and position")

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, _target(self, context), edit=True)
        fingers.check_autokeyable(context.scene, found.values())
        # the fingers alone need no reading of the pose (a NaN in a bone made Reset fail on it)
        flat = {side: hands.DEFAULT_PLACEMENT[side] for side in found}
        posed_all(self, context, [(obj, flat[side].replace(hand_pose=flat[side].hand_pose * 0.0))
                                  for side, obj in found.items()], fingers_only=not self.include_placement)
        return {"FINISHED"}


class HANDFORGE_OT_copy_pose(bpy.types.Operator):
    """Copy the pose of the hands to the clipboard (as MANO parameters in JSON)"""

    bl_idname = "handforge.copy_pose"
    bl_label = "Copy Pose"

    sides: sides_option()

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, _target(self, context))
        hands.check_evaluated(context.view_layer, found.values())
        hands.check_finite(found.values())
        hands.check_pose_shown(found.values())
        text = json.dumps({"format": CLIPBOARD_FORMAT, "hands": {s: pose_conv.read_pose(o).to_dict() for s, o in found.items()}})
        context.window_manager.clipboard = text
        global _last_copied
        _last_copied = text  # for when the system clipboard is unavailable (e.g. blender -b)
        self.report({"INFO"}, f"copied the {' and '.join(found)} hand pose")
        return {"FINISHED"}


class HANDFORGE_OT_paste_pose(bpy.types.Operator):
    """Pose the hands from a pose on the clipboard; a hand missing there gets the world mirror image of the other"""

    bl_idname = "handforge.paste_pose"
    bl_label = "Paste Pose"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    sides: sides_option()
    fingers_only: BoolProperty(name="Fingers Only", default=False,
                               description="Keep each hand's orientation and position, paste only the fingers")
    text: StringProperty(name="Pose", default="", options={"HIDDEN", "SKIP_SAVE"},
                         description="A copied pose (JSON) to paste instead of the clipboard's (for scripts)")

    @reports_errors
    def execute(self, context):
        try:
            # (parse_json: a clipboard nested 100,000 deep raised RecursionError, not this refusal)
            data = parse_json(self.text or context.window_manager.clipboard or _last_copied)
            ok = isinstance(data, dict) and data.get("format") == CLIPBOARD_FORMAT
        except ValueError:
            ok = False
        if not ok or not isinstance(data.get("hands"), dict):
            raise PoseFormatError("the clipboard holds no HandForge pose: copy one with Copy Pose first")
        try:  # (its own words alone, "hand pose has unknown fields ['junk']", did not say what to do)
            copied = {s: HandPose.from_dict(p) for s, p in data["hands"].items() if s in ("left", "right")}
        except (PoseFormatError, ValueError, TypeError) as exc:
            raise PoseFormatError(f"the copied pose cannot be pasted: {exc}; copy one with Copy Pose") from None
        if not copied:
            raise PoseFormatError("the copied pose has no hands")
        for side, pose in copied.items():  # every hand checked before any is posed (one was, then the paste failed)
            if pose.batch_shape != ():
                raise PoseFormatError(f"the copied {side} hand holds {int(np.prod(pose.batch_shape))} poses, not "
                                      "one: copy a single pose (Copy Pose)")
            # (a finite 1e308 rad posed the bones to NaN, 1e5 rad wrapped, a hand 1e30 m away was pasted)
            try:
                check_rotations(pose, side)
                check_reach(pose, side)
            except PoseFormatError as exc:
                raise PoseFormatError(f"the copied pose cannot be pasted: {exc}") from None
        # a copied hand is pasted as its pose parameters (placed by its rig here); a missing one is mirrored
        # in the world through the copied side's rig here, targeted or not, as Mirror Pose does
        givers = hands.scene_hands(context.scene, "BOTH", required=False)
        takers = hands.scene_hands(context.scene, _target(self, context), edit=True)
        fingers.check_autokeyable(context.scene, takers.values())
        posed = []
        for side, obj in takers.items():
            if side in copied:
                pose = copied[side]
            elif self.fingers_only:
                pose = copied[other_side(side)].mirrored()
            else:  # (with no rig of the copied side here, through this rig's own YZ plane)
                pose = pose_conv.world_mirrored(copied[other_side(side)], givers.get(other_side(side), obj), obj)
            if self.fingers_only:
                pose = fingers_pose(obj, pose.hand_pose)
            posed.append((obj, pose))
        posed_all(self, context, posed, fingers_only=self.fingers_only)
        return {"FINISHED"}


CLASSES = (HANDFORGE_OT_apply_preset, HANDFORGE_OT_mirror_pose, HANDFORGE_OT_reset_pose,
           HANDFORGE_OT_copy_pose, HANDFORGE_OT_paste_pose)
