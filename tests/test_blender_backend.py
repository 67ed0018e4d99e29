"""The add-on with a real backend: it starts `handforge serve` as a subprocess, connects, reads the
capabilities, and runs jobs through its operators (hand rigs, forward_hands, a cancelled sleep job,
results imported as keys and images); a backend killed mid-job is reported and changes nothing."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from handforge_shared import __version__
from handforge_shared.poses import HandPose, MotionClip
from handforge_shared.skeleton import SIDES
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import free_port, run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("backend_session")
    rng = np.random.default_rng(5)
    pose = {s: HandPose(global_orient=rng.normal(0, 0.5, 3), hand_pose=rng.normal(0, 0.3, 45), betas=np.zeros(10),
                        transl=rng.uniform(-0.1, 0.1, 3)) for s in SIDES}
    frames = 5
    # A motion result as an engine sends it: the clip's arrays plus its metadata in data["motion"].
    clip = MotionClip(hands={s: HandPose(global_orient=rng.normal(0, 0.2, (frames, 3)),
                                         hand_pose=rng.normal(0, 0.2, (frames, 45)),
                                         betas=np.zeros((frames, 10)), transl=np.zeros((frames, 3)))
                             for s in SIDES})
    inputs = clip.to_arrays()
    image = np.zeros((8, 16, 3), np.uint8)
    image[:4, :, 0] = 255  # top half red, bottom half black
    inputs["image"] = image
    np.savez(work / "echo_inputs.npz", **inputs)
    # the same, and a batch of two-channel images (no image Blender makes): refused as a whole
    np.savez(work / "bad_images.npz", **inputs, images=np.zeros((1, 4, 4, 2), np.uint8))
    np.savez(work / "two_images.npz", images=np.stack([np.full((8, 16, 3), grey, np.uint8) for grey in (60, 200)]))
    args = {"port": free_port(), "unused_port": free_port(),
            "command": f"{sys.executable} -m handforge serve --port {{port}} --heartbeat 0.25",
            "pose": json.dumps({"format": "handforge.pose", "hands": {s: p.to_dict() for s, p in pose.items()}}),
            "echo_inputs": str(work / "echo_inputs.npz"), "bad_images": str(work / "bad_images.npz"),
            "two_images": str(work / "two_images.npz"),
            "echo_params": json.dumps({"text": "hi", "data": {"motion": clip.metadata()}}),
            "victim": str(work / "victim.txt")}
    (work / "victim.txt").write_text("a file of the user's")
    result = run_blender("backend_session.py", addon_zip, work / "blender", args,
                         unset=("HANDFORGE_MANO_DIR",), timeout=400)
    result.image = image
    return result


def test_no_backend_is_reported_quickly_with_the_fix(session):
    session.no_error("no_backend")
    result = session["no_backend"]
    assert "no backend answered" in result["message"] and "handforge serve" in result["message"]
    assert result["seconds"] < 10


def test_bad_settings_are_reported(session):
    session.no_error("bad_settings")
    result = session["bad_settings"]
    assert "tcp://HOST:PORT" in result["bad_address"]
    # a "//" key path in the preferences (which serve every .blend) named a file beside whichever .blend was open
    assert "'//keys/server.key' is relative to the open .blend" in result["relative_key"]
    assert "'tcp://localhost:99999' is not valid" in result["bad_port"]  # was urllib's bare "Port out of range"
    assert "online access" in result["remote_without_keys"] or "CurveZMQ" in result["remote_without_keys"]
    assert "/nonexistent/handforge" in result["bad_command"]
    # (it said "pip install handforge[backend]": HandForge installs from its checkout, and Blender's PATH is the issue)
    assert "put the full path of `handforge` in the start command" in result["bad_command"]
    assert ".venv/bin/handforge" in result["bad_command"] and "pip install" not in result["bad_command"]
    assert result["bad_command_status"].startswith("The local backend did not start: cannot run")  # not an old status
    # before: the client reached the other backend, then the new one died on "Address already in use" and
    # the add-on dropped the working connection
    assert "already listens at tcp://127.0.0.1:" in result["port_taken"] and "press Connect" in result["port_taken"]
    assert result["port_taken_children"] == 0
    # before: only "no backend answered at tcp://127.0.0.1:N within 2 s: its log is ...", the missing {port} unsaid
    assert "no backend answered" in result["no_port"] and "has no {port}" in result["no_port"], result["no_port"]
    assert "--port {port}" in result["no_port"] and result["no_port_children"] == 0, result


def test_the_start_command_is_split_before_it_is_filled_in_and_windows_quotes_are_taken_off(session):
    # before: {python} was filled in first (a Blender under "Program Files" split in two), and on Windows
    # shlex kept the quotes around a program path with a space in it: the program was not found
    session.no_error("start_command")
    words = session["start_command"]
    assert words["posix"] == ["/opt/Blender 4.5/python/bin/python3", "-m", "handforge", "serve", "--port", "5780"]
    assert words["windows"] == ["C:\\Users\\Ana Lopez\\HandForge\\.venv\\Scripts\\handforge.exe", "serve", "--port",
                                "5780"]
    assert words["windows_python"] == ["C:\\Program Files\\Blender\\python.exe", "-m", "handforge", "serve",
                                       "--port", "5780"]


def test_starts_a_local_backend_and_reads_capabilities(session):
    session.no_error("start")
    result = session["start"]
    assert result["connected"] is True and "Connected" in result["status"]
    assert result["children"] == 1
    assert {"ping", "sleep", "echo", "hand_model", "forward_hands"} <= set(result["kinds"])
    assert result["kinds"]["forward_hands"] == "hands"
    # its log: a new owner-only file, never a link planted at a fixed name (which it truncated before)
    assert result["victim"] == "a file of the user's"
    assert result["log"]["mode"] == "0o600" and result["log"]["name"].startswith("handforge-backend-")
    # before: in Blender's process group, a Ctrl-C at Blender's terminal (which cancels the running job under
    # blender -b) stopped the backend too, its loaded models lost and the job said to be a shutdown
    assert result["own_group"] is True
    assert result["engines"]["hands"][0] is True
    assert result["hand_models"]["open"] == [True, ""]
    available, reason = result["hand_models"]["mano"]
    assert available is False and reason  # shown greyed out in the panel, with this reason


def test_the_status_line_names_the_backends_version_and_address(session):
    session.no_error("start")
    result = session["start"]
    # which backend the panel talks to: its version (the one this checkout's backend reports) and where
    assert result["status"].startswith(f"Connected to HandForge {__version__} at {result['address']} ("), result["status"]
    assert len(result["child_pids"]) == 1  # and the one backend it started runs


def test_unavailable_hand_model_is_refused_with_the_reason(session):
    session.no_error("mano_missing")
    message = session["mano_missing"]
    assert "mano" in message.lower() and session["start"]["hand_models"]["mano"][1].split(":")[0] in message


def test_forward_hands_through_the_operator_matches_blender(session):
    session.no_error("forward")
    for side in SIDES:
        result = session["forward"][side]
        assert result["measured"] < 1e-4 and result["reported"] < 1e-4
        assert result["moved"] > 0.05  # a real, posed hand


def test_forward_hands_check_holds_for_a_moved_turned_scaled_rig(session):
    session.no_error("forward_moved")
    result = session["forward_moved"]
    assert result["reported"] < 1e-4  # in the rig's own space (was its 0.6 m offset)
    assert result["measured"] < 1.5e-4  # the backend's mesh shown where the rig stands


def test_forward_hands_check_refuses_a_rig_without_its_mesh(session):
    session.no_error("forward_no_mesh")
    result = session["forward_no_mesh"]
    assert "has no HandForge hand mesh" in result["error"] and "Add Hands" in result["error"]
    assert result["added"] == []


def test_hand_rigs_from_the_backend(session):
    session.no_error("backend_rigs")
    rigs = session["backend_rigs"]
    assert set(rigs) == set(SIDES)
    for side in SIDES:
        assert rigs[side]["model"] == "open" and rigs[side]["bones"] == 21
        assert rigs[side]["betas"][0] == pytest.approx(0.5)


def test_ctrl_c_cancels_a_running_job_and_the_backend_carries_on(session):
    session.no_error("cancel")
    result = session["cancel"]
    # before: a warning and CANCELLED, so a script's loop went on to its next job (one press per job)
    assert "Run Job cancelled: Ctrl-C" in result["stopped"], result
    assert result["seconds"] < 10  # the job would take 20 s
    assert result["ping_after"] == ["FINISHED"]
    # while it ran its button was greyed out ("This job is running"), and enabled again after
    assert result["poll_while_running"] == [False] and result["poll_after"] is True


def test_cancel_job_pressed_twice_asks_once_and_says_so(session):
    session.no_error("cancel_twice")
    found = session["cancel_twice"]
    assert found["result"] == ["CANCELLED"], found
    (first, first_printed), (second, second_printed) = found["presses"]
    assert first == ["FINISHED"] and "asked the backend to cancel 1 job(s)" in first_printed, found
    assert second == ["CANCELLED"] and "already cancelling 1 job(s)" in second_printed, found


def test_esc_cancels_the_job_started_last_and_again_the_one_before(session):
    session.no_error("esc_newest")
    found = session["esc_newest"]
    # before: every job's modal cancelled its own job and passed the Esc on: one Esc ended both
    # [[which job the status bar shows (older, newer), whether it offers Esc], each handler's answer in turn], and
    # which jobs are cancelling after the press
    assert found["first"] == [[[[False, True], True], ["RUNNING_MODAL"]], [False, True]], found
    assert found["second"] == [[[[True, False], True], ["PASS_THROUGH"], ["RUNNING_MODAL"]], [True, True]], found
    # both cancelling: the bar shows the newer, without the Esc it would no longer take (it passes Esc on)
    assert found["third"] == [[[[False, True], False], ["PASS_THROUGH"], ["PASS_THROUGH"]], [True, True]], found
    assert found["outcomes"] == ["Cancelled", "Cancelled"], found


def test_a_failing_tick_cancels_its_job_and_frees_its_button(session):
    session.no_error("failing_tick")
    found = session["failing_tick"]
    # before: Blender ended the modal on the exception and the job stayed listed as running, its button greyed
    assert found["answer"] == ["CANCELLED"], found
    assert not found["listed"] and found["can_run"], found
    assert found["outcome"] == "Cancelled", found  # cancelled on the backend too, not left running there
    assert found["reports"] == [[["ERROR"], "HandForge failed (RuntimeError: preview broke); see the system console"]], found


def test_results_become_keys_and_images(session):
    session.no_error("results")
    result = session["results"]
    assert result["generated_keys_right"] > 0
    assert result["image_size"] == [16, 8]
    pixels = np.array(result["pixels"])
    np.testing.assert_allclose(pixels, session.image / 255.0, atol=1e-6)  # top row first, as sent
    assert any(name.startswith("echo image") for name in result["new_objects"])  # the textured plane
    # with no active camera (README): 1 m wide at the image's shape (16 × 8), standing at the world origin facing
    # the front view (upright in X-Z, +X to the right), the image upright and unmirrored on it
    corners = np.array(result["plane_corners"])  # u, v, then x, y, z in the world, per face corner
    assert corners.shape == (4, 5), corners
    assert np.allclose(np.ptp(corners[:, 2:], axis=0), [1.0, 0.0, 0.5], atol=1e-6), corners
    assert np.allclose(corners[:, 2:].mean(axis=0), 0.0, atol=1e-6), corners
    assert np.allclose(corners[:, 0], corners[:, 2] + 0.5, atol=1e-6), corners  # u across, left to right
    assert np.allclose(corners[:, 1], corners[:, 4] / 0.5 + 0.5, atol=1e-6), corners  # v up: the image's top on top
    # before: the motion's keys and the good image were written, then the bad one refused: left half-imported
    assert result["bad_images_unchanged"] is True, result
    assert "image 'image_000' must be (H, W, 1|3|4), got (4, 4, 2)" in result["bad_images"], result["bad_images"]
    assert "no active camera" in result["no_camera"] and result["unchanged_after_refusal"] is True
    # before: a folder or a damaged .npz as Inputs gave a 12-22 line Python traceback as the report
    for message in result["bad_inputs"]:
        assert "is not a .npz file of arrays" in message and "Traceback" not in message, message
    # before: a 260 MB array declared by a 260 kB file was inflated and sent
    assert "its arrays take 272,629,888 bytes uncompressed" in result["bad_inputs"][2], result["bad_inputs"]
    assert "is not a regular file (a FIFO)" in result["bad_inputs"][3], result["bad_inputs"]  # (it froze Blender)
    # before: "[Errno 2] No such file or directory: '…'" alone
    assert "no such file: choose a .npz file of arrays" in result["missing_inputs"], result["missing_inputs"]
    assert result["unsaved"] and "save it first" in result["relative_inputs"], result["relative_inputs"]
    # (a RecursionError traceback before)
    assert "the job parameters are not valid JSON (nested too deeply" in result["deep_params"], result["deep_params"]
    assert len(result["camera_backgrounds"]) == 1 and result["camera_shows"] is True
    # before: shown behind the linked duplicate too (a background belongs to the camera data they share)
    assert "camera 'Camera' shares its camera data" in result["shared"], result["shared"]
    assert "with 'Camera.001' (a linked duplicate" in result["shared"], result["shared"]
    assert "import it as a plane" in result["shared"] and result["shared_unchanged"] is True, result
    # a job whose results hold no images is not refused for the camera (before: no camera, or a shared one)
    assert result["no_images"] == ["", ""], result["no_images"]


def test_a_results_warning_is_said_beside_the_images_it_came_with(session):
    session.no_error("result_warning")
    result, printed = session["result_warning"]
    assert result == ["FINISHED"], printed
    line = next(line for line in printed.splitlines() if "image(s)" in line)
    assert line.startswith("Warning: ") and line.endswith("; no hand in view, said by the backend"), printed


def test_camera_background_refused_before_the_job_and_a_camera_gone_meanwhile_loses_no_result(session):
    session.no_error("camera_gone")
    found = session["camera_gone"]
    # the camera deleted while the job ran: the result kept, the report says why it is behind no camera
    assert found["result"] == ["FINISHED"] and len(found["made"]) == 1, found
    assert ("not shown behind a camera, the active one changed while the job ran: the scene has no active camera"
            in found["printed"]), found
    # an empty as the scene's camera: refused before the job, nothing written
    assert "the scene's active camera 'Empty Cam' is an empty, not a camera" in found["refused"], found
    assert "Traceback" not in found["refused"] and found["unchanged"] is True, found


def test_run_job_keeps_one_camera_background_the_newest_results_and_the_artists_own(session):
    # before: a background per image per run, each at half opacity, blended into the ones before
    session.no_error("one_background")
    found = session["one_background"]
    assert found["first"] == [["Artist Ref", 0.8, "BACK", True], ["echo image_000", 0.5, "BACK", True]], found
    assert found["batch_kept"] == [True, True], found  # the second in the Image editor, kept by a save
    assert found["result"] == ["FINISHED"], found
    assert len(found["made"]) == 1 and found["made"][0].startswith("echo image"), found
    assert found["second"] == [["Artist Ref", 0.8, "BACK", True], [found["made"][0], 0.3, "FRONT", True]], found
    # one undo step: the run's image gone, HandForge's background back to the one before, as the artist set it
    assert found["undone"] == found["before_run"] == [["Artist Ref", 0.8, "BACK", True],
                                                      ["echo image_000", 0.3, "FRONT", True]], found
    assert found["undone_images"] == [], found


def test_run_job_keeps_one_unlit_plane_a_scene_in_front_of_the_camera_showing_the_newest_result(session):
    # before: a lit plane per image per run, 1 m wide at the world origin, all on top of each other
    session.no_error("one_plane")
    found = session["one_plane"]
    assert len(found["made"]) == 2 and found["result"] == ["FINISHED"] and len(found["made_second"]) == 1, found
    assert len(found["first"]) == 1, found  # (the earlier check's plane, made with no camera, taken up)
    (name, plane), = found["first"].items()
    assert plane["parent"] == "Plane Cam" and plane["image"] == found["made"][0], found
    # unlit: the image's pixels as made, whatever the scene's lights (a Principled BSDF shaded them)
    assert plane["nodes"] == ["ShaderNodeEmission", "ShaderNodeOutputMaterial", "ShaderNodeTexImage"], found
    # a 2:1 image in a 16:9 view: its full width, centred, at its own shape (height 0.5 / 0.5625 of the view)
    np.testing.assert_allclose(plane["x"], [0.0, 1.0], atol=1e-3)
    np.testing.assert_allclose(plane["y"], [0.5 - 0.4444, 0.5 + 0.4444], atol=1e-3)
    assert found["second"] == {name: {**plane, "image": found["made_second"][0]}}, found  # the same plane, refilled
    assert found["undone"] == found["first"] and found["undone_images"] == [], found  # one undo step


def test_stopping_the_backend_mid_job_is_reported(session):
    session.no_error("stopped_mid")
    found = session["stopped_mid"]
    assert found["stopped"] == [["FINISHED"]] and found["restarted"] == ["FINISHED"]
    assert "the backend was stopped before the job ended" in found["message"], found


def test_killed_backend_mid_job_is_reported_and_changes_nothing(session):
    session.no_error("killed")
    result = session["killed"]
    assert result["killed"] == 1
    assert "exited with code -9" in result["message"]
    assert result["seconds"] < 5  # the exit is noticed at once, never a hang (the job would take 20 s)
    assert result["unchanged"] is True


def test_a_dead_local_backend_greys_job_buttons_out_with_the_reason(session):
    session.no_error("dead")
    dead = session["dead"]
    assert dead["job_poll"] is False and dead["hands_poll"] is False and dead["start_poll"] is True
    assert "exited with code -9" in dead["click"] and "Start Local Backend" in dead["click"]
    assert "exited with code -9" in dead["status"] and dead["connected"] is False
    assert dead["seconds"] < 1.0  # no wait per click
    assert "exited with code 3" in dead["start_dies"] and "RuntimeError: boom, the GPU is gone" in dead["start_dies"]
    assert "Traceback: device probe" in dead["start_dies"]  # the last lines of its error output
    assert "UserWarning" not in dead["start_dies"] and "from_numpy" not in dead["start_dies"]  # (a warning: no reason)
    assert dead["start_dies_seconds"] < 10 and dead["after_start_poll"] is False


def test_a_file_opened_shows_the_connection_and_disabling_forgets_running_jobs(session):
    out = session["load_and_disable"]
    assert out["after_load"]["connected"] is True and out["after_load"]["kinds"] > 0
    assert out["after_load"]["status"] != "Not connected"
    assert out["running_after_disable"] == 0 and out["children_after_disable"] == 0
    assert out["log_left_after_disable"] is False  # stopped on purpose: its log is removed (they piled up in /tmp)
    # before: re-enabled, the panel still said "Connected to HandForge ..." with its engines
    assert out["after_reenable"] == {"connected": False, "status": "Not connected", "engines": 0}


def test_stop_leaves_no_backend_process(session):
    session.no_error("stop")
    assert session["stop"]["children_alive"] == 0
    assert session["stop"]["status"] == "Not connected"
    # the failed start's log (dead_backend), named by its error until Stop: then removed (it was left in /tmp)
    assert session["stop"]["crash_log"] is True and session["stop"]["crash_log_left"] is False


def test_run_job_says_what_it_changes_on_the_camera(session):
    # before: "echo: 2 image(s): echo image_000, echo image_001" alone, whatever it turned on or moved
    session.no_error("camera_changes")
    found = session["camera_changes"]
    result, printed = found["turned_on"]
    assert result == ["FINISHED"] and found["shows"] is True, found
    assert "shown behind camera 'Said Cam A' (a new background)" in printed, printed
    assert ("turned on the Background Images of camera 'Said Cam A' (they were off) to show the result: its own "
            "background 'Artist Photo' shows again too" in printed), printed
    result, printed = found["again"]
    assert "shown behind camera 'Said Cam A' in place of the last result's 'echo image_000" in printed, printed
    assert "Background Images" not in printed, printed
    result, printed = found["fresh_camera"]  # turned on too, but nothing of the artist's comes back with it
    assert "shown behind camera 'Said Cam B' (a new background)" in printed and "Background Images" not in printed
    # before: stretched unsaid (Generate Image said it; the words are one home's, importers.misfit_behind)
    result, printed = found["stretched"]
    assert result == ["FINISHED"], printed
    assert ("Warning: behind the camera the 16 × 8 image is stretched to the render's 160 × 90 frame: Images › "
            "Textured Plane shows it at its own shape, or make it at the render's" in printed), printed
    # before: fitted unsaid, 80 px high in an 85 px frame (the tolerance was half a pixel of an image the frame's size)
    result, printed = found["stretched_short"]
    assert "behind the camera the 16 × 8 image is stretched to the render's 160 × 85 frame" in printed, printed
    result, printed = found["fits"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    # before: a render's pixel aspect was not seen (a 160 × 80 render of 2:1 pixels "fitted" a 16 × 8 image shown at
    # half its height; an 80 × 80 one, shown 2:1, "stretched" it)
    result, printed = found["stretched_pixels"]
    assert result == ["FINISHED"], printed
    assert ("Warning: behind the camera the 16 × 8 image is stretched to the render's 160 × 80 frame of pixel aspect "
            "2:1: Images › Textured Plane shows it at its own shape" in printed), printed
    result, printed = found["fits_pixels"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    # before: "stretched" whatever the background's Frame Method: Fit shows it whole, Crop cuts its sides off
    result, printed = found["fit"]
    assert result == ["FINISHED"] and "behind the camera the 16 × 8" not in printed, printed
    result, printed = found["crop"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    assert ("Warning: behind the camera the 16 × 8 image is cropped to fill the render's 160 × 90 frame (the "
            "background's Frame Method is Crop): its left and right are cut off: Images › Textured Plane" in printed
            ), printed
    # before: said nothing, the image of the render's shape taken to line up with it wherever the artist moved it
    result, printed = found["moved"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    assert ("Warning: behind the camera the 16 × 8 image does not line up with the render's frame: its background is "
            "moved off it (Offset 0.1, 0; Rotation 14.3°; Scale 0.5); set Offset 0, 0, Rotation 0 and Scale 1 (the "
            "camera's Background Images) to line it up\n" in printed), printed
    result, printed = found["flipped"]
    assert result == ["FINISHED"] and "behind the camera the 16 × 8" not in printed, printed
    result, printed = found["plane"]
    assert "on plane 'echo image', hung 1 m in front of camera 'Said Cam A' (its child: it moves with it)" in printed
    result, printed = found["plane_moved"]
    assert ("the image plane 'echo image' moved from camera 'Said Cam A' to 'Said Cam B' (one a scene: rename the "
            "plane to keep it where it was)" in printed), printed
    result, printed = found["plane_off"]
    assert ("the image plane 'echo image' was taken off camera 'Said Cam B' (the scene has no active camera) and "
            "stands where it was" in printed), printed
    assert found["plane_parent"] is None, found


def test_run_job_replaces_the_backgrounds_older_versions_left_unmarked_and_leaves_the_artists(session):
    # before: a seventh background, the new image beside the three older results, all at half opacity
    session.no_error("older_backgrounds")
    found = session["older_backgrounds"]
    assert found["result"] == ["FINISHED"], found
    older, artists = found["older"], found["artists"]
    assert [row for row in found["after"] if not row[2]] == [[artists[0], 0.9, False], [artists[1], 0.5, False],
                                                             [artists[2], 0.5, False]], found  # untouched, in order
    ours = [row for row in found["after"] if row[2]]
    assert len(ours) == 1 and ours[0][0].startswith("echo image_000.") and ours[0][1] == 0.5, found
    assert found["after"][0] == ours[0], found  # in the first older one's place, with its opacity
    assert found["older_kept"] == [True, True, True], found  # (a fake user: a save keeps them, shown nowhere)
    printed = found["printed"]
    assert f"shown behind camera 'Old Cam' in place of the last result's {older[0]!r}" in printed, printed
    assert (f"took 2 backgrounds of older Run Job results off camera 'Old Cam' ({older[1]!r}, {older[2]!r}): one "
            "HandForge background a camera (their images are kept in the file)" in printed), printed


def test_run_job_takes_up_the_planes_older_versions_left_unmarked_and_leaves_the_artists(session):
    # before: a new plane 'echo image.003' beside the older ones, all three still standing at the world origin
    session.no_error("older_planes")
    found = session["older_planes"]
    first, second = found["first"], found["second"]
    assert first["result"] == ["FINISHED"] and second["result"] == ["FINISHED"], first["printed"]
    assert first["new_objects"] == [] and first["gone_objects"] == ["echo image_000", "echo image_001"], first
    plane = first["plane"]  # the older 'echo image', marked now, refilled unlit and hung from the camera
    assert plane[2] == ["ShaderNodeEmission", "ShaderNodeOutputMaterial", "ShaderNodeTexImage"], plane
    assert plane[3] == [first["made"][0]] and plane[4] == "Plane Cam" and plane[5] is True, plane
    assert ("the plane 'echo image' an older Run Job left (unmarked, at the world origin) shows the result now, and 2 "
            "more it left there were taken out of the scene ('echo image_000', 'echo image_001'): one HandForge plane "
            "a scene (their images are kept in the file)" in first["printed"]), first["printed"]
    assert found["older_images_kept"] == [True, True, True], found
    # the artist's: one moved, a copy of one, a photo's (from a file), an image of no job kind's: as they were
    assert first["artists"] == second["artists"] == found["artists"], found
    assert len(found["artists"]) == 4 and not any(seen[5] for seen in found["artists"].values()), found
    # the next run refills the same plane, with nothing more to say of older ones
    assert second["new_objects"] == [] and second["plane"][3] == [second["made"][0]], second
    assert "older Run Job" not in second["printed"], second["printed"]


def test_run_job_says_which_older_planes_moved_by_the_artist_it_kept_and_where_the_result_went(session):
    # before: the result on 'echo image.001' beside them, unsaid (the artist's moved planes kept as theirs, rightly:
    # taken up, one would hang in front of the camera, their placement lost)
    session.no_error("older_planes_moved")
    found = session["older_planes_moved"]
    first, second = found["first"], found["second"]
    assert first["result"] == ["FINISHED"] and second["result"] == ["FINISHED"], first["printed"]
    assert first["new_objects"] == ["echo image.001"] and second["new_objects"] == [], found
    assert ("Warning: the result is on a new plane 'echo image.001'; the planes 'echo image', 'echo image_000' older "
            "Run Jobs left, moved since, are kept as yours, showing their older result where you put them (delete them "
            "if no longer wanted); the next results refill 'echo image.001'" in first["printed"]), first["printed"]
    assert "moved since" not in second["printed"], second["printed"]  # (said once: the same plane refilled)
    assert found["kept"] == {"echo image": True, "echo image_000": True}, found
