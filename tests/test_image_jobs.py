"""``image.generate`` end to end: a real server (subprocess) with tiny SD/ControlNet weights in the
diffusers layout, a real client: progress with latent previews, labels, cancel, both engines,
missing weights."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from handforge.engines.image.tokens import HAND_WORDS
from handforge.render.camera import look_at
from handforge_shared import pose_library
from handforge_shared.client import Error, JobFailed, pose_arrays

from tests.support import tiny_sd
from tests.support.cancelling import cancel_after_two_steps
from tests.support.server import running_server

REPO = Path(__file__).resolve().parents[1]
SIZE = tiny_sd.IMAGE_SIZE
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("image")
    sd = tiny_sd.build_sd(root / "sd")
    guidance = tiny_sd.build_controlnet(root / "guidance", sd, seed=1)
    tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd, seed=2)
    tiny_sd.build_controlnet(root / "controlnets" / "my_net", sd, seed=3)
    env = {"HANDFORGE_SD_MODEL": str(sd), "HANDFORGE_IMAGE_GUIDANCE": str(guidance),
           "HANDFORGE_CONTROLNETS": str(root / "controlnets"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as server:
        yield server, guidance


def request(**params):
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    K = np.array([[150.0, 0, SIZE / 2], [0, 150.0, SIZE / 2], [0, 0, 1]])
    arrays = {"camera.K": K, "camera.R": R, "camera.t": t,
              **pose_arrays({"right": pose_library.get("fist", side="right")})}
    return {"prompt": "a man holding two hands", "width": SIZE, "height": SIZE, "steps": 3, **params}, arrays


def test_generate_reports_previews_and_returns_images_with_labels(served):
    server, _ = served
    with server.client() as client:
        engines = client.hello()["engines"]
        assert engines["attentionhand"]["available"] and engines["controlnet"]["available"]
        previews = []
        params, arrays = request(batch=2, seed=7)
        result = client.run("image.generate", params, arrays, timeout=600,
                            on_progress=lambda e: previews.append((e.message, e.preview.get("preview"))))
        images = result.arrays["images"]
        assert images.shape == (2, SIZE, SIZE, 3) and images.dtype == np.uint8
        steps = [(m, p) for m, p in previews if m.startswith("step")]
        assert [m for m, _ in steps][-1] == "step 3/3"
        assert all(p.shape == (2, SIZE // 8, SIZE // 8, 3) and p.dtype == np.uint8 for _, p in steps)
        tas = result.data["tas"]
        assert {t["word"] for t in tas["tokens"]} == {"holding", "hands"} and tas["steps"] == 1
        assert len(tas["losses"]) == 1
        labels = result.data["hands"]["right"]
        uv = np.array(labels["keypoints_2d"])
        assert uv.shape == (21, 2) and np.all((uv > 0) & (uv < SIZE))
        mesh = result.arrays["control.mesh"]
        assert mesh.shape == (SIZE, SIZE, 3) and (mesh.sum(-1) > 0).mean() > 0.02
        # the same seed again: the same images (the pipeline came from the model cache)
        again = client.run("image.generate", params, arrays, timeout=600)
        assert np.array_equal(again.arrays["images"], images)
        off = client.run("image.generate", {**params, "tas": False}, arrays, timeout=600)
        assert off.data["tas"]["tokens"] == [] and not np.array_equal(off.arrays["images"], images)
        assert "warning" not in result.data and "warning" not in off.data
        # TAS asked for and no hand-related word: said (before: silently nothing)
        none = client.run("image.generate", {**params, "prompt": "two people in a firm handshake", "steps": 1},
                          arrays, timeout=600)
        assert none.data["tas"]["steps"] == 0 and "no hand-related word" in none.data["warning"]
        # naming every whole word that counts (before: "handed" was left out)
        assert all(re.search(rf"\b{word}\b", none.data["warning"]) for word in HAND_WORDS), none.data["warning"]


def test_shape_and_translation_are_optional_arrays(served):
    """Left out, ``<side>.betas`` and ``<side>.transl`` are zeros, as the schema says."""
    server, _ = served
    params, arrays = request(seed=3, steps=1, tas=False)
    arrays.update({"right.betas": np.zeros((1, 10)), "right.transl": np.zeros((1, 3))})
    without = {k: v for k, v in arrays.items() if k not in ("right.betas", "right.transl")}
    with server.client() as client:
        zeros = client.run("image.generate", params, arrays, timeout=600)
        left_out = client.run("image.generate", params, without, timeout=600)
    assert np.array_equal(left_out.arrays["images"], zeros.arrays["images"])
    assert left_out.data["hands"]["right"]["params_world"]["betas"] == [0.0] * 10


def test_the_labels_record_the_hand_model_and_its_licence(served):
    # before: an image's labels held its pose parameters but not the hand model they belong to, nor the
    # licence the image inherits from it (the labelled export's labels record both)
    server, _ = served
    params, arrays = request(steps=1, tas=False)
    with server.client() as client:
        result = client.run("image.generate", params, arrays, timeout=600)
    assert result.data["hand_model"] == "open" and result.data["hand_model_licence"].startswith("CC0-1.0")


def test_controlnet_engine_uses_the_named_controlnets(served):
    server, _ = served
    with server.client() as client:
        params, arrays = request(engine="controlnet", controls=["control_sd15_depth", "my_net:normals"], steps=2)
        result = client.run("image.generate", params, arrays, timeout=600)
        assert result.data["controls"] == ["depth", "normals"]
        assert set(result.arrays) == {"images", "control.depth", "control.normals"}
        with pytest.raises(JobFailed) as failed:
            client.run("image.generate", {**params, "controls": ["my_net"]}, arrays, timeout=60)
        assert failed.value.code == "invalid_params" and "my_net:KIND" in failed.value.message
        with pytest.raises(JobFailed, match="no ControlNet 'nope'"):
            client.run("image.generate", {**params, "controls": ["nope:depth"]}, arrays, timeout=60)


def test_cancel_between_steps(served):
    server, _ = served
    with server.client() as client:
        params, arrays = request(steps=200, tas=False)
        cancel_after_two_steps(client, "image.generate", params, arrays, steps=200)


def test_refine_hands_regenerates_only_the_hands_box(served):
    server, _ = served
    with server.client() as client:
        params, arrays = request(seed=3, tas=False)
        plain = client.run("image.generate", params, arrays, timeout=600)
        messages = []
        refined = client.run("image.generate", {**params, "refine_hands": True, "refine_strength": 0.7}, arrays,
                             timeout=600, on_progress=lambda e: messages.append(e.message))
        assert plain.data["refined_box"] is None
        x, y, w, h = refined.data["refined_box"]
        assert "hands step 2/2" in messages  # 0.7 of 3 steps: the last 2 again
        with_tas = client.run("image.generate", {**params, "tas": True, "refine_hands": True, "refine_strength": 0.7},
                              arrays, timeout=600)
        assert len(with_tas.data["tas"]["losses"]) == 1 and len(with_tas.data["tas"]["refine_losses"]) >= 1
        inside = np.zeros((SIZE, SIZE), bool)
        inside[max(0, round(y)):round(y + h), max(0, round(x)):round(x + w)] = True
        a, b = plain.arrays["images"][0], refined.arrays["images"][0]
        assert np.array_equal(a[~inside], b[~inside])  # the scene around the hands is untouched
        assert not np.array_equal(a[inside], b[inside])


def test_a_bad_camera_is_refused_before_the_job_is_queued(served):
    server, _ = served
    params, arrays = request()
    with server.client() as client:
        handle = client.submit("image.generate", params, {**arrays, "camera.R": 2.0 * arrays["camera.R"]})
        outcome = handle.wait(60)
    assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
    assert str(outcome).startswith("arrays.camera.R: R must be a rotation matrix"), outcome
    assert handle.position is None  # never accepted


def test_cpu_offload_on_a_backend_without_a_cuda_gpu_is_refused_before_the_job_is_queued(served):
    # before: accepted, then refused when the job ran ("this job runs on cpu"), after its wait in the queue
    server, _ = served
    params, arrays = request(cpu_offload=True)
    with server.client() as client:
        assert client.hello()["compute_devices"] == ["cpu"]  # (waits until the backend knows its devices)
        handle = client.submit("image.generate", params, arrays)
        outcome = handle.wait(60)
    assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
    assert outcome.message == "params.cpu_offload: needs a CUDA GPU; this backend runs image.generate jobs on cpu"
    assert "turn cpu_offload off" in outcome.hint
    assert handle.position is None  # never accepted


def _blender_camera(arrays: dict) -> dict:
    """``arrays`` with the camera as a Blender camera's settings instead of K, R and t."""
    rest = {k: v for k, v in arrays.items() if k not in ("camera.K", "camera.R", "camera.t")}
    world = np.eye(4)
    world[:3, 3] = (0.0, -0.4, 0.0)
    return {**rest, "camera.matrix_world": world, "camera.lens": np.array([50.0]),
            "camera.sensor": np.array([36.0, 24.0]), "camera.shift": np.array([0.0, 0.0])}


