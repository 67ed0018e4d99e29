"""Blender session: presets, mirroring, reset, copy/paste, finger sliders, joint limits, errors."""

from __future__ import annotations

import json

import bpy
import numpy as np

from session import Session, as_user, error_of, hand, printed_by

s = Session()
s.install()
a = s.args
SIDES = ("left", "right")
JOINTS = a["joints"]


def rotations(side: str) -> np.ndarray:
    """(16, 3, 3) bone-local rotations of the channels, and the wrist location."""
    arm = hand(side)
    return np.array([np.array(arm.pose.bones[n].matrix_basis)[:3, :3] for n in JOINTS])


def location(side: str) -> np.ndarray:
    return np.array(hand(side).pose.bones["wrist"].location)


assert bpy.ops.handforge.add_hands() == {"FINISHED"}
for side in SIDES:
    s.arrays[f"placement_rot_{side}"] = rotations(side)
    s.arrays[f"placement_loc_{side}"] = location(side)


def presets():
    names = a["presets"]
    for name in names:
        assert bpy.ops.handforge.apply_preset(preset=name, sides="BOTH") == {"FINISHED"}
        for side in SIDES:
            s.arrays[f"preset_{name}_{side}"] = rotations(side)
    return names


s.check("presets", presets)


def paste(pose_json: str, sides: str = "BOTH"):
    assert bpy.ops.handforge.paste_pose(text=pose_json, sides=sides) == {"FINISHED"}


def mirror():
    paste(a["random_pose"])
    for side in SIDES:
        s.arrays[f"before_mirror_{side}"] = rotations(side)
        s.arrays[f"before_mirror_loc_{side}"] = location(side)
    assert bpy.ops.handforge.mirror_pose(direction="LEFT_TO_RIGHT") == {"FINISHED"}
    s.arrays["mirror_l2r_right"] = rotations("right")
    s.arrays["mirror_l2r_right_loc"] = location("right")
    s.arrays["mirror_l2r_left"] = rotations("left")
    paste(a["random_pose"])
    assert bpy.ops.handforge.mirror_pose(direction="RIGHT_TO_LEFT", include_placement=True) == {"FINISHED"}
    s.arrays["mirror_r2l_left"] = rotations("left")
    s.arrays["mirror_r2l_left_loc"] = location("left")
    return True


s.check("mirror", mirror)


def world_bones(side: str) -> np.ndarray:
    """(32, 3) world heads and tails of a hand's posed bones, from Blender's matrix_world."""
    arm = hand(side)
    world = np.array(arm.matrix_world)
    points = np.array([[*arm.pose.bones[n].head, 1.0] for n in JOINTS] + [[*arm.pose.bones[n].tail, 1.0] for n in JOINTS])
    return (points @ world.T)[:, :3]


def parent_to_empty(empties: list, side: str, location, rotation, scale, keep_transform) -> None:
    """Parent a hand to a new Empty (appended to ``empties``, for the caller to remove)."""
    empty = bpy.data.objects.new(f"Parent.{side}.{len(empties)}", None)
    bpy.context.scene.collection.objects.link(empty)
    empty.location, empty.rotation_euler, empty.scale = location, rotation, (scale,) * 3
    empties.append(empty)
    bpy.context.view_layer.update()
    arm = hand(side)
    arm.parent = empty
    arm.matrix_parent_inverse = empty.matrix_world.inverted() if keep_transform else np.eye(4).tolist()
    bpy.context.view_layer.update()


def unparent_hands(kept: dict, empties: list) -> None:
    for side in SIDES:
        hand(side).parent = None
        hand(side).matrix_world = kept[side]
    for empty in empties:
        bpy.data.objects.remove(empty)
    bpy.context.view_layer.update()


def mirror_refused_at_scale(parent, scale: float) -> tuple[str, bool]:
    """Mirror Pose with placement, the left rig's ``parent`` scaled by ``scale``: its error, and whether the rigs
    were left as they were."""
    parent.scale = (scale, scale, scale)
    bpy.context.view_layer.update()
    before = {side: world_bones(side) for side in SIDES}
    error = error_of(lambda: bpy.ops.handforge.mirror_pose(direction="LEFT_TO_RIGHT", include_placement=True))
    bpy.context.view_layer.update()
    return error, all(np.array_equal(before[side], world_bones(side)) for side in SIDES)


