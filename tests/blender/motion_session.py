"""Blender session: the motion buttons through a real backend the add-on starts — checks without a
backend, rigs or keys; In-between (spline and learned) between artist keys, one undo step;
Regenerate; Generate Motion; Follow Wrist Path along an animated empty and a curve."""

from __future__ import annotations

import importlib
import io
import os
from contextlib import redirect_stdout

import bpy
import numpy as np
from session import (ADDON_MODULE, Session, error_of, hand, in_another_scene, init_undo, recorded_layout,
                     ui_context, while_a_job_runs)

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 30, 1.0
SIDES = ("left", "right")
UI = ui_context()
ops = bpy.ops.handforge


def as_user(op, **kwargs):
    """Call an operator the way a button does (UI context, one undo push); returns (result, printed reports)."""
    printed = io.StringIO()
    with redirect_stdout(printed), bpy.context.temp_override(**UI):
        result = op("EXEC_DEFAULT", True, **kwargs)
    return sorted(result), printed.getvalue()


def as_user_while(act, op, **kwargs):
    """``as_user`` with ``act()`` at each pump while its job runs (``while_a_job_runs``); a refusal as
    (["CANCELLED"], its message)."""
    try:
        with while_a_job_runs(act):
            return as_user(op, **kwargs)
    except RuntimeError as exc:  # the operator's error report
        return ["CANCELLED"], str(exc)


def bag_of(obj):
    """The hand's F-curve container, found the add-on's way (the layered action API)."""
    return importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(obj)


def _key(kp) -> list:
    """A key as stored: frame, value, type, interpolation, handle types; the handles' positions where
    the artist set them (FREE, ALIGNED), not where Blender computes them from the neighbours (AUTO…)."""
    out = [kp.co[0], kp.co[1], kp.type, kp.interpolation, kp.handle_left_type, kp.handle_right_type]
    if {kp.handle_left_type, kp.handle_right_type} & {"FREE", "ALIGNED"}:
        out += [kp.handle_left[0], kp.handle_left[1], kp.handle_right[0], kp.handle_right[1]]
    return out


def snapshot() -> dict:
    """Every key of both rigs (float32 values as stored)."""
    out = {}
    for side in SIDES:
        bag = bag_of(hand(side))
        for fc in bag.fcurves if bag is not None else ():
            out[f"{side}|{fc.data_path}|{fc.array_index}"] = [_key(kp) for kp in fc.keyframe_points]
    return out


def evaluated(frames) -> dict:
    """Every rig F-curve evaluated at ``frames``."""
    return {f"{side}|{fc.data_path}|{fc.array_index}": [fc.evaluate(f) for f in frames]
            for side in SIDES for fc in (bag_of(hand(side)).fcurves if bag_of(hand(side)) else ())}


def wrist_world(side: str) -> list[float]:
    obj = hand(side)
    return list(obj.matrix_world @ obj.pose.bones["wrist"].head)


def add_pair_once(added: dict):
    """For ``while_a_job_runs``: Add Hands, once, the new pair's rigs put into ``added``."""
    def act():
        if not added:
            with bpy.context.temp_override(**UI):
                assert ops.add_hands() == {"FINISHED"}
            added.update({side: hand(side) for side in SIDES})
    return act


def remove_rig(obj) -> None:
    """A hand rig and its mesh gone."""
    for child in list(obj.children):
        bpy.data.objects.remove(child)
    bpy.data.objects.remove(obj)


def no_backend():
    """No backend: the buttons are greyed out with the reason; nothing raises a Python error."""
    return {name: {"poll": getattr(ops, name).poll(), "message": error_of(lambda: getattr(ops, name)())}
            for name in ("motion_inbetween", "motion_generate", "motion_follow_path", "motion_regenerate")}


s.check("no_backend", no_backend)


def start():
    os.environ["HANDFORGE_MOTION_CHECKPOINT"] = a["checkpoint"]  # the backend inherits this environment
    s.start_backend()
    return {name: ops.motion_inbetween.poll() for name in ("inbetween",)}


s.check("start", start)
s.check("no_rigs", lambda: {"inbetween": error_of(lambda: ops.motion_inbetween(frame_start=1, frame_end=20)),
                            "generate": error_of(lambda: ops.motion_generate(frame_start=1, frame_end=20))})

assert ops.add_hands() == {"FINISHED"}
init_undo()
for frame, pose in zip(a["artist_frames"], a["artist_poses"]):
    scene.frame_set(frame)
    as_user(ops.paste_pose, text=pose, sides="BOTH")
    as_user(ops.key_pose, sides="BOTH")
# the artist shapes one curve by hand (free handles, constant): it must stay exactly so
probe = bag_of(hand("right")).fcurves.find('pose.bones["index2"].rotation_euler', index=0).keyframe_points[1]
probe.handle_left_type = probe.handle_right_type = "FREE"
probe.handle_left = (probe.co[0] - 3.0, probe.co[1] + 0.2)
probe.handle_right = (probe.co[0] + 2.0, probe.co[1] - 0.1)
bag_of(hand("left")).fcurves.find('pose.bones["wrist"].location', index=0).keyframe_points[0].interpolation = "CONSTANT"
scene.frame_set(1)
as_user(ops.key_pose, sides="LEFT")  # the artist's last edit is an undo step (frame 1 again)
s.results["artist"] = snapshot()


