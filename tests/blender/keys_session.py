"""Blender session: keyframing — artist keys, clip import (exact frames and values, GENERATED keys,
artist keys kept, regenerate, presence, retiming), one undo step per import, bad files."""

from __future__ import annotations

import importlib
import os

import bpy

from session import ADDON_MODULE, Session, error_of, hand, init_undo, printed_by, ui_context

s = Session()
s.install()
a = s.args
SIDES = ("left", "right")
UI = ui_context()


def as_user(op, **kwargs):
    """Call an operator the way a button does: with the UI context and an undo push."""
    with bpy.context.temp_override(**UI):
        return op("EXEC_DEFAULT", True, **kwargs)


def snapshot() -> dict:
    out = {}
    for side in SIDES:
        ad = hand(side).animation_data
        if ad is None or ad.action is None:
            continue
        bag = None
        for layer in ad.action.layers:
            for strip in layer.strips:
                bag = strip.channelbag(ad.action_slot) or bag
        for fc in bag.fcurves:
            out[f"{side}|{fc.data_path}|{fc.array_index}"] = [
                [kp.co[0], kp.co[1], kp.type, kp.interpolation, kp.handle_left_type, kp.handle_right_type]
                for kp in fc.keyframe_points]
    return out


scene = bpy.context.scene
scene.render.fps, scene.render.fps_base = 24, 1.0
assert bpy.ops.handforge.add_hands() == {"FINISHED"}
init_undo()
as_user(bpy.ops.handforge.paste_pose, text=a["artist_pose"], sides="BOTH")
for frame in a["artist_frames"]:
    scene.frame_set(frame)
    assert as_user(bpy.ops.handforge.key_pose, sides="BOTH") == {"FINISHED"}
# the artist makes one key constant with vector handles: it must stay so
fc_probe = hand("right").animation_data.action.layers[0].strips[0].channelbag(hand("right").animation_data.action_slot).fcurves.find('pose.bones["index1"].rotation_euler', index=0)
fc_probe.keyframe_points[0].interpolation = "CONSTANT"
fc_probe.keyframe_points[0].handle_left_type = "VECTOR"
as_user(bpy.ops.handforge.key_pose, sides="LEFT")  # an undo step after the artist's edits (frame 40 again)
s.results["artist"] = snapshot()
s.results["layered"] = hand("right").animation_data.action.is_action_layered


def first_import():
    assert as_user(bpy.ops.handforge.import_motion, filepath=a["clip1"], frame_start=a["start"]) == {"FINISHED"}
    return snapshot()


s.check("import1", first_import)


def second_import():
    assert as_user(bpy.ops.handforge.import_motion, filepath=a["clip2"], frame_start=a["start"]) == {"FINISHED"}
    return snapshot()


s.check("import2", second_import)


def undo_twice():
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo()
    after_one = snapshot()
    with bpy.context.temp_override(**UI):
        bpy.ops.ed.undo()
    return {"one": after_one, "two": snapshot()}


s.check("undo", undo_twice)


def presence_and_retiming():
    assert bpy.ops.handforge.import_motion(filepath=a["clip_gaps"], frame_start=200) == {"FINISHED"}
    snap = snapshot()
    return {"gaps": {k: v for k, v in snap.items() if any(200 <= key[0] < 300 for key in v)},
            "frame_end": scene.frame_end}


s.check("gaps", presence_and_retiming)


def bad_files():
    before = snapshot()
    return {
        "corrupt": error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["corrupt"])),
        "missing": error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["work"] + "/nope.npz")),
        # "//" of an unsaved .blend named the working folder: a clip there was read, the export written there
        "unsaved": not bpy.data.filepath,
        "relative_import": error_of(lambda: bpy.ops.handforge.import_motion(filepath="//clip.npz")),
        "relative_export": error_of(lambda: bpy.ops.handforge.export_motion(filepath="//motion.npz")),
        "far": error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_far"], frame_start=1)),
        "unchanged": snapshot() == before,
    }


s.check("bad", bad_files)


def export_long():
    """Import 600 frames of two hands, export them back, counting the scene's frame changes on the way (the
    bulk read of the F-curves makes none; frame by frame makes one a frame): checked against the clip."""
    frames_set = []

    def count(scene_, *_):
        frames_set.append(scene_.frame_current)

    assert bpy.ops.handforge.import_motion(filepath=a["clip_long"], frame_start=1001) == {"FINISHED"}
    bpy.app.handlers.frame_change_pre.append(count)
    try:
        out = a["work"] + "/exported.npz"
        assert bpy.ops.handforge.export_motion(filepath=out, frame_start=1001, frame_end=1600) == {"FINISHED"}
        bulk_frames_set = list(frames_set)
        frame_before = scene.frame_current
        hand("left").handforge.use_limits = True  # limits on: frame by frame (what is shown), same values here
        out_limits = a["work"] + "/exported_limits.npz"
        assert bpy.ops.handforge.export_motion(filepath=out_limits, frame_start=1001, frame_end=1030) == {"FINISHED"}
        hand("left").handforge.use_limits = False
    finally:
        bpy.app.handlers.frame_change_pre.remove(count)
    return {"frames_set_bulk": bulk_frames_set, "frames_set_limits": frames_set[len(bulk_frames_set):],
            "path": out, "path_limits": out_limits, "frame_before": frame_before, "frame_after": scene.frame_current}


