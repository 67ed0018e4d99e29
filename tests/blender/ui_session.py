"""Blender session: what the add-on says — every operator and property described (one line each),
shape sliders labelled, Add Hands on a scene with hands, operators with nothing to do."""

from __future__ import annotations

import os

import bpy

from session import ADDON_MODULE, Session, error_of, hand, printed_by, recorded_layout, ui_context

s = Session()
s.install()


def undescribed() -> dict:
    """Operators and properties of the add-on whose tooltip is empty or broken over lines."""
    missing, broken = [], []

    def look(owner: str, rna) -> None:
        for prop in rna.properties:
            if prop.identifier in ("rna_type", "bl_idname", "name") or prop.is_hidden:
                continue
            text = prop.description
            (missing if not text.strip() else broken if "\n" in text else []).append(f"{owner}.{prop.identifier}")

    for name in dir(bpy.ops.handforge):
        rna = getattr(bpy.ops.handforge, name).get_rna_type()
        if not rna.description.strip():
            missing.append(f"handforge.{name}")
        elif "\n" in rna.description:
            broken.append(f"handforge.{name}")
        look(f"handforge.{name}", rna)
    seen = set()

    def walk(rna) -> None:  # the add-on's property groups, reached from where they hang
        if rna.identifier in seen:
            return
        seen.add(rna.identifier)
        look(rna.identifier, rna)
        for prop in rna.properties:
            if prop.type in ("POINTER", "COLLECTION") and prop.fixed_type.identifier.startswith("HANDFORGE"):
                walk(prop.fixed_type)

    for owner in (bpy.types.Object, bpy.types.Scene, bpy.types.WindowManager):
        for prop in owner.bl_rna.properties:  # ``handforge`` and the features' own (``handforge_interaction``)
            if prop.identifier.startswith("handforge") and prop.type == "POINTER":
                if not prop.description.strip():  # the registration's own tooltip
                    missing.append(f"{owner.__name__}.{prop.identifier}")
                walk(prop.fixed_type)
    look("preferences", bpy.context.preferences.addons[ADDON_MODULE].preferences.bl_rna)
    hand_props = bpy.types.Object.bl_rna.properties["handforge"].fixed_type.properties
    spread = {p.identifier.removeprefix("spread_"): p.description for p in hand_props
              if p.identifier.startswith("spread_")}
    return {"missing": missing, "broken": broken, "operators": len(dir(bpy.ops.handforge)), "groups": sorted(seen),
            "spread": spread}


s.check("described", undescribed)


def path_fields_without_relative() -> list[str]:
    """The operators' file and folder fields (shown: a file browser's hidden ``filepath`` gets an absolute
    path) that do not accept a path relative to the .blend (``//``)."""
    return [f"handforge.{name}.{prop.identifier}" for name in dir(bpy.ops.handforge)
            for prop in getattr(bpy.ops.handforge, name).get_rna_type().properties
            if getattr(prop, "subtype", "") in ("FILE_PATH", "DIR_PATH") and not prop.is_hidden
            and not prop.is_path_supports_blend_relative]


s.check("path_fields", path_fields_without_relative)


def shape_labels() -> list[str]:
    """The labels the Set Shape dialog gives its ten sliders (read from its draw code's layout)."""
    return [c[2].get("text", "") for c in recorded_layout(bpy.types.HANDFORGE_OT_set_shape.draw)
            if c[0] == "prop" and len(c[1]) > 1 and c[1][1] == "betas"]


s.check("shape_labels", shape_labels)


def add_twice() -> dict:
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    first = {side: hand(side).name for side in ("left", "right")}
    first_x = [bpy.data.objects[n].matrix_world.translation.x for n in first.values()]
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    second = {side: hand(side).name for side in ("left", "right")}
    second_x = [bpy.data.objects[n].matrix_world.translation.x for n in second.values()]
    return {"first": first, "second": second, "first_x": first_x, "second_x": second_x,
            "armatures": sum(o.type == "ARMATURE" for o in bpy.data.objects)}


s.check("add_twice", add_twice)


def nothing_to_do() -> dict:
    """Update Correctives on open hands (which have none): it says so and changes nothing."""
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        result = bpy.ops.handforge.update_correctives()
    said = {}
    for sides in ("BOTH", "LEFT"):  # no generated keys to select
        printed = io.StringIO()
        with redirect_stdout(printed):
            bpy.ops.handforge.select_generated_keys(sides=sides)
        said[sides] = printed.getvalue()
    return {"result": sorted(result), "printed": out.getvalue(), "no_generated_keys": said}