def panel():
    """The Motion panel draws its buttons with the settings (recorded: operators, then what each is given)."""
    bpy.context.scene.handforge_motion.engine = "spline"
    calls = recorded_layout(bpy.types.HANDFORGE_PT_motion.draw)
    assert not [c for c in calls if c[0] == "bad"], [c for c in calls if c[0] == "bad"]
    return [["operator", c[1][0]] if c[0] == "operator" else ["prop", c[1][1]] if c[0] == "prop" else c[:4]
            for c in calls if c[0] in ("operator", "set", "attr", "prop")]


s.check("panel", panel)


def bad_inputs():
    before = snapshot()
    out = {
        "no_keys": error_of(lambda: ops.motion_inbetween(frame_start=30, frame_end=40)),
        "one_key": error_of(lambda: ops.motion_inbetween(frame_start=15, frame_end=40)),
        "range": error_of(lambda: ops.motion_inbetween(frame_start=20, frame_end=10)),
        "nothing_kept": error_of(lambda: ops.motion_inbetween(frame_start=1, frame_end=20, fixed=set())),
        "no_path": error_of(lambda: ops.motion_follow_path(frame_start=1, frame_end=20)),
        "bad_path": error_of(lambda: ops.motion_follow_path(frame_start=1, frame_end=20, right_path="Nope")),
        "no_last": error_of(lambda: ops.motion_regenerate()),
        "no_sample": error_of(lambda: ops.motion_inbetween(frame_start=1, frame_end=24, num_samples=2, sample=2)),
    }
    hand("left").handforge.hand_model = "mano"  # as if the left rig came from another hand model
    out["models"] = error_of(lambda: ops.motion_inbetween(frame_start=1, frame_end=24))
    hand("left").handforge.hand_model = "open"
    out["unchanged"] = snapshot() == before
    return out


s.check("bad", bad_inputs)

START, END = a["artist_frames"][0], a["artist_frames"][-1]
FRAMES = list(range(START, END + 1))


def inbetween(engine: str, **kwargs):
    result, printed = as_user(ops.motion_inbetween, frame_start=START, frame_end=END, engine=engine, sides="BOTH",
                              **kwargs)
    return {"result": result, "printed": printed, "keys": snapshot(), "at_keys": evaluated(a["artist_frames"]),
            "curves": evaluated(FRAMES)}


def sent_params() -> dict:
    return dict(importlib.import_module(f"{ADDON_MODULE}.ops_motion").LAST_RUN["params"])


def spline_inbetween():
    out = inbetween("spline")
    out["params"] = sent_params()
    return out


s.check("spline", spline_inbetween)


def undo_once():
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo()
    return {"keys": snapshot()}  # (undo replaces the scene: ``bpy.context.scene`` from here on)


s.check("undo", undo_once)
def learned():
    hand("left").handforge.use_limits = True  # the left hand is then read frame by frame, as shown
    try:
        out = inbetween("learned", steps=3, seed=1, fixed={"WRIST_ROTATION", "WRIST_LOCATION"}, keep_apart="off")
        out["params"] = sent_params()
        # a later call without Kept gets the default (all kept), not this call's narrower choice
        out["kept_skip_save"] = bpy.ops.handforge.motion_inbetween.get_rna_type().properties["fixed"].is_skip_save
    finally:
        hand("left").handforge.use_limits = False
    # one undo brings the replaced finger keys back; redo, the motion again
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo()
    out["undone"] = snapshot()
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.redo()
    out["redone"] = snapshot()
    return out


s.check("learned", learned)


def regenerate():
    result, printed = as_user(ops.motion_regenerate)
    return {"result": result, "printed": printed, "keys": snapshot(), "curves": evaluated(FRAMES),
            "params": sent_params()}


s.check("regenerate", regenerate)


# Kept as the panel has it by default: an operator called without it takes the last call's (the learned in-between's
# wrists only, which replaces the artist's finger keys)
ALL_KEPT = {"WRIST_ROTATION", "WRIST_LOCATION", "FINGERS"}


def artist_keys_back():
    """The artist's keys as they were before the learned in-between replaced its finger keys (the checks after
    key them): undone step by step (the learned in-between's step, then Regenerate's)."""
    undos = 0
    while snapshot() != s.results["artist"] and undos < 3:
        with bpy.context.temp_override(**UI):
            bpy.ops.ed.undo()
        undos += 1
    return {"back": snapshot() == s.results["artist"], "undos": undos}


s.check("artist_back", artist_keys_back)


