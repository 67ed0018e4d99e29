"""The backend's side of Export Labelled Renders (job ``export_renders``) through a real server, no
Blender: an armature's transform carries its hand (the labels' world parameters give the labels'
world keypoints again), progress with the time left, a rerun that resumes, and requests refused
before anything is written (shapes and the folder before the job is queued).
The comparison with Blender's own camera projection is tests/test_blender_export_renders.py."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from handforge.hands import load_hand_model
from handforge_shared.client import Error, JobFailed, Progress
from handforge_shared.poses import HandPose, hand_array_name
from handforge_shared.rotations import axis_angle_to_matrix
from tests.support.refusing_site import refusals, refusing_env
from tests.support.server import running_server

pytestmark = pytest.mark.timeout(300)
FRAMES, CAMERAS = 2, 2


def _request(out, rng, armature_rotation=(0.3, -0.2, 0.5), frames: int = FRAMES) -> tuple[dict, dict]:
    FRAMES = frames  # noqa: N806 (the module's two frames, unless asked for more)
    arrays = {}
    for side, x in (("left", -0.09), ("right", 0.09)):
        arrays[hand_array_name(side, "global_orient")] = rng.normal(0, 0.3, (FRAMES, 3)).astype(np.float32)
        arrays[hand_array_name(side, "hand_pose")] = rng.normal(0, 0.2, (FRAMES, 45)).astype(np.float32)
        arrays[hand_array_name(side, "transl")] = np.tile([x, 0.0, 0.0], (FRAMES, 1)).astype(np.float32)
        matrix = np.eye(4)
        if side == "right":  # a rotated and moved armature object
            matrix[:3, :3], matrix[:3, 3] = axis_angle_to_matrix(np.array(armature_rotation)), (0.03, -0.02, 0.01)
        arrays[hand_array_name(side, "matrix_world")] = np.tile(matrix, (FRAMES, 1, 1))
    cameras = np.tile(np.eye(4), (CAMERAS, FRAMES, 1, 1))
    cameras[..., 2, 3] = np.linspace([0.5, 0.6], [0.55, 0.65], FRAMES).T  # above the hands, looking down -Z
    arrays.update({"camera.matrix_world": cameras, "camera.lens": np.full((CAMERAS, FRAMES), 35.0),
                   "camera.sensor": np.tile([36.0, 24.0], (CAMERAS, FRAMES, 1)),
                   "camera.shift": np.zeros((CAMERAS, FRAMES, 2)), "frames": 1 + 2 * np.arange(FRAMES)})
    params = {"out": str(out), "width": 96, "height": 72, "engine": "none",
              "cameras": [{"name": "A", "sensor_fit": "AUTO"}, {"name": "B", "sensor_fit": "VERTICAL"}]}
    return params, arrays


@pytest.fixture(scope="module")
def client():
    with running_server() as server, server.client() as c:
        yield c


def test_moved_armature_carries_its_hand_and_progress_has_the_time_left(client, tmp_path):
    params, arrays = _request(tmp_path / "renders", np.random.default_rng(1))
    progress: list[Progress] = []
    result = client.run("export_renders", params, arrays, on_progress=progress.append)
    assert result.data["finished"] == FRAMES * CAMERAS and result.data["written"] == FRAMES * CAMERAS
    assert any("s left" in p.message for p in progress)
    model = load_hand_model("open")
    for path in sorted((tmp_path / "renders" / "samples").glob("*/labels.json")):
        sample = json.loads(path.read_text())
        for side, hand in sample["hands"].items():
            with torch.no_grad():
                again = model.forward_pose(side, HandPose.from_dict(hand["params_world"])).keypoints[0].numpy()
            np.testing.assert_allclose(again, np.array(hand["keypoints_world"]), atol=1e-5)
    right = json.loads((tmp_path / "renders/samples/000000/labels.json").read_text())["hands"]["right"]
    with torch.no_grad():  # the rig's own (unmoved) keypoints differ: the move was applied
        unmoved = model.forward_pose("right", HandPose(global_orient=arrays["right.global_orient"][0],
                                                       hand_pose=arrays["right.hand_pose"][0], betas=np.zeros(10),
                                                       transl=arrays["right.transl"][0])).keypoints[0].numpy()
    assert np.abs(unmoved - np.array(right["keypoints_world"])).max() > 0.01
    again = client.run("export_renders", params, arrays)  # the same request resumes in its own folder
    assert again.data["skipped"] == FRAMES * CAMERAS and again.data["written"] == 0


def test_images_without_a_hand_in_view_are_said(client, tmp_path):
    """A camera turned away from the hands wrote images of nothing, reported as a plain success (coco.json without
    an annotation; the card said "visible keypoints: 0.0")."""
    params, arrays = _request(tmp_path / "seen", np.random.default_rng(1))
    assert "warning" not in client.run("export_renders", params, arrays).data
    away = arrays["camera.matrix_world"].copy()
    away[0, :, 2, 3] = -away[0, :, 2, 3]  # camera A below the hands, still looking down -Z: away from them
    result = client.run("export_renders", {**params, "out": str(tmp_path / "away")}, {**arrays, "camera.matrix_world": away})
    assert result.data["warning"] == (f"{FRAMES} of {FRAMES * CAMERAS} images show no keypoint of either hand (the "
                                      "hands out of the camera's view, behind it, or too small in it): aim the camera "
                                      "at the hands"), result.data
    card = json.loads((tmp_path / "away" / "dataset_card.json").read_text())
    assert card["samples_without_visible_keypoints"] == FRAMES


def test_a_camera_on_a_joint_labels_that_joint_without_a_pixel(client, tmp_path):
    """A camera placed on a joint (a first-person camera snapped to the wrist) puts that keypoint in the camera's
    plane, depth 0. Before: its pixel was infinite and the sample failed ("Out of range float values are not JSON
    compliant"), the job reporting 0 written as a success. Now it is labelled, without a pixel and not visible."""
    from handforge_shared.skeleton import MODEL_TO_BLENDER

    params, arrays = _request(tmp_path / "first", np.random.default_rng(1))
    client.run("export_renders", params, arrays)
    wrist = json.loads((tmp_path / "first/samples/000000/labels.json").read_text())["hands"]["right"]["keypoints_world"][0]
    on_joint = arrays["camera.matrix_world"].copy()
    on_joint[0, 0, :3, 3] = MODEL_TO_BLENDER @ np.asarray(wrist)  # camera A, first frame: sample 0
    result = client.run("export_renders", {**params, "out": str(tmp_path / "on_joint")},
                        {**arrays, "camera.matrix_world": on_joint})
    assert result.data["written"] == FRAMES * CAMERAS and not result.data["failed"], result.data
    from handforge.export.coco import coco_keypoints

    sample = json.loads((tmp_path / "on_joint/samples/000000/labels.json").read_text())
    right = sample["hands"]["right"]
    assert right["keypoints_camera"][0][2] == 0.0  # (the case: exactly in the camera's plane)
    assert right["keypoints_2d"][0] == [0.0, 0.0] and right["visible"][0] == 0
    assert np.isfinite(np.asarray(right["keypoints_2d"])).all()
    # COCO's triple for it is [0, 0, 0] (not labelled), as its writer makes it (the test looked for it in coco.json,
    # in a loop over nothing: no pixel of either hand shows from inside the wrist, so the file has no annotation of
    # this image, which is said here)
    assert coco_keypoints(right, sample["camera"]["width"], sample["camera"]["height"])[0][:3] == [0, 0, 0]
    coco = json.loads((tmp_path / "on_joint/coco.json").read_text())
    assert right["bbox"] is None and [a for a in coco["annotations"] if a["image_id"] == 1] == []
    assert any(a["image_id"] == 2 for a in coco["annotations"])  # (the next image's hands are there)


def test_requests_that_cannot_work_are_refused_before_anything_is_written(client, tmp_path):
    rng = np.random.default_rng(2)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    params, arrays = _request(foreign, rng)
    with pytest.raises(JobFailed, match="not empty") as failure:
        client.run("export_renders", params, arrays)
    assert failure.value.code == "invalid_params"
    # 100,000 frames reach the checks (as a JSON list in params, 14,000 overflowed the 64 KiB header)
    long = {k: np.repeat(v, 50_000, axis=1 if k.startswith("camera.") else 0) for k, v in arrays.items()}
    long["frames"] = np.arange(100_000)
    with pytest.raises(JobFailed, match="not empty"):
        client.run("export_renders", params, long)

    params, arrays = _request(tmp_path / "out", rng)
    with pytest.raises(JobFailed, match="one value per camera"):
        client.run("export_renders", {**params, "cameras": params["cameras"][:1]}, arrays)
    with pytest.raises(JobFailed, match="not an absolute path"):
        client.run("export_renders", {**params, "out": "relative/folder"}, arrays)
    scaled = dict(arrays, **{"left.matrix_world": arrays["left.matrix_world"] * np.array([2, 2, 2, 1])[:, None]})
    with pytest.raises(JobFailed, match="arrays.left.matrix_world: the left hand's armature at frame 1 is scaled"):
        client.run("export_renders", params, scaled)  # refused before it is accepted, the frame named
    mirrored = arrays["camera.matrix_world"].copy()
    mirrored[1, 1, :3, 0] *= -1
    with pytest.raises(JobFailed, match="camera 'B' at frame 3 is scaled, mirrored or sheared") as failure:
        client.run("export_renders", params, dict(arrays, **{"camera.matrix_world": mirrored}))
    assert "clear the camera's scale (Alt-S)" in failure.value.hint and "hand rig" not in failure.value.hint
    assert not (tmp_path / "out").exists()
    # a folder the file system refuses though access() allows it (/proc, as root): typed, not internal
    with pytest.raises(JobFailed, match="cannot write into /proc: it refuses new files") as failure:
        client.run("export_renders", {**params, "out": "/proc/handforge_export"}, arrays)
    assert failure.value.code == "invalid_params"
    (tmp_path / "afile").write_text("x")
    for out, needle in (("~nosuchuser_handforge/x", "cannot be used"), (str(tmp_path / ("n" * 300)), "cannot be used"),
                        (str(tmp_path / "a\0b"), "NUL"),  # refused before queueing, typed, nothing written
                        (str(tmp_path / "afile" / "sub"), "afile is a file, not a folder")):  # ("cannot write into")
        with pytest.raises(JobFailed, match=needle) as failure:
            client.run("export_renders", {**params, "out": out}, arrays)
        assert failure.value.code == "invalid_params"
    huge = dict(arrays, **{"camera.matrix_world": arrays["camera.matrix_world"] * 1e300})
    with pytest.raises(JobFailed, match="arrays.camera.matrix_world"):
        client.run("export_renders", params, huge)
    right_without_root = {k: v for k, v in arrays.items() if k not in ("right.global_orient", "right.matrix_world")}
    with pytest.raises(JobFailed, match="right.global_orient"):  # its other arrays would be dropped unseen
        client.run("export_renders", params, right_without_root)
    # (a review found these: each frame exported twice, two cameras one name, a reply of kilobytes)
    with pytest.raises(JobFailed, match=r"^arrays.frames: frame 3 is listed 2 times"):
        client.run("export_renders", params, {**arrays, "frames": np.array([3, 3])})
    three = _request(tmp_path / "out", rng, frames=5)[1]  # (the count of that frame, not the largest one)
    with pytest.raises(JobFailed, match=r"^arrays.frames: frame 1 is listed 2 times"):
        client.run("export_renders", params, {**three, "frames": np.array([1, 1, 2, 2, 2])})
    with pytest.raises(JobFailed, match=r"^params.cameras\[1\]: camera name 'A' is given twice"):
        client.run("export_renders", {**params, "cameras": [params["cameras"][0]] * 2}, arrays)
    with pytest.raises(JobFailed, match=r"^params.cameras\[0\]: must be") as failure:
        client.run("export_renders", {**params, "cameras": [{"name": "A", "sensor_fit": list(range(1000))}] * 2}, arrays)
    assert len(failure.value.message) < 450
    # a camera's other keys (a lens, ignored: the lens is arrays.camera.lens), an empty name, control characters,
    # half a surrogate pair (JSON's "\ud800": it was written into every sample's labels, text no UTF-8 reader takes)
    for camera in ({"name": "A", "sensor_fit": "AUTO", "lens": 85}, {"name": "", "sensor_fit": "AUTO"},
                   {"name": "A\x00", "sensor_fit": "AUTO"}, {"name": "A\ud800", "sensor_fit": "AUTO"}):
        with pytest.raises(JobFailed, match=r"^params.cameras\[0\]: must be .*nothing else"):
            client.run("export_renders", {**params, "cameras": [camera, params["cameras"][1]]}, arrays)
    # names Blender keeps pass: a full-width or no-break space, an emoji with a zero-width joiner, a lone space
    (tmp_path / "a file").write_text("x")
    for name in ("カメラ\u30001", "Cam\xa0A", "\U0001F468\u200d\U0001F4BB cam", " "):
        with pytest.raises(JobFailed) as other:  # (refused further on, for its folder: not for its name)
            client.run("export_renders", {**params, "out": str(tmp_path / "a file" / "x"),
                                          "cameras": [{"name": name, "sensor_fit": "AUTO"}, params["cameras"][1]]},
                       arrays)
        assert other.value.message.startswith("params.out"), other.value.message
    with pytest.raises(JobFailed, match=r"^arrays: no hand given"):
        client.run("export_renders", params, {k: v for k, v in arrays.items() if not k.startswith(("left.", "right."))})
    assert not (tmp_path / "out").exists()


def test_a_pixel_aspect_blender_would_clamp_is_refused_before_queueing(client, tmp_path):
    """Each of x and y may be 0.01–100, a ratio up to 10,000; Blender clamps the ratio to 200 without a word,
    and its RGB no longer matched the GL masks and labels."""
    params, arrays = _request(tmp_path / "out", np.random.default_rng(3))
    for aspect in ([0.4, 100.0], [100.0, 0.4]):
        with pytest.raises(JobFailed, match=r"^params.pixel_aspect: pixel aspect .* is a ratio of 250, more than the "
                                            r"200 Blender renders") as failure:
            client.run("export_renders", {**params, "pixel_aspect": aspect}, arrays)
        assert failure.value.code == "invalid_params"
    assert not (tmp_path / "out").exists()


def test_a_folder_the_file_system_refuses_is_refused_before_queueing_naming_params_out(client, tmp_path):
    # before: access() allows /proc to root, so the request was queued and the job failed at its start
    # with "cannot write into /proc/...", the field unnamed
    params, arrays = _request(tmp_path / "out", np.random.default_rng(4))
    for out in ("/proc/handforge_export", "/proc/handforge_export/deeper"):
        handle = client.submit("export_renders", {**params, "out": out}, arrays)
        outcome = handle.wait(60)
        assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
        assert str(outcome).startswith("params.out: cannot write into /proc"), outcome
        assert handle.position is None  # never accepted
    assert not list(Path("/proc").glob(".handforge*"))  # the probe left nothing behind
    before = sorted(tmp_path.iterdir())
    assert client.run("export_renders", params, arrays).data["written"] == FRAMES * CAMERAS
    assert sorted(p for p in tmp_path.iterdir() if p.name != "out") == before  # nor where it could write


def test_an_output_folder_through_a_loop_of_links_is_refused_before_queueing_naming_params_out(client, tmp_path):
    # before: exists() says False on a loop, so the request was queued and the job failed at its start,
    # the field unnamed
    params, arrays = _request(tmp_path / "out", np.random.default_rng(4))
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    handle = client.submit("export_renders", {**params, "out": str(tmp_path / "loop" / "x")}, arrays)
    outcome = handle.wait(60)
    assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
    assert str(outcome).startswith("params.out: the output folder") and "loop" in str(outcome).lower(), outcome
    assert handle.position is None  # never accepted


def test_a_projective_matrix_world_is_refused_naming_the_array(client, tmp_path):
    # before: a matrix_world whose bottom row is not 0 0 0 1 was accepted and its last row dropped unsaid
    params, arrays = _request(tmp_path / "out", np.random.default_rng(5))
    for name in ("left.matrix_world", "camera.matrix_world"):
        projective = arrays[name].copy()
        projective[..., 3, 0] = 0.25
        with pytest.raises(JobFailed, match=f"^arrays.{name}: .*bottom row must be 0 0 0 1") as failure:
            client.run("export_renders", params, {**arrays, name: projective})
        assert failure.value.code == "invalid_params"
    assert not (tmp_path / "out").exists()


def test_a_folder_holds_one_export_whichever_made_it(client, tmp_path):
    """Blender's export and ``handforge export`` claim folders the same way (``export.folder.claim_folder``):
    neither writes into the other's, another request is refused before queueing, a busy folder is typed."""
    from handforge.export.run import export, hand_model_identity
    from handforge.export.spec import parse_spec
    from handforge.export.folder import HAND_MODEL, SPEC_RECORD, FolderTaken, run_lock

    rng = np.random.default_rng(3)
    params, arrays = _request(tmp_path / "scene", rng)
    client.run("export_renders", params, arrays)
    assert "blender_request" in json.loads((tmp_path / "scene" / SPEC_RECORD).read_text())
    with pytest.raises(JobFailed, match="another scene, frame range or settings") as failure:
        client.run("export_renders", params, {**arrays, "frames": np.array([1, 4])})
    # the refusal names the setting that differs as the artist set it, or what the rest covers (before: only
    # "blender_request: "5e3a…" → "77b2…"", a digest of it all)
    assert 'settings.frames: "1 to 3, 2 frame(s)" → "1 to 4, 2 frame(s)"' in str(failure.value), failure.value
    with pytest.raises(JobFailed) as other_seed:
        client.run("export_renders", {**params, "seed": 5, "width": 64}, arrays)
    assert "(differing: settings.seed: 0 → 5, settings.width: 96 → 64)" in str(other_seed.value), other_seed.value
    moved = {**arrays, "camera.lens": arrays["camera.lens"] * 1.5}
    with pytest.raises(JobFailed) as other_lens:
        client.run("export_renders", params, moved)
    assert ("(differing: the hands' keys or placement, or the cameras, over the exported frames)"
            in str(other_lens.value)), other_lens.value
    # the same frames as int32 (another client's choice) are the same request: resumed, not refused
    assert client.run("export_renders", params, {**arrays, "frames": arrays["frames"].astype(np.int32)}).data[
        "written"] == 0
    # the card's command (it names the .blend file) and Cycles' samples under another engine make no other
    # dataset: resumed (saving the scene under a name blocked the resume)
    assert params["engine"] == "none"
    renamed = {**params, "command": "Blender 4.5 Export Labelled Renders of hands.blend", "samples": 23}
    assert client.run("export_renders", renamed, arrays).data["written"] == 0
    assert failure.value.code == "invalid_params"
    # the hand model is recorded as ``handforge export`` records it: another one refused, none (a folder
    # recorded before it was) resumed and recorded
    path = tmp_path / "scene" / SPEC_RECORD
    record = json.loads(path.read_text())
    assert record[HAND_MODEL] == hand_model_identity(load_hand_model("open"))
    path.write_text(json.dumps({**record, HAND_MODEL: {"name": "open", "blake2b": "0" * 32}}))
    with pytest.raises(JobFailed, match="holds samples made with another open hand model"):
        client.run("export_renders", params, arrays)
    path.write_text(json.dumps({k: v for k, v in record.items() if k != HAND_MODEL}))
    assert client.run("export_renders", params, arrays).data["written"] == 0
    assert json.loads(path.read_text()) == record
    # a folder recorded before the settings were (its digest covers them) resumes, and records them now
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "settings"}))
    assert client.run("export_renders", params, arrays).data["written"] == 0
    assert json.loads(path.read_text()) == record
    path.write_text(json.dumps({k: v for k, v in record.items() if k != "settings"}))
    with pytest.raises(JobFailed, match="differing: the hands' keys or placement, the cameras, the frames or the "
                                        "settings"):
        client.run("export_renders", {**params, "seed": 5}, arrays)
    spec = parse_spec({"samples": 1, "width": 64, "height": 64, "render": {"engine": "none"}})
    with pytest.raises(FolderTaken, match="another spec"):
        export(spec, tmp_path / "scene", progress=False)
    export(spec, tmp_path / "spec", progress=False)
    with pytest.raises(JobFailed, match="another scene, frame range or settings"):
        client.run("export_renders", {**params, "out": str(tmp_path / "spec")}, arrays)
    (tmp_path / "held").mkdir()
    with run_lock(tmp_path / "held"), pytest.raises(JobFailed, match="another handforge export") as failure:
        client.run("export_renders", {**params, "out": str(tmp_path / "held")}, arrays)
    assert failure.value.code == "busy"