s.check("export", export_long)


def export_modal():
    """Export Motion's modal path, as a window runs it: timer ticks report progress in the status bar
    and write the file at the end; Esc stops it, writes nothing and restores the frame. (A background
    session has no window to run modally, so its modal() is driven with stand-ins for the window
    manager, the workspace and the events.)"""
    from pathlib import Path
    from types import SimpleNamespace

    ops_keys = importlib.import_module(f"{ADDON_MODULE}.ops_keys")
    op_class = ops_keys.HANDFORGE_OT_export_motion
    keys_module = importlib.import_module(f"{ADDON_MODULE}.keys")
    seen = {"progress": [], "status": [], "reports": []}
    wm = SimpleNamespace(progress_update=seen["progress"].append, progress_end=lambda: seen["status"].append("END"),
                         event_timer_remove=lambda timer: None)
    context = SimpleNamespace(window_manager=wm, workspace=SimpleNamespace(status_text_set=seen["status"].append),
                              scene=scene)

    def operator(path: str):
        op = SimpleNamespace(_result={}, _path=path, _timer=None, _placement_notes=[],
                             report=lambda kind, text: seen["reports"].append([sorted(kind)[0], text]))
        op._steps = keys_module.export_steps(bpy.context, {"left": hand("left"), "right": hand("right")},
                                             1001, 1060, op._result)
        op._end_ui = lambda ctx: op_class._end_ui(op, ctx)
        op._finish = lambda: op_class._finish(op)
        return op

    hand("left").handforge.use_limits = True  # frame by frame: the long path that reports progress
    scene.frame_set(1200)
    try:
        out = {}
        cancelled_path = a["work"] + "/cancelled.npz"
        op = operator(cancelled_path)
        out["move"] = sorted(op_class.modal(op, context, SimpleNamespace(type="MOUSEMOVE")))
        slice_s, ops_keys.MODAL_SLICE_S = ops_keys.MODAL_SLICE_S, 0.0  # one frame per tick
        try:
            out["tick"] = sorted(op_class.modal(op, context, SimpleNamespace(type="TIMER")))
        finally:
            ops_keys.MODAL_SLICE_S = slice_s
        out["tick_frame"] = scene.frame_current  # the export is visiting its frames
        out["esc"] = sorted(op_class.modal(op, context, SimpleNamespace(type="ESC")))
        out["esc_written"] = Path(cancelled_path).exists()
        out["esc_frame"] = scene.frame_current
        done_path = a["work"] + "/modal.npz"
        op = operator(done_path)
        ticks = []
        while not ticks or ticks[-1] == ["RUNNING_MODAL"]:
            ticks.append(sorted(op_class.modal(op, context, SimpleNamespace(type="TIMER"))))
        out["ticks"] = ticks
        out["written"] = Path(done_path).exists()
        out["frame_after"] = scene.frame_current
        out.update(seen)
        return out
    finally:
        hand("left").handforge.use_limits = False


s.check("export_modal", export_modal)


def shown():
    """What the rigs show: every pose bone's basis matrix and every finger slider."""
    bones = [v for side in SIDES for pb in hand(side).pose.bones for col in pb.matrix_basis.col for v in col]
    sliders = [getattr(hand(side).handforge, f"{k}_{f}") for side in SIDES for k in ("curl", "spread")
               for f in ("thumb", "index", "middle", "ring", "pinky")]
    return bones + sliders


def shown_after_import():
    """An import changes what the rigs show at the current frame once the depsgraph updates (as at a
    redraw), the finger sliders included: the same as Blender's own frame evaluation."""
    scene.frame_set(1015)
    before = shown()
    assert bpy.ops.handforge.import_motion(filepath=a["clip_long"], frame_start=1005) == {"FINISHED"}
    bpy.context.view_layer.update()
    lazy = shown()
    scene.frame_set(1015)
    return {"before": before, "lazy": lazy, "evaluated": shown()}


s.check("shown", shown_after_import)


def keyed_slider_import():
    """With a keyed slider (which moves its finger on frame changes) the import shows the result at once,
    offsets included, as the frame evaluation does."""
    scene.frame_set(1015)
    right = hand("right")
    right.handforge.curl_index = 0.6
    right.keyframe_insert("handforge.curl_index", frame=1015)
    try:
        before = shown()
        assert bpy.ops.handforge.import_motion(filepath=a["clip_long"], frame_start=1003) == {"FINISHED"}
        now = shown()
        scene.frame_set(1015)
        return {"before": before, "now": now, "evaluated": shown()}
    finally:  # the later checks expect no keyed slider (the import keyed it too, with the clip's curls)
        bag = importlib.import_module(f"{ADDON_MODULE}.fcurves").find_channelbag(right)
        bag.fcurves.remove(bag.fcurves.find("handforge.curl_index"))
        scene.frame_set(1015)


s.check("keyed_slider", keyed_slider_import)