def regenerate_the_same_frames():
    """In-between over the scene's range (-1, as the panel sends it), the range then narrowed: Regenerate
    redid the narrowed range, or refused it as if In-between had been pressed on it (a review found it)."""
    scene = bpy.context.scene
    saved = scene.frame_start, scene.frame_end
    scene.frame_start, scene.frame_end = START, END
    try:
        made = as_user(ops.motion_inbetween, frame_start=-1, frame_end=-1, engine="spline", sides="BOTH",
                       fixed=ALL_KEPT)[0]
        last = importlib.import_module(f"{ADDON_MODULE}.ops_motion").LAST_RUN
        first = (last["options"]["frame_start"], last["options"]["frame_end"])
        scene.frame_end = START + 2  # to preview the start
        again, printed = as_user(ops.motion_regenerate)
        return {"made": made, "first": first, "again": again, "printed": printed,
                "again_range": (last["options"]["frame_start"], last["options"]["frame_end"])}
    finally:
        scene.frame_start, scene.frame_end = saved


s.check("regenerate_range", regenerate_the_same_frames)


def second_sample_right_only():
    """The same two-sample request keying its first, then its second sample, on the right hand only."""
    before = snapshot()
    out = {"before": before}
    for sample in (0, 1):
        result, printed = as_user(ops.motion_inbetween, frame_start=START, frame_end=END, engine="learned", steps=3,
                                  seed=1, num_samples=2, sample=sample, sides="RIGHT", fixed=ALL_KEPT)
        out[sample] = {"result": result, "printed": printed, "keys": snapshot()}
    return out


s.check("sample", second_sample_right_only)


def generate():
    result, printed = as_user(ops.motion_generate, frame_start=100, frame_end=129, engine="learned", steps=2,
                              sides="RIGHT")
    keys = snapshot()
    return {"result": result, "printed": printed,
            "right": sorted({k[0] for key, v in keys.items() if key.startswith("right") for k in v if k[0] >= 100}),
            "left": sorted({k[0] for key, v in keys.items() if key.startswith("left") for k in v if k[0] >= 100})}


s.check("generate", generate)


def follow_path():
    scene = bpy.context.scene
    empty = bpy.data.objects.new("Wrist Target", None)
    scene.collection.objects.link(empty)
    for frame, location in zip((200, 229), a["empty_path"]):
        empty.location = location
        empty.keyframe_insert("location", frame=frame)
    curve_data = bpy.data.curves.new("Wrist Curve", "CURVE")
    curve_data.dimensions = "3D"
    spline = curve_data.splines.new("BEZIER")  # as an artist draws one: smooth, automatic handles
    spline.bezier_points.add(len(a["curve_points"]) - 1)
    for point, co in zip(spline.bezier_points, a["curve_points"]):
        point.co = co
        point.handle_left_type = point.handle_right_type = "AUTO"
    curve_data.bevel_depth, curve_data.extrude = 0.02, 0.01  # dressed as a tube: the path is still its centre
    curve = bpy.data.objects.new("Wrist Curve", curve_data)
    scene.collection.objects.link(curve)
    nothing = bpy.data.node_groups.new("Nothing", "GeometryNodeTree")  # a modifier that outputs no geometry
    nothing.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nothing.nodes.new("NodeGroupOutput")
    curve.modifiers.new("Nothing", "NODES").node_group = nothing
    curves_before = len(bpy.data.curves)
    # the right hand is carried by a character walking 40 cm over the range (the wrist missed the path by
    # as far as it walked: the rig's place at the current frame was used for every frame)
    carrier = bpy.data.objects.new("Character", None)
    scene.collection.objects.link(carrier)
    for frame, x in ((200, 0.0), (229, 0.4)):
        carrier.location.x = x
        carrier.keyframe_insert("location", index=0, frame=frame)
    right = hand("right")
    scene.frame_set(200)
    right.parent = carrier
    result, printed = as_user(ops.motion_follow_path, frame_start=200, frame_end=229, engine="learned", steps=2,
                              right_path=empty.name, left_path=curve.name)
    wrists, targets = {"left": [], "right": []}, []
    for frame in range(200, 230):
        scene.frame_set(frame)
        targets.append(list(empty.matrix_world.translation))
        for side in SIDES:
            wrists[side].append(wrist_world(side))
    scene.frame_set(200)
    right.parent = None  # (the carrier stood at the origin at frame 200: the rig is back where it was)
    bpy.data.objects.remove(carrier)
    return {"result": result, "printed": printed, "wrists": wrists, "empty": targets,
            "curves_left": len(bpy.data.curves) - curves_before}


s.check("path", follow_path)


