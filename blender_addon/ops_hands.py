"""Operators that create and reshape hands."""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatVectorProperty, StringProperty

from . import fingers, hands, ops_interaction, rig
from . import pose as pose_conv
from .errors import reports_errors
from .forearm import add_forearm
from .properties import ONE_SHOT, PATH_FIELD, TARGET_ITEMS, absolute_path
from handforge_shared.forearm import ForearmSpec
from handforge_shared.poses import BETAS_LIMIT
from handforge_shared.rig import HandRig
from handforge_shared.skeleton import NUM_BETAS

BETAS_DESCRIPTION = "Shape coefficients (components of the hand model's shape space; 0: the mean hand)"


class HANDFORGE_OT_add_hands(bpy.types.Operator):
    """Add a left and a right hand rig (armature, skinned mesh, shape keys) to the scene"""

    bl_idname = "handforge.add_hands"
    bl_label = "Add Hands"
    bl_options = {"REGISTER", "UNDO"}

    source: EnumProperty(
        name="Source",
        items=[("OPEN", "Open Hand", "The open default hand (CC0), built in: works without a backend"),
               ("FILE", "Rig File", "A HandForge rig file (.npz) exported by the backend (e.g. MANO)")],
        default="OPEN", description="Where the hand rigs come from", options=ONE_SHOT,  # (as its file)
    )
    filepath: StringProperty(name="Rig File", subtype="FILE_PATH", options=PATH_FIELD,
                             description="A rig .npz (handforge.rig): its mirror image gives the other hand")
    filepath_left: StringProperty(name="Left Rig File", subtype="FILE_PATH", options=PATH_FIELD,
                                  description="Optional rig .npz for the left hand (else the mirror of the first)")
    sides: EnumProperty(name="Hands", items=TARGET_ITEMS, default="BOTH", description="Which hands to add")
    forearm: EnumProperty(name="Forearm", default="NONE", description="An optional forearm that follows the wrist",
                          items=[("NONE", "None", "The bare hand, open at the wrist"),
                                 ("SKIN", "Skin", "A capped forearm continuing the skin (for realistic renders)"),
                                 ("SLEEVE", "Sleeve", "A capped forearm in a sleeve")])

    @reports_errors
    def execute(self, context):
        if self.source == "OPEN":
            rigs = hands.open_hand_rigs()
        else:
            if not self.filepath:
                raise ValueError("choose a rig file (.npz) to build the hands from")
            # (absolute_path: "//rig.npz" of an unsaved .blend read a rig from Blender's working folder, unsaid)
            first = HandRig.load(absolute_path(self.filepath, "rig file"))
            rigs = {first.side: first}
            other = "left" if first.side == "right" else "right"
            if self.filepath_left:
                second = HandRig.load(absolute_path(self.filepath_left, "rig file"))
                if second.side == first.side:
                    raise ValueError(f"both rig files are {first.side} hands: give one left and one right")
                rigs[second.side] = second
            else:
                rigs[other] = first.mirrored()
        left = ""
        if context.mode != "OBJECT":  # left as Blender's Add menu does, and said
            # what would refuse the hands once out of the mode is checked in it: a refusal keeps the artist there
            rig.check_shown(context, rig.hand_collection(context.scene))
            mode = context.object.bl_rna.properties["mode"].enum_items[context.object.mode].name
            names = ", ".join(repr(o.name) for o in (context.objects_in_mode or [context.object]))
            left = f"; left {mode} of {names} first (its changes kept)"
            bpy.ops.object.mode_set(mode="OBJECT")
        wanted = hands.TARGET_SIDES[self.sides]
        made, beside = hands.add_hands(context, {s: r for s, r in rigs.items() if s in wanted})
        for side, obj in made.items():
            fingers.sync_sliders(obj)
            if self.forearm != "NONE":
                add_forearm(context, obj, rigs[side], ForearmSpec(style=self.forearm.lower()))
        self.report({"INFO"}, f"added {' and '.join(made)} hand ({next(iter(rigs.values())).hand_model} model){beside}"
                              f"{left}")
        scale = context.scene.unit_settings.scale_length
        if abs(scale - 1.0) > 1e-9:  # the hands, the backend and the labels all count 1 unit as 1 m
            self.report({"WARNING"}, f"this scene's Unit Scale is {scale:g}: HandForge works in metres, 1 Blender "
                                     f"unit each, so the hands measure {scale:g} times their true size here; set "
                                     "Scene Properties > Units > Unit Scale to 1")
        return {"FINISHED"}