def mirror_parented():
    """Mirror Pose with placement on rigs under moved, rotated and scaled parents (Empties)."""
    kept = {side: hand(side).matrix_world.copy() for side in SIDES}
    empties = []

    def parent(*args):
        parent_to_empty(empties, *args)

    def mirrored(direction, source):
        paste(a["random_pose"])
        assert bpy.ops.handforge.mirror_pose(direction=direction, include_placement=True) == {"FINISHED"}
        bpy.context.view_layer.update()
        for side in SIDES:
            s.arrays[f"mirror_parented_{name}_{side}"] = world_bones(side)
        s.arrays[f"mirror_parented_{name}_source_world"] = np.array(hand(source).matrix_world)

    try:
        # the giving (right) hand and the other under different parents of one scale
        name = "both"
        parent("right", (0.3, -0.2, 0.5), (0.3, 0.5, 1.1), 1.5, False)
        parent("left", (-1.0, 2.0, 0.1), (0.7, -0.2, 0.4), 1.5, False)
        mirrored("RIGHT_TO_LEFT", "right")
        # only the giving (left) hand parented: moved and turned after parenting (transform kept)
        name = "one"
        for side in SIDES:
            hand(side).parent = None
            hand(side).matrix_world = kept[side]
        parent("left", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0, True)
        empties[-1].location, empties[-1].rotation_euler = (0.4, 0.1, -0.3), (0.2, -0.6, 0.9)
        bpy.context.view_layer.update()
        mirrored("LEFT_TO_RIGHT", "left")
        # rigs of different scales: refused, the scene as it was; scaled to 0: said so (before: "Singular matrix",
        # numpy's words alone)
        error, unchanged = mirror_refused_at_scale(empties[-1], 2.0)
        zero, zero_unchanged = mirror_refused_at_scale(empties[-1], 0.0)
    finally:
        unparent_hands(kept, empties)
    return {"scaled_error": error, "scaled_unchanged": unchanged, "zero_error": zero, "zero_unchanged": zero_unchanged}


s.check("mirror_parented", mirror_parented)


def reset():
    paste(a["random_pose"])
    assert bpy.ops.handforge.reset_pose(sides="RIGHT") == {"FINISHED"}
    s.arrays["reset_right"], s.arrays["reset_right_loc"] = rotations("right"), location("right")
    s.arrays["reset_left_untouched"] = rotations("left")
    assert bpy.ops.handforge.reset_pose(sides="BOTH", include_placement=True) == {"FINISHED"}
    for side in SIDES:
        s.arrays[f"reset_all_{side}"], s.arrays[f"reset_all_loc_{side}"] = rotations(side), location(side)
    return True


s.check("reset", reset)


def copy_paste():
    paste(a["random_pose"])
    before = {side: rotations(side) for side in SIDES}
    assert bpy.ops.handforge.copy_pose(sides="BOTH") == {"FINISHED"}
    bpy.ops.handforge.reset_pose(sides="BOTH", include_placement=True)
    assert bpy.ops.handforge.paste_pose(sides="BOTH") == {"FINISHED"}
    err = {side: float(np.abs(rotations(side) - before[side]).max()) for side in SIDES}
    # only the right hand on the clipboard: pasting onto the left gives its mirror image
    right_only = json.loads(a["random_pose"])
    right_only["hands"].pop("left")
    paste(json.dumps(right_only), sides="LEFT")
    s.arrays["paste_mirrored_left"] = rotations("left")
    bad = error_of(lambda: bpy.ops.handforge.paste_pose(text="not a pose", sides="BOTH"))
    deep = error_of(lambda: bpy.ops.handforge.paste_pose(text="[" * 100_000, sides="BOTH"))
    # pastes that cannot be applied whole: nothing is posed (the left hand was, then the right failed)
    one = json.loads(a["random_pose"])["hands"]["right"]
    batch = {k: [v, v] for k, v in one.items()}
    before = {side: (rotations(side), location(side)) for side in SIDES}
    # finite, and still no pose: turns that pose to NaN (1e308 rad) or wrap (1e5 rad), a hand 1e30 m away
    absurd = {"nan_bones": {"hand_pose": [1e308] * 45}, "wrapped": {"hand_pose": [1e5] * 45},
              "orient": {"global_orient": [1e300, 0.0, 0.0]}, "far": {"transl": [1e30, 0.0, 0.0]}}
    cases = [("batch", {"left": one, "right": batch}), ("list", []), ("number", {"left": 5}),
             ("junk", {"left": {**one, "junk": 1}})]
    cases += [(name, {"left": one, "right": {**one, **change}}) for name, change in absurd.items()]
    refused = {name: error_of(lambda: bpy.ops.handforge.paste_pose(
        text=json.dumps({"format": "handforge.pose", "hands": hands_}), sides="BOTH")) for name, hands_ in cases}
    refused["far_fingers_only"] = error_of(lambda: bpy.ops.handforge.paste_pose(
        text=json.dumps({"format": "handforge.pose", "hands": {"right": {**one, "hand_pose": [1e5] * 45}}}),
        sides="BOTH", fingers_only=True))
    unchanged = all(np.array_equal(rotations(side), before[side][0]) and np.array_equal(location(side), before[side][1])
                    for side in SIDES)
    return {"roundtrip_error": err, "bad_clipboard": bad, "deep_clipboard": deep, "refused": refused,
            "unchanged": unchanged}