def regenerate_after_an_edit():
    """Regenerate runs the last button again on the keys as they are now: a key moved after the
    in-between is where the new motion goes; a refused run leaves the last one to repeat; the seed
    wraps at its largest value."""
    last = importlib.import_module(f"{ADDON_MODULE}.ops_motion").LAST_RUN
    first, _ = as_user(ops.motion_inbetween, frame_start=START, frame_end=END, engine="learned", steps=3, seed=1,
                       sides="BOTH", keep_apart="off", fixed={"WRIST_ROTATION", "WRIST_LOCATION", "FINGERS"})
    curve = bag_of(hand("left")).fcurves.find('pose.bones["middle2"].rotation_euler', index=0)
    key = next(k for k in curve.keyframe_points if k.co[0] == a["artist_frames"][1])
    old = key.co[1]
    key.co[1] = key.handle_left[1] = key.handle_right[1] = old - 0.6
    curve.update()
    refused = error_of(lambda: ops.motion_inbetween(frame_start=30, frame_end=40))  # no keys there: refused
    result, printed = as_user(ops.motion_regenerate)
    frame = a["artist_frames"][1]
    last["params"]["seed"] = 2 ** 31 - 1  # as if the last run had the largest seed
    wrapped, wrapped_printed = as_user(ops.motion_regenerate)
    return {"first": first, "result": result, "printed": printed, "old": old, "new": curve.evaluate(frame),
            "before_key": curve.evaluate(frame - 1), "refused": refused, "operator": last["operator"],
            "wrapped": wrapped, "wrapped_printed": wrapped_printed}


s.check("edited", regenerate_after_an_edit)


def regenerate_where_it_was_made():
    """Regenerate redoes the last motion on the hands it keyed, in its scene: before, it took the panel's
    Hands as they were by then (switched to Left, it keyed the left hand) and another scene's hands."""
    scene = bpy.context.scene
    settings = scene.handforge
    saved = settings.target
    settings.target = "RIGHT"
    try:
        made, made_printed = as_user(ops.motion_inbetween, frame_start=START, frame_end=END, engine="spline",
                                     sides="SCENE")
        settings.target = "LEFT"  # the panel switched afterwards
        left_before = {k: v for k, v in snapshot().items() if k.startswith("left|")}
        again, printed = as_user(ops.motion_regenerate)
        left_after = {k: v for k, v in snapshot().items() if k.startswith("left|")}
    finally:
        settings.target = saved
    elsewhere = in_another_scene(lambda: error_of(lambda: ops.motion_regenerate()))
    return {"made": made, "made_printed": made_printed, "again": again, "printed": printed,
            "left_unchanged": left_before == left_after, "elsewhere": elsewhere}


s.check("regenerate_where", regenerate_where_it_was_made)


def regenerate_after_another_pair_is_chosen():
    """Add Hands chooses its new pair in the panel: Regenerate keyed that pair, which never had the motion
    (a review found it: the rigs were only checked to be still in the scene)."""
    first = {side: hand(side) for side in SIDES}
    made, _ = as_user(ops.motion_inbetween, frame_start=START, frame_end=END, engine="spline", sides="BOTH")
    with bpy.context.temp_override(**UI):
        assert ops.add_hands() == {"FINISHED"}
    added = {side: hand(side) for side in SIDES}
    try:
        message = error_of(lambda: ops.motion_regenerate())
        keys_on_added = sum(len(fc.keyframe_points) for side in SIDES
                            for fc in (bag_of(added[side]).fcurves if bag_of(added[side]) else ()))
    finally:
        for side in SIDES:
            remove_rig(added[side])
            setattr(bpy.context.scene.handforge, side, first[side])
    again, printed = as_user(ops.motion_regenerate)  # the first pair chosen again: regenerated
    return {"made": made, "message": message, "keys_on_added": keys_on_added, "again": again, "printed": printed}


s.check("regenerate_other_pair", regenerate_after_another_pair_is_chosen)


def fps_changed_mid_job():
    """The scene's frame rate changed while a motion was made: keys still land on the frames asked for."""
    scene = bpy.context.scene
    try:
        with while_a_job_runs(lambda: scene.render.fps == 24 or setattr(scene.render, "fps", 24)):
            result, printed = as_user(ops.motion_generate, frame_start=300, frame_end=319, engine="spline",
                                      sides="RIGHT")
    finally:
        fps = scene.render.fps
        scene.render.fps = 30
    frames = sorted({k[0] for key, v in snapshot().items() if key.startswith("right") for k in v if k[0] >= 300})
    return {"result": result, "printed": printed, "frames": frames, "fps": fps}


s.check("fps_changed", fps_changed_mid_job)


def another_motion_button_while_one_runs():
    """While Generate Motion runs, In-between and Follow Wrist Path wait (their keys would replace its keys
    where the frames overlap); they were available, and only the running button was greyed."""
    seen = {}

    def look():
        if not seen:
            seen.update({op: getattr(ops, op).poll() for op in ("motion_inbetween", "motion_follow_path",
                                                                  "motion_generate")})

    with while_a_job_runs(look):
        result, _ = as_user(ops.motion_generate, frame_start=300, frame_end=319, engine="spline", sides="RIGHT")
    seen["after"] = ops.motion_inbetween.poll()
    return {"result": result, "seen": seen}


s.check("one_at_a_time", another_motion_button_while_one_runs)


