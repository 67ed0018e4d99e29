"""Build a hand rig in the scene from a ``HandRig``: armature, skinned mesh, shape keys, widgets.

Everything is in Blender's frame (Z-up, metres): model points p become ``MODEL_TO_BLENDER @ p``.
Bone k's rest matrix is M·F_k with F_k the joint's anatomical frame, so bone Y runs along the
finger and local X is the flexion axis (curling = rotating about X; see ``pose``). The rig data
needed later (rest joints and their shape directions, for shape changes) is stored on the
armature datablock, so saved files work without the add-on's assets. Posing is ``pose``'s job
(which imports this module, never the other way round).
"""

from __future__ import annotations

import bpy
import numpy as np

from handforge_shared import anatomy
from handforge_shared.rig import HandRig, anatomical_frames
from handforge_shared.skeleton import (
    FINGER_JOINTS,
    FINGERS,
    JOINT_NAMES,
    JOINT_PARENTS,
    MODEL_TO_BLENDER,
    NUM_BETAS,
    NUM_JOINTS,
    joint_children,
)

M = MODEL_TO_BLENDER
COLLECTION_NAME = "HandForge"
WIDGET_COLLECTION_NAME = "HandForge Widgets"
TIP_NAMES = tuple(f"{f}4" for f in FINGERS)  # fingertip marker bones, thumb..pinky
LIMIT_CONSTRAINT = "HandForge Limit"
# Bone colour sets per finger (Blender's theme palettes), the wrist gets its own.
FINGER_PALETTE = {"thumb": "THEME01", "index": "THEME09", "middle": "THEME03", "ring": "THEME04", "pinky": "THEME06"}
WRIST_PALETTE = "THEME02"
SKIN_COLOUR = (0.80, 0.57, 0.47, 1.0)
BETA_KEY = "beta_{:d}"
CORRECTIVE_KEY = "pose_{:02d}_{:d}{:d}"  # joint, row, column of (R − I)
# Finger bones rotate in the anatomical Euler mode (x = flexion); the wrist, free in 3D, as a quaternion.
FINGER_ROTATION_MODE = anatomy.BLENDER_EULER_MODE
WRIST_ROTATION_MODE = "QUATERNION"


class RigBuildError(RuntimeError):
    pass


def _finger_of(joint: int) -> str | None:
    for finger, joints in FINGER_JOINTS.items():
        if joint in joints:
            return finger
    return None


def _to_blender(points: np.ndarray) -> np.ndarray:
    return np.asarray(points, dtype=np.float64) @ M.T


def hand_collection(scene) -> bpy.types.Collection:
    """This scene's HandForge collection, made and linked to it when it has none. One per scene: the
    collection of another scene linked here would bring that scene's hands along."""
    for coll in scene.collection.children:
        # (one linked from another file, or its library override, takes no new objects: Add Hands failed on an
        # override's with a RuntimeError; the hands go into a collection of this file)
        if ((coll.get("handforge_hands") or coll.name == COLLECTION_NAME) and coll.library is None
                and coll.override_library is None):
            return coll
    coll = bpy.data.collections.new(COLLECTION_NAME)  # "HandForge.001" when another scene has "HandForge"
    coll["handforge_hands"] = True
    scene.collection.children.link(coll)
    return coll


# ---------------------------------------------------------------------- widgets
def _widget(scene, name: str, verts: list, edges: list) -> bpy.types.Object:
    obj = bpy.data.objects.get(name)
    if obj is not None and obj.type == "MESH":
        return obj
    coll = next((c for c in bpy.data.collections if c.name == WIDGET_COLLECTION_NAME and c.library is None), None)
    if coll is None:
        coll = bpy.data.collections.new(WIDGET_COLLECTION_NAME)
        hand_collection(scene).children.link(coll)
        coll.hide_viewport = True
        coll.hide_render = True
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(verts, edges, [])
    obj = bpy.data.objects.new(name, mesh)
    coll.objects.link(obj)
    return obj


def _ring_widget(scene) -> bpy.types.Object:
    """A ring around the bone's middle (scaled by bone length): click it to rotate a joint."""
    n = 16
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    verts = [(0.3 * np.cos(a), 0.5, 0.3 * np.sin(a)) for a in t]
    return _widget(scene, "WGT_handforge_ring", verts, [(i, (i + 1) % n) for i in range(n)])


