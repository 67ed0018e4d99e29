"""Blender session with a real backend subprocess started by the add-on: connect, capabilities,
hand rigs and forward_hands through the operators, a cancelled job, results imported, and the
backend killed mid-job."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import bpy
import numpy as np

from session import (ADDON_MODULE, Session, error_of, evaluated_vertices, init_undo, printed_by, ui_context,
                     while_a_job_runs)

s = Session()
s.install()
a = s.args
wm = bpy.context.window_manager


def children() -> list[int]:
    """Processes whose parent is this one (Linux /proc): the backend the add-on started."""
    me, out = os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me:
                out.append(int(entry.name))
    return out


def scene_state() -> dict:
    return {"objects": sorted(o.name for o in bpy.data.objects), "images": sorted(i.name for i in bpy.data.images),
            "actions": sorted((ac.name, sum(len(fc.keyframe_points) for layer in ac.layers for strip in layer.strips
                                            for bag in strip.channelbags for fc in bag.fcurves))
                              for ac in bpy.data.actions)}


prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
prefs.connect_timeout = 2.0


def no_backend():
    prefs.address = f"tcp://127.0.0.1:{a['unused_port']}"
    start = time.monotonic()
    message = error_of(lambda: bpy.ops.handforge.connect())
    return {"message": message, "seconds": time.monotonic() - start, "status": wm.handforge.status}


s.check("no_backend", no_backend)


def bad_settings():
    prefs.address = "http://example.com"
    bad_address = error_of(lambda: bpy.ops.handforge.connect())
    prefs.address = "tcp://localhost:99999"
    bad_port = error_of(lambda: bpy.ops.handforge.connect())
    prefs.address = "tcp://192.0.2.7:5780"
    remote_without_keys = error_of(lambda: bpy.ops.handforge.connect())
    prefs.address = f"tcp://127.0.0.1:{a['port']}"
    prefs.server_command = "/nonexistent/handforge serve --port {port}"
    bad_command = error_of(lambda: bpy.ops.handforge.start_backend())
    bad_command_status = wm.handforge.status
    import socket

    with socket.socket() as taken:  # a backend started elsewhere (a terminal) listens at the address
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        prefs.address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        prefs.server_command = a["command"]
        port_taken = error_of(lambda: bpy.ops.handforge.start_backend())
        taken_children = len(children())
    prefs.address = f"tcp://127.0.0.1:{a['port']}"
    # a start command without {port}: its backend runs (here: waits on its stdin) but listens elsewhere, if at all
    prefs.server_command = '{python} -c "import sys; sys.stdin.read()"'
    no_port = error_of(lambda: bpy.ops.handforge.start_backend())
    no_port_children = len(children())
    prefs.server_public_key, prefs.client_secret_key = "//keys/server.key", "/keys/client.key_secret"
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    try:
        connection._curve_keys(prefs)
        relative_key = ""
    except connection.BackendError as exc:
        relative_key = str(exc)
    prefs.server_public_key = prefs.client_secret_key = ""
    return {"bad_address": bad_address, "bad_port": bad_port, "remote_without_keys": remote_without_keys,
            "relative_key": relative_key,
            "bad_command": bad_command, "bad_command_status": bad_command_status,
            "port_taken": port_taken, "port_taken_children": taken_children, "no_port": no_port,
            "no_port_children": no_port_children}


s.check("bad_settings", bad_settings)


def start_command_words():
    """The start command split as a shell would, then filled in: Blender's Python in a folder with a space
    (unquoted {python}) and, on Windows, a quoted program path (shlex kept the quotes: not found)."""
    words = importlib.import_module(f"{ADDON_MODULE}.connection").start_command
    return {"posix": words("{python} -m handforge serve --port {port}", 5780, "/opt/Blender 4.5/python/bin/python3",
                           windows=False),
            "windows": words('"C:\\Users\\Ana Lopez\\HandForge\\.venv\\Scripts\\handforge.exe" serve --port {port}',
                             5780, "unused", windows=True),
            "windows_python": words('"{python}" -m handforge serve --port {port}', 5780,
                                    "C:\\Program Files\\Blender\\python.exe", windows=True)}


s.check("start_command", start_command_words)


def start():
    prefs.address = f"tcp://127.0.0.1:{a['port']}"
    prefs.server_command = a["command"]
    prefs.connect_timeout = 90.0
    # a link another user could plant at the log's old fixed name (temp folder + Blender's pid)
    victim, planted = Path(a["victim"]), Path(tempfile.gettempdir()) / f"handforge-backend-{os.getpid()}.log"
    planted.unlink(missing_ok=True)
    planted.symlink_to(victim)
    t = time.monotonic()
    try:
        assert bpy.ops.handforge.start_backend() == {"FINISHED"}
    finally:
        planted.unlink()
    backend = importlib.import_module(f"{ADDON_MODULE}.connection").BACKEND
    log = backend.log_path
    props = wm.handforge
    return {"seconds": time.monotonic() - t, "status": props.status, "connected": props.connected,
            "engines": {e.name: [e.available, e.reason] for e in props.engines},
            "kinds": {k.name: k.engine for k in props.kinds},
            "hand_models": {m.name: [m.available, m.reason] for m in props.hand_models},
            "children": len(children()), "victim": victim.read_text(),
            "log": {"mode": oct(log.stat().st_mode & 0o777), "name": log.name},
            # Ctrl-C at Blender's terminal goes to its foreground process group: the backend must not be in it
            "own_group": os.getpgid(backend.process.pid) != os.getpgrp(),
            # the status line's parts read back from elsewhere: the address asked for, the child from /proc
            "address": prefs.address, "child_pids": children()}


s.check("start", start)


def mano_missing():
    return error_of(lambda: bpy.ops.handforge.backend_hands(model="mano"))


s.check("mano_missing", mano_missing)


def forward_check():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.paste_pose(text=a["pose"], sides="BOTH") == {"FINISHED"}
    assert bpy.ops.handforge.check_backend() == {"FINISHED"}
    out = {}
    for side in ("left", "right"):
        backend = bpy.data.objects[f"HandForge Backend.{side[0].upper()}"]
        co = np.empty(len(backend.data.vertices) * 3, np.float32)
        backend.data.vertices.foreach_get("co", co)
        blender = evaluated_vertices(getattr(bpy.context.scene.handforge, side))
        out[side] = {"reported": backend["handforge_max_deviation_m"],
                     "measured": float(np.abs(co.reshape(-1, 3) - blender).max()),
                     "moved": float(np.abs(blender - blender.mean(0)).max())}
    return out


s.check("forward", forward_check)


def forward_check_moved_rig():
    """The check compares in the rig's own space: a rig moved, turned and scaled as an object still agrees,
    and the backend's mesh is shown where the rig stands."""
    left = bpy.context.scene.handforge.left
    left.location, left.rotation_euler, left.scale = (0.6, -0.2, 0.3), (0.3, 0.5, 1.1), (1.5, 1.5, 1.5)
    bpy.context.view_layer.update()
    try:
        assert bpy.ops.handforge.check_backend() == {"FINISHED"}
        backend = bpy.data.objects["HandForge Backend.L"]
        co = np.empty(len(backend.data.vertices) * 3, np.float32)
        backend.data.vertices.foreach_get("co", co)
        mw = np.array(backend.matrix_world)
        shown = co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3]
        return {"reported": backend["handforge_max_deviation_m"],
                "measured": float(np.abs(shown - evaluated_vertices(left)).max())}
    finally:
        left.location, left.rotation_euler, left.scale = (0, 0, 0), (0, 0, 0), (1, 1, 1)