s.check("nothing_to_do", nothing_to_do)


def backend_panel() -> dict:
    """The Backend panel's engine boxes for a welcome whose image engines have no job kinds (their
    buttons live in the Image panel) and whose interaction engine runs without its learned model."""
    import importlib

    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    props = bpy.context.window_manager.handforge
    long_reason = "image.sd_model is not set; add to /root/.config/handforge/config.toml:\n    [image]\n    sd_model = \"x\""
    connection.BACKEND.capabilities = {
        "engines": {"attentionhand": {"available": False, "reason": long_reason, "hint": ""},
                    "interaction": {"available": True, "reason": "", "hint": "",
                                    "note": "engine 'learned' cannot run (interaction.checkpoint: not set); "
                                            "engine 'templates' can"}},
        "kinds": {"interaction.sample": {"engine": "interaction"}}}
    try:
        connection._sync_capabilities(props)
        calls = recorded_layout(bpy.types.HANDFORGE_PT_backend.draw)
        interaction = recorded_layout(bpy.types.HANDFORGE_PT_interaction.draw)
    finally:
        connection.BACKEND.capabilities = None
    return {"labels": [c[2].get("text", "") for c in calls if c[0] == "label"],
            "icons": [c[2].get("icon", "") for c in calls if c[0] == "label"],
            "jobs": [c[3] for c in calls if c[0] == "set" and c[1] == "handforge.run_job"],
            "bad": [c for c in calls + interaction if c[0] == "bad"],
            "interaction_first_label": next(c[2].get("text", "") for c in interaction if c[0] == "label")}


s.check("backend_panel", backend_panel)


def transfer_panel() -> dict:
    """The Transfer Pose panel when the backend's transfer engine cannot run: its reason, with the config
    snippet that fixes it, said in full."""
    import importlib

    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    props = bpy.context.window_manager.handforge
    reason = ("transfer.checkpoint is not set; add to /root/.config/handforge/config.toml:\n    [transfer]\n"
              "    checkpoint = \"/models/ihpt.pt\"")
    connection.BACKEND.capabilities = {"engines": {"ihpt": {"available": False, "reason": reason, "hint": ""}},
                                       "kinds": {"image.transfer": {"engine": "ihpt"}}}
    client, connection.BACKEND.client = connection.BACKEND.client, object()  # (as if connected: never called)
    try:
        connection._sync_capabilities(props)
        calls = recorded_layout(bpy.types.HANDFORGE_PT_transfer.draw)
    finally:
        connection.BACKEND.capabilities, connection.BACKEND.client = None, client
        connection._sync_capabilities(props)
    return {"labels": [c[2].get("text", "") for c in calls if c[0] == "label"]}


s.check("transfer_panel", transfer_panel)


def _clear_scene() -> None:
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)


def set_shape_with_nothing_active() -> dict:
    """Set Shape (it edits the bones in Edit Mode) with no active object: none is active after it either."""
    _clear_scene()
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    bpy.context.view_layer.objects.active = None
    result = bpy.ops.handforge.set_shape(betas=(1.0,) + (0.0,) * 9)
    active = bpy.context.view_layer.objects.active
    return {"result": sorted(result), "active": active.name if active is not None else None}


s.check("set_shape_nothing_active", set_shape_with_nothing_active)


def save_pose_with_only_a_left_hand() -> dict:
    """Save Pose (from the panel: its dialog) in a scene with only a left hand: it saves that hand's pose."""
    _clear_scene()
    assert bpy.ops.handforge.add_hands(sides="LEFT") == {"FINISHED"}
    bpy.context.scene.handforge.target = "BOTH"
    import importlib

    # (blender -b runs no operator's invoke: the side its dialog offers is asked of the add-on directly)
    side = importlib.import_module(f"{ADDON_MODULE}.ops_library")._default_side(bpy.context)
    return {"side": side, "error": error_of(lambda: bpy.ops.handforge.save_user_pose(name="only left", side=side))}


s.check("save_pose_only_left", save_pose_with_only_a_left_hand)

