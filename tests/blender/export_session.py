"""Blender session: Export Labelled Renders through a real backend the add-on starts. Two keyed
poses, one armature moved, one held by the artist's own bone constraint, two cameras (one animated, one with a vertical sensor fit and a shift),
a non-square pixel aspect; the rigs' keypoints projected by Blender's own ``world_to_camera_view``
are handed back as the oracle for the labels."""

from __future__ import annotations

import contextlib
import json
import os

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

from session import (ADDON_MODULE, Session, add_camera, as_in_a_window, error_of, printed_by, ui_context,
                     while_a_job_runs)
from handforge_shared.skeleton import KEYPOINT_NAMES, MODEL_TO_BLENDER

s = Session()
s.install()
a = s.args
scene = bpy.context.scene


def start():
    s.start_backend()
    return {"kinds": sorted(k.name for k in bpy.context.window_manager.handforge.kinds)}


s.check("start", start)
s.results["refused_without_hands"] = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"]))


def build_scene():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    refused = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"]))
    for frame, pose in ((1, a["pose_a"]), (9, a["pose_b"])):
        scene.frame_set(frame)
        assert bpy.ops.handforge.paste_pose(text=pose, sides="BOTH") == {"FINISHED"}
        assert bpy.ops.handforge.key_pose(sides="BOTH") == {"FINISHED"}
    scene.frame_start, scene.frame_end = 1, 9
    # the artist's own constraint holds the left index finger's base straight: labelled as Blender shows it
    held = scene.handforge.left.pose.bones["index1"].constraints.new("LIMIT_ROTATION")
    held.owner_space = "LOCAL"
    held.use_limit_x = held.use_limit_y = held.use_limit_z = True
    right = scene.handforge.right  # an armature moved as an object: its hand moves with it
    right.location = (0.04, -0.03, 0.02)
    right.rotation_euler = (0.2, -0.1, 0.4)
    first = add_camera("Cam A", (0.1, -0.55, 0.35))
    first.data.lens, first.data.sensor_fit, first.data.sensor_height = 30.0, "VERTICAL", 20.0
    first.data.shift_x, first.data.shift_y = 0.05, -0.03
    second = add_camera("Cam B", (-0.2, -0.6, 0.3))
    second.data.lens = 45.0
    for frame, location in ((1, (-0.2, -0.6, 0.3)), (9, (0.25, -0.5, 0.45))):  # a moving camera
        second.location = location
        second.rotation_euler = (Vector((0, 0, 0)) - Vector(location)).to_track_quat("-Z", "Y").to_euler()
        second.keyframe_insert("location", frame=frame)
        second.keyframe_insert("rotation_euler", frame=frame)
    scene.camera = first
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 160, 120, 100
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = 1.0, 1.2
    return {"no_camera": refused}


s.check("scene", build_scene)


@contextlib.contextmanager
def cameras_left_out():
    """The moving Cam B in a collection excluded from the view layer (Blender does not move it any more), a
    new Cam C in a collection disabled in renders and an orthographic Cam D, for the time of the block."""
    hidden = bpy.data.collections.new("Excluded Cameras")
    scene.collection.children.link(hidden)
    moving = bpy.data.objects["Cam B"]
    hidden.objects.link(moving)
    scene.collection.objects.unlink(moving)
    bpy.context.view_layer.layer_collection.children[hidden.name].exclude = True
    unrendered = bpy.data.collections.new("Unrendered Cameras")
    scene.collection.children.link(unrendered)
    unrendered.hide_render = True
    unrendered.objects.link(add_camera("Cam C", (0.0, -0.6, 0.3)))
    scene.collection.objects.unlink(bpy.data.objects["Cam C"])
    add_camera("Cam D", (0.6, 0.0, 0.3)).data.type = "ORTHO"
    try:
        yield moving
    finally:
        bpy.data.objects.remove(bpy.data.objects["Cam C"])
        bpy.data.objects.remove(bpy.data.objects["Cam D"])
        bpy.data.collections.remove(unrendered)
        scene.collection.objects.link(moving)
        bpy.data.collections.remove(hidden)


