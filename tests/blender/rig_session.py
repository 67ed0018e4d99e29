"""Blender session: hands, rig correctness, pose conversion round trips, shapes, MANO correctives."""

from __future__ import annotations

import bpy
import numpy as np

from session import Session, evaluated_vertices, hand

s = Session()
s.install()
a = s.args
SIDES = ("left", "right")


def add_open_hands():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    info = {}
    for side in SIDES:
        arm = hand(side)
        mesh = next(c for c in arm.children if c.type == "MESH")
        info[side] = {
            "name": arm.name,
            "bones": [b.name for b in arm.data.bones],
            "deform": [b.name for b in arm.data.bones if b.use_deform],
            "parents": {b.name: (b.parent.name if b.parent else None) for b in arm.data.bones},
            "vertex_groups": [g.name for g in mesh.vertex_groups],
            "shape_keys": [k.name for k in mesh.data.shape_keys.key_blocks],
            "collections": [c.name for c in arm.users_collection],
            "num_vertices": len(mesh.data.vertices),
            "custom_shapes": sum(pb.custom_shape is not None for pb in arm.pose.bones),
            "palettes": sorted({b.color.palette for b in arm.data.bones}),
            "modifier": [m.type for m in mesh.modifiers],
            "rotation_modes": {pb.name: pb.rotation_mode for pb in arm.pose.bones},
        }
        s.arrays[f"rest_matrix_{side}"] = np.array([np.array(b.matrix_local) for b in arm.data.bones])
        s.arrays[f"placed_{side}"] = evaluated_vertices(arm)
    return info


s.check("hands", add_open_hands)


def import_random_clip():
    assert bpy.ops.handforge.import_motion(filepath=a["random_clip"], frame_start=1) == {"FINISHED"}
    for side in SIDES:
        verts = []
        for frame in range(1, a["num_random"] + 1):
            bpy.context.scene.frame_set(frame)
            verts.append(evaluated_vertices(hand(side)))
        s.arrays[f"random_{side}"] = np.stack(verts)
    assert bpy.ops.handforge.export_motion(filepath=a["exported_clip"], frame_start=1,
                                           frame_end=a["num_random"]) == {"FINISHED"}
    return True


s.check("random_clip", import_random_clip)


def flex_each_joint():
    """Rotate each finger bone about its local X only, export, and let pytest read the angles."""
    scene = bpy.context.scene
    for side in SIDES:
        arm = hand(side)
        arm.animation_data_clear()
    scene.frame_set(1)
    bpy.ops.handforge.reset_pose(sides="BOTH")
    names = [b for b in a["finger_joints"]]
    for side in SIDES:
        arm = hand(side)
        for i, name in enumerate(names):
            arm.pose.bones[name].rotation_euler = (a["flex_angle"] * (1 + 0.05 * i), 0.0, 0.0)
    bpy.ops.handforge.export_motion(filepath=a["flex_clip"], frame_start=1, frame_end=1)
    return True


s.check("flex", flex_each_joint)