s.check("copy_paste", copy_paste)


def paste_parented():
    """Paste of a right-hand-only pose on rigs under moved, rotated and scaled parents (Empties)."""
    kept = {side: hand(side).matrix_world.copy() for side in SIDES}
    empties = []
    right_only = json.loads(a["random_pose"])
    right_only["hands"].pop("left")
    right_only = json.dumps(right_only)

    def record(name):
        bpy.context.view_layer.update()
        for side in SIDES:
            s.arrays[f"paste_parented_{name}_{side}"] = world_bones(side)
        s.arrays[f"paste_parented_{name}_source_world"] = np.array(hand("right").matrix_world)

    try:
        # both hands under different parents of one scale, both pasted
        parent_to_empty(empties, "right", (0.3, -0.2, 0.5), (0.3, 0.5, 1.1), 1.5, False)
        parent_to_empty(empties, "left", (-1.0, 2.0, 0.1), (0.7, -0.2, 0.4), 1.5, False)
        paste(right_only, sides="BOTH")
        record("both")
        # only the right hand parented, moved and turned; only the left pasted (mirrored through the right rig)
        unparent_hands(kept, empties)
        empties.clear()
        parent_to_empty(empties, "right", (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 1.0, True)
        empties[-1].location, empties[-1].rotation_euler = (0.4, 0.1, -0.3), (0.2, -0.6, 0.9)
        bpy.context.view_layer.update()
        paste(a["random_pose"])
        paste(right_only, sides="LEFT")
        paste(right_only, sides="RIGHT")  # where the copied right hand lands: the mirror's original
        record("one")
        # rigs of different scales: refused, the scene as it was; Fingers Only needs no placement and pastes
        empties[-1].scale = (2.0, 2.0, 2.0)
        bpy.context.view_layer.update()
        before = {side: world_bones(side) for side in SIDES}
        error = error_of(lambda: bpy.ops.handforge.paste_pose(text=right_only, sides="BOTH"))
        bpy.context.view_layer.update()
        unchanged = all(np.array_equal(before[side], world_bones(side)) for side in SIDES)
        fingers_only = bpy.ops.handforge.paste_pose(text=right_only, sides="BOTH", fingers_only=True) == {"FINISHED"}
    finally:
        unparent_hands(kept, empties)
    return {"scaled_error": error, "scaled_unchanged": unchanged, "scaled_fingers_only": fingers_only}


s.check("paste_parented", paste_parented)


def sliders():
    bpy.ops.handforge.reset_pose(sides="BOTH")
    right = hand("right")
    right.handforge.curl_index = 1.0
    right.handforge.spread_pinky = 0.5
    right.handforge.curl_thumb = 0.5
    s.arrays["sliders_right"] = rotations("right")
    s.arrays["sliders_left"] = rotations("left")
    bpy.ops.handforge.apply_preset(preset="fist", sides="RIGHT")
    synced = {k: getattr(right.handforge, k) for k in ("curl_index", "curl_middle", "curl_pinky", "spread_index")}
    return {"synced_after_fist": synced}


s.check("sliders", sliders)


def limits():
    bpy.ops.handforge.reset_pose(sides="BOTH")
    right = hand("right")
    right.pose.bones["index2"].rotation_euler = (2.5, 0.0, 0.0)  # 143°: beyond the PIP's range
    right.pose.bones["index1"].rotation_euler = (0.3, 0.0, -0.9)  # abduction far beyond ±20°
    bpy.context.view_layer.update()
    free = np.array(right.pose.bones["index2"].matrix)
    right.handforge.use_limits = True
    bpy.context.view_layer.update()
    limited = np.array(right.pose.bones["index2"].matrix)
    muted = [c.mute for c in right.pose.bones["index2"].constraints]
    assert bpy.ops.handforge.export_motion(filepath=a["limits_clip"], frame_start=1, frame_end=1, sides="RIGHT") == {"FINISHED"}
    right.handforge.use_limits = False
    bpy.context.view_layer.update()
    back = np.array(right.pose.bones["index2"].matrix)
    return {"changed_when_on": float(np.abs(free - limited).max()), "back_when_off": float(np.abs(free - back).max()),
            "constraints_muted_when_on": muted}


s.check("limits", limits)


def errors():
    from handforge_shared.rig import load_open_hand_rig

    scene = bpy.data.scenes.new("Empty")
    bpy.context.window.scene = scene
    load_open_hand_rig("right").save("rig.npz")  # in the working folder, where "//" of an unsaved .blend pointed
    return {
        "preset_without_hands": error_of(lambda: bpy.ops.handforge.apply_preset(preset="fist")),
        "mirror_without_hands": error_of(lambda: bpy.ops.handforge.mirror_pose(direction="LEFT_TO_RIGHT")),
        "missing_rig_file": error_of(lambda: bpy.ops.handforge.add_hands(source="FILE", filepath="/nonexistent/rig.npz")),
        "unsaved": not bpy.data.filepath,
        "relative_rig_file": error_of(lambda: bpy.ops.handforge.add_hands(source="FILE", filepath="//rig.npz")),
        "objects_after": len(scene.objects),
    }


s.check("errors", errors)


def scenes_and_placement():
    """Hands added in another scene stay there; a failed add leaves nothing; a missing side joins its partner."""
    first = bpy.data.scenes[0]
    first_objects = {o.name for o in first.objects}
    second = bpy.data.scenes.new("Second")
    bpy.context.window.scene = second
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    out = {"first_unchanged": {o.name for o in first.objects} == first_objects,
           "second_hands": sorted(o.handforge.side for o in second.objects if o.type == "ARMATURE")}
    collection = next(c for c in second.collection.children if c.name.startswith("HandForge"))
    for obj in list(collection.objects):
        bpy.data.objects.remove(obj)
    bpy.context.view_layer.layer_collection.children[collection.name].exclude = True
    armatures = len(bpy.data.armatures)
    out["excluded_error"] = error_of(lambda: bpy.ops.handforge.add_hands())
    out["excluded_left"] = {"objects": len(second.objects), "armatures": len(bpy.data.armatures) - armatures}
    third = bpy.data.scenes.new("Third")
    bpy.context.window.scene = third
    assert bpy.ops.handforge.add_hands(sides="RIGHT") == {"FINISHED"}
    right = third.handforge.right
    right.location = (0.1, 0.2, 0.3)
    assert bpy.ops.handforge.add_hands(sides="LEFT") == {"FINISHED"}
    out["pair_offset"] = float(np.abs(np.array(third.handforge.left.matrix_world)
                                      - np.array(right.matrix_world)).max())
    # one side more in a scene with a pair: the tools pair it with the right hand there, which is said
    out["one_more"] = printed_by(lambda: bpy.ops.handforge.add_hands(sides="LEFT"))[1]
    out["one_more_pair"] = [third.handforge.left.name, third.handforge.right.name]
    bpy.context.window.scene = first
    return out


s.check("scenes", scenes_and_placement)


def rig_checks():
    """Hands that an operator cannot change whole are refused before any is changed."""
    first = bpy.context.window.scene
    scene = bpy.data.scenes.new("Checks")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    left, right = scene.handforge.left, scene.handforge.right
    shape = [0.8] + [0.0] * 9

    def betas():
        return {side: list(obj.handforge.betas)[:1] for side, obj in (("left", left), ("right", right))}

    out = {}
    right.hide_set(True)
    out["hidden"] = {"error": error_of(lambda: bpy.ops.handforge.set_shape(betas=shape, sides="BOTH")), "betas": betas()}
    right.hide_set(False)
    right.scale = (2, 2, 2)
    bpy.context.view_layer.objects.active = right
    right.select_set(True)
    bpy.ops.object.transform_apply(location=False, rotation=False, scale=True)
    out["applied"] = {"error": error_of(lambda: bpy.ops.handforge.set_shape(betas=shape, sides="BOTH")), "betas": betas()}
    twin = left.copy()  # a linked duplicate: the same armature data
    scene.collection.objects.link(twin)
    out["shared"] = error_of(lambda: bpy.ops.handforge.set_shape(betas=shape, sides="LEFT"))
    bpy.data.objects.remove(twin)
    bpy.context.view_layer.objects.active = left
    bpy.ops.object.mode_set(mode="POSE")
    assert bpy.ops.handforge.set_shape(betas=shape, sides="LEFT") == {"FINISHED"}
    out["mode_after"] = [bpy.context.mode, bpy.context.view_layer.objects.active.name == left.name]
    bpy.ops.object.mode_set(mode="OBJECT")
    bpy.context.view_layer.objects.active = left
    bpy.ops.object.mode_set(mode="EDIT")
    # a bone moved in Edit Mode, not yet in the rest skeleton (Set Shape went on and undid the move)
    left.data.edit_bones["index1"].head.z += 0.01
    out["edit_mode"] = error_of(lambda: bpy.ops.handforge.set_shape(betas=[0.0] * 10, sides="LEFT"))
    out["edit_mode_kept"] = left.mode == "EDIT" and abs(left.data.edit_bones["index1"].head.z
                                                         - left.data.bones["index1"].head_local.z - 0.01) < 1e-6
    left.data.edit_bones.remove(left.data.edit_bones["ring2"])
    left.data.edit_bones["middle2"].name = "Middle_02"  # renamed by the artist: lost to HandForge too
    bpy.ops.object.mode_set(mode="OBJECT")
    out["lost_bone"] = {"error": error_of(lambda: bpy.ops.handforge.key_pose(sides="BOTH")),
                        "keyed": [o.animation_data is not None and o.animation_data.action is not None
                                  for o in (left, right)]}
    import io
    from contextlib import redirect_stdout

    scaled = bpy.data.scenes.new("Centimetres")
    scaled.unit_settings.scale_length = 0.01
    bpy.context.window.scene = scaled
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    out["unit_scale"] = printed.getvalue()
    bpy.context.window.scene = first
    return out


s.check("rig_checks", rig_checks)


def mirror_between_shapes_and_a_mirrored_rig():
    """Mirror with placement between hands of different shapes put the wrist 8.5 mm off the giver's mirror
    image (the receiving rest wrist taken for the mirror of the giver's); a rig mirrored by a negative scale
    passed the scale check (a reflection is orthogonal) and got a pose mirrored twice, 127 mm off."""
    bpy.context.window.scene = bpy.data.scenes.new("Shapes")
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right, left = hand("right"), hand("left")

    def wrist_head(obj):
        bpy.context.view_layer.update()
        return np.array(obj.matrix_world) @ np.array([*obj.pose.bones["wrist"].head, 1.0])

    right.location, right.rotation_euler = (0.1, 0.2, 0.3), (0.3, 0.2, 0.1)
    assert bpy.ops.handforge.set_shape(betas=[3.0] + [0.0] * 9, sides="RIGHT") == {"FINISHED"}
    assert bpy.ops.handforge.apply_preset(preset="ok", sides="RIGHT") == {"FINISHED"}
    assert bpy.ops.handforge.mirror_pose(direction="RIGHT_TO_LEFT", include_placement=True) == {"FINISHED"}
    world = np.array(right.matrix_world)
    wanted = world @ np.diag([-1.0, 1.0, 1.0, 1.0]) @ np.linalg.inv(world) @ wrist_head(right)
    out = {"off_mm": float(np.linalg.norm(wrist_head(left)[:3] - wanted[:3]) * 1000)}
    right.scale = (-1.0, 1.0, 1.0)
    bpy.context.view_layer.update()
    before = world_bones("right")
    out["negative_scale"] = error_of(lambda: bpy.ops.handforge.mirror_pose(direction="LEFT_TO_RIGHT",
                                                                         include_placement=True))
    bpy.context.view_layer.update()
    out["unchanged"] = bool(np.array_equal(before, world_bones("right")))
    right.scale = (1.0, 1.0, 1.0)
    return out


s.check("mirror_shapes", mirror_between_shapes_and_a_mirrored_rig)


def copy_under_an_artists_constraint():
    """Copy Pose (and every request that reads a rig's pose: Generate Image's labels, the hands jobs) of a finger
    held by the artist's own Limit Rotation copied its channels, off what the viewport shows (only HandForge's
    joint-limits switch made the read visual). The shown pose now, as Export Motion reads it."""
    import importlib

    from session import ADDON_MODULE

    pose_conv = importlib.import_module(f"{ADDON_MODULE}.pose")

    bpy.ops.handforge.reset_pose(sides="BOTH")
    right = hand("right")
    bone = right.pose.bones["index2"]
    bone.rotation_euler = (1.5, 0.0, 0.0)
    con = bone.constraints.new("LIMIT_ROTATION")  # the artist's own, not HandForge's joint limits
    con.owner_space, con.use_limit_x, con.min_x, con.max_x = "LOCAL", True, 0.0, 0.5
    bpy.context.view_layer.update()
    try:
        assert bpy.ops.handforge.copy_pose(sides="RIGHT") == {"FINISHED"}
        text = importlib.import_module(f"{ADDON_MODULE}.ops_pose")._last_copied  # (no system clipboard in blender -b)
        copied = np.array(json.loads(text)["hands"]["right"]["hand_pose"])
        shown = np.asarray(pose_conv.read_pose(right, visual=True).hand_pose)
        channels = np.asarray(pose_conv.read_pose(right, visual=False).hand_pose)
        return {"off_shown": float(np.abs(copied - shown).max()), "off_channels": float(np.abs(copied - channels).max())}
    finally:
        bone.constraints.remove(con)
        bpy.ops.handforge.reset_pose(sides="BOTH")


s.check("copy_constrained", copy_under_an_artists_constraint)


def chosen_not_a_hand():
    """The panel's hand fields set by a script to what their pickers do not offer (a mesh, the other side's rig):
    said so (before: "HandForge failed (AttributeError: 'Mesh' object has no attribute 'bones')")."""
    props = bpy.context.scene.handforge
    left, right = props.left, props.right
    mesh = bpy.data.objects.new("Plain Mesh", bpy.data.meshes.new("Plain Mesh"))
    bpy.context.scene.collection.objects.link(mesh)
    try:
        props.left = mesh
        as_mesh = error_of(lambda: bpy.ops.handforge.copy_pose(sides="LEFT"))
        props.left = right
        other_side = error_of(lambda: bpy.ops.handforge.copy_pose(sides="LEFT"))
    finally:
        props.left, props.right = left, right
        bpy.data.objects.remove(mesh)
    return {"mesh": as_mesh, "other_side": other_side, "again": sorted(bpy.ops.handforge.copy_pose(sides="LEFT"))}


s.check("chosen_not_a_hand", chosen_not_a_hand)


def driven_finger():
    """A driver on a finger bone (a character's grip set-up): Apply Preset, a slider, Mirror, Reset and Key Pose did
    nothing there and said nothing (Apply Preset "fist" left index2 straight while middle2 curled)."""
    right = hand("right")
    bone = right.pose.bones["index2"]
    path = "rotation_quaternion" if bone.rotation_mode == "QUATERNION" else "rotation_euler"
    for curve in bone.driver_add(path):
        curve.driver.expression = "0.0"
    out = {}
    try:
        for name, op, kwargs in (("preset", bpy.ops.handforge.apply_preset, {"preset": "fist", "sides": "BOTH"}),
                                 ("mirror", bpy.ops.handforge.mirror_pose, {"direction": "LEFT_TO_RIGHT"}),
                                 ("reset", bpy.ops.handforge.reset_pose, {"sides": "RIGHT"}),
                                 ("key", bpy.ops.handforge.key_pose, {"sides": "RIGHT"})):
            out[name] = as_user(op, **kwargs)
        out["left_alone"] = as_user(bpy.ops.handforge.apply_preset, preset="fist", sides="LEFT")
    finally:
        bone.driver_remove(path)
        bpy.ops.handforge.reset_pose(sides="BOTH")
        right.animation_data_clear()
    out["undriven"] = as_user(bpy.ops.handforge.apply_preset, preset="fist", sides="RIGHT")
    bpy.ops.handforge.reset_pose(sides="BOTH")
    return out


s.check("driven_finger", driven_finger)
s.finish()