def refusals():
    os.makedirs(a["foreign"], exist_ok=True)
    with open(os.path.join(a["foreign"], "notes.txt"), "w") as fh:
        fh.write("not a dataset")
    # a rig under a scaled parent: the parent is named, and the advice is to clear, not apply, the scale
    right = bpy.context.scene.handforge.right
    carrier = bpy.data.objects.new("Carrier", None)
    bpy.context.scene.collection.objects.link(carrier)
    carrier.scale = (2.0, 2.0, 2.0)
    right.parent = carrier
    scaled_parent = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"]))
    right.parent = None
    bpy.data.objects.remove(carrier)
    first = bpy.data.objects["Cam A"]
    with cameras_left_out() as moving:
        scene.camera = moving
        try:
            excluded = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"], cameras="ACTIVE",
                                                                         engine="none"))
        finally:
            scene.camera = first
        first.hide_render = True  # and Cam A disabled in renders: All Cameras has none left
        try:
            none_left = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"], engine="none"))
        finally:
            first.hide_render = False
    # timeline markers bound to cameras, frame 1 to Cam A, frame 5 to Cam B: Active Camera labelled every frame
    # from Cam A, where Render Animation renders frames 5 to 9 from Cam B
    markers = [scene.timeline_markers.new(f"cut {frame}", frame=frame) for frame in (1, 5)]
    markers[0].camera, markers[1].camera = first, bpy.data.objects["Cam B"]
    scene.frame_set(1)
    try:
        switched = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"], cameras="ACTIVE",
                                                                     engine="none", frame_step=4))
        only_cam_a = bpy.ops.handforge.export_renders.poll() and error_of(  # within the first cut: not refused
            lambda: bpy.ops.handforge.export_renders(directory=a["foreign"], cameras="ACTIVE", engine="none",
                                                     frame_start=1, frame_end=4))
    finally:
        for marker in markers:
            scene.timeline_markers.remove(marker)
        scene.camera = first
    return {"none_left": none_left, "switched": switched, "only_cam_a": only_cam_a,
            "empty_range": error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"], frame_start=5,
                                                                             frame_end=2)),
            "relative": error_of(lambda: bpy.ops.handforge.export_renders(directory="//renders")),
            "foreign_folder": error_of(lambda: bpy.ops.handforge.export_renders(directory=a["foreign"])),
            "scaled_parent": scaled_parent, "excluded_camera": excluded, "percent_1000": at_percent(1000),
            "nothing_written": not os.path.exists(a["out"])}


def at_percent(pct: int) -> str:
    """The refusal with a render resolution of 1600×1200 at ``pct`` percent."""
    render = scene.render
    size = render.resolution_x, render.resolution_y, render.resolution_percentage
    render.resolution_x, render.resolution_y, render.resolution_percentage = 1600, 1200, pct
    try:
        return error_of(lambda: bpy.ops.handforge.export_renders(directory=a["out"], engine="none"))
    finally:
        render.resolution_x, render.resolution_y, render.resolution_percentage = size


s.check("refusals", refusals)


def skipped_cameras():
    """All Cameras with Cam B and Cam C left out: exported from Cam A alone, saying which were skipped and why
    (before: refused, for Cam B)."""
    out = s.work / "skipping"
    with cameras_left_out():
        result, printed = printed_by(lambda: bpy.ops.handforge.export_renders(directory=str(out), frame_start=1,
                                                                              frame_end=1, engine="none"))
    cameras = [json.loads(p.read_text())["camera_params"]["blender_camera"]
               for p in sorted(out.glob("samples/*/labels.json"))]
    return {"result": result, "printed": printed, "cameras": cameras}


s.check("skipped_cameras", skipped_cameras)


def hand_left_out_of_renders():
    """The right hand's mesh disabled in renders: the dataset holds the left hand alone, and says why (before: both
    hands drawn, masked and labelled); both disabled: refused, each named."""
    out = s.work / "one_hand"
    right, left = bpy.data.objects["Hand.R Mesh"], bpy.data.objects["Hand.L Mesh"]
    right.hide_render = True
    try:
        result, printed = printed_by(lambda: bpy.ops.handforge.export_renders(
            directory=str(out), frame_start=1, frame_end=1, cameras="ACTIVE", engine="none"))
        left.hide_render = True
        refused = error_of(lambda: bpy.ops.handforge.export_renders(directory=str(s.work / "no_hand"),
                                                                    cameras="ACTIVE", engine="none"))
    finally:
        right.hide_render = left.hide_render = False
    sides = [sorted(json.loads(p.read_text())["hands"]) for p in sorted(out.glob("samples/*/labels.json"))]
    return {"result": result, "printed": printed, "sides": sides, "refused": refused,
            "nothing_written": not (s.work / "no_hand").exists()}


s.check("hand_left_out", hand_left_out_of_renders)