def shape_change():
    for side in SIDES:
        hand(side).animation_data_clear()
    assert bpy.ops.handforge.paste_pose(text=a["shape_pose"], sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH") == {"FINISHED"}
    for side in SIDES:
        s.arrays[f"shaped_{side}"] = evaluated_vertices(hand(side))
    return [list(hand(side).handforge.betas) for side in SIDES]


s.check("shape", shape_change)


def mano_hands():
    scene = bpy.data.scenes.new("MANO")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands(source="FILE", filepath=a["mano_right"], filepath_left=a["mano_left"]) == {"FINISHED"}
    assert bpy.ops.handforge.import_motion(filepath=a["mano_clip"], frame_start=1) == {"FINISHED"}
    counts = {}
    for side in SIDES:
        verts = []
        for frame in range(1, a["num_mano"] + 1):
            scene.frame_set(frame)
            verts.append(evaluated_vertices(hand(side)))
        s.arrays[f"mano_{side}"] = np.stack(verts)
        mesh = next(c for c in hand(side).children if c.type == "MESH")
        counts[side] = {"model": hand(side).handforge.hand_model, "vertices": len(mesh.data.vertices),
                        "shape_keys": len(mesh.data.shape_keys.key_blocks)}
    return counts


s.check("mano", mano_hands)


def mano_keying_set():
    """The HandForge keying set on MANO hands (I in the viewport with it active): its paths include the
    pose correctives, and it keys them, as the pose shows them."""
    scene = bpy.context.scene  # the MANO scene
    ks = next(k for k in scene.keying_sets_all if k.bl_label == "HandForge Pose")
    ks.refresh()  # what I runs first: the add-on's iterator, for this scene
    return {"paths": len(ks.paths), "correctives": sum(p.data_path.startswith("key_blocks") for p in ks.paths)}


s.check("mano_keying_set", mano_keying_set)


def forearm_hands():
    scene = bpy.data.scenes.new("Forearm")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands(forearm="SKIN") == {"FINISHED"}
    assert bpy.ops.handforge.import_motion(filepath=a["random_clip"], frame_start=1) == {"FINISHED"}

    def shown(prefix):
        scene.frame_set(2)
        depsgraph = bpy.context.evaluated_depsgraph_get()
        for side in SIDES:
            arm = hand(side)
            for child in arm.children:
                ev = child.evaluated_get(depsgraph)
                co = np.empty(len(ev.data.vertices) * 3, dtype=np.float32)
                ev.data.vertices.foreach_get("co", co)
                mw = np.array(child.matrix_world)
                key = "forearm" if "handforge_forearm" in child else "hand"
                s.arrays[f"{prefix}_{key}_{side}"] = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]

    shown("forearm_scene")
    # a new shape moves the wrist opening: the forearm follows it (a seam of up to 1 cm opened)
    assert bpy.ops.handforge.set_shape(betas=[2.5, 2.5] + [0.0] * 8, sides="BOTH") == {"FINISHED"}
    shown("forearm_reshaped")
    return True


s.check("forearm", forearm_hands)


def joint_rotations(arm) -> np.ndarray:
    """(16, 3, 3) each joint's rotation relative to its parent, world-aligned (Blender axes), from the evaluated
    bones: a bone's pose matrix is its joint's global rotation G times its rest matrix, G_parentᵀ·G is the
    joint's own rotation. Independent of the rest skeleton, so comparable across shapes."""
    pbones, bones = arm.pose.bones, arm.data.bones
    glob = {n: np.array(pbones[n].matrix)[:3, :3] @ np.array(bones[n].matrix_local)[:3, :3].T for n in a["joints"]}
    return np.array([glob[n] if bones[n].parent is None else glob[bones[n].parent.name].T @ glob[n]
                     for n in a["joints"]])


def wrist_offset(arm) -> np.ndarray:
    """Where the wrist is posed, from its rest head (armature space): the translation, whatever the shape."""
    return np.array(arm.pose.bones["wrist"].head) - np.array(arm.data.bones["wrist"].head_local)


def key_snapshot(arm) -> dict:
    """Every key of the armature's action: frame, value, key type, interpolation, handle types."""
    ad = arm.animation_data
    bag = ad.action.layers[0].strips[0].channelbag(ad.action_slot)
    return {f"{fc.data_path}|{fc.array_index}": [[kp.co[0], kp.co[1], kp.type, kp.interpolation, kp.handle_left_type,
                                                  kp.handle_right_type] for kp in fc.keyframe_points]
            for fc in bag.fcurves}