s.check("forward_moved", forward_check_moved_rig)


def forward_check_without_mesh():
    """A rig without its hand mesh is refused before anything is sent or added."""
    left = bpy.context.scene.handforge.left
    mesh_obj = next(c for c in left.children if c.type == "MESH")
    mesh_obj.parent = None
    try:
        before = {o.name for o in bpy.data.objects}
        return {"error": error_of(lambda: bpy.ops.handforge.check_backend()),
                "added": sorted({o.name for o in bpy.data.objects} - before)}
    finally:
        mesh_obj.parent = left


s.check("forward_no_mesh", forward_check_without_mesh)


def backend_rigs():
    before = {o.name for o in bpy.data.objects if o.type == "ARMATURE"}
    assert bpy.ops.handforge.backend_hands(model="open", use_shape=True, betas=[0.5] + [0.0] * 9) == {"FINISHED"}
    new = [bpy.data.objects[n] for n in {o.name for o in bpy.data.objects if o.type == "ARMATURE"} - before]
    return {o.handforge.side: {"model": o.handforge.hand_model, "betas": list(o.handforge.betas),
                               "bones": len(o.data.bones)} for o in new}


s.check("backend_rigs", backend_rigs)


def once_running(action, also=lambda: True, deadline_s: float = 60.0) -> threading.Thread:
    """Run ``action`` from a thread once a job runs on the backend (and ``also()`` holds): events, not a
    fixed delay, so a busy machine cannot make it land before the job or after its end."""
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")

    def wait_then_act() -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if any(job.handle.state == "running" for job in list(jobs.RUNNING.values())) and also():
                action()
                return
            time.sleep(0.01)

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def ctrl_c_once_running() -> threading.Thread:
    """Ctrl-C (as in blender -b) once the job runs and the operator has installed its SIGINT handler."""
    before = signal.getsignal(signal.SIGINT)
    return once_running(lambda: os.kill(os.getpid(), signal.SIGINT),
                        also=lambda: signal.getsignal(signal.SIGINT) is not before)


@contextlib.contextmanager
def once_job_runs(action):
    """While the block runs, ``action()`` once a job runs, on the main thread from the job's wait loop (as
    the artist's click would be); yields the list that gets its result."""
    done = []
    with while_a_job_runs(lambda: done or done.append(action())):
        yield done


SLEEP_20_S = '{"steps": 400, "step_seconds": 0.05}'


def cancelled_sleep():
    presser = ctrl_c_once_running()
    t = time.monotonic()
    # while the job runs: may it be started again?
    stopped = ""
    with once_job_runs(bpy.ops.handforge.run_job.poll) as polled:
        try:  # a script's loop stops here: Ctrl-C is an error to it, not one more CANCELLED
            bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_20_S)
        except RuntimeError as exc:
            stopped = str(exc)
    seconds = time.monotonic() - t
    presser.join()
    after = bpy.ops.handforge.run_job("INVOKE_DEFAULT", kind="ping")  # a button press: blocking under -b
    return {"stopped": stopped, "seconds": seconds, "ping_after": sorted(after), "poll_while_running": polled,
            "poll_after": bpy.ops.handforge.run_job.poll()}