def oracle():
    """Per exported frame and camera, each rig's 21 keypoints (bone heads) projected by Blender,
    in pixels (origin top-left), and in the world (model axes)."""
    frames, cameras = [1, 5, 9], [bpy.data.objects["Cam A"], bpy.data.objects["Cam B"]]
    W, H = scene.render.resolution_x, scene.render.resolution_y
    pixels = np.zeros((len(frames), len(cameras), 2, 21, 2))
    world = np.zeros((len(frames), 2, 21, 3))
    for f, frame in enumerate(frames):
        scene.frame_set(frame)
        for h, side in enumerate(("left", "right")):
            arm = getattr(scene.handforge, side)
            points = [arm.matrix_world @ arm.pose.bones[name].head for name in KEYPOINT_NAMES]
            world[f, h] = np.array([list(p) for p in points]) @ MODEL_TO_BLENDER  # Mᵀ p, as row vectors
            for c, cam in enumerate(cameras):
                for k, p in enumerate(points):
                    x, y, _ = world_to_camera_view(scene, cam, p)
                    pixels[f, c, h, k] = x * W, (1.0 - y) * H
    scene.frame_set(1)
    s.arrays["pixels"], s.arrays["world"] = pixels, world


def export():
    frame = scene.frame_current
    result = bpy.ops.handforge.export_renders(directory=a["out"], frame_step=4, engine="none", seed=3)
    bpy.context.scene.frame_step = 4  # Step left at 0: the scene's Frame Step (it exported every frame)
    rerun = bpy.ops.handforge.export_renders(directory=a["out"], engine="none", seed=3)  # the same request
    bpy.context.scene.frame_step = 1
    rgb = bpy.ops.handforge.export_renders(directory=a["rgb_out"], frame_start=5, frame_end=5, cameras="ACTIVE",
                                           resolution_x=96, resolution_y=72, engine="workbench")
    return {"result": sorted(result), "rerun": sorted(rerun), "rgb": sorted(rgb),
            "frame_restored": scene.frame_current == frame}


s.check("oracle", oracle)
s.check("export", export)


def wide_pixels():
    """Pixels 150 times as wide as tall (Blender takes 1-200 each): exported, labelled as Blender projects (refused
    before: "params.pixel_aspect[0]: must be between 0.01 and 100.0", the job's bound on each value)."""
    render, cam = scene.render, bpy.data.objects["Cam A"]
    kept, shown = (render.pixel_aspect_x, render.pixel_aspect_y), scene.camera
    render.pixel_aspect_x, render.pixel_aspect_y, scene.camera = 150.0, 1.0, cam
    scene.frame_set(1)
    try:
        W, H = render.resolution_x, render.resolution_y
        pixels = {}
        for side in ("left", "right"):
            arm = getattr(scene.handforge, side)
            points = [arm.matrix_world @ arm.pose.bones[name].head for name in KEYPOINT_NAMES]
            pixels[side] = [[x * W, (1.0 - y) * H] for x, y, _ in (world_to_camera_view(scene, cam, p) for p in points)]
        error = error_of(lambda: bpy.ops.handforge.export_renders(directory=a["wide_out"], frame_start=1, frame_end=1,
                                                                  cameras="ACTIVE", engine="none"))
    finally:
        (render.pixel_aspect_x, render.pixel_aspect_y), scene.camera = kept, shown
    return {"error": error, "pixels": pixels}


s.check("wide_pixels", wide_pixels)


def modal_export(folder: str):
    """Export Labelled Renders run as Blender's UI runs it (not in the background): modally."""
    try:
        with as_in_a_window("jobs", "ops_export"), bpy.context.temp_override(**ui_context()):
            return sorted(bpy.ops.handforge.export_renders("EXEC_DEFAULT", directory=folder, frame_start=1,
                                                           frame_end=1, cameras="ACTIVE", engine="none"))
    except RuntimeError as exc:
        return str(exc)[-300:]


def from_the_ui():
    """From the UI, the file browser's Export, the folder chosen, calls execute, which starts the job
    modally (before: execute and invoke called each other until Python's recursion limit, and nothing
    was exported)."""
    import importlib

    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    result = modal_export(str(s.work / "ui_export"))
    running = jobs.running()
    for job in running:  # no event loop runs the modal here: wait for the job, then forget it
        while not job.handle.done:
            connection.pump(0.1)
    finished = [type(job.handle.outcome).__name__ for job in running]
    jobs.shutdown()
    return {"result": result, "outcomes": finished}


s.check("from_ui", from_the_ui)