def _tip_widget(scene) -> bpy.types.Object:
    """Three small circles: a sphere-like marker at the fingertip."""
    n = 12
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    verts, edges = [], []
    for plane in range(3):
        base = len(verts)
        for a in t:
            p = [0.0, 0.0, 0.0]
            p[plane], p[(plane + 1) % 3] = 0.25 * np.cos(a), 0.25 * np.sin(a)
            verts.append(tuple(p))
        edges += [(base + i, base + (i + 1) % n) for i in range(n)]
    return _widget(scene, "WGT_handforge_tip", verts, edges)


# ---------------------------------------------------------------------- building
def _edit_mode(context, obj):
    """Enter edit mode on ``obj`` (needed for edit bones); returns a callable that leaves it."""
    view_layer = context.view_layer
    previous = view_layer.objects.active
    previous_mode = previous.mode if previous is not None else "OBJECT"
    if context.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")

    def leave():  # back to the object and mode the artist was in (Pose Mode on a hand, Edit Mode on a mesh)
        bpy.ops.object.mode_set(mode="OBJECT")
        if previous is None:  # nothing was active: nothing stays active (not the hand)
            view_layer.objects.active = None
        elif previous.name in view_layer.objects:
            view_layer.objects.active = previous
            if previous_mode != "OBJECT":
                try:
                    bpy.ops.object.mode_set(mode=previous_mode)
                except RuntimeError:  # e.g. the object is hidden now: Object Mode then
                    pass

    return leave


def _extended_joints(rest: np.ndarray, dirs: np.ndarray, betas: np.ndarray | None) -> np.ndarray:
    b = np.zeros(dirs.shape[2])
    if betas is not None:
        b[: min(len(betas), len(b))] = np.asarray(betas, dtype=np.float64)[: len(b)]
    return rest + dirs @ b


def _set_bones(context, arm_obj, extended: np.ndarray, side: str, create: bool) -> None:
    """Create (or move) the 16 joint bones and 5 tip bones to the given (21, 3) rest joints."""
    frames = anatomical_frames(extended, side)
    children = joint_children()
    tip_of = {FINGER_JOINTS[f][2]: 16 + i for i, f in enumerate(FINGERS)}
    leave = _edit_mode(context, arm_obj)
    try:
        ebones = arm_obj.data.edit_bones
        for k, name in enumerate(JOINT_NAMES):
            eb = ebones.new(name) if create else ebones[name]
            end = extended[4] if k == 0 else extended[children[k][0] if children[k] else tip_of[k]]
            length = float(np.linalg.norm(end - extended[k]))
            head = M @ extended[k]
            eb.head = head.tolist()
            eb.tail = (head + length * (M @ frames[k][:, 1])).tolist()
            eb.align_roll((M @ frames[k][:, 2]).tolist())
            if create:
                eb.use_deform = True
                if JOINT_PARENTS[k] >= 0:
                    eb.parent = ebones[JOINT_NAMES[JOINT_PARENTS[k]]]
        for i, finger in enumerate(FINGERS):
            distal = FINGER_JOINTS[finger][2]
            eb = ebones.new(TIP_NAMES[i]) if create else ebones[TIP_NAMES[i]]
            parent = ebones[JOINT_NAMES[distal]]
            head = M @ extended[16 + i]
            eb.head = head.tolist()
            eb.tail = (head + 0.4 * parent.length * (M @ frames[distal][:, 1])).tolist()
            eb.align_roll((M @ frames[distal][:, 2]).tolist())
            if create:
                eb.use_deform = False
                eb.parent = parent
    finally:
        leave()


def _style_bones(scene, arm_obj) -> None:
    ring, tip = _ring_widget(scene), _tip_widget(scene)
    for k, name in enumerate(JOINT_NAMES):
        pb = arm_obj.pose.bones[name]
        finger = _finger_of(k)
        pb.custom_shape = ring
        pb.bone.color.palette = FINGER_PALETTE[finger] if finger else WRIST_PALETTE
        if k == 0:
            pb.rotation_mode = WRIST_ROTATION_MODE
            pb.custom_shape_scale_xyz = (2.2, 1.0, 2.2)
        else:
            pb.rotation_mode = FINGER_ROTATION_MODE
            pb.lock_location = (True, True, True)
        pb.lock_scale = (True, True, True)
    for name, finger in zip(TIP_NAMES, FINGERS):
        pb = arm_obj.pose.bones[name]
        pb.custom_shape = tip
        pb.bone.color.palette = FINGER_PALETTE[finger]
        pb.lock_location = pb.lock_rotation = pb.lock_scale = (True, True, True)
        pb.lock_rotation_w = True