class HANDFORGE_OT_set_shape(bpy.types.Operator):
    """Change the shape of the hands (shape keys and skeleton), keeping the pose shown and those of every keyed frame"""

    bl_idname = "handforge.set_shape"
    bl_label = "Set Shape"
    bl_options = {"REGISTER", "UNDO"}

    betas: FloatVectorProperty(name="Shape", size=NUM_BETAS, default=(0.0,) * NUM_BETAS, soft_min=-3.0, soft_max=3.0,
                               min=-BETAS_LIMIT, max=BETAS_LIMIT, description=BETAS_DESCRIPTION)
    sides: EnumProperty(name="Hands", items=TARGET_ITEMS, default="BOTH", description="Which hands to reshape")

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    @reports_errors
    def execute(self, context):
        targets = hands.scene_hands(context.scene, self.sides, edit=True)
        ops_interaction.check_not_browsed(context, targets.values(), "Set Shape")
        for obj in targets.values():  # every hand checked before any is changed
            rig.check_reshapable(context, obj)
        hands.check_finite(targets.values())  # (its pose is kept: read first)
        for obj in targets.values():
            hands.set_shape(context, obj, np.array(self.betas))
        return {"FINISHED"}

    @reports_errors
    def invoke(self, context, event):
        targets = hands.scene_hands(context.scene, self.sides, required=False)
        ops_interaction.check_not_browsed(context, targets.values(), "Set Shape")  # (before its dialog)
        if targets:
            self.betas = next(iter(targets.values())).handforge.betas
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "sides")
        col = layout.column(align=True)
        for i in range(NUM_BETAS):
            col.prop(self, "betas", index=i, text=f"Shape {i + 1}" + (" (overall)" if i == 0 else ""))


def _lost_correctives(side: str, obj) -> str:
    """Why a MANO hand has no pose correctives to update: its mesh or the mesh's keys are gone."""
    if rig.hand_mesh(obj) is None:
        return (f"the {side} hand {obj.name!r} has no hand mesh, which holds its pose correctives: give it back its "
                "mesh (for a library override, override the hand's mesh with it: select both, Object > Library "
                "Override > Make) or add the hands again with Add Hands")
    return (f"the mesh of the {side} hand {obj.name!r} has lost its pose-corrective shape keys: add the hands again "
            "with Add Hands")


class HANDFORGE_OT_update_correctives(bpy.types.Operator):
    """Recompute the MANO pose-corrective shape keys from the current pose (after posing bones by hand)"""

    bl_idname = "handforge.update_correctives"
    bl_label = "Update Correctives"
    bl_options = {"REGISTER", "UNDO"}

    poll = classmethod(hands.poll_nothing_in_edit_mode)  # greyed while anything is in Edit Mode (reason shown)

    @reports_errors
    def execute(self, context):
        found = hands.scene_hands(context.scene, edit=True)
        with_correctives = {s: o for s, o in found.items() if rig.corrective_keys(o)}
        # a MANO hand without them has lost its mesh (a library override of the armature alone) or its keys
        lacking = [_lost_correctives(s, o) for s, o in found.items()
                   if s not in with_correctives and o.handforge.hand_model == "mano"]
        if lacking and not with_correctives:
            raise ValueError("; ".join(lacking))
        for why in lacking:
            self.report({"WARNING"}, why)
        if not with_correctives:
            models = sorted({o.handforge.hand_model for o in found.values()})
            self.report({"INFO"}, f"nothing to update: the {' and '.join(found)} hand ({', '.join(models)} model) has "
                                  "no pose correctives (MANO hands have them; the open hand does not)")
            return {"CANCELLED"}
        for obj in with_correctives.values():
            pose_conv.update_correctives(obj)
        self.report({"INFO"}, f"updated the pose correctives of the {' and '.join(with_correctives)} hand")
        return {"FINISHED"}


CLASSES = (HANDFORGE_OT_add_hands, HANDFORGE_OT_set_shape, HANDFORGE_OT_update_correctives)