def checked_first():
    """Bad paths and ranges are reported at once, with what to choose, and nothing is done."""
    import time

    start = time.perf_counter()
    out = {
        "export_empty": error_of(lambda: bpy.ops.handforge.export_motion(filepath="", frame_start=1, frame_end=600)),
        "export_no_folder": error_of(lambda: bpy.ops.handforge.export_motion(
            filepath=a["work"] + "/no/such/folder/m.npz", frame_start=1, frame_end=600)),
        "export_folder": error_of(lambda: bpy.ops.handforge.export_motion(filepath=a["work"], frame_start=1, frame_end=600)),
        # a folder that refuses new files (to root too): it named a temporary file nobody chose
        "export_refused": error_of(lambda: bpy.ops.handforge.export_motion(
            filepath="/proc/handforge_m.npz", frame_start=1, frame_end=10)),
        "export_range": error_of(lambda: bpy.ops.handforge.export_motion(
            filepath=a["work"] + "/r.npz", frame_start=20, frame_end=10)),
        "import_empty": error_of(lambda: bpy.ops.handforge.import_motion(filepath="")),
        # the whole of Blender's frames: minutes with no progress and gigabytes (it started)
        "export_huge": error_of(lambda: bpy.ops.handforge.export_motion(
            filepath=a["work"] + "/huge.npz", frame_start=0, frame_end=1048574)),
    }
    out["seconds"] = time.perf_counter() - start
    home, os.environ["HOME"] = os.environ.get("HOME"), a["work"]  # "~" typed as in the file browser: the home folder
    try:
        out["tilde"] = sorted(bpy.ops.handforge.export_motion(filepath="~/tilde.npz", frame_start=1, frame_end=10))
    finally:
        if home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = home
    out["tilde_written"] = os.path.isfile(os.path.join(a["work"], "tilde.npz"))
    # pasted: in quotes with spaces around (Copy as Path), as a file:// address (each had the working folder put
    # in front of it)
    for name, given in (("quoted", f' "{a["work"]}/quoted.npz" '), ("address", f"file://{a['work']}/an%20address.npz")):
        out[name] = sorted(bpy.ops.handforge.export_motion(filepath=given, frame_start=1, frame_end=10))
    out["pasted_written"] = sorted(f for f in os.listdir(a["work"]) if f in ("quoted.npz", "an address.npz"))
    # a "#" in a name (no URL fragment here); quotes around nothing; another machine's address (its host was dropped)
    out["hash"] = sorted(bpy.ops.handforge.export_motion(filepath=f"file://localhost{a['work']}/take#2.npz",
                                                         frame_start=1, frame_end=10))
    out["hash_written"] = os.path.isfile(os.path.join(a["work"], "take#2.npz"))
    out["quotes_only"] = error_of(lambda: bpy.ops.handforge.import_motion(filepath='""'))
    out["other_machine"] = error_of(lambda: bpy.ops.handforge.export_motion(filepath="file://server/share/m.npz",
                                                                            frame_start=1, frame_end=10))
    out["unc"] = error_of(lambda: bpy.ops.handforge.export_motion(filepath="file:////server/share/m.npz",
                                                                  frame_start=1, frame_end=10))
    out["one_slash"] = sorted(bpy.ops.handforge.export_motion(filepath=f"file:{a['work']}/one_slash.npz",
                                                              frame_start=1, frame_end=10))
    out["one_slash_written"] = os.path.isfile(os.path.join(a["work"], "one_slash.npz"))
    before = snapshot()
    out["import_past_end"] = error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"],
                                                                              frame_start=1048570))
    out["import_before_start"] = error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"],
                                                                                  frame_start=-1048580))
    out["past_end_unchanged"] = snapshot() == before
    return out


s.check("checked_first", checked_first)


def bone_angle_steps(side: str, bone: str, frames) -> list[float]:
    """Angle (rad) the bone turns from each frame to the next, as evaluated by Blender."""
    import itertools

    import numpy as np

    mats = []
    for f in frames:
        scene.frame_set(f)
        mats.append(np.array(hand(side).pose.bones[bone].matrix_basis)[:3, :3])
    return [float(np.arccos(np.clip((np.trace(m0.T @ m1) - 1) / 2, -1, 1))) for m0, m1 in itertools.pairwise(mats)]


def skipped_and_blended():
    """An artist key inside an imported range: the frame is reported; with Blend the motion eases in."""
    import io
    from contextlib import redirect_stdout

    out = {}
    scene.frame_set(2010)
    as_user(bpy.ops.handforge.paste_pose, text=a["artist_pose"], sides="BOTH")
    assert as_user(bpy.ops.handforge.key_pose, sides="BOTH") == {"FINISHED"}
    for blend in (0, 5):
        printed = io.StringIO()
        with redirect_stdout(printed):
            assert bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=2000, blend=blend) == {"FINISHED"}
        out[blend] = {"printed": printed.getvalue(), "steps": bone_angle_steps("right", "index2", range(2000, 2021))}
    scene.frame_set(2010)
    out["at_artist_key"] = [list(hand("right").pose.bones["index2"].rotation_euler)]
    return out


s.check("skipped", skipped_and_blended)


def keying_set():
    """The HandForge keying set keys exactly the pose channels of both hands."""
    scene.frame_set(3000)
    ks = next(k for k in scene.keying_sets_all if k.bl_label == "HandForge Pose")
    before = len(ks.paths)
    ks.refresh()  # a relative keying set: its paths come from the add-on's iterator, for this scene
    sides = {hand(side).name: side for side in SIDES}
    paths = sorted(f"{sides.get(p.id.name, p.id.name)}|{p.data_path}|{p.use_entire_array}" for p in ks.paths)
    return {"paths": paths, "before": before}