def _build_mesh(name: str, rig: HandRig) -> bpy.types.Mesh:
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(_to_blender(rig.rest_vertices).tolist(), [], np.asarray(rig.faces).tolist())
    mesh.polygons.foreach_set("use_smooth", np.ones(len(mesh.polygons), dtype=bool))
    mesh.update()
    mat = bpy.data.materials.get("HandForge Skin") or bpy.data.materials.new("HandForge Skin")
    mat.diffuse_color = SKIN_COLOUR
    mesh.materials.append(mat)
    return mesh


def _add_vertex_groups(mesh_obj, skin_weights: np.ndarray) -> None:
    for k, name in enumerate(JOINT_NAMES):
        group = mesh_obj.vertex_groups.new(name=name)
        ids = np.flatnonzero(skin_weights[:, k] > 0)
        # vertex_groups.add takes one weight per call: batch the vertices that share a weight.
        values, inverse = np.unique(skin_weights[ids, k].astype(np.float32), return_inverse=True)
        for i, w in enumerate(values):
            group.add(ids[inverse == i].tolist(), float(w), "REPLACE")


def _add_shape_keys(mesh_obj, rig: HandRig) -> None:
    mesh_obj.shape_key_add(name="Basis", from_mix=False)
    base = rig.rest_vertices
    for i in range(rig.num_betas):
        kb = mesh_obj.shape_key_add(name=BETA_KEY.format(i), from_mix=False)
        kb.slider_min, kb.slider_max = -10.0, 10.0
        kb.data.foreach_set("co", _to_blender(base + rig.shape_dirs[:, :, i]).ravel().astype(np.float32))
    if rig.pose_dirs.shape[2]:
        for c in range(rig.pose_dirs.shape[2]):
            joint, elem = divmod(c, 9)
            kb = mesh_obj.shape_key_add(name=CORRECTIVE_KEY.format(joint + 1, *divmod(elem, 3)), from_mix=False)
            kb.slider_min, kb.slider_max = -2.0, 2.0
            kb.data.foreach_set("co", _to_blender(base + rig.pose_dirs[:, :, c]).ravel().astype(np.float32))


def check_shown(context, collection) -> None:
    """Refuse a ``collection`` whose objects the view layer does not show (excluded, or hidden there): a hand
    is built in Edit Mode, which needs it shown. (Asked of an object linked there, as Blender decides it.)"""
    probe = bpy.data.objects.new("HandForge probe", None)
    collection.objects.link(probe)
    try:
        shown = probe.visible_get(view_layer=context.view_layer)
    finally:
        bpy.data.objects.remove(probe)
    if not shown:
        raise RigBuildError(f"the collection {collection.name!r} is excluded from or hidden in the view layer "
                            f"{context.view_layer.name!r}: tick and show it in the Outliner, then add the hands again")


def build_hand(context, rig: HandRig, name: str, collection=None) -> bpy.types.Object:
    """Create one hand (armature + skinned mesh child) from ``rig``; returns the armature object."""
    scene = context.scene
    collection = collection or hand_collection(scene)
    check_shown(context, collection)
    arm = bpy.data.armatures.new(name)
    arm.display_type = "OCTAHEDRAL"
    arm_obj = bpy.data.objects.new(name, arm)
    arm_obj.show_in_front = True
    collection.objects.link(arm_obj)
    made = [arm_obj, arm]
    try:
        _build_hand(context, rig, name, collection, arm_obj, made)
    except BaseException:
        bpy.data.batch_remove(made)  # nothing half-built stays behind
        raise
    return arm_obj


