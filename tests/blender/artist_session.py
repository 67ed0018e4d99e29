"""Blender session: an artist's odd but real states around the pose tools: a hand-edited user pose library,
hands linked from another file and library-overridden (auto-keying on, Add Hands beside them)."""

from __future__ import annotations

import json

import bpy
import numpy as np

from session import ADDON_MODULE, Session, as_user, hand, init_undo

s = Session()
s.install()


def rotations(obj) -> np.ndarray:
    return np.array([np.array(pb.matrix_basis) for pb in obj.pose.bones])


def library_path():
    import importlib

    return importlib.import_module(f"{ADDON_MODULE}.library").user_library_path()


def hand_edited_names():
    """Names typed into the user library's JSON by hand: listed in the browser as they are, so its Apply and
    Delete buttons pass them as they are (they said there was no such pose, or the name was too long)."""
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.apply_preset(preset="fist", sides="RIGHT") == {"FINISHED"}
    assert bpy.ops.handforge.save_user_pose(name="fist", side="RIGHT") == {"FINISHED"}
    path = library_path()
    data = json.loads(path.read_text(encoding="utf-8"))
    odd = {"spaced": " my fist ", "long": "a very long name " * 6}
    for name in odd.values():
        data["poses"][name] = data["poses"]["fist"]
    path.write_text(json.dumps(data), encoding="utf-8")
    out = {}
    for key, name in odd.items():
        assert bpy.ops.handforge.reset_pose(sides="BOTH") == {"FINISHED"}
        out[f"{key}_apply"] = as_user(bpy.ops.handforge.apply_user_pose, name=name, sides="LEFT")
        out[f"{key}_posed"] = float(np.abs(rotations(hand("left"))[1:] - np.eye(4)).max())
        out[f"{key}_delete"] = as_user(bpy.ops.handforge.delete_user_pose, name=name)
    out["left"] = sorted(json.loads(path.read_text(encoding="utf-8"))["poses"])
    return out


s.check("names", hand_edited_names)


def nan_bone():
    """A finger bone whose rotation is NaN (a driver's or a script's): the tools that pose the fingers replace
    it (they refused, reading it back: "hand_pose has a non-finite value"); those that read it name it."""
    nan = float("nan")
    out = {}
    pasted = json.dumps({"format": "handforge.pose", "hands": {"left": {
        "global_orient": [0.0] * 3, "hand_pose": [0.1] * 45, "betas": [0.0] * 10, "transl": [0.0] * 3}}})
    ops = bpy.ops.handforge
    for tool, (call, kwargs) in {
        "apply_preset": (ops.apply_preset, {"preset": "fist", "sides": "RIGHT"}),
        "apply_user_pose": (ops.apply_user_pose, {"name": "fist", "sides": "RIGHT"}),
        "mirror_pose": (ops.mirror_pose, {"direction": "LEFT_TO_RIGHT"}),
        "paste_pose": (ops.paste_pose, {"sides": "RIGHT", "fingers_only": True, "text": pasted}),
    }.items():
        hand("right").pose.bones["index2"].rotation_euler = (nan, 0.0, 0.0)
        out[tool] = as_user(call, **kwargs)[0]
        out[f"{tool}_finite"] = bool(np.isfinite(rotations(hand("right"))).all())
    hand("right").pose.bones["index2"].rotation_euler = (nan, 0.0, 0.0)
    out["refused"] = {
        "copy_pose": as_user(bpy.ops.handforge.copy_pose, sides="RIGHT"),
        "save_user_pose": as_user(bpy.ops.handforge.save_user_pose, name="broken", side="RIGHT"),
        "mirror_from": as_user(bpy.ops.handforge.mirror_pose, direction="RIGHT_TO_LEFT"),
        "set_shape": as_user(bpy.ops.handforge.set_shape, sides="RIGHT", betas=(1.0,) + (0.0,) * 9),
    }
    assert bpy.ops.handforge.reset_pose(sides="RIGHT") == {"FINISHED"}
    return out


s.check("nan_bone", nan_bone)


def save_at_the_limit():
    """Save Pose from a hand whose joint limits hold a finger dragged beyond them: the pose shown is saved (the
    channels were: applied to the other hand, index2 was 69° hyperextended where 5° showed)."""
    right = hand("right")
    right.handforge.use_limits = True
    right.pose.bones["index2"].rotation_euler = (-1.2, 0.0, 0.0)
    right.data.pose_position = "REST"  # (the pose shown is then the rest: refused, it saved a flat hand)
    at_rest = {"save": as_user(bpy.ops.handforge.save_user_pose, name="flat", side="RIGHT"),
               "copy": as_user(bpy.ops.handforge.copy_pose, sides="RIGHT"),
               "mirror": as_user(bpy.ops.handforge.mirror_pose, direction="RIGHT_TO_LEFT")}
    right.data.pose_position = "POSE"
    saved = as_user(bpy.ops.handforge.save_user_pose, name="held", side="RIGHT")
    applied = as_user(bpy.ops.handforge.apply_user_pose, name="held", sides="LEFT")
    # the left index2's flexion (rotation about its bone X), from its channels: the left hand has no limits
    basis = np.array(hand("left").pose.bones["index2"].matrix_basis)
    right.handforge.use_limits = False
    assert bpy.ops.handforge.reset_pose(sides="BOTH") == {"FINISHED"}
    return {"saved": saved, "applied": applied, "flexion": float(np.degrees(np.arctan2(basis[2, 1], basis[1, 1]))),
            "at_rest": at_rest}