def scene_switched_mid_job():
    """Another scene made active while a motion was made: not applied to that scene's rigs (the keys of
    scene 1 landed on scene 2's hands, reported as a success)."""
    window, first = bpy.context.window_manager.windows[0], bpy.context.scene
    other = bpy.data.scenes.new("Other")
    window.scene = other
    with bpy.context.temp_override(**UI):
        assert ops.add_hands() == {"FINISHED"}
    window.scene = first
    generated = lambda: {o.name: sum(k.type == "GENERATED" and k.co[0] >= 400 for fc in bag_of(o).fcurves
                                     for k in fc.keyframe_points)
                         for o in other.objects if o.type == "ARMATURE" and bag_of(o) is not None}
    before = generated()
    try:
        with while_a_job_runs(lambda: setattr(window, "scene", other)):
            result, printed = as_user(ops.motion_generate, frame_start=400, frame_end=419, engine="spline",
                                      sides="RIGHT")
    except RuntimeError as exc:  # the operator's error report
        result, printed = ["CANCELLED"], str(exc)
    finally:
        window.scene = first
    keyed = generated()  # generated keys from frame 400 on, per rig of the other scene
    bpy.data.scenes.remove(other)
    return {"result": result, "printed": printed, "other_scene_keys_after": keyed, "before": before}


s.check("scene_switched", scene_switched_mid_job)


def rigs_placed_apart():
    """Rig objects moved and turned: a request carries both hands in one armature space (the left
    rig's), where each wrist is where Blender shows it (they were sent in their own armatures' spaces,
    as if never moved), and a result comes back into each rig's own space exactly."""
    import numpy as np

    ops_motion = importlib.import_module(f"{ADDON_MODULE}.ops_motion")
    skeleton = importlib.import_module("handforge_shared.skeleton")
    poses_module = importlib.import_module("handforge_shared.poses")
    here = bpy.context.scene  # (a new file was opened by an earlier check)
    left, right = here.handforge.left, here.handforge.right
    saved = right.matrix_world.copy()
    right.location.x += 0.3
    right.rotation_euler.z += 0.5
    bpy.context.view_layer.update()
    try:
        every = {"left": left, "right": right}
        placement = ops_motion.rig_placement(here, every, 1, 3)
        poses = ops_motion.animated_poses(bpy.context, every, 1, 3)
        arrays = {}
        for side, pose in poses.items():
            arrays[f"{side}.global_orient"] = np.asarray(pose.global_orient, np.float64)
            arrays[f"{side}.transl"] = np.asarray(pose.transl, np.float64)
        shared = ops_motion.into_shared_space(arrays, placement)
        here.frame_set(1)
        wrist = skeleton.JOINT_NAMES[0]
        shown = np.array(right.matrix_world @ right.pose.bones[wrist].head)
        head, M = placement["head"]["right"], skeleton.MODEL_TO_BLENDER
        from_shared = np.array(left.matrix_world) @ np.append(head + M @ shared["right.transl"][0], 1.0)
        clip = poses_module.MotionClip(hands={side: poses_module.HandPose(
            global_orient=shared[f"{side}.global_orient"], hand_pose=poses[side].hand_pose, betas=poses[side].betas,
            transl=shared[f"{side}.transl"]) for side in poses}, fps=30.0)
        back = ops_motion.out_of_shared_space(clip, placement)
        return {"wrist_error_m": float(np.abs(from_shared[:3] - shown).max()),
                "moved_in_request": float(np.abs(shared["right.transl"] - arrays["right.transl"]).max()),
                "left_unchanged": bool(np.array_equal(shared["left.transl"], arrays["left.transl"])),
                "round_trip": max(float(np.abs(np.asarray(getattr(back.hands[s], f)) - arrays[f"{s}.{f}"]).max())
                                  for s in poses for f in ("global_orient", "transl"))}
    finally:
        right.matrix_world = saved
        bpy.context.view_layer.update()


s.check("placed_apart", rigs_placed_apart)


def nla_tweak_mode():
    """Keys edited in NLA tweak mode through a strip moved to frame 101: refused with what to do (the
    in-between read the wrong frames and keyed where nothing showed)."""
    right = bpy.context.scene.handforge.right
    ad = right.animation_data
    action = ad.action
    track = ad.nla_tracks.new()
    strip = track.strips.new("Clip", 1, action)
    strip.frame_start_ui = 101
    ad.action = None
    ad.use_tweak_mode = True
    try:
        message = error_of(lambda: ops.motion_inbetween(frame_start=101, frame_end=120, engine="spline",
                                                       sides="RIGHT"))
    finally:
        ad.use_tweak_mode = False
        ad.nla_tracks.remove(track)
        ad.action = action
    return {"message": message}


s.check("nla_tweak", nla_tweak_mode)


def _drop_keys_from(obj, frame: float) -> None:
    for fc in bag_of(obj).fcurves:
        for kp in reversed([kp for kp in fc.keyframe_points if kp.co[0] >= frame]):
            fc.keyframe_points.remove(kp)