def _build_hand(context, rig: HandRig, name: str, collection, arm_obj, made: list) -> None:
    scene, arm = context.scene, arm_obj.data
    extended_rest = rig.rest_extended_joints(None)
    extended_dirs = np.concatenate([rig.joint_shape_dirs, rig.shape_dirs[rig.tip_vertex_ids]], axis=0)
    # What shape changes need later, kept with the file (ID properties, float64 lists).
    arm["handforge_rest_joints"] = extended_rest.ravel().tolist()
    arm["handforge_joint_shape_dirs"] = extended_dirs.ravel().tolist()
    arm["handforge_num_betas"] = int(rig.num_betas)
    props = arm_obj.handforge
    props.is_hand = True
    props.side = rig.side
    props.hand_model = rig.hand_model
    _set_bones(context, arm_obj, extended_rest, rig.side, create=True)
    _style_bones(scene, arm_obj)

    mesh = _build_mesh(f"{name} Mesh", rig)
    mesh_obj = bpy.data.objects.new(f"{name} Mesh", mesh)
    made[:0] = [mesh_obj, mesh]
    collection.objects.link(mesh_obj)
    mesh_obj.parent = arm_obj
    mod = mesh_obj.modifiers.new("HandForge Armature", "ARMATURE")
    mod.object = arm_obj
    mod.use_deform_preserve_volume = False  # linear blend skinning, like the hand models
    _add_vertex_groups(mesh_obj, np.asarray(rig.skin_weights))
    _add_shape_keys(mesh_obj, rig)
    mesh_obj.handforge.is_hand_mesh = True


def remove_hand(arm_obj) -> None:
    """Remove a hand built by ``build_hand``: its armature, its mesh, and their data."""
    blocks = [arm_obj, arm_obj.data]
    mesh_obj = hand_mesh(arm_obj)
    if mesh_obj is not None:
        blocks += [mesh_obj, mesh_obj.data]
    bpy.data.batch_remove(blocks)


def hand_mesh(arm_obj):
    for child in arm_obj.children:
        if child.type == "MESH" and child.handforge.is_hand_mesh:
            return child
    return None


def forearm_meshes(arm_obj) -> list:
    """The rig's forearms (``forearm.add_forearm``)."""
    return [c for c in arm_obj.children if c.type == "MESH" and "handforge_forearm" in c]


def hand_ids(arm_obj) -> list:
    """What a hand's animation sets values on: the rig and its armature, its hand mesh, the mesh's data and
    corrective shape keys."""
    mesh = hand_mesh(arm_obj)
    ids = [arm_obj, arm_obj.data] + ([mesh, mesh.data, mesh.data.shape_keys] if mesh is not None else [])
    return [i for i in ids if i is not None]


def _stored_joints(arm_obj) -> tuple[np.ndarray, np.ndarray]:
    arm = arm_obj.data
    s = int(arm["handforge_num_betas"])
    rest = np.array(arm["handforge_rest_joints"], dtype=np.float64).reshape(21, 3)
    dirs = np.array(arm["handforge_joint_shape_dirs"], dtype=np.float64).reshape(21, 3, s)
    return rest, dirs


RESHAPE_TOLERANCE_M = 1e-5


def check_reshapable(context, arm_obj) -> None:
    """Raise ``RigBuildError`` (a user error, nothing changed) when ``reshape`` cannot or must not rebuild
    this hand's rest skeleton: hidden (edit mode needs it shown), armature data shared with another
    object (that one's bones would move, not its mesh), or a rest skeleton that no longer is the one
    the hand model gives for its shape (bones moved in Edit Mode, a rotation or scale applied with
    Ctrl-A: rebuilding it from the model would silently undo that and distort the mesh)."""
    name = arm_obj.name
    if not arm_obj.visible_get(view_layer=context.view_layer):
        raise RigBuildError(f"the hand {name!r} is hidden or excluded from the view layer: show it to change its "
                            "shape")
    mesh_obj = hand_mesh(arm_obj)
    actions = [action for action, _ in animation_slots(arm_obj)]  # re-keyed
    linked = [block for block in (arm_obj, arm_obj.data, mesh_obj, mesh_obj and mesh_obj.data, *actions)
              if block is not None and not block.is_editable]
    if linked:
        raise RigBuildError(f"the hand {name!r} is linked from another file ({linked[0].name!r} is not editable here): "
                            "make it local (Object > Relations > Make Local > All) to change its shape")
    shape_keys = mesh_obj.data.shape_keys.key_blocks if mesh_obj is not None and mesh_obj.data.shape_keys else {}
    lost = [BETA_KEY.format(i) for i in range(int(arm_obj.data["handforge_num_betas"]))
            if mesh_obj is not None and BETA_KEY.format(i) not in shape_keys]
    if lost:  # the bones would take the new shape, the mesh not: a posed hand tears
        raise RigBuildError(f"the hand mesh {mesh_obj.name!r} has lost its shape key(s) {', '.join(lost)}: Set Shape "
                            "would move the bones but not the mesh; undo the change that removed them, or add the "
                            "hands again")
    if arm_obj.mode == "EDIT":  # the bones' edits are not in the rest skeleton until Edit Mode is left
        raise RigBuildError(f"the hand {name!r} is in Edit Mode: leave it (Tab) first, to change its shape")
    if arm_obj.data.users > 1:
        raise RigBuildError(f"the hand {name!r} shares its armature with another object (a linked duplicate): "
                            "Object > Relation > Make Single User > Object & Data first, to change its shape")
    shared = _action_sharer(arm_obj)
    if shared is not None:  # its keys are re-keyed for the hand's new rest bones: that one's pose would change
        sharer, action = shared
        raise RigBuildError(f"the hand {name!r} shares its keys (action {action.name!r}, one slot) with "
                            f"{sharer.name!r}, whose pose its new shape would change: give the hand its own (Object > "
                            "Relations > Make Single User > Object Animation) first, to change its shape")
    rest, dirs = _stored_joints(arm_obj)
    expected = _to_blender(_extended_joints(rest, dirs, np.asarray(arm_obj.handforge.betas))[:len(JOINT_NAMES)])
    bones = arm_obj.data.bones
    heads = np.array([bones[joint].head_local for joint in JOINT_NAMES])
    if np.abs(heads - expected).max() > RESHAPE_TOLERANCE_M:
        raise RigBuildError(f"the rest skeleton of {name!r} was changed (bones moved in Edit Mode, or a rotation or "
                            "scale applied with Ctrl-A): Set Shape rebuilds it from the hand model and would undo "
                            "that; undo the change, or add the hands again")