s.check("keying_set", keying_set)


def generated_key_tools():
    def counts():
        snap = snapshot()
        return {side: {kind: sum(p[2] == kind for k, pts in snap.items() if k.startswith(side) for p in pts)
                       for kind in ("GENERATED", "KEYFRAME")} for side in SIDES}

    def selected(side):
        ad = hand(side).animation_data
        bag = ad.action.layers[0].strips[0].channelbag(ad.action_slot)
        return {kind: sum(kp.select_control_point for fc in bag.fcurves for kp in fc.keyframe_points if kp.type == kind)
                for kind in ("GENERATED", "KEYFRAME")}

    out = {"before": counts()}
    # Key Pose over a generated frame makes that frame's keys the artist's (they stayed GENERATED, so
    # Regenerate and Delete Generated Keys took the fix away)
    snap = snapshot()
    frame = next(p[0] for k, pts in snap.items() if k.startswith("right") for p in pts if p[2] == "GENERATED")
    bpy.context.scene.frame_set(int(frame))
    hand("right").select_set(True)
    bpy.context.view_layer.objects.active = hand("right")
    assert bpy.ops.handforge.key_pose(sides="RIGHT") == {"FINISHED"}
    at_frame = {p[2] for k, pts in snapshot().items() if k.startswith("right") for p in pts if abs(p[0] - frame) < 1e-4}
    out["keyed_over_generated"] = sorted(at_frame)
    out["before"] = counts()
    assert bpy.ops.handforge.select_generated_keys(sides="BOTH") == {"FINISHED"}
    out["selected"] = {side: selected(side) for side in SIDES}
    artist_before = {k: [p for p in v if p[2] == "KEYFRAME"] for k, v in snapshot().items()}
    assert bpy.ops.handforge.make_artist_keys(sides="LEFT") == {"FINISHED"}
    out["after_make_left"] = counts()
    assert bpy.ops.handforge.delete_generated_keys(sides="RIGHT") == {"FINISHED"}
    out["after_delete_right"] = counts()
    right_artist_now = {k: [p for p in v if p[2] == "KEYFRAME"] for k, v in snapshot().items() if k.startswith("right")}
    out["right_artist_kept"] = right_artist_now == {k: v for k, v in artist_before.items() if k.startswith("right")}
    out["nothing_left"] = sorted(bpy.ops.handforge.delete_generated_keys(sides="BOTH"))
    return out


s.check("tools", generated_key_tools)


def other_channels_keep_their_key_types():
    """Key Pose retypes the hand's pose keys only: the object's own keys at that frame keep their types."""
    right = hand("right")
    bpy.context.scene.frame_set(4000)
    right["artist_value"] = 1.0
    right.keyframe_insert("location", frame=4000, keytype="BREAKDOWN")
    right.keyframe_insert('["artist_value"]', frame=4000, keytype="JITTER")
    assert bpy.ops.handforge.key_pose(sides="RIGHT") == {"FINISHED"}
    ad = right.animation_data
    bag = ad.action.layers[0].strips[0].channelbag(ad.action_slot)
    types = {}
    for fc in bag.fcurves:
        for kp in fc.keyframe_points:
            if abs(kp.co[0] - 4000) < 1e-4:
                types.setdefault("pose" if fc.data_path.startswith("pose.bones") else fc.data_path, set()).add(kp.type)
    return {k: sorted(v) for k, v in types.items()}


s.check("other_channels", other_channels_keep_their_key_types)


def export_after_deleting_every_key():
    """Delete Generated Keys on a hand keyed only by an import leaves the pose shown: the export reads it
    (the emptied curves read as 0: a flat hand at the origin was exported), as the frame-by-frame path does."""
    right = hand("right")
    right.animation_data.action = None
    assert bpy.ops.handforge.import_motion(filepath=a["clip1"], frame_start=6000) == {"FINISHED"}
    scene.frame_set(6003)
    assert bpy.ops.handforge.delete_generated_keys(sides="RIGHT") == {"FINISHED"}
    bag = right.animation_data.action.layers[0].strips[0].channelbag(right.animation_data.action_slot)
    left_over = sum(1 for fc in bag.fcurves if fc.data_path.startswith("pose.bones"))
    bulk, shown = a["work"] + "/after_delete.npz", a["work"] + "/after_delete_shown.npz"
    assert bpy.ops.handforge.export_motion(filepath=bulk, frame_start=6001, frame_end=6004) == {"FINISHED"}
    right.handforge.use_limits = True  # joint limits: read frame by frame from what Blender shows
    assert bpy.ops.handforge.export_motion(filepath=shown, frame_start=6001, frame_end=6004) == {"FINISHED"}
    right.handforge.use_limits = False
    return {"bulk": bulk, "shown": shown, "pose_curves_left": left_over}


s.check("after_delete", export_after_deleting_every_key)