def key_pose_on_an_excluded_hand() -> dict:
    """Key Pose with the hands' collection excluded from the view layer (its checkbox in the Outliner):
    Blender no longer evaluates them, so their bones keep the pose of the frame they were excluded at."""
    _clear_scene()
    scene = bpy.context.scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    scene.frame_set(1)
    assert bpy.ops.handforge.key_pose() == {"FINISHED"}
    scene.frame_set(5)
    assert bpy.ops.handforge.apply_preset(preset="fist", sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.key_pose() == {"FINISHED"}
    curve = next(fc for fc in hand("right").animation_data.action.fcurves if '"index1"' in fc.data_path)
    before = [tuple(k.co) for k in curve.keyframe_points]
    scene.frame_set(1)
    layer = next(c for c in bpy.context.view_layer.layer_collection.children
                 if hand("right").name in c.collection.objects)
    layer.exclude = True
    scene.frame_set(5)
    out = {"key": error_of(lambda: bpy.ops.handforge.key_pose()),
           "copy": error_of(lambda: bpy.ops.handforge.copy_pose()),
           "keys_kept": [tuple(k.co) for k in curve.keyframe_points] == before}
    layer.exclude = False
    return out


s.check("key_pose_excluded", key_pose_on_an_excluded_hand)


def key_pose_on_a_disabled_hand() -> dict:
    """Key Pose, Copy Pose and Export Motion (joint limits on: read frame by frame) with the hands disabled in
    viewports (the collection's monitor icon; the rig and its mesh): Blender no longer animates them, while the
    scene's HandForge pointers keep an evaluated copy of each, so the check passed and the stale pose was keyed
    over the frame's keys, and exported on every frame. Without joint limits the export reads the curves."""
    _clear_scene()
    scene = bpy.context.scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right = hand("right")
    scene.frame_set(1)
    assert bpy.ops.handforge.key_pose() == {"FINISHED"}
    scene.frame_set(5)
    assert bpy.ops.handforge.apply_preset(preset="fist", sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.key_pose() == {"FINISHED"}
    curve = next(fc for fc in right.animation_data.action.fcurves if '"index1"' in fc.data_path)
    before = [tuple(k.co) for k in curve.keyframe_points]
    collection = right.users_collection[0]
    mesh_obj = next(c for c in right.children if c.type == "MESH")
    out = {}
    for how in ("collection", "objects"):
        scene.frame_set(1)
        if how == "collection":
            collection.hide_viewport = True
        else:
            right.hide_viewport = mesh_obj.hide_viewport = True
        scene.frame_set(5)
        right.handforge.use_limits = True
        path = str(s.work / f"disabled_{how}.npz")
        out[how] = {"key": error_of(lambda: bpy.ops.handforge.key_pose()),
                    "copy": error_of(lambda: bpy.ops.handforge.copy_pose()),
                    "export": error_of(lambda: bpy.ops.handforge.export_motion(filepath=path, frame_start=1,
                                                                               frame_end=5)),
                    "written": os.path.exists(path), "keys_kept": [tuple(k.co) for k in curve.keyframe_points] == before}
        right.handforge.use_limits = False
        out[how]["export_from_curves"] = sorted(bpy.ops.handforge.export_motion(filepath=path, frame_start=1,
                                                                                frame_end=5))
        collection.hide_viewport = right.hide_viewport = mesh_obj.hide_viewport = False
    return out


s.check("key_pose_disabled", key_pose_on_a_disabled_hand)


def set_shape_without_shape_keys() -> dict:
    """Set Shape on a hand whose mesh lost its shape keys (removed to apply a modifier): refused, unchanged."""
    _clear_scene()
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    mesh_obj = next(c for c in hand("right").children if c.type == "MESH")
    mesh_obj.shape_key_clear()
    head = tuple(hand("right").data.bones["index1"].head_local)
    error = error_of(lambda: bpy.ops.handforge.set_shape(betas=(2.0,) + (0.0,) * 9))
    return {"error": error, "bones_kept": tuple(hand("right").data.bones["index1"].head_local) == head,
            "betas": list(hand("left").handforge.betas)[:1] + list(hand("right").handforge.betas)[:1]}


s.check("set_shape_no_shape_keys", set_shape_without_shape_keys)


def cancel_job_without_backend() -> dict:
    """Cancel Job with no backend connected (and so no job): says there is nothing to cancel."""
    result, printed = printed_by(lambda: bpy.ops.handforge.cancel_job())
    return {"result": result, "printed": printed}


s.check("cancel_no_backend", cancel_job_without_backend)


def correctives_of_a_mano_hand_without_its_mesh() -> dict:
    """Update Correctives on MANO hands, the left one without its hand mesh (as on a library override
    of the armature alone): it says the mesh is missing, not that MANO hands have no correctives."""
    _clear_scene()
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    for side in ("left", "right"):
        hand(side).handforge.hand_model = "mano"
    mesh_obj = next(c for c in hand("left").children if c.type == "MESH")
    mesh_obj.parent = None
    return {"error": error_of(lambda: bpy.ops.handforge.update_correctives()), "left": hand("left").name}


s.check("correctives_no_mesh", correctives_of_a_mano_hand_without_its_mesh)


# (operator, option): options whose value from one call must not be the next call's when it omits them
ONE_SHOT_OPTIONS = [("add_hands", "source"), ("connect", "address"), ("cancel_job", "job_id"), ("run_job", "kind"),
                    ("run_job", "params"), ("generate_image", "prompt"), ("apply_user_pose", "name"),
                    ("save_user_pose", "name"), ("save_user_pose", "overwrite"), ("delete_user_pose", "name"),
                    ("motion_follow_path", "left_path"), ("motion_follow_path", "right_path"),
                    ("motion_regenerate", "seed")]


def remembered_options() -> dict:
    """Blender gives an operator option the last call's value when a call omits it, unless the option is
    SKIP_SAVE: here, every path field, the one-shot options above and every frame number whose default
    (-1) is the scene's that it would remember, but the file path of an operator whose button always opens
    the file browser on it (``ops_keys.FILE_BROWSER_OPERATORS``): Export Motion to a file, then again without
    one, as a button calls it, writes that file again."""
    import importlib

    browsers = importlib.import_module(f"{ADDON_MODULE}.ops_keys").FILE_BROWSER_OPERATORS
    remembered, browser_paths = [], {}
    for name in dir(bpy.ops.handforge):
        for prop in getattr(bpy.ops.handforge, name).get_rna_type().properties:
            is_path = getattr(prop, "subtype", "") in ("FILE_PATH", "DIR_PATH")
            scene_frame = prop.identifier in ("frame_start", "frame_end") and getattr(prop, "default", 0) == -1
            # Hands whose "Panel Setting" stands for the panel's: a remembered Left overrode the panel's Both
            panel_sides = prop.identifier == "sides" and "SCENE" in {i.identifier for i in getattr(prop, "enum_items", ())}
            if f"handforge.{name}" in browsers and prop.identifier == "filepath":
                browser_paths[f"handforge.{name}"] = not prop.is_skip_save
            elif (is_path or scene_frame or panel_sides or (name, prop.identifier) in ONE_SHOT_OPTIONS) \
                    and not prop.is_skip_save:
                remembered.append(f"handforge.{name}.{prop.identifier}")
    _clear_scene()
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    first = s.work / "first.npz"
    export = bpy.ops.handforge.export_motion
    with bpy.context.temp_override(**ui_context()):  # as a button calls it (blender -b remembers nothing otherwise)
        assert export("EXEC_DEFAULT", True, filepath=str(first), frame_start=1, frame_end=2) == {"FINISHED"}
        first.unlink()
        export("EXEC_DEFAULT", True, frame_start=3, frame_end=4)  # (the browser's path: remembered)
        # one Redo-panel change of Hands to Left, then the buttons again with the panel's Both
        scene = bpy.context.scene
        scene.handforge.target = "BOTH"
        assert bpy.ops.handforge.apply_preset("EXEC_DEFAULT", True, preset="fist", sides="LEFT") == {"FINISHED"}
        assert bpy.ops.handforge.reset_pose("EXEC_DEFAULT", True, sides="LEFT") == {"FINISHED"}
        assert bpy.ops.handforge.apply_preset("EXEC_DEFAULT", True, preset="fist") == {"FINISHED"}
        panel_curls = {side: round(getattr(scene.handforge, side).handforge.curl_index, 3) for side in ("left", "right")}
    return {"remembered": remembered, "browser_paths": browser_paths, "browser_rewrote": first.exists(),
            "panel_curls": panel_curls}


s.check("remembered_options", remembered_options)

s.finish()