def subframe_key():
    """An artist key between frames (Key Pose at a subframe) inside the range: refused with where it is
    (the in-between went past it, generated keys either side, and said it was done)."""
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    right = bpy.context.scene.handforge.right
    for frame in (501, 510.5, 520):
        keys_module.key_pose(right, frame)
    before = snapshot()
    try:
        result, printed = as_user(ops.motion_inbetween, frame_start=501, frame_end=520, engine="spline", sides="RIGHT")
    except RuntimeError as exc:
        result, printed = ["CANCELLED"], str(exc)
    unchanged = snapshot() == before
    _drop_keys_from(right, 500)
    # the wrist's location alone keyed between frames: leaving it out of Kept is the other way
    for frame in (501, 520):
        keys_module.key_pose(right, frame)
    right.pose.bones["wrist"].keyframe_insert("location", frame=510.5)
    located = error_of(lambda: ops.motion_inbetween(frame_start=501, frame_end=520, engine="spline", sides="RIGHT"))
    _drop_keys_from(right, 500)
    return {"result": result, "printed": printed, "unchanged": unchanged, "location_only": located}


s.check("subframe_key", subframe_key)


def muted_group_keys():
    """Keys in an F-curve group muted by its flag alone (a script's ``group.mute``; the Graph Editor's button mutes
    each curve too): constraints exactly when Blender plays them, which is its own evaluation's to say (they were
    taken for muted, though Blender 4.5 plays them: the pose sent there was their keys', unconstrained)."""
    ops_motion = importlib.import_module(f"{ADDON_MODULE}.ops_motion")
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    right = bpy.context.scene.handforge.right
    for frame in (501, 510, 520):
        keys_module.key_pose(right, frame)
    curves = [fc for fc in bag_of(right).fcurves if fc.data_path.startswith('pose.bones["index1"]')]
    bone = right.pose.bones["index1"]
    channel = curves[0].data_path.rsplit(".", 1)[1]  # (its rotation mode's)
    group = curves[0].group
    group.mute = True
    try:
        mask = ops_motion.artist_key_mask(right, 501, 520)
        keyed = curves[0].evaluate(510)
        getattr(bone, channel)[curves[0].array_index] = keyed + 0.25  # moved off its key: back on it where it plays
        bpy.context.scene.frame_set(510)
        plays = abs(getattr(bone, channel)[curves[0].array_index] - keyed) < 1e-6
    finally:
        group.mute = False
    _drop_keys_from(right, 500)
    return {"index1_at_510": bool(mask[9, 1]), "index2_at_510": bool(mask[9, 2]), "blender_plays_it": plays}


s.check("muted_group", muted_group_keys)


def keys_in_another_slot():
    """The rig's action assigned with a slot holding none of its keys (Blender 4.4+ slotted actions): the
    refusal said only "keyed on no frame", though the action holds the keys."""
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    right = bpy.context.scene.handforge.right
    for frame in (501, 520):
        keys_module.key_pose(right, frame)
    ad = right.animation_data
    own = ad.action_slot
    ad.action_slot = ad.action.slots.new(id_type="OBJECT", name="Other")
    try:
        message = error_of(lambda: ops.motion_inbetween(frame_start=501, frame_end=520, engine="spline", sides="RIGHT"))
    finally:
        ad.action_slot = own
    _drop_keys_from(right, 500)
    return {"message": message}


s.check("other_slot", keys_in_another_slot)


def path_not_evaluated():
    """A wrist path empty in an excluded collection, or disabled in viewports: Blender does not move it,
    so the wrist stood still at one point; refused with what to do."""
    here = bpy.context.scene
    empty = bpy.data.objects.new("Hidden Path", None)
    coll = bpy.data.collections.new("Paths")
    here.collection.children.link(coll)
    coll.objects.link(empty)
    for frame, x in ((601, 0.0), (620, 0.3)):
        empty.location.x = x
        empty.keyframe_insert("location", frame=frame)
    layer = bpy.context.view_layer.layer_collection.children[coll.name]
    before, out = snapshot(), {}
    run = lambda: error_of(lambda: ops.motion_follow_path(frame_start=601, frame_end=620, engine="spline",
                                                         right_path=empty.name))
    try:
        layer.exclude = True
        out["excluded"] = run()
        layer.exclude = False
        empty.hide_viewport = True
        out["disabled"] = run()
    finally:
        bpy.data.objects.remove(empty)
        bpy.data.collections.remove(coll)
    out["unchanged"] = snapshot() == before
    return out


s.check("path_not_evaluated", path_not_evaluated)