s.check("cancel", cancelled_sleep)


def cancel_pressed_twice():
    """Cancel Job twice while a job runs: the second press sends nothing and says the job is being cancelled."""
    with once_job_runs(lambda: [printed_by(bpy.ops.handforge.cancel_job) for _ in range(2)]) as done:
        result = bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_20_S)
    return {"result": sorted(result), "presses": done[0]}


s.check("cancel_twice", cancel_pressed_twice)


def modal_operator(op_class, job, reports: list):
    """What a JobOperator's modal reads of its operator, for ``op_class.modal(op, ...)``: its job, no timer, its
    tick and cancel, and its reports collected (background Blender has no window for a real modal)."""
    from types import MethodType, SimpleNamespace

    op = SimpleNamespace(_job=job, _timer=None, report=lambda kind, text: reports.append([sorted(kind), text]))
    for name in ("_tick", "cancel", "job_not_applied"):
        setattr(op, name, MethodType(getattr(op_class, name), op))
    return op


def esc_cancels_the_newest_job():
    """Two jobs running: Esc reaches the modal of the job started last first (Blender gives a window's events to its
    newest modal handler first: wm_handler_operator_insert adds each at the head; that order is simulated here,
    background Blender has no window): it cancels that job alone and keeps the Esc; a second Esc passes that
    job's modal (already cancelling) and cancels the one started before it."""
    from types import SimpleNamespace

    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    op_class = importlib.import_module(f"{ADDON_MODULE}.ops_backend").HANDFORGE_OT_run_job
    client = connection.require_client()
    older, newer = (jobs.RunningJob(op_class.bl_idname, "Run Job",
                                    client.submit("sleep", {"steps": 400, "step_seconds": 0.05}, {}))
                    for _ in range(2))
    for job in (older, newer):
        jobs.RUNNING[job.handle.id] = job
    ops = [modal_operator(op_class, job, []) for job in (newer, older)]  # the order Blender's handlers see an event in
    esc = SimpleNamespace(type="ESC", value="PRESS")

    def press() -> list:
        # the job the status bar shows, and whether it offers Esc
        shown = jobs.status_job()
        answers = [[[job is shown for job in (older, newer)], "Esc to cancel" in jobs._status_text(shown)]]
        for op in ops:
            answer = sorted(op_class.modal(op, bpy.context, esc))
            answers.append(answer)
            if answer != ["PASS_THROUGH"]:
                break  # kept by this handler: the others never see it
        return [answers, [job.cancel_requested is not None for job in (older, newer)]]

    try:
        first, second, third = press(), press(), press()
        for job in (older, newer):  # both end on the backend, cancelled
            job.handle.wait(timeout=10)
        return {"first": first, "second": second, "third": third,
                "outcomes": [type(job.handle.outcome).__name__ for job in (older, newer)]}
    finally:
        for job in (older, newer):
            jobs.RUNNING.pop(job.handle.id, None)


s.check("esc_newest", esc_cancels_the_newest_job)


def failing_tick_ends_the_job():
    """A tick of a job's modal raises (a bug): the job is cancelled on the backend and forgotten, its button free
    again, with the error reported, instead of Blender ending the modal and the job staying listed as running."""
    from types import SimpleNamespace

    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    op_class = importlib.import_module(f"{ADDON_MODULE}.ops_backend").HANDFORGE_OT_run_job
    job = jobs.RunningJob(op_class.bl_idname, "Run Job",
                          connection.require_client().submit("sleep", {"steps": 400, "step_seconds": 0.05}, {}))
    jobs.RUNNING[job.handle.id] = job
    reports = []
    op = modal_operator(op_class, job, reports)
    shown = jobs.job_previews.show

    def broken(*args, **kwargs):
        raise RuntimeError("preview broke")

    jobs.job_previews.show = broken
    try:
        answer = sorted(op_class.modal(op, bpy.context, SimpleNamespace(type="TIMER", value="NOTHING")))
        job.handle.wait(timeout=10)
        return {"answer": answer, "listed": job.handle.id in jobs.RUNNING, "reports": reports,
                "outcome": type(job.handle.outcome).__name__, "can_run": bool(bpy.ops.handforge.run_job.poll())}
    finally:
        jobs.job_previews.show = shown
        jobs.RUNNING.pop(job.handle.id, None)


s.check("failing_tick", failing_tick_ends_the_job)