s.check("limits", save_at_the_limit)


def forearm_in_edit_mode():
    """Set Shape while a hand's forearm is in Edit Mode: refused as for the hand's own mesh (the forearm's refit
    was lost when its Edit Mode was left, a seam at the wrist)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    init_undo()
    assert bpy.ops.handforge.add_hands(forearm="SKIN") == {"FINISHED"}
    forearm = next(c for c in hand("right").children if "handforge_forearm" in c)
    bpy.context.view_layer.objects.active = forearm
    bpy.ops.object.mode_set(mode="EDIT")
    out = {"set_shape": as_user(bpy.ops.handforge.set_shape, sides="BOTH", betas=(3.0,) + (0.0,) * 9)}
    bpy.ops.object.mode_set(mode="OBJECT")
    out["betas"] = [hand(side).handforge.betas[0] for side in ("left", "right")]
    return out


s.check("forearm", forearm_in_edit_mode)


def prop_in_edit_mode():
    """A preset pressed while another object (a prop the hand holds) is in Edit Mode: greyed, with the reason (it
    posed the hand, and Ctrl-Z then did not undo it: Blender's undo there holds only the prop's edits)."""
    mesh = bpy.data.meshes.new("Cup")
    mesh.from_pydata([(0.0, 0.0, 0.0), (0.1, 0.0, 0.0), (0.0, 0.1, 0.0)], [], [(0, 1, 2)])
    cup = bpy.data.objects.new("Cup", mesh)
    bpy.context.scene.collection.objects.link(cup)
    bpy.context.view_layer.objects.active = cup
    bpy.ops.object.mode_set(mode="EDIT")
    before = rotations(hand("right"))
    out = {"poll": bpy.ops.handforge.apply_preset.poll(),
           "apply_preset": as_user(bpy.ops.handforge.apply_preset, preset="fist", sides="RIGHT")}
    out["moved"] = float(np.abs(rotations(hand("right")) - before).max())
    bpy.ops.object.mode_set(mode="OBJECT")
    return out


s.check("prop", prop_in_edit_mode)


def overridden_hands():
    """Hands linked from another file with their keys, then library-overridden (editable): with auto-keying on,
    a pose tool cannot key them (Blender skips keys in the linked action) and refuses before posing; Add Hands
    builds beside them (it failed on the override of the HandForge collection)."""
    library = str(s.work / "hands.blend")
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    for frame in (1, 10):
        hand("right").keyframe_insert('pose.bones["index2"].rotation_euler', frame=frame)
    bpy.ops.wm.save_as_mainfile(filepath=library)
    bpy.ops.wm.read_homefile(use_empty=True)
    init_undo()
    scene = bpy.context.scene
    with bpy.data.libraries.load(library, link=True) as (_, into):
        into.collections = ["HandForge"]
    linked = into.collections[0]
    scene.collection.children.link(linked)
    linked.override_hierarchy_create(scene, bpy.context.view_layer, do_fully_editable=True)
    scene.collection.children.unlink(linked)
    right = next(o for o in scene.objects if o.type == "ARMATURE" and o.handforge.side == "right")
    out = {"override": right.override_library is not None and right.is_editable,
           "action_linked": right.animation_data.action.library is not None}
    scene.tool_settings.use_keyframe_insert_auto = True
    before = {o.name: rotations(o) for o in scene.objects if o.type == "ARMATURE"}
    out["tools"] = {
        "apply_preset": as_user(bpy.ops.handforge.apply_preset, preset="point", sides="BOTH"),
        "reset_pose": as_user(bpy.ops.handforge.reset_pose, sides="RIGHT"),
        "mirror_pose": as_user(bpy.ops.handforge.mirror_pose, direction="LEFT_TO_RIGHT"),
        "paste_pose": as_user(bpy.ops.handforge.paste_pose, sides="RIGHT", text=json.dumps(
            {"format": "handforge.pose", "hands": {"left": {"global_orient": [0.0] * 3, "hand_pose": [0.1] * 45,
                                                     "betas": [0.0] * 10, "transl": [0.0] * 3}}})),
        "apply_user_pose": as_user(bpy.ops.handforge.apply_user_pose, name="fist", sides="RIGHT"),
    }
    out["moved"] = max(float(np.abs(rotations(bpy.data.objects[n]) - r).max()) for n, r in before.items())
    scene.tool_settings.use_keyframe_insert_auto = False
    out["unkeyed"] = as_user(bpy.ops.handforge.apply_preset, preset="point", sides="LEFT")
    out["add_hands"] = as_user(bpy.ops.handforge.add_hands)
    new = [o for o in scene.objects if o.type == "ARMATURE" and o.override_library is None]
    out["new"] = sorted((o.name, c.name, c.override_library is None) for o in new for c in o.users_collection)
    return out


s.check("overridden", overridden_hands)


def folder_blocked():
    """A file where the user library's folder goes: Save Pose said "saved 'a' to user_poses.json", written to
    Blender's working folder, where no later Apply found it."""
    from pathlib import Path

    folder = library_path().parent
    folder.rename(folder.with_name("handforge.kept"))
    folder.write_text("not a folder")
    try:
        saved = as_user(bpy.ops.handforge.save_user_pose, name="blocked", side="RIGHT")
    finally:
        folder.unlink()
        folder.with_name("handforge.kept").rename(folder)
    return {"saved": saved, "stray": (Path.cwd() / "user_poses.json").exists()}


s.check("folder", folder_blocked)
s.finish()