def scene_switched_mid_export():
    """Another scene shown while the export runs: its files are written all the same, and it says so
    (before: "the scene changed while it ran ... not applied: run it again from this scene")."""
    window = bpy.context.window_manager.windows[0]
    first, other = window.scene, bpy.data.scenes.new("Other Scene")
    out = s.work / "switched"
    try:  # the artist looks at another scene while the job runs
        with while_a_job_runs(lambda: setattr(window, "scene", other)):
            message = error_of(lambda: bpy.ops.handforge.export_renders(directory=str(out), frame_start=1,
                                                                        frame_end=1, cameras="ACTIVE", engine="none"))
        switched = bpy.context.scene.name
    finally:
        window.scene = first
        bpy.data.scenes.remove(other)
    return {"message": message, "switched": switched, "written": len(list(out.glob("samples/*/labels.json")))}


s.check("switched_scene", scene_switched_mid_export)


def cancelled_then_resumed():
    """Cancel Job once the first image is written; the warning says the images so far are kept and a rerun
    resumes; the rerun to the same folder writes only the rest."""
    out = s.work / "cancelled"

    def finished():  # (pathlib's '*' matches a sample's hidden .partial-N folder too: no image yet)
        return [p for p in out.glob("samples/*/labels.json") if not p.parent.name.startswith(".")]

    def cancel_after_the_first_image():
        if finished():
            bpy.ops.handforge.cancel_job()

    with while_a_job_runs(cancel_after_the_first_image):
        result, printed = printed_by(lambda: bpy.ops.handforge.export_renders(
            directory=str(out), frame_start=1, frame_end=9, cameras="ACTIVE", engine="none"))
    kept = len(finished())
    rerun, rerun_printed = printed_by(lambda: bpy.ops.handforge.export_renders(
        directory=str(out), frame_start=1, frame_end=9, cameras="ACTIVE", engine="none"))
    return {"result": result, "printed": printed, "kept": kept, "rerun": rerun, "rerun_printed": rerun_printed}


s.check("cancelled", cancelled_then_resumed)


def outcome_of(call) -> dict:
    """An operator's result and everything it said: what it printed and the error it raised (if any)."""
    try:
        result, printed = printed_by(call)
        return {"result": result, "said": printed}
    except RuntimeError as exc:
        return {"result": ["CANCELLED"], "said": str(exc)}


def cancel_not_confirmed():
    """Cancel asked for, but the job did not end Cancelled: the backend did not answer in time, it had finished
    first, or it was gone. The "export again to resume" hint is not said (only a confirmed cancel frees the
    folder: a job the backend may still be running holds it, and a rerun is refused)."""
    import importlib
    import signal
    import time

    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")

    def export(folder: str):
        return lambda: bpy.ops.handforge.export_renders(directory=str(s.work / folder), frame_start=1, frame_end=9,
                                                        cameras="ACTIVE", engine="none")

    out, backend = {}, connection.BACKEND.process.pid
    # Ctrl-C with the backend frozen (SIGSTOP): no answer within the wait (shortened below the heartbeat's 8 s)
    frozen = []

    def ctrl_c_while_frozen():
        if not frozen:
            frozen.append(os.kill(backend, signal.SIGSTOP))
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the terminal

    wait, jobs.CANCEL_WAIT_S = jobs.CANCEL_WAIT_S, 1.0
    try:
        with while_a_job_runs(ctrl_c_while_frozen):
            out["unanswered"] = outcome_of(export("unanswered"))
    finally:
        jobs.CANCEL_WAIT_S = wait
        os.kill(backend, signal.SIGCONT)

    # Cancel pressed once the backend has sent its result (its log says so after the send; the add-on reads it at
    # its next pump, after this): the backend answers that the job is unknown, and the result lands
    def cancel_once_sent():
        job = next(iter(jobs.RUNNING.values()))
        if job.cancel_requested is not None:
            return
        ended, deadline = f"job {job.handle.id} (export_renders) -> ", time.monotonic() + 60.0
        while time.monotonic() < deadline:
            log = connection.BACKEND.log_path.read_text(errors="replace")
            if ended in log:
                out["backend_sent"] = log.split(ended, 1)[1].split()[0]
                break
            time.sleep(0.05)
        out["finished_first_cancel"] = sorted(bpy.ops.handforge.cancel_job())

    with while_a_job_runs(cancel_once_sent):
        out["finished_first"] = outcome_of(export("finished_first"))

    # Cancel pressed with the backend gone (killed, not yet noticed): nothing can answer it
    def kill_then_cancel():
        if not out.get("killed_cancel"):
            os.kill(backend, signal.SIGKILL)
            out["killed_cancel"] = sorted(bpy.ops.handforge.cancel_job())

    with while_a_job_runs(kill_then_cancel):
        out["killed"] = outcome_of(export("killed"))
    s.start_backend()  # (for the checks after this one)
    return out


