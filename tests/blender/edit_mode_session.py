"""Blender session: every HandForge button pressed while the right hand is in Edit Mode (its armature, or its
mesh; the mesh in Weight Paint or Sculpt too). Each call runs on a fresh pair of hands, twice: once in that
mode, once in Object Mode; the scene after leaving the mode is compared with the Object Mode one."""

from __future__ import annotations

import importlib

import bpy
import numpy as np
from session import ADDON_MODULE, Session, add_camera, error_of, hand, printed_by

s = Session()
s.install()
a = s.args
ops = bpy.ops.handforge
BACKEND = bool(a.get("port"))
if BACKEND:
    s.start_backend()


def fresh_scene(name: str):
    """A new scene: both hands, artist keys at 1 and 20 (flat, fist), a generated key at 10, frame 10."""
    scene = bpy.data.scenes.new(name)
    bpy.context.window.scene = scene
    scene.frame_start, scene.frame_end = 1, 20
    scene.render.resolution_x = scene.render.resolution_y = 32
    assert ops.add_hands() == {"FINISHED"}
    scene.frame_set(1)
    assert ops.key_pose(sides="BOTH") == {"FINISHED"}
    assert ops.apply_preset(preset="fist", sides="BOTH") == {"FINISHED"}
    scene.frame_set(20)
    assert ops.key_pose(sides="BOTH") == {"FINISHED"}
    assert ops.apply_preset(preset="point", sides="BOTH") == {"FINISHED"}
    scene.frame_set(10)
    assert ops.key_pose(sides="BOTH") == {"FINISHED"}
    for side in ("left", "right"):
        for fc in bag_of(hand(side)).fcurves:
            for kp in fc.keyframe_points:
                if kp.co[0] == 10:
                    kp.type = "GENERATED"
    scene.frame_set(12)
    bpy.context.view_layer.objects.active = hand("right")  # the anchor of Sample Interaction
    cam = add_camera(f"Cam {name}", (0.0, -1.0, 0.2))
    scene.camera = cam
    return scene


def bag_of(obj):
    return importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(obj)


def mesh_of(arm_obj):
    return next(c for c in arm_obj.children if c.type == "MESH")


def state() -> dict:
    """What a button may change: channels, keys, rest bones, shape keys, the rigs' identity, the objects."""
    out = {"objects": len(bpy.context.scene.objects)}
    for side in ("left", "right"):
        obj = hand(side)
        out[f"{side}_uid"] = obj.session_uid
        out[f"{side}_channels"] = np.round([np.array(pb.matrix_basis) for pb in obj.pose.bones], 5).tolist()
        bag = bag_of(obj)
        out[f"{side}_keys"] = {f"{fc.data_path}|{fc.array_index}": [(round(k.co[0], 3), round(k.co[1], 5), k.type,
                                                                     k.select_control_point)
                                                                    for k in fc.keyframe_points]
                               for fc in (bag.fcurves if bag is not None else ())}
        out[f"{side}_heads"] = np.round([b.head_local for b in obj.data.bones], 5).tolist()
        keys_ = mesh_of(obj).data.shape_keys
        out[f"{side}_shape_keys"] = {k.name: round(k.value, 5) for k in keys_.key_blocks} if keys_ else {}
        out[f"{side}_betas"] = np.round(list(obj.handforge.betas), 5).tolist()
    return out


def enter(mode: str):
    """Put the right hand into ``mode`` ('ARM_EDIT', 'MESH_EDIT', 'WEIGHT_PAINT', 'SCULPT'); returns the object."""
    obj = hand("right") if mode == "ARM_EDIT" else mesh_of(hand("right"))
    for o in bpy.context.view_layer.objects:
        o.select_set(False)
    bpy.context.view_layer.objects.active = obj
    obj.select_set(True)
    bpy.ops.object.mode_set(mode={"ARM_EDIT": "EDIT", "MESH_EDIT": "EDIT"}.get(mode, mode))
    return obj


def leave():
    active = bpy.context.view_layer.objects.active
    if active is not None and active.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")


def diff(x: dict, y: dict) -> list[str]:
    return sorted(k for k in x if x[k] != y.get(k))


def setup_user_pose():
    """A saved user pose (Apply/Delete User Pose)."""
    if "probe" not in importlib.import_module(f"{ADDON_MODULE}.library").load_user_poses():
        ops.save_user_pose(name="probe", side="RIGHT")


CALLS = {
    "add_hands": lambda: ops.add_hands(),
    "set_shape": lambda: ops.set_shape(betas=[0.8] + [0.0] * 9, sides="RIGHT"),
    "apply_preset": lambda: ops.apply_preset(preset="victory", sides="RIGHT"),
    "mirror_pose": lambda: ops.mirror_pose(direction="LEFT_TO_RIGHT"),
    "mirror_pose_from": lambda: ops.mirror_pose(direction="RIGHT_TO_LEFT", include_placement=True),
    "reset_pose": lambda: ops.reset_pose(sides="RIGHT"),
    "copy_pose": lambda: ops.copy_pose(sides="RIGHT"),
    "paste_pose": lambda: ops.paste_pose(sides="RIGHT", text=a["pose"]),
    "key_pose": lambda: ops.key_pose(sides="RIGHT"),
    "export_motion": lambda: ops.export_motion(filepath=a["clip_out"], sides="RIGHT"),
    "import_motion": lambda: ops.import_motion(filepath=a["clip_in"]),
    "select_generated_keys": lambda: ops.select_generated_keys(sides="RIGHT"),
    "delete_generated_keys": lambda: ops.delete_generated_keys(sides="RIGHT"),
    "make_artist_keys": lambda: ops.make_artist_keys(sides="RIGHT"),
    "save_user_pose": lambda: ops.save_user_pose(name="probe2", side="RIGHT", overwrite=True),
    "apply_user_pose": lambda: ops.apply_user_pose(name="probe", sides="RIGHT"),
}
if BACKEND:
    CALLS.update({
        "motion_inbetween": lambda: ops.motion_inbetween(engine="spline", sides="RIGHT", frame_start=1, frame_end=20),
        "sample_interaction": lambda: ops.sample_interaction(engine="templates", count=2, seed=3),
        "interaction_apply": lambda: ops.interaction_apply(),
        "interaction_key": lambda: ops.interaction_key(count=1),
        "export_renders": lambda: ops.export_renders(directory=next_folder(), engine="none",
                                                     frame_start=12, frame_end=12, cameras="ACTIVE"),
    })