def results_imported():
    bpy.context.scene.frame_set(1)
    before = scene_state()
    assert bpy.ops.handforge.run_job(kind="echo", params=a["echo_params"], inputs=a["echo_inputs"],
                                     image_target="PLANE") == {"FINISHED"}
    after = scene_state()
    image = next(i for i in bpy.data.images if i.name.startswith("echo"))
    # the plane made with no active camera, as Blender has it: each face corner's texture coordinate beside
    # where that corner stands in the world
    plane = next(o for o in bpy.context.scene.objects if o.name.startswith("echo image") and o.type == "MESH")
    bpy.context.view_layer.update()
    plane_corners = [[*plane.data.uv_layers.active.data[loop].uv,
                      *(plane.matrix_world @ plane.data.vertices[plane.data.loops[loop].vertex_index].co)]
                     for loop in range(len(plane.data.loops))]
    px = np.empty(image.size[0] * image.size[1] * 4, np.float32)
    image.pixels.foreach_get(px)
    right = bpy.context.scene.handforge.right
    fc = right.animation_data.action.layers[0].strips[0].channelbag(right.animation_data.action_slot).fcurves
    gen = sum(1 for f in fc for k in f.keyframe_points if k.type == "GENERATED")
    state = scene_state()
    bad_images = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", params=a["echo_params"],
                                                            inputs=a["bad_images"]))
    bad_images_unchanged = scene_state() == state
    no_camera = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["echo_inputs"], image_target="CAMERA"))
    damaged = os.path.join(os.path.dirname(a["echo_inputs"]), "damaged.npz")
    with open(damaged, "wb") as fh:
        fh.write(b"PK\x03\x04 not a zip")
    # 260 MB of zeros in a 260 kB file: np.load inflated whatever an array's header declared
    inflated = os.path.join(os.path.dirname(a["echo_inputs"]), "inflated.npz")
    with zipfile.ZipFile(inflated, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("big.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (260 << 20,)})
            for _ in range(260):
                member.write(bytes(1 << 20))
    bad_inputs = [error_of(lambda p=p: bpy.ops.handforge.run_job(kind="echo", inputs=p))
                  for p in (os.path.dirname(a["echo_inputs"]), damaged, inflated)]
    fifo = os.path.join(os.path.dirname(a["echo_inputs"]), "fifo.npz")  # np.load waited for a writer, Blender frozen
    os.mkfifo(fifo)
    bad_inputs.append(error_of(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=fifo)))
    missing_inputs = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=damaged + ".gone.npz"))
    # "//" of an unsaved .blend named Blender's working folder: inputs there were sent, unsaid
    shutil.copy(a["echo_inputs"], "relative_inputs.npz")
    relative_inputs = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", inputs="//relative_inputs.npz"))
    deep_params = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", params="[" * 100_000))
    unchanged_after_refusal = scene_state() == state
    # a kind whose results hold no images (ping) with Camera Background still chosen: no camera to refuse it for
    no_images = [error_of(lambda: bpy.ops.handforge.run_job(kind="ping", image_target="CAMERA"))]
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    bpy.context.scene.collection.objects.link(cam)
    bpy.context.scene.camera = cam
    assert bpy.ops.handforge.run_job(kind="echo", inputs=a["echo_inputs"], image_target="CAMERA") == {"FINISHED"}
    twin = cam.copy()  # a linked duplicate (Alt-D): the image would show behind it too
    bpy.context.scene.collection.objects.link(twin)
    state = scene_state()
    shared = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["echo_inputs"], image_target="CAMERA"))
    shared_unchanged = scene_state() == state and len(cam.data.background_images) == 1
    no_images.append(error_of(lambda: bpy.ops.handforge.run_job(kind="ping", image_target="CAMERA")))
    bpy.data.objects.remove(twin)
    return {"shared": shared, "shared_unchanged": shared_unchanged, "bad_images": bad_images, "no_images": no_images,
            "bad_images_unchanged": bad_images_unchanged, "plane_corners": plane_corners,
            "new_objects": sorted(set(after["objects"]) - set(before["objects"])),
            "image_size": list(image.size), "pixels": px.reshape(image.size[1], image.size[0], 4)[::-1, :, :3].tolist(),
            "generated_keys_right": gen, "no_camera": no_camera, "unchanged_after_refusal": unchanged_after_refusal,
            "bad_inputs": bad_inputs, "missing_inputs": missing_inputs,
            "unsaved": not bpy.data.filepath, "relative_inputs": relative_inputs, "deep_params": deep_params,
            "camera_backgrounds": [b.image.name for b in cam.data.background_images],
            "camera_shows": cam.data.show_background_images}


s.check("results", results_imported)


def result_with_a_warning():
    """A result of images (or motion) whose data carries the backend's warning: reported in the warning colour, yet
    the line said only what was imported, not the warning (said only of results without images or motion)."""
    import json

    return printed_by(lambda: bpy.ops.handforge.run_job(
        kind="echo", params=json.dumps({"data": {"warning": "no hand in view, said by the backend"}}),
        inputs=a["echo_inputs"]))


s.check("result_warning", result_with_a_warning)


def camera_background_without_a_camera():
    """Images for the Camera Background: the active camera deleted while the job ran, then an empty as the active
    camera (Set Active Object as Camera takes any object). The first keeps its result, images and keys, saying why
    no image is behind a camera (before: all of it refused once it came, the job run for nothing); the second is
    refused before anything is sent (before: the images made, then a Python error, left in the scene)."""
    scene = bpy.context.scene
    doomed = bpy.data.objects.new("Doomed Cam", bpy.data.cameras.new("Doomed Cam"))
    scene.collection.objects.link(doomed)
    scene.camera = doomed

    def delete():
        if "Doomed Cam" in bpy.data.objects:
            bpy.data.objects.remove(doomed)

    before = scene_state()
    with while_a_job_runs(delete):
        result, printed = printed_by(lambda: bpy.ops.handforge.run_job(
            kind="echo", params=a["echo_params"], inputs=a["echo_inputs"], image_target="CAMERA"))
    made = sorted(set(scene_state()["images"]) - set(before["images"]))
    empty = bpy.data.objects.new("Empty Cam", None)
    scene.collection.objects.link(empty)
    scene.camera = empty
    state = scene_state()
    refused = error_of(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["echo_inputs"], image_target="CAMERA"))
    found = {"result": result, "printed": printed, "made": made, "refused": refused,
             "unchanged": scene_state() == state}
    bpy.data.objects.remove(empty)
    return found