@pytest.mark.parametrize("change, field, says", [
    (lambda a: {**a, "camera.R": 2.0 * a["camera.R"]}, "arrays.camera.R", "R must be a rotation matrix"),
    (lambda a: {**a, "camera.K": np.diag([0.0, 150.0, 1.0])}, "arrays.camera.K", "K must be [[fx, s, cx]"),
    (lambda a: {**a, "camera.t": np.array([0.0, np.nan, 0.0])}, "arrays.camera.t", "non-finite"),
    (lambda a: {k: v for k, v in a.items() if not k.startswith("camera.")}, "arrays",
     "no camera was sent: send one, camera.K, camera.R and camera.t (OpenCV) or camera.matrix_world, camera.lens, "
     "camera.sensor and camera.shift (Blender's settings)"),
    (lambda a: {**_blender_camera(a), **{k: v for k, v in a.items() if k.startswith("camera.")}}, "arrays",
     "two cameras were sent: send one, camera.K"),
    (lambda a: {**_blender_camera(a), "camera.matrix_world": np.diag([2.0, 2.0, 2.0, 1.0])},
     "arrays.camera.matrix_world", "the camera is scaled"),
])
def test_a_camera_refused_names_the_array_at_fault_or_the_sets_to_send(change, field, says):
    """Every camera refusal named "arrays.camera", which is no array: the request's array at fault is named (a
    script or client can point at it), and when no camera or two are sent, the arrays of each way to send one."""
    from handforge.engines.image.jobs import check_target
    from handforge.server.builtin_jobs import default_registry
    from handforge_shared.protocol import ProtocolError

    params, arrays = request()
    arrays = change(arrays)
    schema = default_registry().kind("image.generate").schema
    with pytest.raises(ProtocolError) as refused:
        check_target(schema.validate(params, arrays), arrays)
    assert refused.value.field == field and f"{field}: " in refused.value.message, refused.value
    assert says in refused.value.message, refused.value.message