def shared_action():
    """Two hands animated by one action (Link Animation Data): an import would put one hand's motion on
    the other's channels; refused before any key."""
    first = bpy.context.window.scene
    shared = bpy.data.scenes.new("Shared")
    bpy.context.window.scene = shared
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    left, right = shared.handforge.left, shared.handforge.right
    assert bpy.ops.handforge.key_pose(sides="LEFT") == {"FINISHED"}
    right.animation_data_create()
    right.animation_data.action = left.animation_data.action
    right.animation_data.action_slot = left.animation_data.action_slot
    action = left.animation_data.action
    keys_before = sum(len(fc.keyframe_points) for fc in action.layers[0].strips[0].channelbag(
        left.animation_data.action_slot).fcurves)
    error = error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["clip1"], frame_start=1))
    keys_after = sum(len(fc.keyframe_points) for fc in action.layers[0].strips[0].channelbag(
        left.animation_data.action_slot).fcurves)
    # Key Pose of both: the right hand's keys would replace the left's on the shared channels
    shared.frame_set(7)
    key_error = error_of(lambda: bpy.ops.handforge.key_pose(sides="BOTH"))
    keys_after_key = sum(len(fc.keyframe_points) for fc in action.layers[0].strips[0].channelbag(
        left.animation_data.action_slot).fcurves)
    bpy.context.window.scene = first
    return {"error": error, "unchanged": keys_before == keys_after, "key_error": key_error,
            "unchanged_by_key": keys_before == keys_after_key}


s.check("shared_action", shared_action)


def override_with_linked_action():
    """A library override of keyed hands keeps the library's action, which cannot be keyed here: Key Pose
    and the generated-key tools said done and Blender skipped every key; refused instead."""
    first = bpy.context.window.scene
    scene = bpy.data.scenes.new("Override")
    bpy.context.window.scene = scene
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.key_pose(sides="BOTH") == {"FINISHED"}
    made = set(scene.objects)
    library = str(s.work / "override_library.blend")
    bpy.data.libraries.write(library, made, fake_user=True)
    for obj in made:
        bpy.data.objects.remove(obj)
    with bpy.data.libraries.load(library, link=True) as (src, dst):
        dst.objects = list(src.objects)
    for obj in dst.objects:
        scene.collection.objects.link(obj)
    rigs = [obj.override_create(remap_local_usages=True) for obj in dst.objects if obj.type == "ARMATURE"]
    action = rigs[0].animation_data.action

    def keys_now():
        return sorted(tuple(k.co) for bag in action.layers[0].strips[0].channelbags for fc in bag.fcurves
                      for k in fc.keyframe_points)

    before = keys_now()
    scene.frame_set(9)
    out = {"editable": [r.is_editable for r in rigs], "action_linked": not action.is_editable,
           "key": error_of(lambda: bpy.ops.handforge.key_pose(sides="BOTH")),
           "delete": error_of(lambda: bpy.ops.handforge.delete_generated_keys(sides="BOTH")),
           "import": error_of(lambda: bpy.ops.handforge.import_motion(filepath=a["clip1"], frame_start=1))}
    out["unchanged"] = keys_now() == before
    bpy.context.window.scene = first
    return out


s.check("override_action", override_with_linked_action)


def key_pose_in_tweak_mode():
    """Key Pose in NLA tweak mode through a moved strip: the keys land in the action's time (Blender maps
    them) and are the artist's there (they stayed GENERATED: the scene frame was retyped, and Delete
    Generated Keys then took the artist's key away)."""
    first = bpy.context.window.scene
    tweak = bpy.data.scenes.new("Tweak")
    bpy.context.window.scene = tweak
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right = tweak.handforge.right
    assert bpy.ops.handforge.import_motion(filepath=a["clip1"], frame_start=1) == {"FINISHED"}
    ad = right.animation_data
    action, slot = ad.action, ad.action_slot
    track = ad.nla_tracks.new()
    strip = track.strips.new("moved", 1, action)
    ad.action = None
    strip.frame_start_ui = 101
    track.select = strip.select = True
    ad.use_tweak_mode = True
    tweak.frame_set(105)  # shows the action's frame 5
    assert bpy.ops.handforge.apply_preset(preset="fist", sides="RIGHT") == {"FINISHED"}
    assert bpy.ops.handforge.key_pose(sides="RIGHT") == {"FINISHED"}
    def index1():  # found again each time: Delete Generated Keys removes a curve it empties
        return action.layers[0].strips[0].channelbag(slot).fcurves.find('pose.bones["index1"].rotation_euler', index=0)

    at_5 = [kp.type for kp in index1().keyframe_points if abs(kp.co[0] - 5) < 1e-4]
    assert bpy.ops.handforge.delete_generated_keys(sides="RIGHT") == {"FINISHED"}
    left_over = [kp.co[0] for kp in index1().keyframe_points] if index1() is not None else []
    ad.use_tweak_mode = False
    bpy.context.window.scene = first
    return {"at_5": at_5, "left_over": left_over}


s.check("tweak_key", key_pose_in_tweak_mode)