def shape_with_keys():
    """Set Shape on keyed hands keeps the pose of every keyed frame (before, bone channels relative to the
    old rest bones made other poses there), keeps the keys' frames and kinds, is one undo step, and a
    refusal changes nothing. A long action is re-keyed without visiting its frames."""

    from session import error_of, init_undo, ui_context

    scene = bpy.data.scenes.new("Keyed")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right, left = hand("right"), hand("left")
    right.pose.bones["wrist"].rotation_mode = "XYZ"  # every rotation mode's channels are re-keyed
    right.pose.bones["ring1"].rotation_mode = "AXIS_ANGLE"
    frames = a["keyed_frames"]
    for frame, text in zip(frames, a["keyed_poses"]):
        scene.frame_set(frame)
        assert bpy.ops.handforge.paste_pose(text=text, sides="BOTH") == {"FINISHED"}
        assert bpy.ops.handforge.key_pose(sides="BOTH") == {"FINISHED"}
    right.keyframe_insert("location", frame=frames[1])  # the object's own keys are no pose: left alone
    bag = right.animation_data.action.layers[0].strips[0].channelbag(right.animation_data.action_slot)
    probe = bag.fcurves.find('pose.bones["index1"].rotation_euler', index=0).keyframe_points[1]
    probe.interpolation, probe.handle_left_type = "CONSTANT", "VECTOR"  # the artist's edits stay
    free = bag.fcurves.find('pose.bones["index2"].rotation_euler', index=2).keyframe_points[1]
    free.handle_left_type = free.handle_right_type = "FREE"
    free.handle_right = (free.co[0] + 3.0, free.co[1] + 0.2)
    for fc in bag.fcurves:  # the handles recalculated, as the Graph Editor does on such edits
        fc.update()
    scene.frame_set(30)  # one channel keyed alone: frame 30 is a keyed frame of middle2
    right.pose.bones["middle2"].rotation_euler[0] += 0.3
    right.pose.bones["middle2"].keyframe_insert("rotation_euler", index=0, frame=30)
    probe_frames = [*frames, 30, 10, 35]  # keyed, then in between

    def shown():
        out = {}
        for f in probe_frames:
            scene.frame_set(f)
            for side in SIDES:
                arm = hand(side)
                out[f"{f}_{side}"] = joint_rotations(arm), wrist_offset(arm), evaluated_vertices(arm)
        return out

    before = shown()
    keys_before = {side: key_snapshot(hand(side)) for side in SIDES}
    scene.frame_set(frames[1])
    # not keyed: shown until the frame changes
    assert bpy.ops.handforge.apply_preset(preset="fist", sides="LEFT") == {"FINISHED"}
    bpy.context.view_layer.update()
    tweak = joint_rotations(left), wrist_offset(left)

    out = {}
    right.hide_set(True)  # a refusal (checked for both hands first) leaves keys and shapes as they were
    out["refused"] = error_of(lambda: bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH"))
    right.hide_set(False)
    borrower = bpy.data.objects.new("Borrower", None)  # the left hand's action slot animates it too
    scene.collection.objects.link(borrower)
    borrower.animation_data_create().action = left.animation_data.action
    borrower.animation_data.action_slot = left.animation_data.action_slot
    out["shared"] = error_of(lambda: bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH"))
    bpy.data.objects.remove(borrower)
    out["refusals_kept"] = ({side: key_snapshot(hand(side)) for side in SIDES} == keys_before
                            and [list(hand(side).handforge.betas) for side in SIDES] == [[0.0] * 10] * 2)

    init_undo()
    with bpy.context.temp_override(**ui_context()):
        assert bpy.ops.handforge.set_shape("EXEC_DEFAULT", True, betas=a["betas"], sides="BOTH") == {"FINISHED"}
    out["frame"] = scene.frame_current
    bpy.context.view_layer.update()
    s.arrays["keyed_tweak_before"], s.arrays["keyed_tweak_after"] = tweak[0], joint_rotations(left)
    s.arrays["keyed_tweak_offset"] = np.stack([tweak[1], wrist_offset(left)])
    after = shown()
    for key in before:
        for i, what in enumerate(("rotations", "offset", "vertices")):
            s.arrays[f"keyed_{what}_before_{key}"] = before[key][i]
            s.arrays[f"keyed_{what}_after_{key}"] = after[key][i]
    keys_after = {side: key_snapshot(hand(side)) for side in SIDES}
    out["keys"] = {"before": keys_before, "after": keys_after}

    with bpy.context.temp_override(**ui_context()):
        bpy.ops.ed.undo()
    scene = bpy.context.window.scene
    out["undone"] = {"keys": {side: key_snapshot(hand(side)) for side in SIDES} == keys_before,
                     "betas": [list(hand(side).handforge.betas) for side in SIDES]}
    s.arrays["keyed_undone_rest"] = np.array([np.array(b.matrix_local) for b in hand("right").data.bones])

    for side in SIDES:  # a long action: 500 keyed frames per hand, keyed on the mean shape
        hand(side).animation_data_clear()
    assert bpy.ops.handforge.set_shape(betas=[0.0] * 10, sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.import_motion(filepath=a["long_clip"], frame_start=1) == {"FINISHED"}
    scene.frame_set(7)
    assert bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH") == {"FINISHED"}
    out["long_frame"] = scene.frame_current
    out["long_exported"] = a["work"] + "/long_reshaped.npz"
    assert bpy.ops.handforge.export_motion(filepath=out["long_exported"], frame_start=1,
                                           frame_end=a["num_long"]) == {"FINISHED"}
    return out


s.check("keyed_shape", shape_with_keys)


def shape_with_nla():
    """Set Shape keeps the keyed poses of actions in NLA strips too (they were not re-keyed: joints 0.1-2.3
    degrees off): the right hand's keys pushed down into a scaled strip and a repeated copy on another track,
    the left hand's strip in tweak mode. An action that another object's strip plays is refused."""
    from session import error_of

    scene = bpy.data.scenes.new("NLA")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right, left = hand("right"), hand("left")
    for frame, text in zip(a["keyed_frames"], a["keyed_poses"]):
        scene.frame_set(frame)
        assert bpy.ops.handforge.paste_pose(text=text, sides="BOTH") == {"FINISHED"}
        assert bpy.ops.handforge.key_pose(sides="BOTH") == {"FINISHED"}
    ad = right.animation_data
    first = ad.nla_tracks.new().strips.new("keys", 1, ad.action)
    first.scale = 2.0  # action frames 1, 20, 40 show at 1, 39, 79
    copy = ad.action.copy()
    second = ad.nla_tracks.new().strips.new("copy", 200, copy)
    second.action_slot = copy.slots[first.action_slot.identifier]
    second.repeat = 2.0  # 1, 20, 40 at 200, 219, 239 and again at 258, 278
    ad.action = None
    lad = left.animation_data
    lad.nla_tracks.new().strips.new("keys", 1, lad.action)
    lad.action = None
    lad.use_tweak_mode = True
    probes = {"right": [1, 39, 79, 200, 219, 258, 278], "left": list(a["keyed_frames"])}

    def shown():
        out = {}
        for side, frames in probes.items():
            for f in frames:
                scene.frame_set(f)
                out[f"{f}_{side}"] = joint_rotations(hand(side)), wrist_offset(hand(side))
        return out

    out = {"tweak": lad.use_tweak_mode, "probes": probes}
    before = shown()
    borrower = bpy.data.objects.new("Player", None)  # plays the right hand's copied keys in its own NLA
    scene.collection.objects.link(borrower)
    borrower.animation_data_create().nla_tracks.new().strips.new("copy", 1, copy).action_slot = second.action_slot
    out["shared"] = error_of(lambda: bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH"))
    bpy.data.objects.remove(borrower)
    assert bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH") == {"FINISHED"}
    after = shown()
    for key in before:
        s.arrays[f"nla_rotations_{key}"] = np.stack([before[key][0], after[key][0]])
        s.arrays[f"nla_offset_{key}"] = np.stack([before[key][1], after[key][1]])
    return out


s.check("nla_shape", shape_with_nla)


def shape_near_gimbal_lock():
    """Euler keys a hair (0.001-0.01 degrees) from gimbal lock keep their poses through Set Shape there and
    back: the rest change, from float32 bones, was off a rotation by 1e-6, which such keys' outer angles
    magnified to 1.7 degrees."""
    scene = bpy.data.scenes.new("Gimbal")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    rng = np.random.default_rng(8)
    for frame in a["keyed_frames"]:
        for side in SIDES:
            for name in a["joints"][1:]:  # YZX: the middle angle is z
                pb = hand(side).pose.bones[name]
                near = np.radians(rng.choice([-1, 1]) * (90 - rng.uniform(0.001, 0.01)))
                pb.rotation_euler = (rng.uniform(-3, 3), rng.uniform(-3, 3), near)
                pb.keyframe_insert("rotation_euler", frame=frame)

    def shown():
        out = []
        for f in a["keyed_frames"]:
            scene.frame_set(f)
            out.append([joint_rotations(hand(side)) for side in SIDES])
        return np.array(out)

    before = shown()
    assert bpy.ops.handforge.set_shape(betas=a["betas"], sides="BOTH") == {"FINISHED"}
    there = shown()
    assert bpy.ops.handforge.set_shape(betas=[0.0] * 10, sides="BOTH") == {"FINISHED"}
    s.arrays["gimbal_rotations"] = np.stack([before, there, shown()])
    return True


s.check("gimbal_shape", shape_near_gimbal_lock)


def shape_with_free_handles():
    """Between quaternion, axis-angle and location keys with free or aligned handles, Set Shape keeps the curve:
    the handles take the re-keyed channels' slopes (moved with their key alone they bent it 0.5 degrees here)."""
    scene = bpy.data.scenes.new("Handles")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right = hand("right")
    rng = np.random.default_rng(9)
    for name in a["joints"]:
        right.pose.bones[name].rotation_mode = "AXIS_ANGLE" if name.startswith("ring") else "QUATERNION"
    for frame in (1, 11, 21, 31):
        for name in a["joints"]:
            pb = right.pose.bones[name]
            q = rng.normal(size=4)
            pb.rotation_quaternion = q * np.sign(q[0]) / np.linalg.norm(q)
            pb.rotation_axis_angle = [rng.uniform(0.2, 2.0), *rng.normal(size=3)]
            pb.keyframe_insert(pose_prop(pb), frame=frame)
        right.pose.bones["wrist"].location = rng.normal(size=3) * 0.05
        right.pose.bones["wrist"].keyframe_insert("location", frame=frame)
    ad = right.animation_data
    for i, fc in enumerate(ad.action.layers[0].strips[0].channelbag(ad.action_slot).fcurves):
        for kp in fc.keyframe_points:
            kp.handle_left_type = kp.handle_right_type = ("FREE", "ALIGNED")[i % 2]
            tilt = 0.15 * (kp.co[1] + 0.5)
            kp.handle_right, kp.handle_left = (kp.co[0] + 3, kp.co[1] + tilt), (kp.co[0] - 2, kp.co[1] - tilt)
        fc.update()
    frames = np.arange(1, 31.01, 0.5)

    def shown():
        out = []
        for f in frames:
            scene.frame_set(int(f), subframe=float(f % 1))
            out.append(joint_rotations(right))
        return np.array(out)

    before = shown()
    assert bpy.ops.handforge.set_shape(betas=a["betas"], sides="RIGHT") == {"FINISHED"}
    s.arrays["handles_rotations"] = np.stack([before, shown()])
    return True


def pose_prop(pb) -> str:
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(pb.rotation_mode,
                                                                                        "rotation_euler")


s.check("handles_shape", shape_with_free_handles)


def linked_hands():
    """Hands linked from another file: the tools that change them refuse (Blender let them pose and key,
    and dropped it all at save); Add Hands builds into a collection of this file (it failed on the
    linked one)."""
    from session import error_of

    library = a["work"] + "/library.blend"
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    bpy.ops.wm.save_as_mainfile(filepath=library)
    bpy.ops.wm.read_homefile(use_empty=True)
    with bpy.data.libraries.load(library, link=True) as (_, into):
        into.collections = ["HandForge"]
    bpy.context.scene.collection.children.link(into.collections[0])
    out = {name: error_of(call) for name, call in {
        "key_pose": lambda: bpy.ops.handforge.key_pose(sides="RIGHT"),
        "apply_preset": lambda: bpy.ops.handforge.apply_preset(preset="fist", sides="BOTH"),
        "import_motion": lambda: bpy.ops.handforge.import_motion(filepath=a["random_clip"], frame_start=1),
        "set_shape": lambda: bpy.ops.handforge.set_shape(sides="LEFT", betas=a["betas"]),
    }.items()}
    out["actions"] = len(bpy.data.actions)
    out["add_hands"] = sorted(bpy.ops.handforge.add_hands())
    out["new_collections"] = sorted({c.name for o in bpy.context.scene.objects if o.library is None and o.type == "ARMATURE"
                                     for c in o.users_collection if c.library is None})
    return out


s.check("linked", linked_hands)


def absurd_shape():
    """Set Shape of 1e9 from a script: bounded as the backend bounds betas (the rig's bones went to 1.6e7 m
    and no later Set Shape could fix it: 'the rest skeleton was changed')."""
    import numpy as np

    assert bpy.ops.handforge.set_shape(betas=(1e9,) * 10, sides="RIGHT") == {"FINISHED"}
    kept = list(hand("right").handforge.betas)
    assert bpy.ops.handforge.set_shape(betas=(0.0,) * 10, sides="RIGHT") == {"FINISHED"}
    return {"kept": kept, "reset": bool(np.allclose(hand("right").handforge.betas, 0.0))}


s.check("absurd_shape", absurd_shape)
s.finish()