def test_running_out_of_memory_on_the_cpu_says_so_and_the_server_carries_on(served):
    # before: "internal: RuntimeError: [enforce fail at alloc_cpu.cpp:127] ..." with the hint "the backend log
    # has the traceback": only CUDA's OutOfMemoryError was recognised
    import resource

    server, _ = served
    before = resource.prlimit(server.process.pid, resource.RLIMIT_AS)
    resource.prlimit(server.process.pid, resource.RLIMIT_AS, (6 << 30, before[1]))  # 6 GiB of address space
    try:
        with server.client() as client:
            params, arrays = request(steps=1, tas=False)
            client.run("image.generate", params, arrays, timeout=600)  # loaded first (within the limit)
            K = np.array([[1200.0, 0, 1024], [0, 1200.0, 1024], [0, 0, 1]])
            with pytest.raises(JobFailed) as failed:
                client.run("image.generate", {**params, "width": 2048, "height": 2048, "batch": 16},
                           {**arrays, "camera.K": K}, timeout=600)
            assert "ran out of memory" in failed.value.hint and "smaller batch or resolution" in failed.value.hint
    finally:
        resource.prlimit(server.process.pid, resource.RLIMIT_AS, before)
    with server.client() as client:
        assert client.run("image.generate", params, arrays, timeout=600).arrays["images"].shape == (1, SIZE, SIZE, 3)