def animation_slots(id_block) -> list:
    """(action, slot) of every action that animates ``id_block``: its active action's and each NLA strip's
    (inside meta strips too), each once. The slot is None before Blender 4.4 (an action is one set of channels)."""
    ad = id_block.animation_data
    if ad is None:
        return []
    pairs = [(ad.action, getattr(ad, "action_slot", None))] if ad.action is not None else []
    strips = [strip for track in ad.nla_tracks for strip in track.strips]
    while strips:
        strip = strips.pop()
        strips.extend(strip.strips)  # a meta strip's own
        if strip.action is not None:
            pairs.append((strip.action, getattr(strip, "action_slot", None)))
    unique = {(action.as_pointer(), _slot_handle(slot)): (action, slot) for action, slot in pairs}
    return list(unique.values())


def _slot_handle(slot):
    return slot.handle if slot is not None else None


def _action_sharer(arm_obj):
    """(another object, the action) where an action of the hand (``animation_slots``) animates that object
    through the same slot (the same channels), or None."""
    mine = {(action.as_pointer(), _slot_handle(slot)): action for action, slot in animation_slots(arm_obj)}
    if not mine:
        return None
    for obj in bpy.data.objects:
        if obj == arm_obj:
            continue
        for action, slot in animation_slots(obj):
            if (action.as_pointer(), _slot_handle(slot)) in mine:
                return obj, action
    return None


def reshape(context, arm_obj, betas) -> None:
    """Change the hand's shape: rest skeleton and shape keys. The bones' channels and keys are left as
    they are, so the poses change with the frames (``hands.set_shape`` keeps them instead)."""
    betas = np.asarray(betas, dtype=np.float64)
    if betas.shape != (NUM_BETAS,) or not np.all(np.isfinite(betas)):
        raise ValueError(f"betas must be {NUM_BETAS} finite numbers")
    check_reshapable(context, arm_obj)
    rest, dirs = _stored_joints(arm_obj)
    _set_bones(context, arm_obj, _extended_joints(rest, dirs, betas), arm_obj.handforge.side, create=False)
    arm_obj.handforge.betas = betas.tolist()
    mesh_obj = hand_mesh(arm_obj)
    if mesh_obj is not None and mesh_obj.data.shape_keys is not None:
        keys = mesh_obj.data.shape_keys.key_blocks
        for i, b in enumerate(betas):
            kb = keys.get(BETA_KEY.format(i))
            if kb is not None:
                kb.value = float(b)
        _refit_forearms(arm_obj, mesh_obj, _extended_joints(rest, dirs, betas)[:NUM_JOINTS])