s.check("camera_gone", camera_background_without_a_camera)


def backgrounds(camera) -> list[list]:
    return [[b.image.name, round(b.alpha, 3), b.display_depth, b.show_background_image]
            for b in camera.data.background_images if b.image is not None]


def one_background_a_camera():
    """Run Job's Camera Background twice, the first result a batch of two, beside a background of the artist's: one
    HandForge background, the newest result's first image, with the opacity and depth the artist gave it (before:
    a new one per image per run, each at half opacity, blended into the ones before); the artist's untouched; the
    batch's second image kept in the file; one undo takes the run away (its images, its background back as it was)."""
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Job Cam", bpy.data.cameras.new("Job Cam"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    reference = camera.data.background_images.new()
    reference.image, reference.alpha = bpy.data.images.new("Artist Ref", 4, 4), 0.8
    assert bpy.ops.handforge.run_job(kind="echo", inputs=a["two_images"], image_target="CAMERA") == {"FINISHED"}
    found = {"first": backgrounds(camera),
             "batch_kept": [bpy.data.images[f"echo image_00{i}"].users > 0 for i in (0, 1)]}
    ours = next(b for b in camera.data.background_images if b.image != reference.image)
    ours.alpha, ours.display_depth = 0.3, "FRONT"  # the artist's settings of HandForge's background
    init_undo()
    before, found["before_run"] = set(bpy.data.images.keys()), backgrounds(camera)
    with bpy.context.temp_override(**ui_context()):
        found["result"] = sorted(bpy.ops.handforge.run_job("EXEC_DEFAULT", True, kind="echo", inputs=a["echo_inputs"],
                                                           image_target="CAMERA"))
        found["made"] = sorted(set(bpy.data.images.keys()) - before)  # ("echo image.003": earlier checks' came first)
        found["second"] = backgrounds(bpy.data.objects["Job Cam"])
        bpy.ops.ed.undo()
    camera = bpy.data.objects["Job Cam"]  # (the undo replaced the datablocks)
    found["undone"] = backgrounds(camera)
    found["undone_images"] = sorted(set(bpy.data.images.keys()) - before)
    bpy.data.objects.remove(camera)
    return found


s.check("one_background", one_background_a_camera)


def plane_seen(scene, camera_name: str) -> dict:
    """The scene's planes of Run Job's echo images (by name: "echo image", numbered): each one's parent, image,
    material nodes, and its corners as the camera sees them (0..1 across its frame)."""
    from bpy_extras.object_utils import world_to_camera_view

    camera = bpy.data.objects[camera_name]
    out = {}
    for plane in (o for o in scene.objects if o.type == "MESH" and o.name.startswith("echo image")):
        nodes = plane.data.materials[0].node_tree.nodes
        view = [world_to_camera_view(scene, camera, plane.matrix_world @ v.co) for v in plane.data.vertices]
        out[plane.name] = {"parent": plane.parent.name if plane.parent else None,
                           "image": next(n.image.name for n in nodes if n.bl_idname == "ShaderNodeTexImage"),
                           "nodes": sorted(n.bl_idname for n in nodes),
                           "x": [round(min(v.x for v in view), 4), round(max(v.x for v in view), 4)],
                           "y": [round(min(v.y for v in view), 4), round(max(v.y for v in view), 4)]}
    return out


def one_plane_a_scene():
    """Run Job's Textured Plane twice, the first result a batch of two (16 × 8 images), a camera of a 160 × 90
    render active: one plane (the earlier check's, made with no camera, taken up), hung in front of the camera,
    showing the newest result's first image unlit at its own shape, as wide as the camera's view and centred
    (before: a lit plane per image per run, 1 m wide at the world origin, all at one spot); one undo takes the run
    away."""
    scene = bpy.context.scene
    render = scene.render
    size = (render.resolution_x, render.resolution_y, render.resolution_percentage)
    render.resolution_x, render.resolution_y, render.resolution_percentage = 160, 90, 100
    camera = bpy.data.objects.new("Plane Cam", bpy.data.cameras.new("Plane Cam"))
    scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = (0.2, -2.0, 0.3), (1.4, 0.0, 0.1)
    scene.camera = camera
    try:
        before = set(bpy.data.images.keys())
        assert bpy.ops.handforge.run_job(kind="echo", inputs=a["two_images"], image_target="PLANE") == {"FINISHED"}
        found = {"made": sorted(set(bpy.data.images.keys()) - before), "first": plane_seen(scene, "Plane Cam")}
        init_undo()
        before = set(bpy.data.images.keys())
        with bpy.context.temp_override(**ui_context()):
            found["result"] = sorted(bpy.ops.handforge.run_job("EXEC_DEFAULT", True, kind="echo",
                                                               inputs=a["echo_inputs"], image_target="PLANE"))
            found["made_second"] = sorted(set(bpy.data.images.keys()) - before)
            found["second"] = plane_seen(bpy.context.scene, "Plane Cam")
            bpy.ops.ed.undo()
        found["undone"] = plane_seen(bpy.context.scene, "Plane Cam")  # (the undo replaced the datablocks)
        found["undone_images"] = sorted(set(bpy.data.images.keys()) - before)
    finally:
        scene = bpy.context.scene
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = size
        scene.camera = None
        bpy.data.objects.remove(bpy.data.objects["Plane Cam"])
    return found