def keys_edited_mid_job():
    """A key moved while an in-between ran (no Undo): nothing is keyed, and why is said (the motion went
    round the key's old value, with a jump at the new one, reported as done)."""
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    right = bpy.context.scene.handforge.right
    for frame in (801, 820):
        keys_module.key_pose(right, frame)
    curve = bag_of(right).fcurves.find('pose.bones["index2"].rotation_euler', index=0)
    moved = []

    def move_a_key():
        if not moved:
            key = next(k for k in curve.keyframe_points if k.co[0] == 820)
            key.co[1] += 0.3
            curve.update()
            moved.append(key.co[1])

    before = snapshot()
    result, printed = as_user_while(move_a_key, ops.motion_inbetween, frame_start=801, frame_end=820,
                                    engine="spline", sides="RIGHT")
    after = snapshot()
    generated = sum(k[2] == "GENERATED" and 801 < k[0] < 820 for v in after.values() for k in v)
    edited_only = {key for key in after if after[key] != before[key]} == {'right|pose.bones["index2"].rotation_euler|0'}
    # the same in-between with nothing edited lands
    landed, _ = as_user(ops.motion_inbetween, frame_start=801, frame_end=820, engine="spline", sides="RIGHT")
    _drop_keys_from(right, 800)
    return {"result": result, "printed": printed, "moved": bool(moved), "generated": int(generated),
            "edited_only": edited_only, "landed": landed}


s.check("keys_edited", keys_edited_mid_job)


def unrelated_edits_mid_job():
    """What the motion was not made from, changed while it ran, leaves its result good: the panel's hands
    (Both → Left), a wrist path renamed, another pair added (each refused it: the inputs were read again
    from the scene as it was then, not from the rigs and paths the job used)."""
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    scene, first = bpy.context.scene, {side: hand(side) for side in SIDES}
    out = {}
    for side in SIDES:
        for frame in (801, 820):
            keys_module.key_pose(first[side], frame)
    scene.handforge.target = "BOTH"
    with while_a_job_runs(lambda: setattr(scene.handforge, "target", "LEFT")):
        out["target"] = as_user(ops.motion_inbetween, frame_start=801, frame_end=820, engine="spline", sides="SCENE")
    scene.handforge.target = "BOTH"
    path = bpy.data.objects.new("Right Path", None)
    scene.collection.objects.link(path)
    for frame, x in ((801, 0.0), (820, 0.3)):
        path.location = (x, 0.1, 0.05)
        path.keyframe_insert("location", frame=frame)
    with while_a_job_runs(lambda: setattr(path, "name", "Right Path renamed")):
        out["path"] = as_user(ops.motion_follow_path, frame_start=801, frame_end=820, engine="spline",
                              right_path="Right Path")
    bpy.data.objects.remove(path)
    added = {}
    with while_a_job_runs(add_pair_once(added)):
        out["pair"] = as_user(ops.motion_inbetween, frame_start=801, frame_end=820, engine="spline", sides="BOTH")
    for obj in added.values():
        remove_rig(obj)
    for side, obj in first.items():
        setattr(scene.handforge, side, obj)
        _drop_keys_from(obj, 800)
    return {name: {"result": result, "printed": printed} for name, (result, printed) in out.items()}


s.check("unrelated_edits", unrelated_edits_mid_job)


def spline_keep_apart():
    """Keep Apart asked of the spline engine, which cannot steer: said with the result (it was silently ignored)."""
    right = bpy.context.scene.handforge.right
    result, printed = as_user(ops.motion_generate, frame_start=901, frame_end=920, engine="spline", sides="RIGHT",
                              keep_apart="on")
    _drop_keys_from(right, 900)
    return {"result": result, "printed": printed}


s.check("spline_keep_apart", spline_keep_apart)


def rigs_changed_mid_job():
    """The motion lands on the rigs it was made for: a second pair added while it ran (now the scene's
    hands) gets none of it (it went on the new pair, the artist's rig got nothing), and a rig deleted
    while it ran refuses the whole result (the other hand was keyed alone, or another rig of that side
    took the deleted one's keys)."""
    first = {side: hand(side) for side in SIDES}
    added = {}

    def generated(obj, start):
        bag = bag_of(obj)
        return sum(k.type == "GENERATED" and k.co[0] >= start for fc in (bag.fcurves if bag else ())
                   for k in fc.keyframe_points)

    with while_a_job_runs(add_pair_once(added)):
        result, printed = as_user(ops.motion_generate, frame_start=600, frame_end=619, engine="spline", sides="RIGHT")
    found = {"added": {"result": result, "printed": printed, "first_right": generated(first["right"], 600),
                       "new_right": generated(added["right"], 600)}}
    # the second pair is the scene's hands now: a motion for both of them, its right rig deleted while it ran
    doomed = added["right"].name

    def delete_it():
        obj = bpy.data.objects.get(doomed)
        if obj is not None:
            remove_rig(obj)

    result, printed = as_user_while(delete_it, ops.motion_generate, frame_start=700, frame_end=719, engine="spline",
                                    sides="BOTH")
    found["deleted"] = {"result": result, "printed": printed, "deleted": doomed not in bpy.data.objects,
                        "keyed": {o.name: generated(o, 700) for o in (*first.values(), added["left"])}}
    remove_rig(added["left"])
    for side, obj in first.items():
        setattr(bpy.context.scene.handforge, side, obj)
    return found


s.check("rigs_changed", rigs_changed_mid_job)