def _refit_forearms(arm_obj, mesh_obj, joints: np.ndarray) -> None:
    """Rebuild the rig's forearm (``forearm.add_forearm``) on the reshaped rest hand: it continues the wrist
    opening, which the new shape moved (a seam of up to 1 cm opened). One the artist remodelled (another
    vertex count) is left as it is."""
    from handforge_shared.forearm import ForearmSpec, forearm_around

    forearms = forearm_meshes(arm_obj)
    if not forearms:
        return
    mesh = mesh_obj.data
    keys = mesh.shape_keys.key_blocks
    basis = _key_points(keys[0])
    shape_keys = {BETA_KEY.format(i) for i in range(NUM_BETAS)}
    rest = basis + sum((kb.value * (_key_points(kb) - basis) for kb in keys if kb.name in shape_keys),
                       np.zeros_like(basis))
    mesh.calc_loop_triangles()
    faces = np.empty(3 * len(mesh.loop_triangles), np.int32)
    mesh.loop_triangles.foreach_get("vertices", faces)
    for obj in forearms:
        spec = ForearmSpec(style=str(obj["handforge_forearm"]))
        verts, _ = forearm_around(faces.reshape(-1, 3), rest @ M, joints, spec)  # (model space, as built)
        if len(verts) == len(obj.data.vertices):
            obj.data.vertices.foreach_set("co", _to_blender(verts).astype(np.float32).ravel())
            obj.data.update()


def _key_points(kb) -> np.ndarray:
    co = np.empty(3 * len(kb.data), np.float32)
    kb.data.foreach_get("co", co)
    return co.reshape(-1, 3).astype(np.float64)


def corrective_values(world_rotations: np.ndarray) -> np.ndarray:
    """MANO pose-corrective weights vec(R_k − I), k = 1..15, from (..., 16, 3, 3) rotations."""
    r = np.asarray(world_rotations)[..., 1:, :, :] - np.eye(3)
    return r.reshape(*r.shape[:-3], 9 * (NUM_JOINTS - 1))


def corrective_keys(arm_obj) -> list | None:
    """The rig's pose-corrective shape keys in MANO's order, or None if it has none (open hand)."""
    mesh_obj = hand_mesh(arm_obj)
    if mesh_obj is None or mesh_obj.data.shape_keys is None:
        return None
    blocks = mesh_obj.data.shape_keys.key_blocks
    first = blocks.get(CORRECTIVE_KEY.format(1, 0, 0))
    if first is None:
        return None
    return [blocks[CORRECTIVE_KEY.format(j, r, c)] for j in range(1, NUM_JOINTS) for r in range(3) for c in range(3)]


def missing_bones(arm_obj) -> list[str]:
    """The HandForge joints a rig has lost (a bone deleted in edit mode)."""
    return [name for name in JOINT_NAMES if name not in arm_obj.data.bones]


def renamed_bone(arm_obj, name: str) -> str | None:
    """The bone that looks like HandForge's lost joint ``name`` renamed by the artist (none of HandForge's names,
    in that joint's place: the same parent joint, the same child joints), or None."""
    k = JOINT_NAMES.index(name)
    known = set(JOINT_NAMES) | set(TIP_NAMES)
    parent = JOINT_NAMES[JOINT_PARENTS[k]] if JOINT_PARENTS[k] >= 0 else None
    children = {JOINT_NAMES[c] for c in joint_children()[k]}
    for bone in arm_obj.data.bones:
        if bone.name in known or (bone.parent.name if bone.parent else None) != parent:
            continue
        if children & {c.name for c in bone.children} or not children & set(arm_obj.data.bones.keys()):
            return bone.name
    return None


# ---------------------------------------------------------------------- joint limits
def set_limits(arm_obj, enabled: bool) -> None:
    """Add (once) and switch Limit Rotation constraints with the anatomical ranges on or off; only
    HandForge's own constraints are switched."""
    if enabled:
        if missing_bones(arm_obj):
            return  # all or nothing: limits were added up to the lost bone, then a KeyError
        for name, box in anatomy.blender_rotation_limits(arm_obj.handforge.side).items():
            pb = arm_obj.pose.bones[name]
            if pb.constraints.get(LIMIT_CONSTRAINT) is None:
                con = pb.constraints.new("LIMIT_ROTATION")
                con.name = LIMIT_CONSTRAINT
                con.owner_space = "LOCAL"
                con.euler_order = anatomy.BLENDER_EULER_MODE
                con.use_limit_x = con.use_limit_y = con.use_limit_z = True
                for key, value in box.items():
                    setattr(con, key, value)
    for pb in arm_obj.pose.bones:
        con = pb.constraints.get(LIMIT_CONSTRAINT)
        if con is not None:
            con.mute = not enabled
