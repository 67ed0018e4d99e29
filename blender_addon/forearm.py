"""A render forearm on a hand rig: ``handforge_shared.forearm``'s tube, rigid with the wrist bone.

The tube is built on the rest hand and weighted fully to the wrist bone; the hand's wrist opening
is skinned to the wrist too (weights ≥ 0.99), so the two stay joined in any pose. It is its own
mesh object (``obj["handforge_forearm"]``), so renders can mask it apart from the hand or with it.
"""

from __future__ import annotations

import bpy

from . import rig as rig_build
from handforge_shared.forearm import ForearmSpec, forearm_mesh
from handforge_shared.rig import HandRig
from handforge_shared.skeleton import JOINT_NAMES


def add_forearm(context, arm_obj, rig: HandRig, spec: ForearmSpec = ForearmSpec()) -> bpy.types.Object:
    verts, faces = forearm_mesh(rig, rig.rest_vertices, rig.rest_joints, spec)
    name = f"{arm_obj.name} Forearm"
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(rig_build._to_blender(verts).tolist(), [], faces.tolist())
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    (arm_obj.users_collection[0] if arm_obj.users_collection else context.scene.collection).objects.link(obj)
    obj.parent = arm_obj
    obj["handforge_forearm"] = spec.style
    group = obj.vertex_groups.new(name=JOINT_NAMES[0])
    group.add(list(range(len(verts))), 1.0, "REPLACE")
    mod = obj.modifiers.new("HandForge Armature", "ARMATURE")
    mod.object = arm_obj
    return obj


__all__ = ["add_forearm"]