s.check("one_plane", one_plane_a_scene)


def camera_changes_said():
    """What Run Job changes on a camera is said (it said only the images' names): the camera's Background
    Images turned on, which shows again the artist's own backgrounds they had turned off with it; the
    background it fills (new, or the last result's); the plane hung from the camera, moved from another
    camera, or taken off one when the scene has none."""
    scene = bpy.context.scene
    cameras = []
    for name in ("Said Cam A", "Said Cam B"):
        cameras.append(bpy.data.objects.new(name, bpy.data.cameras.new(name)))
        scene.collection.objects.link(cameras[-1])
    first, second = cameras
    own = first.data.background_images.new()
    own.image = bpy.data.images.new("Artist Photo", 4, 4)
    first.data.show_background_images = False  # the artist turned the camera's backgrounds off

    def run(target: str):
        return printed_by(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["two_images"], image_target=target))

    try:
        scene.camera = first
        found = {"turned_on": run("CAMERA"), "shows": first.data.show_background_images}
        found["again"] = run("CAMERA")
        scene.camera = second  # a camera of no background of the artist's
        found["fresh_camera"] = run("CAMERA")
        # a 16 × 8 image behind a 160 × 90 render's camera is stretched to its frame (it was unsaid); at 2:1 it fits
        # the frame is the render's shape in its pixel aspect: a 160 × 80 render of 2:1 pixels is shown 4:1, an
        # 80 × 80 one 2:1 (resolutions alone said the first fitted and the second was stretched)
        render = scene.render
        size = (render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y)
        try:
            for key, shape in (("stretched", (160, 90, 1, 1)), ("stretched_short", (160, 85, 1, 1)),
                               ("fits", (320, 160, 1, 1)),
                               ("stretched_pixels", (160, 80, 2, 1)), ("fits_pixels", (80, 80, 2, 1))):
                render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y = shape
                found[key] = run("CAMERA")
            # the artist's Frame Method on HandForge's background, kept by the next run: Fit shows the 16 × 8 image
            # whole at its shape, Crop cuts its sides off (both were said "stretched")
            render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y = 160, 90, 1, 1
            for method in ("FIT", "CROP"):
                second.data.background_images[0].frame_method = method
                found[method.lower()] = run("CAMERA")
            # the artist's own Offset, Rotation and Scale on it, kept by the next run, move the image off the frame
            # (said fitting before); a flip keeps it on the frame
            render.resolution_x, render.resolution_y = 320, 160  # (the image's shape: only the move is said)
            behind = second.data.background_images[0]
            behind.frame_method = "STRETCH"
            behind.scale, behind.offset, behind.rotation = 0.5, (0.1, 0.0), 0.25
            found["moved"] = run("CAMERA")
            behind.scale, behind.offset, behind.rotation, behind.use_flip_x = 1.0, (0.0, 0.0), 0.0, True
            found["flipped"] = run("CAMERA")
        finally:
            behind = second.data.background_images[0]
            behind.scale, behind.offset, behind.rotation, behind.use_flip_x = 1.0, (0.0, 0.0), 0.0, False
            second.data.background_images[0].frame_method = "STRETCH"
            render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y = size
        scene.camera = first
        found["plane"] = run("PLANE")
        scene.camera = second
        found["plane_moved"] = run("PLANE")
        scene.camera = None
        found["plane_off"] = run("PLANE")
        plane = next(o for o in scene.objects if o.get("handforge_plane") == "echo image"
                     and o.name == o.get("handforge_plane_name"))
        found["plane_parent"] = plane.parent.name if plane.parent else None
    finally:
        scene.camera = None
        for camera in cameras:
            bpy.data.objects.remove(camera)
    return found


s.check("camera_changes", camera_changes_said)


def older_result_image(name: str):
    """An image as the add-on's image_datablock made a result's before they were marked: pixels, packed, no more."""
    image = bpy.data.images.new(name, 16, 8, alpha=True)
    image.pixels.foreach_set(np.full(16 * 8 * 4, 0.5, np.float32))
    image.pack()
    return image


def artists_photo(file_name: str):
    """An artist's image loaded from a file (``file_name`` in the session's folder), named as an older result's
    ("echo image_009") and packed: its file path tells it from one."""
    path = str(s.work / file_name)
    photo = older_result_image("photo")
    photo.filepath_raw, photo.file_format = path, "PNG"
    photo.save()
    photo = bpy.data.images.load(path)
    photo.name = "echo image_009"
    photo.pack()
    return photo