_FOLDERS = iter(range(10000))


def next_folder() -> str:
    return f"{a['renders']}/{next(_FOLDERS)}"


# calls that need another first, in Object Mode (candidates to apply or key)
BEFORE = {"interaction_apply": lambda: ops.sample_interaction(engine="templates", count=2, seed=3),
          "interaction_key": lambda: ops.sample_interaction(engine="templates", count=2, seed=3)}

MODES = a.get("modes", ["ARM_EDIT", "MESH_EDIT", "WEIGHT_PAINT", "SCULPT"])


def run(name: str, mode: str | None) -> dict:
    fresh_scene(f"{name} {mode}")
    setup_user_pose()
    if name in BEFORE:
        BEFORE[name]()
    obj = enter(mode) if mode else None
    before = state()
    op = name.removesuffix("_from")
    poll = getattr(ops, op).poll()  # the button greyed out?
    err = ""
    result = None
    try:
        result = sorted(CALLS[name]())
    except RuntimeError as exc:
        err = str(exc)
    except Exception as exc:  # noqa: BLE001
        err = f"{type(exc).__name__}: {exc}"
    during = state()
    mode_after = obj.mode if obj is not None else "OBJECT"
    leave()
    after = state()
    return {"error": err, "result": result, "changed": diff(before, after), "lost_on_leave": diff(during, after),
            "mode_after": mode_after, "after": after, "poll": poll}


def probe():
    out = {}
    for name in CALLS:
        base = run(name, None)
        for mode in MODES:
            got = run(name, mode)
            got["vs_object_mode"] = [k for k in diff(base["after"], got["after"])
                                     if k not in ("objects", "left_uid", "right_uid")]  # (another scene's)
            got.pop("after")
            out[f"{name}|{mode}"] = got
        base.pop("after")
        out[f"{name}|OBJECT"] = base
    return out


def make_clip():
    """A motion clip to import."""
    fresh_scene("clip")
    ops.export_motion(filepath=a["clip_in"], sides="BOTH")


def slider_panel():
    """The Pose panel's finger sliders while the right hand's armature, then its mesh, is in Edit Mode."""
    from session import recorded_layout

    out = {}
    for mode in ("ARM_EDIT", "MESH_EDIT", None):
        fresh_scene(f"panel {mode}")
        bpy.context.scene.handforge.target = "RIGHT"
        if mode:
            enter(mode)
        draw = bpy.types.Panel.bl_rna_get_subclass_py("HANDFORGE_PT_pose").draw
        out[str(mode)] = [c[2].get("text") for c in recorded_layout(draw) if c[0] == "label"]
        leave()
    # a rig that lost a joint: its sliders are not drawn (they moved nothing), the reason is
    fresh_scene("panel lost bone")
    bpy.context.scene.handforge.target = "RIGHT"
    hand("right").data.bones["ring3"].name = "ringX"
    draw = bpy.types.Panel.bl_rna_get_subclass_py("HANDFORGE_PT_pose").draw
    out["lost"] = [c[2].get("text") for c in recorded_layout(draw) if c[0] in ("label", "prop")]
    hand("right").data.bones["ringX"].name = "ring3"
    return out


def add_hands_said():
    """What Add Hands says when pressed with the right hand in each mode (it leaves the mode)."""
    out = {}
    for mode in [None, *MODES]:
        fresh_scene(f"said {mode}")
        if mode:
            enter(mode)
        out[str(mode)] = printed_by(lambda: ops.add_hands())[1]
        leave()
    return out


def add_hands_refused():
    """Add Hands pressed with a cube in Edit Mode or Sculpt Mode and the hands' collection excluded from the view
    layer: what it says, the mode the artist is in after it, whether objects were added."""
    out = {}
    for mode in ("EDIT", "SCULPT"):
        scene = fresh_scene(f"refused {mode}")
        collection = hand("right").users_collection[0]
        assert bpy.ops.mesh.primitive_cube_add() == {"FINISHED"}
        bpy.ops.object.mode_set(mode=mode)
        bpy.context.view_layer.layer_collection.children[collection.name].exclude = True
        objects = len(scene.objects)
        message = error_of(lambda: ops.add_hands())
        out[mode] = {"message": message, "mode_after": bpy.context.mode, "added": len(scene.objects) - objects}
        leave()
    return out


s.check("clip", make_clip)
s.check("add_hands_said", add_hands_said)
s.check("add_hands_refused", add_hands_refused)
s.check("slider_panel", slider_panel)
s.check("probe", probe)
s.finish()