def import_start_frames():
    """Import Motion starts at the current frame unless told, and at any frame it is told, negative ones
    too (-20 went to the current frame: -1 meant 'current', and every negative with it)."""
    first = bpy.context.window.scene
    here = bpy.data.scenes.new("Starts")
    bpy.context.window.scene = here
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right = here.handforge.right
    here.frame_set(50)
    firsts = []
    for kwargs in ({}, {"frame_start": -20}):
        right.animation_data_clear()
        assert bpy.ops.handforge.import_motion(filepath=a["clip1"], **kwargs) == {"FINISHED"}
        ad = right.animation_data
        fc = ad.action.layers[0].strips[0].channelbag(ad.action_slot).fcurves.find(
            'pose.bones["index1"].rotation_euler', index=0)
        firsts.append(fc.keyframe_points[0].co[0])
    bpy.context.window.scene = first
    return firsts


s.check("starts", import_start_frames)


def key_pose_at_a_subframe():
    """Key Pose at frame 10.5 (scene.frame_set(10, subframe=0.5)) keys at 10.5, what is shown (it keyed
    frame 10), a generated key there becoming the artist's as on a whole frame."""
    first = bpy.context.window.scene
    here = bpy.data.scenes.new("Subframe")
    bpy.context.window.scene = here
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    right = here.handforge.right
    here.frame_set(10, subframe=0.5)
    assert bpy.ops.handforge.key_pose(sides="RIGHT") == {"FINISHED"}
    ad = right.animation_data
    keyed = {(fc.data_path, fc.array_index): [(kp.co[0], kp.type) for kp in fc.keyframe_points]
             for fc in ad.action.layers[0].strips[0].channelbag(ad.action_slot).fcurves}
    bpy.context.window.scene = first
    return {"shown": here.frame_current_final, "frames": sorted({f for ks in keyed.values() for f, _ in ks}),
            "types": sorted({k for ks in keyed.values() for _, k in ks})}


s.check("subframe", key_pose_at_a_subframe)


def far_frames_in_reports():
    """Imports and Key Pose far from frame 1 report their frames in full ("1e+06-1.00001e+06" before)."""
    first = bpy.context.window.scene
    here = bpy.data.scenes.new("Far Frames")
    bpy.context.window.scene = here
    try:
        assert bpy.ops.handforge.add_hands() == {"FINISHED"}
        found = {start: printed_by(lambda start=start: bpy.ops.handforge.import_motion(filepath=a["clip_still"],
                                                                                       frame_start=start))[1]
                 for start in (1000000, -200000)}
        here.frame_set(1000000, subframe=0.25)
        found["key"] = printed_by(lambda: bpy.ops.handforge.key_pose(sides="RIGHT"))[1]
    finally:
        bpy.context.window.scene = first
    return found


s.check("far_frames", far_frames_in_reports)


def a_pairs_rig_deleted():
    """Two pairs, the chosen pair's left rig deleted: Key Pose of the left hand and Mirror Pose are refused,
    naming what to choose (they keyed or mirrored the other pair's left hand, unsaid)."""
    first = bpy.context.window.scene
    here = bpy.data.scenes.new("Two Pairs")
    bpy.context.window.scene = here
    try:
        assert bpy.ops.handforge.add_hands() == {"FINISHED"}
        assert bpy.ops.handforge.add_hands() == {"FINISHED"}  # the second pair: the chosen one now
        second = here.handforge.left
        name = second.name
        for child in list(second.children):
            bpy.data.objects.remove(child)
        bpy.data.objects.remove(second)
        listed = importlib.import_module(f"{ADDON_MODULE}.hands").scene_hands(here, "BOTH", required=False)
        return {"key": error_of(lambda: bpy.ops.handforge.key_pose(sides="LEFT")),
                "mirror": error_of(lambda: bpy.ops.handforge.mirror_pose()), "deleted": name,
                "listed": sorted(listed)}  # (what the panels and the keying set act on)
    finally:
        bpy.context.window.scene = first


s.check("pair_rig_deleted", a_pairs_rig_deleted)


def placement_left_out():
    """Export Motion holds each hand's bones in its own armature's space: a rig moved as an object (keys, an
    animated parent), rigs placed apart as objects, or a mirrored rig were written without a word, the
    clip's hands standing still or on the wrong side of each other."""
    first = bpy.context.window.scene
    here = bpy.data.scenes.new("Placed")
    bpy.context.window.scene = here
    out = a["work"] + "/placed.npz"
    placement = importlib.import_module(f"{ADDON_MODULE}.placement")

    def export() -> list[str]:
        result, printed = printed_by(lambda: bpy.ops.handforge.export_motion(filepath=out, frame_start=1, frame_end=10))
        assert result == ["FINISHED"], printed
        return [line for line in printed.splitlines() if line.startswith("Warning")]

    try:
        assert bpy.ops.handforge.add_hands() == {"FINISHED"}
        left, right = here.handforge.left, here.handforge.right
        found = {"plain": export()}
        right.location = (0.0, 0.0, 0.0)
        right.keyframe_insert("location", frame=1)
        right.location = (1.0, 0.0, 0.0)
        right.keyframe_insert("location", frame=10)
        found["keyed"] = export()
        right.animation_data_clear()
        right.location = left.location
        # keys all on one value move nothing (said as moving before, the frames evaluated for nothing)
        for frame in (1, 10):
            right.keyframe_insert("location", frame=frame)
        found["constant"] = export()
        found["constant_moves"] = placement.moves_as_object(right)
        right.animation_data_clear()
        # carried by an animated bone of a character's armature (unsaid before: the rig's own keys none)
        body = bpy.data.objects.new("Body", bpy.data.armatures.new("Body"))
        here.collection.objects.link(body)
        with bpy.context.temp_override(active_object=body, object=body, selected_objects=[body]):
            bpy.context.view_layer.objects.active = body
            bpy.ops.object.mode_set(mode="EDIT")
            bone = body.data.edit_bones.new("Arm")
            bone.tail = (0.0, 0.3, 0.0)
            bpy.ops.object.mode_set(mode="OBJECT")
        body.pose.bones["Arm"].keyframe_insert("rotation_quaternion", frame=1)
        body.pose.bones["Arm"].rotation_quaternion = (0.7071, 0.7071, 0.0, 0.0)
        body.pose.bones["Arm"].keyframe_insert("rotation_quaternion", frame=10)
        right.parent, right.parent_type, right.parent_bone = body, "BONE", "Arm"
        found["bone_parent"] = export()
        found["bone_parent_moves"] = placement.moves_as_object(right)
        right.parent = None
        bpy.data.objects.remove(body)
        right.location = left.location
        empty = bpy.data.objects.new("Carrier", None)
        here.collection.objects.link(empty)
        left.parent = empty
        empty.keyframe_insert("location", frame=1)
        empty.location = (0.0, 0.5, 0.0)
        empty.keyframe_insert("location", frame=10)
        found["parented"] = export()
        left.parent = None
        empty.animation_data_clear()
        right.scale = (-1.0, 1.0, 1.0)
        found["mirrored"] = export()
        return found
    finally:
        bpy.context.window.scene = first