s.check("cancel_not_confirmed", cancel_not_confirmed)


def failed_samples_warned():
    """A run in which a sample failed ends on a warning that names it (before: an Info line, read as a plain
    success, the dataset an image short); a clean run on an Info line. The failure is one of the job's own path
    (HANDFORGE_EXPORT_FAULT is the scale-out workers' and does not reach it): sample 1's folder, deleted since the
    clean run, has a file in its name's place, so the rerun cannot write it."""
    import shutil

    out = s.work / "some_failed"

    def export_and_report():
        result, printed = printed_by(lambda: bpy.ops.handforge.export_renders(
            directory=str(out), frame_start=1, frame_end=3, frame_step=1, cameras="ACTIVE", engine="none"))
        reports = [line for line in printed.splitlines() if line.startswith(("Info:", "Warning:", "Error:"))]
        return {"result": result, "reports": reports}

    found = {"clean": export_and_report()}
    held = out / "samples" / "000001"
    shutil.rmtree(held)
    held.write_text("not a sample\n")
    found["failed"] = export_and_report()  # the same request: a rerun, sample 1 retried
    return found


s.check("failed_samples", failed_samples_warned)


def stepped_long_span():
    """A span over the 100,000-frame limit at a Step that leaves three frames (1, 50001, 100001): exported, only
    those frames visited (before: refused, "export it in parts", the whole span counted), the scene's frame, subframe
    and selection as they were; the same frames exported one at a time are the labels to compare with. Keys at
    100001 (a third pose, and Cam B moved) make the three frames differ; frame 50001 lies between keys."""
    far, moving = 100001, bpy.data.objects["Cam B"]
    scene.frame_set(far)
    assert bpy.ops.handforge.paste_pose(text=a["pose_c"], sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.key_pose(sides="BOTH") == {"FINISHED"}
    moving.location = (0.05, -0.65, 0.15)
    moving.rotation_euler = (Vector((0, 0, 0)) - moving.location).to_track_quat("-Z", "Y").to_euler()
    moving.keyframe_insert("location", frame=far)
    moving.keyframe_insert("rotation_euler", frame=far)
    scene.frame_set(5, subframe=0.25)
    for obj in scene.objects:
        obj.select_set(obj.name == "Cam A")
    bpy.context.view_layer.objects.active = bpy.data.objects["Cam A"]

    def state():
        return {"frame": [scene.frame_current, scene.frame_subframe],
                "active": bpy.context.view_layer.objects.active.name,
                "selected": sorted(o.name for o in scene.objects if o.select_get())}

    before = state()
    out = {"refused_at_step_1": error_of(lambda: bpy.ops.handforge.export_renders(
               directory=str(s.work / "huge"), frame_start=1, frame_end=200000, frame_step=1, engine="none")),
           "refused_at_step_2": error_of(lambda: bpy.ops.handforge.export_renders(
               directory=str(s.work / "huge"), frame_start=1, frame_end=200002, frame_step=2, engine="none")),
           "refused_nothing_written": not (s.work / "huge").exists()}
    visited = set()

    def visit(changed, *_):
        visited.add(changed.frame_current)

    bpy.app.handlers.frame_change_post.append(visit)
    try:
        out["result"], out["printed"] = printed_by(lambda: bpy.ops.handforge.export_renders(
            directory=str(s.work / "stepped"), frame_start=1, frame_end=150000, frame_step=50000, engine="none",
            seed=3))
    finally:
        bpy.app.handlers.frame_change_post.remove(visit)
    out["visited"] = sorted(visited)
    out["before"], out["after"] = before, state()
    out["one_at_a_time"] = [sorted(bpy.ops.handforge.export_renders(
        directory=str(s.work / f"frame_{frame}"), frame_start=frame, frame_end=frame, engine="none", seed=3))
        for frame in (1, 50001, far)]
    return out


s.check("stepped_long_span", stepped_long_span)


def file_opened_mid_export():
    """Another file opened while the modal export runs: Blender ends the modal; the job is cancelled and
    forgotten (before: it stayed listed as running, its button greyed until Blender restarted)."""
    import importlib

    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    result = modal_export(str(s.work / "opened"))
    running = len(jobs.running())
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"result": result, "running": running, "after_load": len(jobs.running()),
            "poll": bpy.ops.handforge.export_renders.poll()}


s.check("file_opened", file_opened_mid_export)
s.check("stop", lambda: sorted(bpy.ops.handforge.stop_backend()))
s.finish()
print(json.dumps({k: v for k, v in s.results.items() if k.endswith("__error")})[:4000])