def regenerate_a_renamed_path():
    """Regenerate follows the path the last run followed, renamed since (another object now has its old name):
    the wrist went to that other object, or the path was said to be gone."""
    scene = bpy.context.scene
    path = bpy.data.objects.new("Path To Rename", None)
    scene.collection.objects.link(path)
    for frame, x in ((800, 0.0), (809, 0.3)):
        path.location = (x, 0.1, 0.05)
        path.keyframe_insert("location", frame=frame)
    first, _ = as_user(ops.motion_follow_path, frame_start=800, frame_end=809, engine="spline", right_path=path.name,
                       left_path="")
    path.name = "Renamed Path"
    decoy = bpy.data.objects.new("Path To Rename", None)  # a new object takes the old name
    scene.collection.objects.link(decoy)
    decoy.location = (3.0, 3.0, 3.0)
    result, printed = as_user(ops.motion_regenerate)
    misses = []
    for frame in (800, 809):
        scene.frame_set(frame)
        misses.append(float(np.linalg.norm(np.array(wrist_world("right")) - np.array(path.matrix_world.translation))))
    scene.frame_set(1)
    bpy.data.objects.remove(decoy)
    bpy.data.objects.remove(path)
    # the path deleted since: said as Regenerate's (the button's "choose a curve" named a field it has not)
    gone = error_of(lambda: ops.motion_regenerate())
    return {"first": first, "result": result, "printed": printed, "misses": misses, "gone": gone}


s.check("regenerate_renamed_path", regenerate_a_renamed_path)


def what_is_kept_is_said():
    """Three things a motion kept as the artist had them, unsaid: wrist keys along a wrist path (a jump off the
    path), muted channels (keys written into them that showed nothing), and a rig animated by NLA strips alone
    (its new action overrides the strips on every frame)."""
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    scene, right = bpy.context.scene, bpy.context.scene.handforge.right
    found = {}
    path = bpy.data.objects.new("Kept Path", None)
    scene.collection.objects.link(path)
    for frame, x in ((1001, 0.0), (1010, 0.3)):
        path.location = (x, 0.1, 0.05)
        path.keyframe_insert("location", frame=frame)
    keys_module.key_pose(right, 1010)
    found["path"] = as_user(ops.motion_follow_path, frame_start=1001, frame_end=1010, engine="spline",
                            right_path=path.name, left_path="")
    bpy.data.objects.remove(path)
    _drop_keys_from(right, 1000)
    index = [fc for fc in bag_of(right).fcurves if fc.data_path.startswith('pose.bones["index1"]')]
    for fc in index:
        fc.mute = True
    keys_module.key_pose(right, 1105)  # the artist's keys inside the range: Generate Motion replaces them (not index1)
    keys_module.key_pose(right, 1111)  # (after the range: kept)
    before = {(fc.data_path, fc.array_index): len(fc.keyframe_points) for fc in index}
    found["muted"] = as_user(ops.motion_generate, frame_start=1101, frame_end=1110, engine="spline", sides="RIGHT")
    found["muted_keys_added"] = sum(len(fc.keyframe_points) - before[fc.data_path, fc.array_index] for fc in index)
    found["types_at"] = {str(f): sorted({k.type for fc in bag_of(right).fcurves if fc not in index
                                         for k in fc.keyframe_points if k.co[0] == f}) for f in (1105, 1111)}
    found["muted_at_1105"] = sorted({k.type for fc in index for k in fc.keyframe_points if k.co[0] == 1105})
    found["count_at_1105"] = sum(k.co[0] == 1105 for fc in bag_of(right).fcurves if fc not in index
                                 for k in fc.keyframe_points)
    for fc in index:
        fc.mute = False
    _drop_keys_from(right, 1100)
    ad = right.animation_data  # pushed down to a strip: no active action
    action, slot = ad.action, ad.action_slot
    track = ad.nla_tracks.new()
    track.strips.new("Pushed", 1, action)
    ad.action = None
    found["strips"] = as_user(ops.motion_generate, frame_start=1201, frame_end=1210, engine="spline", sides="RIGHT")
    made = ad.action
    ad.action = action
    ad.action_slot = slot
    ad.nla_tracks.remove(track)
    bpy.data.actions.remove(made)
    _drop_keys_from(right, 1200)
    return found


s.check("kept_said", what_is_kept_is_said)


def regenerate_without_hands():
    """Regenerate after the hands were deleted: the motion button's refusal, as one line."""
    for side in ("left", "right"):
        bpy.data.objects.remove(hand(side))
    return {"message": error_of(lambda: ops.motion_regenerate())}


s.check("regenerate_gone", regenerate_without_hands)


def stop():
    assert ops.stop_backend() == {"FINISHED"}
    return {"poll": ops.motion_inbetween.poll(), "message": error_of(lambda: ops.motion_inbetween())}


s.check("stopped", stop)


def new_file():
    """Another file: Regenerate forgets the last motion (its rigs, keys and paths were the other file's)."""
    bpy.ops.wm.read_homefile()
    return {"last": dict(importlib.import_module(f"{ADDON_MODULE}.ops_motion").LAST_RUN),
            "message": error_of(lambda: ops.motion_regenerate())}


s.check("new_file", new_file)
s.finish()