def test_a_camera_that_sees_no_hand_is_said(served):
    # before: the image came back with no posed hand in it (refine_hands silently did nothing), no word said
    server, _ = served
    params, arrays = request(seed=1, steps=1, tas=False, refine_hands=True)
    away = {**arrays, "camera.t": np.array([0.0, 0.0, -5.0])}  # the hands are behind the camera
    with server.client() as client:
        result = client.run("image.generate", params, away, timeout=600)
        assert "no hand is in the camera's view" in result.data["warning"] and result.data["refined_box"] is None
        assert "warning" not in client.run("image.generate", params, arrays, timeout=600).data


def test_a_prompt_longer_than_the_text_encoder_reads_is_said(served):
    # before: its end was dropped unsaid, and TAS said "the prompt has no hand-related word" of a prompt
    # whose hand words came after the encoder's 75 tokens
    server, _ = served
    params, arrays = request(seed=1, steps=2, prompt="a " * 100 + "man holding hands", negative_prompt="blurry " * 90)
    with server.client() as client:
        warning = client.run("image.generate", params, arrays, timeout=600).data["warning"]
    assert re.search("the prompt is 10[0-9] tokens, the text encoder reads 75: from 'a a a .*' on it is ignored", warning)
    assert "no hand-related word" in warning and "in the part the text encoder reads" in warning
    assert re.search("the negative_prompt is [0-9]+ tokens, the text encoder reads 75", warning)  # (was unsaid)


def test_a_scaled_hand_rig_is_refused_as_the_labelled_export_refuses_it(served):
    # before: accepted: the image showed the hand scaled while the labels' pose (params_world) cannot carry a
    # scale, and a zero-scale matrix went through too
    server, _ = served
    params, arrays = request(steps=1, tas=False)
    with server.client() as client:
        for matrix in (np.diag([2.0, 2.0, 2.0, 1.0]), np.diag([0.0, 0.0, 0.0, 1.0])):
            with pytest.raises(JobFailed) as failed:
                client.run("image.generate", params, {**arrays, "right.matrix_world": matrix}, timeout=60)
            assert failed.value.code == "invalid_params"
            assert "arrays.right.matrix_world: the right hand's rig is scaled" in failed.value.message
            assert "Alt-S" in failed.value.hint


def test_a_rig_placed_beyond_the_world_is_refused_and_the_server_carries_on(served):
    # before: a rig's matrix_world with a translation of 1e300 m was accepted, posed the hand to inf and failed
    # inside the job: "internal: PoseFormatError: transl has a non-finite value"
    server, _ = served
    params, arrays = request(steps=1, tas=False)
    far = np.eye(4)
    far[:3, 3] = 1e300
    with server.client() as client:
        with pytest.raises(JobFailed) as failed:
            client.run("image.generate", params, {**arrays, "right.matrix_world": far}, timeout=60)
        assert failed.value.code == "invalid_params"
        assert failed.value.message.startswith("arrays.right.matrix_world: has values above 1000000.0")
        assert client.run("image.generate", params, arrays, timeout=600).arrays["images"].shape == (1, SIZE, SIZE, 3)


def test_the_transfer_guide_by_default_is_the_one_whose_weights_are_here(served):
    # before: image.transfer's default guide was controlnet: with only the guidance module set up, Transfer
    # Pose's first click failed with missing_weights
    server, guidance = served
    params, arrays = request(steps=1)
    del params["prompt"]
    arrays["source.image"] = np.full((SIZE, SIZE, 3), 128, np.uint8)
    controlnets, away = guidance.parent / "controlnets", guidance.parent / "controlnets_away"
    controlnets.rename(away)
    try:
        with server.client() as client:
            assert client.run("image.transfer", params, arrays, timeout=600).data["guide"] == "attentionhand"
    finally:
        away.rename(controlnets)
    with server.client() as client:  # both here: the ControlNets whose names say their render (my_net failed it)
        ran = client.run("image.transfer", params, arrays, timeout=600).data
    assert ran["guide"] == "controlnet" and ran["controls"] == ["depth"]
    assert "left out the ControlNet my_net of image.controlnets: its name says no render" in ran["warning"]