def older_backgrounds_replaced():
    """A camera as Run Job's Camera Background left it before its images were marked (``handforge_job``): a
    background per image per run, each a packed image of pixels named "<kind> <array>" (Blender numbering a taken
    name), at half opacity; beside the artist's own, some named alike but not made so. A new Run Job added one
    more background beside them (before: 7 here); now the first older one takes the new image, the other older
    ones go (their images kept in the file), the artist's stay as they were."""
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Old Cam", bpy.data.cameras.new("Old Cam"))
    scene.collection.objects.link(camera)
    data = camera.data

    photo = artists_photo("echo image_009.png")  # the artist's, from a file, under a name like the old ones
    # (the session's earlier runs hold these names: Blender numbers them, as it did in an artist's file)
    # a run of two, one more
    older = [older_result_image(name) for name in ("echo image_000", "echo image_001", "echo image")]
    # ("reference" is no job kind)
    artists = [older_result_image("reference image"), photo, older_result_image("background image")]
    for image in (older[0], older[1], artists[0], older[2], artists[1], artists[2]):
        background = data.background_images.new()
        background.image = image
    data.background_images[2].alpha = 0.9  # the artist's settings of theirs
    data.show_background_images = True
    scene.camera = camera
    try:
        result, printed = printed_by(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["two_images"],
                                                                       image_target="CAMERA"))
        return {"result": result, "printed": printed, "older": [i.name for i in older],
                "artists": [i.name for i in artists],
                "after": [[b.image.name, round(b.alpha, 3), "handforge_job" in b.image]
                          for b in data.background_images],
                "older_kept": [bool(image.use_fake_user) for image in older]}
    finally:
        scene.camera = None
        bpy.data.objects.remove(camera)


s.check("older_backgrounds", older_backgrounds_replaced)



def stopped_mid_job():
    """Stop Backend while a job runs: the job ends with a report saying so (it ended silently)."""
    with once_job_runs(lambda: sorted(bpy.ops.handforge.stop_backend())) as stopped:
        message = error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_20_S))
    restarted = sorted(bpy.ops.handforge.start_backend())
    return {"stopped": stopped, "message": message, "restarted": restarted}


s.check("stopped_mid", stopped_mid_job)


def killed_mid_job():
    before = scene_state()
    pids = children()
    t = time.monotonic()
    killer = once_running(lambda: [os.kill(pid, signal.SIGKILL) for pid in pids])
    message = error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_20_S))
    seconds = time.monotonic() - t
    killer.join()
    return {"message": message, "seconds": seconds, "unchanged": scene_state() == before, "killed": len(pids),
            "status": wm.handforge.status}


s.check("killed", killed_mid_job)


def dead_backend():
    """After the local backend has exited: job buttons are off at once, with the exit code and the
    end of its error output; Start Local Backend is offered; a start that dies says why."""
    t = time.monotonic()
    out = {"job_poll": bpy.ops.handforge.run_job.poll(), "hands_poll": bpy.ops.handforge.check_backend.poll(),
           "start_poll": bpy.ops.handforge.start_backend.poll(),
           "click": error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params='{"steps": 1}')),
           "status": wm.handforge.status, "connected": wm.handforge.connected}
    out["seconds"] = time.monotonic() - t
    prefs.server_command = ('{python} -c "import sys; sys.stderr.write(chr(10).join(['
                            "'starting', 'Traceback: device probe', 'RuntimeError: boom, the GPU is gone', "
                            "'/x/torch/y.py:12: UserWarning: The given NumPy array is not writable', "
                            "'  tensor = torch.from_numpy(array)']));"
                            ' sys.exit(3)"')
    t = time.monotonic()
    out["start_dies"] = error_of(lambda: bpy.ops.handforge.start_backend())
    out["start_dies_seconds"] = time.monotonic() - t
    out["after_start_poll"] = bpy.ops.handforge.run_job.poll()
    prefs.server_command = a["command"]
    return out


s.check("dead", dead_backend)


def stop():
    log = importlib.import_module(f"{ADDON_MODULE}.connection").BACKEND.log_path
    assert bpy.ops.handforge.stop_backend() == {"FINISHED"}
    return {"status": wm.handforge.status, "children_alive": len(children()), "crash_log": log is not None,
            "crash_log_left": log is not None and log.exists()}


s.check("stop", stop)


def file_opened_and_addon_disabled_mid_job():
    """A file opened while connected: the panel shows the connection (it said "Not connected" with no
    engines); the add-on disabled while a job runs: the job is forgotten (it stayed, its button greyed,
    until Blender restarted) and the backend stops."""
    addon = importlib.import_module(ADDON_MODULE)
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")
    assert bpy.ops.handforge.start_backend() == {"FINISHED"}
    log = connection.BACKEND.log_path
    bpy.ops.wm.read_homefile(use_empty=True)
    props = bpy.context.window_manager.handforge
    out = {"after_load": {"connected": props.connected, "status": props.status, "kinds": len(props.kinds)}}
    handle = connection.require_client().submit("sleep", {"steps": 300, "step_seconds": 0.1})
    jobs.RUNNING[handle.id] = jobs.RunningJob("HANDFORGE_OT_run_job", "Run Job", handle)  # as a modal's start does
    addon.unregister()
    out["running_after_disable"] = len(jobs.RUNNING)
    out["children_after_disable"] = len(children())
    out["log_left_after_disable"] = log.exists()
    addon.register()
    props = bpy.context.window_manager.handforge
    out["after_reenable"] = {"connected": props.connected, "status": props.status, "engines": len(props.engines)}
    return out


s.check("load_and_disable", file_opened_and_addon_disabled_mid_job)