s.check("placement", placement_left_out)


def linked_duplicate():
    """A linked duplicate of a rig (Alt-D: the same action) moves with every key an import writes for the rig:
    right, since the artist linked them, but it was not said."""
    right = hand("right")
    scene.frame_set(1)
    assert bpy.ops.handforge.key_pose(sides="RIGHT") == {"FINISHED"}
    copy = right.copy()  # shares the action and its slot, as Alt-D does
    scene.collection.objects.link(copy)
    try:
        result, printed = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"],
                                                                             frame_start=5000))
        # Key Pose and Delete Generated Keys change the duplicate's pose just as much (before: unsaid)
        scene.frame_set(5002)
        key = printed_by(lambda: bpy.ops.handforge.key_pose(sides="RIGHT"))
        delete = printed_by(lambda: bpy.ops.handforge.delete_generated_keys(sides="RIGHT"))
        return {"result": result, "printed": printed, "copy": copy.name, "rig": right.name, "key": key,
                "delete": delete}
    finally:
        bpy.data.objects.remove(copy)


s.check("linked_duplicate", linked_duplicate)


def export_with_the_artists_constraint():
    """A bone held by the artist's own constraint (not HandForge's joint limits): Export Motion writes the pose
    Blender shows (before: the channels under the constraint), so the clip imported without it shows the same."""
    right = hand("right")
    as_user(bpy.ops.handforge.paste_pose, text=a["artist_pose"], sides="RIGHT")
    for frame in (7000, 7004):
        scene.frame_set(frame)
        assert bpy.ops.handforge.key_pose(sides="RIGHT") == {"FINISHED"}
    held = right.pose.bones["index1"].constraints.new("LIMIT_ROTATION")  # the index finger's base held straight
    held.owner_space = "LOCAL"
    held.use_limit_x = held.use_limit_y = held.use_limit_z = True

    def tips(frames) -> list:
        out = []
        for frame in frames:
            scene.frame_set(frame)
            out.append([list(right.pose.bones[name].tail) for name in ("index3", "middle3", "thumb3")])
        return out

    shown = tips(range(7000, 7005))
    held.mute = True
    channels = tips(range(7000, 7005))
    held.mute = False
    out = a["work"] + "/constrained.npz"
    assert bpy.ops.handforge.export_motion(filepath=out, frame_start=7000, frame_end=7004, sides="RIGHT") == {"FINISHED"}
    # its influence keyed from 0 (the frame shown at the export) to 1: on at the frames after (before: read in
    # bulk from the curves, the constraint being off at the frame shown)
    held.influence = 0.0
    held.keyframe_insert("influence", frame=7000)
    held.influence = 1.0
    held.keyframe_insert("influence", frame=7004)
    keyed = tips(range(7000, 7005))
    scene.frame_set(7000)
    keyed_out = a["work"] + "/constraint_keyed.npz"
    assert bpy.ops.handforge.export_motion(filepath=keyed_out, frame_start=7000, frame_end=7004,
                                           sides="RIGHT") == {"FINISHED"}
    right.pose.bones["index1"].constraints.remove(held)
    assert bpy.ops.handforge.import_motion(filepath=out, frame_start=7100) == {"FINISHED"}
    assert bpy.ops.handforge.import_motion(filepath=keyed_out, frame_start=7200) == {"FINISHED"}
    return {"shown": shown, "channels": channels, "imported": tips(range(7100, 7105)), "keyed": keyed,
            "keyed_imported": tips(range(7200, 7205))}


s.check("artists_constraint", export_with_the_artists_constraint)