def test_a_job_naming_no_controls_leaves_a_broken_controlnet_out_and_says_so(served):
    # before: the engine's status was ready (the depth ControlNet loads) with the broken one in its note, and every
    # job that named no controls took the broken one too and failed at its load
    server, guidance = served
    broken = guidance.parent / "controlnets" / "control_sd15_normal"
    shutil.copytree(guidance.parent / "controlnets" / "control_sd15_depth", broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "conditioning_channels": 4}))
    params, arrays = request(steps=1)
    try:
        with server.client() as client:
            ran = client.run("image.generate", {**params, "engine": "controlnet"}, arrays, timeout=600).data
            assert ran["controls"] == ["depth"], ran["controls"]
            assert (f"left out the ControlNet control_sd15_normal of image.controlnets, which would fail: "
                    f"{broken / 'config.json'}") in ran["warning"], ran["warning"]
            with pytest.raises(JobFailed) as named:  # named, it is refused, as before
                client.run("image.generate", {**params, "engine": "controlnet", "controls": ["control_sd15_normal"]},
                           arrays, timeout=600)
            assert "control_sd15_normal" in named.value.message
    finally:
        shutil.rmtree(broken)


# last: it deletes the guidance module the module's server uses
def test_missing_weights_name_the_setting(served):
    server, guidance = served
    shutil.rmtree(guidance)
    with server.client() as client:
        assert "image.guidance" in client.hello()["engines"]["attentionhand"]["reason"]
        params, arrays = request()
        with pytest.raises(JobFailed) as failed:
            client.run("image.generate", {**params, "engine": "attentionhand"}, arrays, timeout=60)
        assert failed.value.code == "missing_weights" and "image.guidance" in failed.value.message
        assert "HANDFORGE_IMAGE_GUIDANCE" in failed.value.hint
        # before: the default engine was attentionhand, and failed so with only ControlNets set up
        ran = client.run("image.generate", {**params, "steps": 1}, arrays, timeout=600)
        assert ran.data["engine"] == "controlnet" and ran.arrays["images"].shape == (1, SIZE, SIZE, 3)


def test_refine_hands_conditions_its_pass_on_the_local_view(tmp_path, monkeypatch):
    """The refine pass (AttentionHand's local branch) runs on the crop's own mesh image, not the global one again.
    In process, each pipeline call's control image kept: before this test, a refine pass on the global view
    passed (the job test checks only where the image changed)."""
    from handforge.engines.image import jobs as image_jobs
    from handforge.engines.image.pipeline import HandImagePipeline
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache

    sd = tiny_sd.build_sd(tmp_path / "sd")
    guidance = tiny_sd.build_controlnet(tmp_path / "guidance", sd, seed=1)
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    controls = []
    real = HandImagePipeline.__call__

    def watched(self, prompt, control_images, **kwargs):  # the real call, its control images kept
        controls.append([np.array(image) for image in control_images])
        return real(self, prompt, control_images, **kwargs)

    monkeypatch.setattr(HandImagePipeline, "__call__", watched)
    params, arrays = request(seed=3, steps=2, tas=False, refine_hands=True, refine_strength=0.5)
    valid = default_registry().kind("image.generate").schema.validate(params, arrays)
    result = image_jobs.generate(JobContext("j", "image.generate", lambda *a: None, models=ModelCache()), valid, arrays)
    assert result.data["refined_box"] is not None and len(controls) == 2
    (first,), (second,) = controls
    np.testing.assert_array_equal(first, result.arrays["control.mesh"])  # the global pass: the camera's view
    assert second.shape == first.shape and (second.sum(-1) > 0).mean() > (first.sum(-1) > 0).mean()  # hands fill the crop