def test_a_folder_that_cannot_take_samples_fails_the_job_at_once_in_words(tmp_path):
    """samples/ unwritable (or the disk full): every sample was made, then each failed alone, and the job
    "finished" with a list of failures; now it stops at the first, saying the folder and the fix."""
    with running_server(env=refusing_env(tmp_path)) as server, server.client() as client:
        params, arrays = _request(tmp_path / "renders", np.random.default_rng(2), frames=8)
        with pytest.raises(JobFailed) as failure:
            client.run("export_renders", params, arrays)
        assert client.run("ping").data is not None  # the backend carries on
    assert re.match(rf"{re.escape(str(tmp_path))}/renders/samples: Permission denied: let this "
                    r"user read and write it \(or choose another Output folder\)$", failure.value.message), failure.value
    assert failure.value.hint == "the samples already made are kept: export again to go on"
    assert refusals(tmp_path) <= 3  # not 16: stopped at the first


def test_rendered_rgb_on_a_backend_without_blender_is_refused_before_queueing_naming_the_fix(client, tmp_path):
    """On the artist's install (the backend extra, no bpy) Export Labelled Renders with Workbench or Cycles was
    queued, and its Blender worker ended in a ModuleNotFoundError traceback; RGB None needs no Blender, nor does a
    finished folder resumed (its aggregate files written again)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(  # bpy not installed, as far as the backend can tell
        "import importlib.util\n_find = importlib.util.find_spec\n"
        "importlib.util.find_spec = lambda name, *a, **k: None if name == 'bpy' else _find(name, *a, **k)\n")
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    params, arrays = _request(tmp_path / "out", np.random.default_rng(6))
    rendered = {**params, "out": str(tmp_path / "rendered"), "engine": "workbench"}
    assert client.run("export_renders", rendered, arrays).data["written"] == FRAMES * CAMERAS  # (bpy here)
    with running_server(env=env) as server, server.client() as client:
        assert client.run("export_renders", rendered, arrays).data["skipped"] == FRAMES * CAMERAS
        for engine in ("workbench", "cycles"):
            handle = client.submit("export_renders", {**params, "engine": engine}, arrays)
            outcome = handle.wait(60)
            assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
            assert str(outcome).startswith(f"params.engine: render engine {engine!r} renders the RGB images in "
                                           "Blender, whose Python module (bpy) is not installed"), outcome
            assert "pip install bpy==4.5.15" in outcome.hint and "RGB None" in outcome.hint, outcome.hint
            assert handle.position is None  # never accepted
        assert not (tmp_path / "out").exists()
        assert client.run("export_renders", params, arrays).data["written"] == FRAMES * CAMERAS  # engine none


@pytest.fixture
def export_kind_without_bpy(monkeypatch):
    """The export_renders job kind on a backend where bpy cannot be found (it is installed here)."""
    import importlib.util

    from handforge.engines.export.jobs import register_jobs
    from handforge.server.registry import Registry

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bpy" else find_spec(name, *a))
    registry = Registry()
    register_jobs(registry)
    return registry.kind("export_renders")


def test_without_blender_the_folder_is_read_as_the_export_reads_it(tmp_path, monkeypatch, export_kind_without_bpy):
    """The check for Blender (bpy missing, Workbench or Cycles asked for) read ``params.out`` as given, before the
    folder's own check: a name too long for the file system ended the request in the OSError of listing it, not in
    the folder's refusal, and "~/…" (which the export expands) was looked for as written, so a finished export there,
    resumed, was refused for a Blender that no sample needed."""
    from handforge.export.blender_scene import RECORD_OF, folder_record, request_record
    from handforge.export.folder import claim_folder, sample_dir
    from handforge_shared.protocol import ProtocolError

    kind = export_kind_without_bpy
    request, arrays = _request(tmp_path, np.random.default_rng(7))

    def params(out: str) -> dict:
        return kind.schema.validate({**request, "engine": "workbench", "out": out}, arrays)

    def check(out: str) -> None:
        kind.check(params(out), arrays)

    with pytest.raises(ProtocolError, match=r"^params\.out: the output folder .* cannot be used: .*File name too long"):
        check(str(tmp_path / ("a" * 300) / "data"))
    finished = tmp_path / "home" / "renders"  # the same request's, every sample there
    finished.mkdir(parents=True)
    claim_folder(finished, folder_record(request_record(params(str(finished)), arrays)), RECORD_OF)
    for index in range(FRAMES * CAMERAS):
        sample_dir(finished, index).mkdir(parents=True)
        (sample_dir(finished, index) / "labels.json").write_text("{}")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    check(str(finished))
    check("~/renders")  # (refused for bpy before)
    with pytest.raises(ProtocolError, match=r"^params\.engine: render engine 'workbench' .* \(bpy\) is not installed"):
        check("~/new")


def test_without_blender_the_samples_a_cut_short_removal_lists_are_not_taken_as_finished(tmp_path,
                                                                                         export_kind_without_bpy):
    """A removal of samples cut short (the run's inputs edited, then the run killed) leaves its list, and the next
    run removes those samples first (``clean_partial``). The check for Blender counted them as finished, so a folder
    whose other samples were all there was taken as finished and let through without Blender, though the run
    would render those samples again."""
    from handforge.export.blender_scene import RECORD_OF, folder_record, request_record
    from handforge.export.folder import REMOVING, claim_folder, clean_partial, pending_indices, sample_dir
    from handforge_shared.protocol import ProtocolError

    kind = export_kind_without_bpy
    request, arrays = _request(tmp_path, np.random.default_rng(7))
    out = tmp_path / "renders"
    params = kind.schema.validate({**request, "engine": "workbench", "out": str(out)}, arrays)
    out.mkdir()
    claim_folder(out, folder_record(request_record(params, arrays)), RECORD_OF)
    for index in range(FRAMES * CAMERAS):
        sample_dir(out, index).mkdir(parents=True)
        (sample_dir(out, index) / "labels.json").write_text("{}")
    kind.check(params, arrays)  # every sample finished: no Blender needed
    (out / REMOVING).write_text(json.dumps([1, 2]) + "\n")  # (the list remove_samples writes before it removes)
    assert pending_indices(out, FRAMES * CAMERAS) == [1, 2]
    with pytest.raises(ProtocolError, match=r"^params\.engine: render engine 'workbench' .* \(bpy\) is not installed"):
        kind.check(params, arrays)
    clean_partial(out)  # what the run does first: those two are made again
    assert pending_indices(out, FRAMES * CAMERAS) == [1, 2] and not (out / REMOVING).exists()