def older_plane(scene, image):
    """A plane as the add-on's show_on_plane made them before they were marked, for each image of each run."""
    mesh = bpy.data.meshes.new(image.name)
    half = 0.5 * image.size[1] / image.size[0]
    mesh.from_pydata([(-0.5, -half, 0), (0.5, -half, 0), (0.5, half, 0), (-0.5, half, 0)], [], [(0, 1, 2, 3)])
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", np.array([0, 0, 1, 0, 1, 1, 0, 1], np.float32))
    material = bpy.data.materials.new(image.name)
    material.use_nodes = True
    texture = material.node_tree.nodes.new("ShaderNodeTexImage")
    texture.image = image
    bsdf = material.node_tree.nodes.get("Principled BSDF")
    material.node_tree.links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
    mesh.materials.append(material)
    obj = bpy.data.objects.new(image.name, mesh)
    obj.rotation_euler = (np.pi / 2, 0.0, 0.0)
    scene.collection.objects.link(obj)
    return obj


def older_planes_replaced():
    """A file from before Run Job's planes were marked (``handforge_plane``): Textured Plane made a lit plane per image
    per run, named after its image, standing at the world origin, all on one spot; beside them the artist's: one of
    those planes they moved, a copy they made of one (Shift-D), a plane of a photo from a file named like a result
    and one of an image named after no job kind, made the same way. A new Run Job made 'echo image.003' beside the
    older 'echo image' (before); now the first older one (the one of the kind's name) becomes the scene's plane,
    refilled, the other older ones go (their images kept in the file), the artist's stay as they were."""
    bpy.ops.wm.read_homefile(use_empty=True)  # (a file of its own: the session's earlier planes hold the names)
    assert bpy.ops.handforge.start_backend() == {"FINISHED"}  # (the check before stopped it)
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Plane Cam", bpy.data.cameras.new("Plane Cam"))
    scene.collection.objects.link(camera)
    camera.location, camera.rotation_euler = (0.0, -3.0, 0.5), (1.4, 0.0, 0.0)
    scene.camera = camera

    def seen(obj) -> list:
        nodes = obj.active_material.node_tree.nodes
        return [[round(v, 5) for row in obj.matrix_world for v in row], [tuple(v.co) for v in obj.data.vertices],
                sorted(n.bl_idname for n in nodes), [n.image.name for n in nodes if n.bl_idname == "ShaderNodeTexImage"],
                obj.parent.name if obj.parent else None, "handforge_plane" in obj]

    # two runs
    older = [older_plane(scene, older_result_image(name)) for name in ("echo image_000", "echo image_001", "echo image")]
    moved = older_plane(scene, older_result_image("echo image"))  # a third run's ("echo image.001"), moved by the artist
    moved.location.x = 0.6
    copy = older[2].copy()  # the artist's Shift-D of one ("echo image.002": not its image's name)
    copy.data = older[2].data.copy()
    scene.collection.objects.link(copy)
    photo = artists_photo("plane photo.png")
    artists = [moved, copy, older_plane(scene, photo), older_plane(scene, older_result_image("reference image"))]
    bpy.context.view_layer.update()
    found = {"older": [o.name for o in older], "older_images": [o.name for o in older],
             "artists": {o.name: seen(o) for o in artists}}
    before = set(bpy.data.objects.keys())
    for run in ("first", "second"):
        made = set(bpy.data.images.keys())
        result, printed = printed_by(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["two_images"],
                                                                       image_target="PLANE"))
        made = sorted(set(bpy.data.images.keys()) - made)
        plane = bpy.data.objects.get("echo image")
        found[run] = {"result": result, "printed": printed, "made": made,
                      "new_objects": sorted(set(bpy.data.objects.keys()) - before),
                      "gone_objects": sorted(before - set(bpy.data.objects.keys())),
                      "plane": seen(plane) if plane is not None else None,
                      "artists": {o.name: seen(o) for o in artists}}
    found["older_images_kept"] = [bool(bpy.data.images[name].use_fake_user) for name in found["older_images"]]
    assert bpy.ops.handforge.stop_backend() == {"FINISHED"}
    return found


s.check("older_planes", older_planes_replaced)


def older_planes_moved():
    """Older Run Jobs' planes the artist moved, one of them holding the kind's name: theirs, kept where they put
    them; the result went on a new 'echo image.001' beside them, unsaid."""
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.handforge.start_backend() == {"FINISHED"}
    scene = bpy.context.scene
    camera = bpy.data.objects.new("Moved Cam", bpy.data.cameras.new("Moved Cam"))
    scene.collection.objects.link(camera)
    scene.camera = camera
    moved = [older_plane(scene, older_result_image(name)) for name in ("echo image", "echo image_000")]
    for i, obj in enumerate(moved):
        obj.location.x = 0.6 + i
    bpy.context.view_layer.update()
    where = {obj.name: [list(row) for row in obj.matrix_world] for obj in moved}
    found = {}
    for run in ("first", "second"):
        before = set(bpy.data.objects.keys())
        result, printed = printed_by(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["two_images"],
                                                                       image_target="PLANE"))
        found[run] = {"result": result, "printed": printed,
                      "new_objects": sorted(set(bpy.data.objects.keys()) - before)}
    found["kept"] = {obj.name: [list(row) for row in obj.matrix_world] == where[obj.name] for obj in moved}
    assert bpy.ops.handforge.stop_backend() == {"FINISHED"}
    return found


s.check("older_planes_moved", older_planes_moved)
s.finish()
