"""The HandForge keying set: I in the viewport (with it active) keys exactly the hands' pose channels.

Per hand: every joint bone's rotation in its rotation mode, the wrist's location, the finger sliders
that are keyed and, on MANO hands, the pose-corrective shape keys (so a keyed pose deforms the same on
playback). Nothing else (no scale, no fingertip marker bones). Keys it overwrites become the artist's. Blender's keying set API: ``bpy.types.KeyingSetInfo``.
"""

from __future__ import annotations

import bpy

from . import fingers, hands, keys, rig
from . import pose as pose_conv
from handforge_shared.skeleton import JOINT_NAMES

KEYING_SET_ID = "HANDFORGE_KS_pose"


def pose_paths(arm_obj) -> list[tuple[object, str, str]]:
    """(ID, data path, group) of every channel the keying set keys on one hand (all array indices)."""
    pbones = arm_obj.pose.bones
    out = [(arm_obj, f'pose.bones["{name}"].{pose_conv.channel_prop(pbones[name].rotation_mode)}', name)
           for name in JOINT_NAMES]
    out.append((arm_obj, f'pose.bones["{JOINT_NAMES[0]}"].location', JOINT_NAMES[0]))
    out += [(arm_obj, keys.slider_path(kind, finger), keys.SLIDER_GROUP)  # keyed finger sliders (see ``iterator``)
            for kind, finger in keys.keyed_sliders(arm_obj)]
    mesh_obj = rig.hand_mesh(arm_obj)
    for kb in rig.corrective_keys(arm_obj) or ():
        out.append((mesh_obj.data.shape_keys, f'key_blocks["{kb.name}"].value', "Pose Correctives"))
    return out


class HANDFORGE_KS_pose(bpy.types.KeyingSetInfo):
    """The pose of the HandForge hands: joint rotations, wrist location and pose correctives"""

    bl_idname = KEYING_SET_ID
    bl_label = "HandForge Pose"

    def poll(ksi, context):
        return bool(hands.scene_hands(context.scene, "BOTH", required=False))

    def iterator(ksi, context, ks):
        # Called as the keys are about to be inserted. Blender keeps an overwritten key's type, so a generated
        # frame fixed and keyed with I stayed GENERATED, for Regenerate to overwrite: the keys at this frame take
        # the key type of this insert first (as Key Pose's are the artist's); and keyed finger sliders are keyed
        # at what the bones show, or their curves took the keyed pose back at the next frame change.
        frame, keytype = context.scene.frame_current_final, context.scene.tool_settings.keyframe_type
        for arm_obj in hands.scene_hands(context.scene, "BOTH", required=False).values():
            fingers.sync_sliders(arm_obj)
            keys.retype_pose_keys(arm_obj, frame, keytype)
            ksi.generate(context, ks, arm_obj)

    def generate(ksi, context, ks, arm_obj):
        # (the correctives are keyed as they are: Blender forbids a keying set to write them, which failed the
        # keying set on MANO hands; the HandForge tools keep them current, Update Correctives after bones rotated by hand)
        for id_block, path, group in pose_paths(arm_obj):
            ks.paths.add(id_block, path, index=-1, group_method="NAMED", group_name=group)


CLASSES = (HANDFORGE_KS_pose,)