def clip_of_another_hand_model():
    """A clip made for MANO hands imported onto the open hands: keyed, and said with what to do instead."""
    from handforge_shared.poses import MotionClip

    clip = MotionClip.load(a["clip_still"])
    path = a["work"] + "/mano_clip.npz"
    MotionClip(hands=clip.hands, fps=clip.fps, hand_model="mano").save(path)
    result, printed = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=path, frame_start=8000))
    return {"result": result, "printed": printed}


s.check("other_model", clip_of_another_hand_model)


def retimed_clip_beside_the_artists_key():
    """A 24 fps clip into a 30 fps scene (its frames 1.25 apart) beside the artist's key at frame 8101: the
    report names that key's frame, not the clip frame skipped beside it (8101.25)."""
    from handforge_shared.poses import MotionClip

    clip = MotionClip.load(a["clip_still"])
    scene.frame_set(8101)
    assert bpy.ops.handforge.key_pose(sides="BOTH") == {"FINISHED"}
    scene.render.fps = 30
    try:
        result, printed = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"],
                                                                             frame_start=8100))
    finally:
        scene.render.fps = 24
    return {"result": result, "printed": printed, "clip_fps": clip.fps}


s.check("retimed_kept", retimed_clip_beside_the_artists_key)


def retimed_clip_report():
    """A 30 fps clip of 30 frames into a 24 fps scene (its keys 0.8 frames apart, the last at 24.2), and a 24 fps
    clip into a 48 fps one (every other frame): what the import says of where the keys went."""
    from handforge_shared.poses import MotionClip

    clip = MotionClip.load(a["clip1"])
    paths = {fps: f"{a['work']}/clip_{fps}fps.npz" for fps in (30, 24)}
    for fps, path in paths.items():
        MotionClip(hands=clip.hands, fps=float(fps)).save(path)
    first = bpy.context.window.scene
    here = bpy.data.scenes.new("Retimed")
    bpy.context.window.scene = here
    try:
        assert bpy.ops.handforge.add_hands() == {"FINISHED"}
        found = {"30_to_24": printed_by(lambda: bpy.ops.handforge.import_motion(filepath=paths[30], frame_start=1))}
        here.render.fps = 48
        found["24_to_48"] = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=paths[24], frame_start=100))
    finally:
        bpy.context.window.scene = first
    return found


s.check("retimed_report", retimed_clip_report)


def clip_past_the_scene_end():
    """A clip running past the scene's End: End moves to its last frame, and the report says so; one inside the
    range says nothing of it."""
    scene.frame_end = 9010
    past = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=9000))
    end_after = scene.frame_end
    inside = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=8950))
    return {"past": past, "end_after": end_after, "inside": inside}


s.check("past_end", clip_past_the_scene_end)


def clip_before_the_scene_start():
    """A clip starting before the scene's Start: Start moves to its first frame (it stayed, part of the motion out
    of playback), and the report says so; one starting before frame 0 moves it to 0, Blender's least, saying
    which frames do not play."""
    scene.frame_start, scene.frame_end = 9500, 9600
    before = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=9490))
    range_after = [scene.frame_start, scene.frame_end]
    inside = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=9500))
    below_zero = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=-10))
    start_after_zero = scene.frame_start
    at_zero = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip_still"], frame_start=-5))
    # the other buttons keying a motion say it too (they moved the range unsaid): Run Job's import, as one
    from handforge_shared.poses import MotionClip

    scene.frame_start, scene.frame_end = 9500, 9600
    importers = importlib.import_module(f"{ADDON_MODULE}.importers")
    run_job = importers.import_motion(bpy.context, MotionClip.load(a["clip_still"]), frame_start=9590)
    return {"before": before, "range_after": range_after, "inside": inside, "below_zero": below_zero,
            "start_after_zero": start_after_zero, "at_zero": at_zero, "run_job": run_job}


s.check("before_start", clip_before_the_scene_start)


def capital_suffix_and_one_hand():
    """A clip named with a capital .NPZ (as some systems save them) is written and read back (Export refused it:
    'HandForge writes .npz files'); a two-hand clip imported into a scene with the right hand alone keys that hand
    and says the left's motion was skipped."""
    first = bpy.context.window.scene
    bpy.context.window.scene = bpy.data.scenes.new("One hand")
    try:
        assert bpy.ops.handforge.add_hands(sides="RIGHT") == {"FINISHED"}
        upper = a["work"] + "/upper.NPZ"
        out = {"export": printed_by(lambda: bpy.ops.handforge.export_motion(filepath=upper, frame_start=1,
                                                                            frame_end=3, sides="RIGHT")),
               "suffix_only": error_of(lambda: bpy.ops.handforge.export_motion(filepath=a["work"] + "/.NPZ",
                                                                               frame_start=1, frame_end=3))}
        out["import"] = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=upper, frame_start=10))
        out["two_hands"] = printed_by(lambda: bpy.ops.handforge.import_motion(filepath=a["clip1"], frame_start=20))
        fcurves = [fc for bag in hand("right").animation_data.action.layers[0].strips[0].channelbags
                   for fc in bag.fcurves]
        out["right_keyed"] = sorted({k.co[0] for fc in fcurves for k in fc.keyframe_points if k.co[0] >= 20})
        return out
    finally:
        bpy.context.window.scene = first


s.check("capital_one_hand", capital_suffix_and_one_hand)
s.finish()
