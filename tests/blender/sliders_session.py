"""Blender session: finger sliders as offsets on the current pose, keyed sliders on playback,
sliders following the bones when scrubbing, auto-keying of slider tweaks."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import bpy
import numpy as np

from session import Session, hand

s = Session()
s.install()
a = s.args
JOINTS = a["joints"]
SLIDERS = [f"{kind}_{finger}" for finger in a["fingers"] for kind in ("curl", "spread")]
scene = bpy.context.scene


def rotations(side: str) -> np.ndarray:
    arm = hand(side)
    return np.array([np.array(arm.pose.bones[n].matrix_basis)[:3, :3] for n in JOINTS])


def shown_tip(side: str, name: str) -> np.ndarray:
    """Head of a fingertip marker bone as evaluated (what the viewport shows), world metres."""
    bpy.context.view_layer.update()
    arm = hand(side)
    return np.array(arm.matrix_world @ arm.pose.bones[name].head)


def sliders_of(side: str) -> dict[str, float]:
    return {name: getattr(hand(side).handforge, name) for name in SLIDERS}


assert bpy.ops.handforge.add_hands() == {"FINISHED"}
scene.tool_settings.use_keyframe_insert_auto = False


def same_value():
    out = {}
    for preset in ("pinch", "fist", "ok"):
        bpy.ops.handforge.apply_preset(preset=preset, sides="BOTH")
        before = {side: rotations(side) for side in ("left", "right")}
        for side in ("left", "right"):
            props = hand(side).handforge
            for name in SLIDERS:
                setattr(props, name, getattr(props, name))
        out[preset] = max(float(np.abs(rotations(side) - before[side]).max()) for side in ("left", "right"))
    return out


s.check("same_value", same_value)


def nudge():
    bpy.ops.handforge.apply_preset(preset="ok", sides="BOTH")
    props = hand("right").handforge
    s.arrays["ok_before"] = rotations("right")
    gap_before = float(np.linalg.norm(shown_tip("right", "thumb4") - shown_tip("right", "index4")))
    curl_before = props.curl_thumb
    props.curl_thumb = curl_before + 0.01
    s.arrays["ok_after"] = rotations("right")
    gap_after = float(np.linalg.norm(shown_tip("right", "thumb4") - shown_tip("right", "index4")))
    props.spread_index = props.spread_index - 0.05
    s.arrays["ok_spread"] = rotations("right")
    return {"gap_before": gap_before, "gap_after": gap_after, "curl_before": curl_before,
            "curl_after": props.curl_thumb}


s.check("nudge", nudge)


def keyed_slider():
    right = hand("right")
    bpy.ops.handforge.reset_pose(sides="BOTH")
    scene.frame_set(1)
    right.handforge.curl_index = 0.0
    right.keyframe_insert("handforge.curl_index", frame=1)
    right.handforge.curl_index = 1.0
    right.keyframe_insert("handforge.curl_index", frame=11)
    for visit, frame in enumerate((11, 6, 1, 11)):
        scene.frame_set(frame)
        name = f"keyed_{frame}" if visit < 3 else f"keyed_again_{frame}"
        s.arrays[name] = rotations("right")
        s.arrays[f"{name}_tip"] = shown_tip("right", "index4")
    bpy.ops.handforge.export_motion(filepath=a["keyed_clip"], frame_start=1, frame_end=11, sides="RIGHT")
    right.animation_data_clear()
    return True


s.check("keyed_slider", keyed_slider)


def scrubbing():
    right = hand("right")
    scene.frame_set(1)
    bpy.ops.handforge.apply_preset(preset="fist", sides="RIGHT")
    bpy.ops.handforge.key_pose(sides="RIGHT")
    scene.frame_set(10)
    bpy.ops.handforge.apply_preset(preset="flat", sides="RIGHT")
    bpy.ops.handforge.key_pose(sides="RIGHT")
    out = {}
    for visit, frame in enumerate((1, 10, 1)):
        scene.frame_set(frame)
        out[f"at_{frame}" if visit < 2 else f"again_at_{frame}"] = sliders_of("right")
    # a bone turned by hand: the sliders show it after the update
    right.pose.bones["middle1"].rotation_euler[0] = 0.8
    right.pose.bones["middle2"].rotation_euler[0] = 0.9
    bpy.context.view_layer.update()
    out["after_hand_turn"] = sliders_of("right")
    right.animation_data_clear()
    return out


s.check("scrubbing", scrubbing)


def auto_keying():
    right = hand("right")
    bpy.ops.handforge.reset_pose(sides="RIGHT")
    tool = scene.tool_settings
    tool.use_keyframe_insert_auto = True
    tool.keyframe_type = "BREAKDOWN"
    scene.frame_set(20)
    right.handforge.curl_middle = 0.5
    tool.use_keyframe_insert_auto = False
    scene.frame_set(25)
    right.handforge.curl_ring = 0.5
    keyed = {}
    action = right.animation_data.action if right.animation_data else None
    for fc in (action.fcurves if action else ()):
        keyed.setdefault(fc.data_path, []).extend((kp.co[0], kp.type) for kp in fc.keyframe_points)
    return {"keyed": keyed}


s.check("auto_keying", auto_keying)


def auto_keying_at_a_subframe():
    """A slider tweak at frame 30.5 is keyed at 30.5, the time shown (it keyed frame 30)."""
    right = hand("right")
    right.animation_data_clear()
    scene.tool_settings.use_keyframe_insert_auto = True
    scene.frame_set(30, subframe=0.5)
    right.handforge.curl_middle = 0.2
    scene.tool_settings.use_keyframe_insert_auto = False
    fc = right.animation_data.action.fcurves.find('pose.bones["middle1"].rotation_euler', index=0)
    frames = [kp.co[0] for kp in fc.keyframe_points]
    scene.frame_set(1)
    right.animation_data_clear()
    return frames


s.check("auto_keying_subframe", auto_keying_at_a_subframe)


def keyed_slider_under_pose_tools():
    """A rig whose index curl slider is keyed (0 at frames 1 and 20): the slider's curve moves the finger on
    every frame change, so what the pose tools, Key Pose, imports and the keying set key must key it too."""
    right = hand("right")
    right.animation_data_clear()
    tool = scene.tool_settings
    tool.keyframe_type = "KEYFRAME"  # (the auto_keying check left BREAKDOWN)
    out = {}
    bpy.ops.handforge.reset_pose(sides="RIGHT")
    for frame in (1, 20):
        scene.frame_set(frame)
        right.handforge.curl_index = 0.0
        right.keyframe_insert("handforge.curl_index", frame=frame)
        bpy.ops.handforge.key_pose(sides="RIGHT")
    # Apply Preset then Key Pose: the preset is what comes back to the frame
    scene.frame_set(10)
    bpy.ops.handforge.apply_preset(preset="fist", sides="RIGHT")
    s.arrays["key_pose_applied"] = rotations("right")
    bpy.ops.handforge.key_pose(sides="RIGHT")
    scene.frame_set(11)
    scene.frame_set(10)
    s.arrays["key_pose_back"] = rotations("right")
    # auto-keying on: Apply Preset and Paste Pose key what they pose (Blender's own pose tools do)
    tool.use_keyframe_insert_auto = True
    try:
        scene.frame_set(14)
        bpy.ops.handforge.apply_preset(preset="point", sides="RIGHT")
        s.arrays["autokey_preset_applied"] = rotations("right")
        scene.frame_set(3)
        bpy.ops.handforge.apply_preset(preset="pinch", sides="RIGHT")
        bpy.ops.handforge.copy_pose(sides="RIGHT")
        scene.frame_set(16)
        bpy.ops.handforge.paste_pose(sides="RIGHT")
        s.arrays["autokey_paste_applied"] = rotations("right")
    finally:
        tool.use_keyframe_insert_auto = False
    for frame in (15, 14):
        scene.frame_set(frame)
    s.arrays["autokey_preset_back"] = rotations("right")
    scene.frame_set(16)
    s.arrays["autokey_paste_back"] = rotations("right")
    out["index2_keys"] = [kp.co[0] for kp in right.animation_data.action.fcurves.find(
        'pose.bones["index2"].rotation_euler', index=0).keyframe_points]
    # a clip imported over frames 40-50 (the keyed_slider check's: the index curls from 0 to 1): the keyed
    # slider gets generated keys of the curl each frame shows, so the frames show the clip
    bpy.ops.handforge.import_motion(filepath=a["keyed_clip"], frame_start=40)
    for frame in (42, 43):
        scene.frame_set(frame)
    s.arrays["imported_43"] = rotations("right")
    out["slider_43"] = right.handforge.curl_index
    # a generated frame fixed by hand and keyed with I and the HandForge Pose keying set is the artist's
    scene.frame_set(45)
    right.pose.bones["middle2"].rotation_euler[0] = 0.4
    window = bpy.context.window_manager.windows[0]
    area = window.screen.areas[0]
    saved_type, area.type = area.type, "VIEW_3D"
    try:  # (no undo push: one with an area override crashes Blender 4.5 in background mode, see ui_context)
        with bpy.context.temp_override(window=window, screen=window.screen, area=area, region=area.regions[-1]):
            out["keying_set"] = sorted(bpy.ops.anim.keyframe_insert("EXEC_DEFAULT", False, type="HANDFORGE_KS_pose"))
    finally:
        area.type = saved_type
    middle = right.animation_data.action.fcurves.find('pose.bones["middle2"].rotation_euler', index=0)
    out["fixed_key"] = [[kp.co[1], kp.type] for kp in middle.keyframe_points if kp.co[0] == 45]
    out["generated_beside"] = [kp.type for kp in middle.keyframe_points if kp.co[0] == 46]
    # a muted slider curve moves nothing: an import leaves it alone without a word, Key Pose does not key it
    slider = right.animation_data.action.fcurves.find("handforge.curl_index")
    slider.mute = True
    before = len(slider.keyframe_points)
    printed = io.StringIO()
    with redirect_stdout(printed):
        bpy.ops.handforge.import_motion(filepath=a["keyed_clip"], frame_start=60)
    scene.frame_set(75)
    bpy.ops.handforge.key_pose(sides="RIGHT")
    out["muted"] = {"printed": printed.getvalue(), "keys_added": len(slider.keyframe_points) - before}
    right.animation_data_clear()
    scene.frame_set(1)
    return out


s.check("keyed_slider_tools", keyed_slider_under_pose_tools)


def import_keeps_unkeyed_edits():
    """Import Motion onto a rig with a keyed slider evaluates the frame (the slider moves its finger then), which
    puts every animated value of the scene back on its keys: another object moved by hand, not keyed yet,
    jumped back to its keys, lost unsaid."""
    right = hand("right")
    bpy.ops.handforge.reset_pose(sides="BOTH")
    right.handforge.curl_index = 0.0
    right.keyframe_insert("handforge.curl_index", frame=1)
    right.handforge.curl_index = 1.0
    right.keyframe_insert("handforge.curl_index", frame=11)
    prop = bpy.data.objects.new("Prop", None)
    scene.collection.objects.link(prop)
    prop.location = (0.0, 0.0, 0.0)
    prop.keyframe_insert("location", frame=1)
    prop.location = (1.0, 0.0, 0.0)
    prop.keyframe_insert("location", frame=11)
    scene.frame_set(6)
    prop.location = (0.0, 2.0, 0.0)  # moved by hand, not keyed
    bpy.ops.handforge.import_motion(filepath=a["keyed_clip"], frame_start=100)
    out = {"prop": list(prop.location), "slider": right.handforge.curl_index}
    s.arrays["import_shown"] = rotations("right")
    scene.frame_set(6)  # what Blender shows of the rig's animation on this frame
    s.arrays["import_evaluated"] = rotations("right")
    out["slider_evaluated"] = right.handforge.curl_index
    right.animation_data_clear()
    bpy.data.objects.remove(prop)
    scene.frame_set(1)
    return out


s.check("import_keeps_edits", import_keeps_unkeyed_edits)


def not_a_number():
    """A NaN set on a slider (a script, an expression typed in the field) went into the bones' rotations, was
    keyed as such, and then even Reset Pose failed ("hand_pose has a non-finite value")."""
    right = hand("right")
    bpy.ops.handforge.reset_pose(sides="BOTH")
    right.handforge.curl_index = 0.4
    before = rotations("right")
    right.handforge.curl_index = float("nan")
    out = {"bones_unchanged": bool(np.array_equal(rotations("right"), before)),
           "slider": right.handforge.curl_index}
    for bone in ("index1", "index2", "index3"):  # NaN in the bones by other means: Reset Pose still resets
        pb = right.pose.bones[bone]
        if pb.rotation_mode == "QUATERNION":
            pb.rotation_quaternion = (float("nan"),) * 4
        else:
            pb.rotation_euler = (float("nan"),) * 3
    out["nan_in_bones"] = not bool(np.isfinite(rotations("right")).all())
    out["reset"] = sorted(bpy.ops.handforge.reset_pose(sides="BOTH"))
    out["finite_after_reset"] = bool(np.isfinite(rotations("right")).all())
    out["flat_after_reset"] = sliders_of("right")["curl_index"]
    return out


s.check("not_a_number", not_a_number)


def beyond_the_slider_range():
    """Presets whose finger lies beyond its slider's range (thumbs_up: the thumb hyperextended, curl -0.11; spread:
    the index, -0.02): a slider set there landed off the value set, and then showed that instead."""
    right = hand("right")
    out = {}
    for preset, name, value in (("thumbs_up", "curl_thumb", 0.5), ("spread", "curl_index", 0.5)):
        bpy.ops.handforge.apply_preset(preset=preset, sides="BOTH")
        setattr(right.handforge, name, value)
        bpy.context.view_layer.update()  # the sliders follow the bones (the depsgraph handler)
        s.arrays[f"beyond_{preset}"] = rotations("right")
        out[preset] = getattr(right.handforge, name)
    return out


s.check("beyond_range", beyond_the_slider_range)


def lose_bone(arm, name: str) -> None:
    """Delete a bone in edit mode, as a user would."""
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    arm.data.edit_bones.remove(arm.data.edit_bones[name])
    bpy.ops.object.mode_set(mode="OBJECT")


def limits_of(arm) -> dict[str, bool]:
    """Bone name → whether its HandForge limit is muted, for the bones that have one."""
    return {pb.name: con.mute for pb in arm.pose.bones if (con := pb.constraints.get("HandForge Limit"))}


def lost_bone():
    """A rig that lost a finger bone: sliders and the Joint Limits toggle print no traceback, change nothing
    halfway (limits were added up to the lost bone, then a KeyError), and switching limits off still works."""
    import contextlib
    import io

    right, left = hand("right"), hand("left")
    bpy.ops.handforge.reset_pose(sides="BOTH")
    own = right.pose.bones["index2"].constraints.new("LIMIT_LOCATION")  # the artist's own: never touched
    right.handforge.use_limits = True  # complete: every finger bone gets its limit
    out = {"complete_on": limits_of(right)}
    lose_bone(right, "ring2")
    lose_bone(left, "middle3")
    index1 = np.array(left.pose.bones["index1"].matrix_basis)
    printed = io.StringIO()
    with contextlib.redirect_stderr(printed):  # update callbacks print their exceptions to stderr
        right.handforge.use_limits = False
        out["lost_off"] = limits_of(right)
        right.handforge.use_limits = True
        out["lost_on_again"] = limits_of(right)
        left.handforge.use_limits = True
        out["never_complete_on"] = limits_of(left)
        left.handforge.curl_index = 0.7
        left.handforge.spread_middle = 0.3
        right.handforge.curl_thumb = 0.5
    out["printed"] = printed.getvalue()
    out["index1_moved"] = float(np.abs(np.array(left.pose.bones["index1"].matrix_basis) - index1).max())
    out["own_muted"] = own.mute
    return out


s.check("lost_bone", lost_bone)


def override_rig():
    """Sliders and Joint Limits on a library override of the hands (a collection linked from a saved .blend, made
    editable as Blender's Library Override > Make does): they were not overridable, so a slider could not be set
    and a Joint Limits set here was lost at the next open while its constraints stayed. Last: it opens a file."""
    scene = bpy.data.scenes.new("Override")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    hands = bpy.data.collections.new("Hands")
    scene.collection.children.link(hands)
    for obj in list(scene.objects):
        for owner in obj.users_collection:
            owner.objects.unlink(obj)
        hands.objects.link(obj)
    library = str(s.work / "override_library.blend")
    bpy.data.libraries.write(library, {hands}, fake_user=True)
    for obj in list(hands.objects):
        bpy.data.objects.remove(obj)
    bpy.data.collections.remove(hands)
    with bpy.data.libraries.load(library, link=True) as (src, dst):
        dst.collections = ["Hands"]
    dst.collections[0].override_hierarchy_create(scene, bpy.context.view_layer, do_fully_editable=True)
    right = next(o for o in scene.objects if o.type == "ARMATURE" and o.handforge.side == "right")
    out = {"is_override": right.override_library is not None,
           "overridable": {name: right.handforge.is_property_overridable_library(name)
                           for name in ("use_limits", "curl_index", "spread_thumb")}}
    index2 = np.array(right.pose.bones["index2"].matrix_basis)
    right.handforge.curl_index = 0.4
    right.handforge.use_limits = True
    out["curl_moved"] = float(np.abs(np.array(right.pose.bones["index2"].matrix_basis) - index2).max())
    out["set"] = {"curl": right.handforge.curl_index, "limits": right.handforge.use_limits,
                  "muted": sorted(set(limits_of(right).values()))}
    saved = str(s.work / "override_scene.blend")
    bpy.ops.wm.save_as_mainfile(filepath=saved)
    bpy.ops.wm.open_mainfile(filepath=saved)
    right = next(o for o in bpy.data.scenes["Override"].objects if o.type == "ARMATURE" and o.handforge.side == "right")
    out["reopened"] = {"curl": right.handforge.curl_index, "limits": right.handforge.use_limits,
                       "muted": sorted(set(limits_of(right).values()))}
    return out


s.check("override_rig", override_rig)  # (last: it opens the saved file)
s.finish()
