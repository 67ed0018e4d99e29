"""``image.transfer`` end to end: a real server (subprocess) with tiny SD/ControlNet weights in the
diffusers layout and a real client: images with the target pose's labels, the source pose from a
HandForge image's labels, validated inputs (the server stays up), cancel between steps."""

from __future__ import annotations

import json
import re
import shutil
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from handforge.engines.checkpoints import save_model
from handforge.engines.transfer.jobs import ENGINES
from handforge.engines.transfer.model import TargetGenerator
from handforge.render.camera import look_at
from handforge_shared import pose_library
from handforge_shared.client import Cancelled, Error, JobFailed, Progress, pose_arrays

from tests.support import tiny_sd
from tests.support.cancelling import cancel_after_two_steps
from tests.support.server import running_server

REPO = Path(__file__).resolve().parents[1]
SIZE = tiny_sd.IMAGE_SIZE
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    sd = tiny_sd.build_sd(root / "sd")
    tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd, seed=2)
    torch.manual_seed(0)
    generator = save_model(TargetGenerator(cross_attention_dim=32, image_size=32, backbone_channels=(8, 16),
                                           feature_dim=16, num_layers=1, num_heads=2), root / "run" / "model")
    (root / "run" / "settings.json").write_text(json.dumps(trained_at(SIZE)))  # as `handforge train transfer`'s run
    env = {"HANDFORGE_SD_MODEL": str(sd), "HANDFORGE_CONTROLNETS": str(root / "controlnets"),
           "HANDFORGE_TRANSFER_TARGET_GENERATOR": str(generator),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as running:
        yield running


def trained_at(size: int) -> dict:
    """The settings.json a `handforge train transfer --size <size>` run records (the keys read here)."""
    return {"steps": 2, "batch_size": 1, "lr": 1e-4, "seed": 0, "model_class": "TargetGenerator",
            "data_options": {"size": size, "interhand": False, "sd": "sd"}}


def request(**params):
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    K = np.array([[150.0, 0, SIZE / 2], [0, 150.0, SIZE / 2], [0, 0, 1]])
    source = np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8)  # resized to the target's size
    arrays = {"camera.K": K, "camera.R": R, "camera.t": t, "source.image": source,
              **pose_arrays({"right": pose_library.get("point", side="right")})}
    return {"width": SIZE, "height": SIZE, "steps": 2, **params}, arrays


def labels_of(pose_name: str, camera: dict | None = None) -> str:
    return json.dumps({"hands": {"right": {"params_world": pose_library.get(pose_name, side="right").to_dict()}},
                       "camera": camera or {}})


def test_transfer_returns_images_with_the_target_poses_labels(server):
    with server.client() as client:
        engines = client.hello()["engines"]
        assert engines["transfer"]["available"], engines["transfer"]
        messages = []
        params, arrays = request(batch=2, seed=4, source_labels=labels_of("fist"))
        result = client.run("image.transfer", params, arrays, timeout=600,
                            on_progress=lambda e: messages.append(e.message))
        images = result.arrays["images"]
        assert images.shape == (2, SIZE, SIZE, 3) and images.dtype == np.uint8
        assert "step 2/2" in messages
        assert result.data["engine"] == "reference" and result.data["controls"] == ["depth"]
        uv = np.array(result.data["hands"]["right"]["keypoints_2d"])
        assert uv.shape == (21, 2) and np.all((uv > 0) & (uv < SIZE))
        target = pose_library.get("point", side="right").hand_pose
        assert np.allclose(result.data["hands"]["right"]["params_world"]["hand_pose"], target.ravel(), atol=1e-6)
        fist = pose_library.get("fist", side="right").hand_pose
        assert np.allclose(result.data["source_hands"]["right"]["hand_pose"], fist.ravel(), atol=1e-6)
        # the labels an image carries as the add-on keeps them, to send back as source_labels: well within the limit
        from handforge.engines.transfer.jobs import SOURCE_LABELS_MAX
        from handforge_shared.protocol import escaped_length

        kept = json.dumps({key: result.data.get(key)
                           for key in ("hands", "camera", "hand_model", "hand_model_licence")})
        assert escaped_length(kept) < SOURCE_LABELS_MAX / 4, len(kept)  # (one hand here; two hands' are 11-14 KB)
        again = client.run("image.transfer", params, arrays, timeout=600)
        assert np.array_equal(again.arrays["images"], images)  # seeded; the shared pipeline was restored
        plain = client.run("image.transfer", {**params, "reference_scale": 0.0}, arrays, timeout=600)
        assert plain.data["reference_scale"] == 0.0


def test_an_images_labels_say_its_hand_model_and_another_ones_pose_is_refused(server):
    # before: the labels had no hand model, so a MANO image's pose was read as the open hand's
    with server.client() as client:
        params, arrays = request(source_labels=labels_of("fist"))
        result = client.run("image.transfer", params, arrays, timeout=600)
        assert result.data["hand_model"] == "open" and result.data["hand_model_licence"].startswith("CC0-1.0")
        # its labels, kept as the add-on keeps them, are a source of the same hand model
        labels = {k: result.data[k] for k in ("hands", "camera", "hand_model", "hand_model_licence")}
        check = client.run("image.transfer", {**params, "source_labels": json.dumps(labels), "steps": 1}, arrays,
                           timeout=600)
        assert check.data["source_hands"]["right"] == result.data["hands"]["right"]["params_world"]
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", {**params, "source_labels": json.dumps({**labels, "hand_model": "mano"})},
                       arrays, timeout=60)
        assert failed.value.code == "invalid_params" and "'mano' hand model" in failed.value.message
        assert "set hand_model to 'mano'" in failed.value.hint


@pytest.mark.parametrize("hand_model", [["x"], 3, "gorilla"])
def test_labels_whose_hand_model_is_no_hand_models_name_say_so(hand_model):
    # before: "the source's pose is of the ['x'] hand model ...", hinted "set hand_model to ['x']"
    from handforge.engines.transfer.jobs import source_pose
    from handforge_shared.protocol import ProtocolError

    labels = json.dumps({**json.loads(labels_of("fist")), "hand_model": hand_model})
    with pytest.raises(ProtocolError) as failed:
        source_pose({"source_labels": labels, "hand_model": "open"}, {})
    assert failed.value.field == "params.source_labels"
    assert failed.value.message == f"params.source_labels: its hand_model is {hand_model!r}: it must be a string " \
                                   "naming a hand model: open or mano" and "set hand_model" not in failed.value.hint


def test_labels_without_a_hand_or_with_a_camera_that_is_no_object_say_so():
    from handforge.engines.transfer.jobs import source_camera, source_pose
    from handforge_shared.protocol import ProtocolError

    labels = json.loads(labels_of("fist"))
    with pytest.raises(ProtocolError, match="its hands are all null: the source image has no hand"):
        source_pose({"source_labels": json.dumps({**labels, "hands": {"right": None}}), "hand_model": "open"}, {})
    # (it said "argument of type 'int' is not iterable")
    with pytest.raises(ProtocolError, match="its camera: a camera is an object with K, R, t, width and height, got int 5"):
        source_camera({"source_labels": json.dumps({**labels, "camera": 5})})


def test_ihpt_engine_samples_from_the_target_generator(server):
    with server.client() as client:
        assert client.hello()["engines"]["ihpt"]["available"]
        params, arrays = request(engine="ihpt", seed=1, source_labels=labels_of("fist"))
        messages = []
        result = client.run("image.transfer", params, arrays, timeout=600, on_progress=lambda e: messages.append(e.message))
        assert result.arrays["images"].shape == (1, SIZE, SIZE, 3) and "step 2/2" in messages
        assert result.data["engine"] == "ihpt" and set(result.data["hands"]) == {"right"}
        other = client.run("image.transfer", {**params, "source_labels": labels_of("spread")}, arrays, timeout=600)
        assert result.data["source_hands"] != other.data["source_hands"]
        assert "warning" not in result.data and "warning" not in other.data
        # a left-hand source for a right-hand target: unrelated hands paired, unsaid
        left = json.dumps({"hands": {"left": {"params_world": pose_library.get("fist", side="left").to_dict()}},
                           "camera": {}})
        mixed = client.run("image.transfer", {**params, "source_labels": left}, arrays, timeout=600)
        assert "the source shows the left hand(s), the rigs pose the right" in mixed.data["warning"], mixed.data
        with pytest.raises(JobFailed) as failed:  # IHPT's pose encoder needs the source pose
            client.run("image.transfer", {**params, "source_labels": ""}, arrays, timeout=60)
        assert failed.value.code == "invalid_params" and "source image's pose" in failed.value.message


def test_ihpt_says_which_of_the_reference_engines_settings_it_did_not_read(server):
    # before: prompt, guide and reference_scale were accepted for ihpt and did nothing, unsaid; its result
    # returned control.mesh without the reference engine's "controls"
    with server.client() as client:
        params, arrays = request(engine="ihpt", steps=1, source_labels=labels_of("fist"))
        # what Blender's Transfer Pose always sends, at its defaults: nothing to say
        plain = client.run("image.transfer", {**params, "prompt": "two hands", "guide": "auto", "reference_scale": 1.0,
                                              "controls": [], "control_scale": 1.0}, arrays, timeout=600)
        assert "warning" not in plain.data, plain.data
        assert plain.data["controls"] == ["mesh"] and plain.arrays["control.mesh"].shape == (SIZE, SIZE, 3)
        said = client.run("image.transfer", {**params, "prompt": "a red glove", "guide": "controlnet",
                                             "reference_scale": 0.25}, arrays, timeout=600).data["warning"]
        assert "prompt 'a red glove', guide 'controlnet', reference_scale 0.25 had no effect: the ihpt engine reads " \
               "no prompt, guide, reference_scale, controls, control_scale" in said, said
        assert np.array_equal(plain.arrays["images"], client.run("image.transfer", {**params, "prompt": "a red glove"},
                                                                 arrays, timeout=600).arrays["images"])  # (unread)


def test_ihpt_says_the_background_settings_it_did_not_read_without_a_background_prompt(server):
    # before: negative_prompt and guidance_scale were taken and did nothing unless a background_prompt drew a new
    # background (the target generator samples without classifier-free guidance), unsaid
    with server.client() as client:
        params, arrays = request(engine="ihpt", steps=1, source_labels=labels_of("fist"))
        plain = client.run("image.transfer", params, arrays, timeout=600)
        assert "warning" not in plain.data, plain.data
        said = client.run("image.transfer", {**params, "negative_prompt": "blurry", "guidance_scale": 3.0}, arrays,
                          timeout=600)
        assert "negative_prompt 'blurry', guidance_scale 3.0 had no effect: the ihpt engine reads negative_prompt " \
               "and guidance_scale only to draw the new background a background_prompt asks for" \
               in said.data["warning"], said.data
        assert np.array_equal(plain.arrays["images"], said.arrays["images"])  # (unread indeed)


def test_ihpt_at_another_size_than_its_target_generator_was_trained_at_is_said(server):
    # before: a target generator trained at --size 128 ran at 64 × 64, unsaid
    with server.client() as client:
        params, arrays = request(engine="ihpt", steps=1, source_labels=labels_of("fist"), width=64, height=64)
        warning = client.run("image.transfer", params, arrays, timeout=600).data["warning"]
        assert f"the target generator was trained on {SIZE}×{SIZE} images (--size {SIZE}), this image is 64×64" \
            in warning, warning


def test_the_training_size_is_read_from_the_run_the_model_was_saved_in(tmp_path):
    from handforge.engines.transfer.jobs import trained_size

    model = tmp_path / "run" / "model"
    model.mkdir(parents=True)
    assert trained_size(model) is None  # no settings.json: a model/ copied out of its run
    (tmp_path / "run" / "settings.json").write_text(json.dumps(trained_at(256)))
    assert trained_size(model) == 256
    (tmp_path / "run" / "settings.json").write_text(json.dumps({**trained_at(256), "model_class": "GuidanceModule"}))
    assert trained_size(model) is None  # another model's run
    (tmp_path / "run" / "settings.json").write_text("{not json")
    assert trained_size(model) is None


def test_the_training_size_is_read_from_the_models_own_config_out_of_its_run(tmp_path):
    # before: a model/ copied out of its run lost the size (read from the run's settings.json alone), and the
    # warning at another size could not be given; `handforge train transfer` now records it in its config.json
    from handforge.engines.transfer.jobs import trained_size

    copied = save_model(TargetGenerator(cross_attention_dim=32, image_size=32, backbone_channels=(8, 16),
                                        feature_dim=16, num_layers=1, num_heads=2, trained_size=256), tmp_path / "tg")
    assert json.loads((copied / "config.json").read_text())["trained_size"] == 256
    assert trained_size(copied) == 256
    config_file = copied / "config.json"
    for unusable in (None, True, "256", 0):  # (a model saved before it was recorded holds null)
        config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "trained_size": unusable}))
        assert trained_size(copied) is None, unusable


def test_the_reference_engines_settings_ihpt_says_it_ignores_are_at_the_schemas_defaults():
    from handforge.engines.transfer.jobs import BACKGROUND_ONLY, REFERENCE_ONLY
    from handforge.server.builtin_jobs import default_registry

    schema = default_registry().kind("image.transfer").schema
    assert {name: schema.params[name].default for name in REFERENCE_ONLY} == REFERENCE_ONLY
    assert {name: schema.params[name].default for name in BACKGROUND_ONLY} == BACKGROUND_ONLY


def test_prompts_longer_than_the_text_encoder_reads_are_said(server):
    # before: only image.generate's prompt was measured; a background_prompt or negative_prompt past the
    # encoder's 75 tokens lost its end unsaid (ihpt's background's negative_prompt too)
    params, arrays = request(seed=2, negative_prompt="blurry " * 90)
    camera = {"K": arrays["camera.K"].tolist(), "R": arrays["camera.R"].tolist(), "t": arrays["camera.t"].tolist(),
              "width": SIZE, "height": SIZE}
    arrays["source.image"] = np.zeros((SIZE, SIZE, 3), np.uint8)
    with server.client() as client:
        for engine in ("reference", "ihpt"):
            warning = client.run("image.transfer", {**params, "engine": engine, "source_labels": labels_of("fist", camera),
                                                    "background_prompt": "a wooden table " * 30}, arrays,
                                 timeout=600).data["warning"]
            assert re.search("the background_prompt is [0-9]+ tokens, the text encoder reads 75: from '.*' on it is "
                             "ignored", warning), warning
            assert re.search("the negative_prompt is [0-9]+ tokens, the text encoder reads 75", warning), warning
            assert warning.count("the negative_prompt is") == 1, warning  # (the reference engine reads it twice)
            assert "had no effect" not in warning, warning  # (ihpt's background read the negative_prompt)
        # ihpt reads the negative_prompt only when it draws a background (before: cut short there unsaid); without
        # one it is not measured, it is said to have had no effect
        warning = client.run("image.transfer", {**params, "engine": "ihpt", "source_labels": labels_of("fist")},
                             arrays, timeout=600).data.get("warning", "")
        assert "the negative_prompt is" not in warning and "negative_prompt 'blurry " in warning, warning


def test_background_prompt_recomposites_the_source_through_its_mesh_image(server):
    from handforge.engines.transfer.compositing import hand_mask

    with server.client() as client:
        params, arrays = request(seed=2)
        camera = {"K": arrays["camera.K"].tolist(), "R": arrays["camera.R"].tolist(), "t": arrays["camera.t"].tolist(),
                  "width": SIZE, "height": SIZE}
        source = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        arrays["source.image"] = source
        messages, fractions = [], []
        for engine in ("reference", "ihpt"):
            result = client.run("image.transfer", {**params, "engine": engine, "background_prompt": "a wooden table",
                                                   "steps": 6,
                                                   "source_labels": labels_of("fist", camera)}, arrays, timeout=600,
                                on_progress=lambda e: (messages.append(e.message), fractions.append(e.fraction)))
            new, mask = result.arrays["source"], hand_mask(result.arrays["source.mesh"])
            assert 0.02 < mask.mean() < 0.9 and "background" in messages
            # the background's steps fill the first half of the bar (it stayed at 0 through them)
            drawn = [f for m, f in zip(messages, fractions) if m.startswith("background: step")]
            transferred = [f for m, f in zip(messages, fractions) if m.startswith("step ")]
            assert all(0 < f <= 0.5 for f in drawn) and transferred and all(f > 0.5 for f in transferred)
            assert fractions == sorted(fractions), list(zip(messages, fractions))  # (step messages closer than 50 ms apart are merged)
            messages.clear()
            fractions.clear()
            assert np.array_equal(new[mask], source[mask])  # the source's hands, pixel for pixel
            assert (new[~mask] != source[~mask]).any(axis=-1).mean() > 0.9  # a new background around them
        assert "warning" not in result.data, result.data
        # a source camera that sees none of its hands: the background covered the whole source, unsaid
        away = client.run("image.transfer", {**params, "background_prompt": "a table", "steps": 1,
                                             "source_labels": labels_of("fist", {**camera, "t": [0.0, 0.0, -5.0]})},
                          arrays, timeout=600)
        assert not away.arrays["source.mesh"].any()
        assert "the source's labels place no hand in their camera's view" in away.data["warning"], away.data
        with pytest.raises(JobFailed, match="its labels' camera sees"):
            client.run("image.transfer", {**params, "background_prompt": "a table",
                                          "source_labels": labels_of("fist", {**camera, "width": 64})}, arrays,
                       timeout=60)
        with pytest.raises(JobFailed, match="params.source_labels: its camera") as failed:  # int(inf) overflowed
            client.run("image.transfer", {**params, "background_prompt": "a table",
                                          "source_labels": labels_of("fist", {**camera, "width": float("inf")})},
                       arrays, timeout=60)
        assert failed.value.code == "invalid_params"
        with pytest.raises(JobFailed, match="needs the source's pose and camera"):
            client.run("image.transfer", {**params, "background_prompt": "a table", "source_labels": labels_of("fist")},
                       arrays, timeout=60)
        # cancel while the background is drawn: at its next step (it ran all its steps first)
        handle = client.submit("image.transfer", {**params, "steps": 200, "background_prompt": "a wooden table",
                                                  "source_labels": labels_of("fist", camera)}, arrays)
        drawing = False
        for _ in range(1200):
            drawing = any(isinstance(e, Progress) and e.message.startswith("background: step") for e in client.poll(0.05))
            if drawing or handle.done:
                break
        assert drawing, handle.outcome
        asked = time.monotonic()
        handle.cancel()
        assert isinstance(handle.wait(120), Cancelled) and time.monotonic() - asked < 10


@pytest.mark.parametrize("change, field", [
    ({"source_labels": "{not json"}, "params.source_labels"),
    ({"source_labels": json.dumps({"hands": {"middle": {"params_world": {}}}})}, "params.source_labels"),
    ({"guide": "attentionhand"}, "image.guidance"),
    ({"source_labels": "[" * 30000 + "]" * 30000}, "params.source_labels"),  # deeper than Python's recursion
])
def test_bad_inputs_are_refused_with_the_field_and_the_server_stays_up(server, change, field):
    with server.client() as client:
        params, arrays = request(**change)
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", params, arrays, timeout=60)
        assert field in failed.value.message
        assert client.hello()["engines"]["transfer"]["available"]


def test_a_projective_rig_matrix_world_is_refused_as_image_generate_refuses_it(server):
    # before: a rig's matrix_world whose bottom row is not 0 0 0 1 was accepted, its last row dropped unsaid
    projective = np.eye(4)
    projective[3, 1] = 0.5
    with server.client() as client:
        params, arrays = request()
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", params, {**arrays, "right.matrix_world": projective}, timeout=60)
        assert failed.value.code == "invalid_params"
        assert failed.value.message.startswith("arrays.right.matrix_world: ")
        assert "bottom row must be 0 0 0 1" in failed.value.message


def test_source_image_must_be_rgb_uint8(server):
    with server.client() as client:
        params, arrays = request()
        for bad in (arrays["source.image"].astype(np.float32), arrays["source.image"][..., :1],
                    arrays["source.image"][..., :2]):
            with pytest.raises(JobFailed) as failed:
                client.run("image.transfer", params, {**arrays, "source.image": bad}, timeout=60)
            assert failed.value.code == "invalid_params" and "source.image" in failed.value.message
        both = {**arrays, **{"source." + k: v for k, v in pose_arrays({"right": pose_library.get("fist")}).items()}}
        with pytest.raises(JobFailed, match="given twice"):
            client.run("image.transfer", {**params, "source_labels": labels_of("fist")}, both, timeout=60)


@pytest.mark.parametrize("shape, says, hint", [
    ((3, 96, 80), "its shape (3, 96, 80) looks channels-first (C, H, W)", "np.transpose(image, (1, 2, 0))"),
    ((4, 96, 80), "its shape (4, 96, 80) looks channels-first (C, H, W)", "np.transpose(image, (1, 2, 0))"),
    ((96, 80), "its shape (96, 80) is a grey image", "send it as RGB"),
    ((96, 80, 1), "its shape (96, 80, 1) is a grey image", "send it as RGB"),
    ((96, 80, 2), "got shape (96, 80, 2)", ""),
])
def test_a_source_image_of_another_layout_says_what_an_image_must_be(shape, says, hint):
    # before: (3, H, W) was "dimension source_height (axis 0) must be between 16 and 4096, got 3", a grey
    # (H, W) image "must have shape (source_height, source_width, source_channels), got (96, 80)"
    from handforge.server.builtin_jobs import default_registry
    from handforge_shared.protocol import ProtocolError

    params, arrays = request()
    with pytest.raises(ProtocolError) as failed:
        default_registry().kind("image.transfer").schema.validate(
            params, {**arrays, "source.image": np.zeros(shape, np.uint8)})
    assert failed.value.message.startswith("arrays.source.image: must be an image, (H, W, 3) uint8 RGB, or (H, W, 4) "
                                           "with alpha, top row first"), failed.value.message
    assert says in failed.value.message and hint in (failed.value.hint or "")


def test_a_transparent_source_is_the_source_over_white(server):
    # before: an RGBA source was refused (the add-on dropped its alpha, so a cut-out's hidden colours,
    # often black, went as the source's background)
    with server.client() as client:
        params, arrays = request(steps=1)
        rgb = arrays["source.image"]
        alpha = np.zeros(rgb.shape[:2] + (1,), np.uint8)
        alpha[20:60, 10:50] = 255
        alpha[:, 70:] = 128
        rgba = np.concatenate([rgb, alpha], axis=2)
        over_white = np.round(rgb * (alpha / 255.0) + 255 * (1 - alpha / 255.0)).astype(np.uint8)
        got = client.run("image.transfer", params, {**arrays, "source.image": rgba}, timeout=600)
        expected = client.run("image.transfer", params, {**arrays, "source.image": over_white}, timeout=600)
        assert np.array_equal(got.arrays["images"], expected.arrays["images"])
        dropped = client.run("image.transfer", params, arrays, timeout=600)
        assert not np.array_equal(got.arrays["images"], dropped.arrays["images"])


@pytest.mark.parametrize("engine", ["reference", "ihpt"])
def test_cancel_between_steps(server, engine):
    with server.client() as client:
        params, arrays = request(steps=200, **({"engine": "ihpt", "source_labels": labels_of("fist")}
                                               if engine == "ihpt" else {}))
        cancel_after_two_steps(client, "image.transfer", params, arrays, steps=200)


def test_ihpt_refuses_what_it_cannot_use_before_loading_anything(server):
    # before: a camera R that is no rotation was accepted and failed as "internal" after SD had loaded,
    # and cpu_offload was silently ignored
    with server.client() as client:
        params, arrays = request(engine="ihpt", source_labels=labels_of("fist"))
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", params, {**arrays, "camera.R": np.eye(3) * 2.0}, timeout=60)
        assert failed.value.code == "invalid_params" and "rotation" in failed.value.message
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", {**params, "cpu_offload": True}, arrays, timeout=60)
        assert failed.value.code == "invalid_params" and "cpu_offload" in failed.value.message
        with pytest.raises(JobFailed) as failed:  # this job's words: guide, not image.generate's engine
            client.run("image.transfer", {**params, "engine": "reference", "guide": "attentionhand",
                                          "controls": ["control_sd15_depth"]}, arrays, timeout=60)
        assert "set guide to 'controlnet'" in failed.value.hint and "engine" not in failed.value.hint
        with pytest.raises(JobFailed) as failed:  # the guide that is not configured names the one that is
            client.run("image.transfer", {**params, "engine": "reference", "guide": "attentionhand"}, arrays,
                       timeout=60)
        assert failed.value.code == "missing_weights" and "set guide to 'controlnet', which is ready" in \
            failed.value.hint


def test_cpu_offload_on_a_backend_without_a_cuda_gpu_is_refused_before_the_job_is_queued(server):
    # before: the reference engine's job was accepted, then refused when it ran, after its wait in the queue
    with server.client() as client:
        assert client.hello()["compute_devices"] == ["cpu"]  # (waits until the backend knows its devices)
        params, arrays = request(cpu_offload=True, source_labels=labels_of("fist"))
        handle = client.submit("image.transfer", params, arrays)
        outcome = handle.wait(60)
    assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
    assert outcome.message == "params.cpu_offload: needs a CUDA GPU; this backend runs image.transfer jobs on cpu"
    assert handle.position is None  # never accepted


def test_a_target_generator_setting_that_is_no_checkpoint_is_missing_weights(tmp_path, monkeypatch):
    # before: "internal: CheckpointError ... the backend log has the traceback"
    from handforge.engines.transfer import jobs
    from handforge.server.jobs import JobContext, JobError

    monkeypatch.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(tmp_path))  # a run folder, not its model/
    ctx = JobContext("j", "image.transfer", lambda fraction, message, previews: None)
    with pytest.raises(JobError) as failed:
        jobs._sample_ihpt(ctx, {}, {}, None, {}, {}, None, None)
    assert failed.value.code == "missing_weights" and "transfer.target_generator" in failed.value.hint


def test_a_target_generator_of_nan_weights_is_refused_at_submit_as_its_job_refuses_it(tmp_path, monkeypatch):
    """A diverged training run's target generator: the ihpt engine's status read its config and weights' header
    only, so it was available and its requests accepted; every job then failed as missing_weights on its load."""
    from handforge.engines.transfer import jobs
    from handforge.server.jobs import JobContext, JobError
    from handforge_shared.protocol import ProtocolError

    torch.manual_seed(0)
    net = TargetGenerator(cross_attention_dim=32, image_size=32, backbone_channels=(8, 16), feature_dim=16,
                          num_layers=1, num_heads=2)
    with torch.no_grad():
        net.feature_proj.weight[0, 0] = float("nan")
    monkeypatch.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(save_model(net, tmp_path / "model")))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(tmp_path))  # (set: the engine's status reads no SD weights)
    ctx = JobContext("j", "image.transfer", lambda fraction, message, previews: None)
    with pytest.raises(JobError) as by_job:
        jobs._sample_ihpt(ctx, {}, {}, None, {}, {}, None, None)
    assert "not finite (NaN or infinity) in feature_proj.weight" in by_job.value.message
    status = jobs.IHPT.status()
    assert not status.available and status.reason == by_job.value.message and status.hint == by_job.value.hint
    params = {"engine": "ihpt", "background_prompt": "", "cpu_offload": False, "hand_model": "open",
              "source_labels": labels_of("fist")}
    with pytest.raises(ProtocolError) as at_submit:
        jobs._check(params, {})
    assert at_submit.value.code == "missing_weights" and by_job.value.message in at_submit.value.message


def test_a_target_generator_of_another_sd_width_is_refused_at_submit_as_its_job_refuses_it(tmp_path, monkeypatch):
    """Trained on another SD model (its context 48 wide, this UNet attends 32): the ihpt engine was available and
    its requests accepted; each job refused it once SD had loaded. Now its status and submit check say so."""
    from handforge.engines.transfer import jobs
    from handforge.engines.transfer.model import check_fits
    from handforge.engines.image.loading import WeightsError
    from handforge_shared.protocol import ProtocolError

    torch.manual_seed(0)
    net = TargetGenerator(cross_attention_dim=48, image_size=32, backbone_channels=(8, 16), feature_dim=16,
                          num_layers=1, num_heads=2)
    folder = save_model(net, tmp_path / "model")
    sd = tmp_path / "sd"
    (sd / "unet").mkdir(parents=True)  # the status reads the UNet's config.json only, not its weights
    (sd / "unet" / "config.json").write_text(json.dumps(tiny_sd.unet_config()))
    monkeypatch.setenv("HANDFORGE_TRANSFER_TARGET_GENERATOR", str(folder))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    unet = type("Unet", (), {"config": type("Config", (), tiny_sd.unet_config())})
    with pytest.raises(WeightsError) as by_job:  # what the job's load says
        check_fits(net, folder, unet, sd)
    status = jobs.IHPT.status()
    assert not status.available and status.reason == str(by_job.value), status
    assert status.hint == "set image.sd_model to the SD model it was trained on, or transfer.target_generator to " \
        "one trained on this one"
    params = {"engine": "ihpt", "background_prompt": "", "cpu_offload": False, "hand_model": "open",
              "source_labels": labels_of("fist")}
    with pytest.raises(ProtocolError) as at_submit:
        jobs._check(params, {})
    assert at_submit.value.code == "missing_weights" and str(by_job.value) in at_submit.value.message
    (sd / "unet" / "config.json").write_text(json.dumps({**tiny_sd.unet_config(), "cross_attention_dim": 48}))
    assert jobs.IHPT.status().available
    # an inpainting model's UNet (9 input channels, its VAE's latents 4): ready before, each job refusing it
    (sd / "unet" / "config.json").write_text(json.dumps({**tiny_sd.unet_config(), "cross_attention_dim": 48,
                                                         "in_channels": 9}))
    (sd / "vae").mkdir()
    (sd / "vae" / "config.json").write_text(json.dumps({"latent_channels": 4}))
    status = jobs.IHPT.status()
    assert not status.available and "is an inpainting or other non-text-to-image UNet (in_channels 9" in status.reason
    assert status.reason.startswith(f"image.sd_model = {sd}: ") and status.hint.startswith("point image.sd_model at")


@pytest.mark.parametrize("engine", ENGINES)
def test_source_labels_are_checked_like_pose_arrays_before_the_job_runs(server, engine):
    # before: a source pose of 1e30 radians was sampled from, and for ihpt a labels' camera that is no
    # camera failed as "internal: ProtocolError" after SD had loaded
    with server.client() as client:
        params, arrays = request(engine=engine)
        labels = json.loads(labels_of("fist"))
        labels["hands"]["right"]["params_world"]["hand_pose"] = [1e30] * 45
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", {**params, "source_labels": json.dumps(labels)}, arrays, timeout=60)
        assert failed.value.code == "invalid_params" and "params.source_labels: right hand_pose" in failed.value.message
        no_camera = {**json.loads(labels_of("fist")), "camera": [1, 2]}
        with pytest.raises(JobFailed) as failed:
            client.run("image.transfer", {**params, "source_labels": json.dumps(no_camera)}, arrays, timeout=60)
        assert failed.value.code == "invalid_params" and "params.source_labels: its camera" in failed.value.message


def test_a_model_that_is_no_controlnet_beside_the_controlnets_is_passed_over(server):
    # before: a T2I-Adapter kept in image.controlnets was taken for a ControlNet ("depth" in its name), and
    # every request using all the ControlNets (controls left empty) failed with missing_weights
    adapter = Path(server.env["HANDFORGE_CONTROLNETS"]) / "t2iadapter_depth_sd15v2"
    adapter.mkdir()
    (adapter / "config.json").write_text(json.dumps({"_class_name": "T2IAdapter", "in_channels": 3}))
    try:
        with server.client() as client:
            params, arrays = request(seed=1, steps=1)
            assert client.run("image.transfer", params, arrays, timeout=120).data["controls"] == ["depth"]
            with pytest.raises(JobFailed) as failed:  # named: said what it is
                client.run("image.transfer", {**params, "controls": [adapter.name]}, arrays, timeout=60)
            assert failed.value.code == "invalid_params" and "holds a model of another class (T2IAdapter, not ControlNetModel)" in \
                failed.value.message
    finally:
        shutil.rmtree(adapter)


def test_a_camera_that_sees_no_hand_is_said(server):
    # before: the transfer came back with no hand re-posed in it, no word said
    params, arrays = request(seed=1, steps=1)
    with server.client() as client:
        result = client.run("image.transfer", params, {**arrays, "camera.t": np.array([0.0, 0.0, -5.0])}, timeout=600)
        assert "no hand is in the camera's view" in result.data["warning"]
        assert "warning" not in client.run("image.transfer", params, arrays, timeout=600).data


def test_a_prompt_longer_than_the_text_encoder_reads_is_said(server):
    params, arrays = request(seed=1, steps=1, prompt="two hands " * 60)
    with server.client() as client:
        assert "the text encoder reads 75" in client.run("image.transfer", params, arrays, timeout=600).data["warning"]


def test_labels_without_a_hands_pose_name_the_hand():
    # before: "not HandForge labels (KeyError: 'params_world')", no hand named
    from handforge.engines.transfer.jobs import source_pose
    from handforge_shared.protocol import ProtocolError

    labels = json.loads(labels_of("fist"))
    side = next(iter(labels["hands"]))
    del labels["hands"][side]["params_world"]
    with pytest.raises(ProtocolError) as failed:
        source_pose({"source_labels": json.dumps(labels), "hand_model": "open"}, {})
    assert failed.value.field == "params.source_labels"
    assert f"hands.{side} has no params_world" in failed.value.message
    with pytest.raises(ProtocolError) as failed:  # (it read "NestedTooDeeply: nested too deeply: ...")
        source_pose({"source_labels": "[" * 100_000, "hand_model": "open"}, {})
    assert "not HandForge labels (nested too deeply: lists" in failed.value.message, failed.value.message


@pytest.mark.parametrize("field, value, says", [
    ("transl", [True, 0.0, 0.0], "hands.right.params_world: transl[0] is true, not a number"),
    ("hand_pose", [0.0] * 44 + [False], "hands.right.params_world: hand_pose[44] is false, not a number"),
    ("camera.t", [0.0, True, -0.4], "its camera: t[1] is true, not a number"),
    ("camera.R", [[True, 0, 0], [0, 1, 0], [0, 0, 1]], "its camera: R[0][0] is true, not a number")])
def test_a_true_or_false_where_labels_hold_numbers_is_refused_naming_the_field(field, value, says):
    # before: JSON true among numbers was the number 1 (numpy makes [true, 0, 0] the integers [1, 0, 0]): a pose
    # 1 m off, a camera of another rotation, transferred without a word
    from handforge.engines.transfer.jobs import source_camera, source_pose
    from handforge_shared.protocol import ProtocolError

    camera = {"K": [[150.0, 0, 32], [0, 150.0, 32], [0, 0, 1]], "R": np.eye(3).tolist(), "t": [0.0, 0.0, 0.4],
              "width": 64, "height": 64}
    labels = json.loads(labels_of("fist", camera))
    if field.startswith("camera."):
        labels["camera"][field.removeprefix("camera.")] = value
    else:
        labels["hands"]["right"]["params_world"][field] = value
    params = {"source_labels": json.dumps(labels), "hand_model": "open"}
    with pytest.raises(ProtocolError) as failed:
        source_pose(params, {})
        source_camera(params)
    assert failed.value.field == "params.source_labels" and says in failed.value.message, failed.value.message


def two_hand_labels() -> str:
    """A HandForge image's labels for two hands as the add-on keeps them (the image job's conditioning and labels,
    rendered for real): the text Transfer Pose sends back as source_labels."""
    from dataclasses import replace

    from handforge.engines.image.conditioning import condition
    from handforge.engines.image.jobs import hand_model_labels
    from handforge.hands.registry import load_hand_model
    from handforge.render.camera import Camera

    left = pose_library.get("point", side="left")
    hands = {"left": replace(left, transl=np.asarray(left.transl) + np.array([0.12, 0.0, 0.0]).reshape(
        np.shape(left.transl))), "right": pose_library.get("fist", side="right")}
    R, t = look_at([0.06, -0.45, 0.07], [0.06, 0.0, 0.0])
    camera = Camera(np.array([[563.2, 0, 256], [0, 563.2, 256], [0, 0, 1]]), R, t, 512, 512)
    view = condition(load_hand_model("open"), hands, camera).global_view
    assert set(view.hands) == {"left", "right"} and all(h["bbox"] for h in view.hands.values())  # both in view
    return json.dumps({"hands": view.hands, "camera": camera.to_dict(), **hand_model_labels("open")})


def test_source_labels_the_schema_takes_fit_the_message_header_they_travel_in():
    """source_labels' max_length was 200,000 characters, the header that carries them 64 KiB: welcome promised what
    no message could carry, and labels of 70,000 characters failed as a header of too many bytes, no field named.
    Then 32,768 characters, counted as written: JSON whose quotes take 2 bytes each in the header overflowed it
    within that length, refused by the client as too_large. The limit now counts the text JSON-escaped, as the
    header carries it: what it takes fits with every other param at its longest, real labels well within it, and
    what is longer is refused naming it."""
    from handforge.engines.transfer.jobs import SOURCE_LABELS_MAX
    from handforge.server.builtin_jobs import default_registry
    from handforge_shared.protocol import DEFAULT_LIMITS, Message, MessageType, ProtocolError, check_outgoing, encode
    from handforge_shared.protocol import escaped_length

    schema = default_registry().kind("image.transfer").schema
    spec = schema.describe()["params"]["source_labels"]
    assert spec["max_length"] == SOURCE_LABELS_MAX and spec["escaped"] is True
    params, arrays = request()
    real = two_hand_labels()
    assert 10_000 < escaped_length(real) < 18_000 and escaped_length(real) - len(real) < 200  # (some 100 quotes)
    # at the limit, quote-heavy: the real labels with a list of quotes ('"\\"", ': 10 bytes escaped for 6 characters)
    at_limit = json.dumps({**json.loads(real), "notes": ['"'] * ((SOURCE_LABELS_MAX - escaped_length(real)) // 10 - 2)})
    at_limit = at_limit[:-1] + " " * (SOURCE_LABELS_MAX - escaped_length(at_limit)) + "}"
    assert escaped_length(at_limit) == SOURCE_LABELS_MAX and len(at_limit) < 0.8 * SOURCE_LABELS_MAX
    for labels in (real, at_limit):
        assert schema.validate({**params, "source_labels": labels}, arrays)["source_labels"] == labels
        longest = {**params, **{name: "x" * schema.params[name].max_length
                                for name in ("prompt", "negative_prompt", "background_prompt")},
                   "controls": ["x" * 200] * 8, "source_labels": labels}
        message = Message(MessageType.SUBMIT, id="1", job="j", kind="image.transfer", params=longest, arrays=arrays)
        check_outgoing(encode(message), DEFAULT_LIMITS, message)
    # within max_length as written, longer escaped: these two do not fit the header even with the other params at
    # their defaults (before: taken by the schema, then refused by the client as a too_large header)
    quotes = json.dumps({"hands": {}, "note": '"' * ((SOURCE_LABELS_MAX - 30) // 2)})
    accented = json.dumps({"hands": {}, "note": "é" * (SOURCE_LABELS_MAX - 30)}, ensure_ascii=False)
    for labels in (quotes, accented):
        assert len(labels) <= SOURCE_LABELS_MAX
        message = Message(MessageType.SUBMIT, id="1", job="j", kind="image.transfer",
                          params={**params, "source_labels": labels}, arrays=arrays)
        with pytest.raises(ProtocolError, match="params.source_labels is") as overflow:
            check_outgoing(encode(message), DEFAULT_LIMITS, message)
        assert overflow.value.code == "too_large"
    over = json.dumps({**json.loads(real), "notes": ['"'] * ((SOURCE_LABELS_MAX - len(real)) // 6 - 2)})
    for labels in (quotes, accented, over, "0" * (SOURCE_LABELS_MAX + 1)):
        assert len(labels) <= SOURCE_LABELS_MAX < escaped_length(labels) or labels[0] == "0"
        with pytest.raises(ProtocolError) as refused:
            schema.validate({**params, "source_labels": labels}, arrays)
        assert refused.value.field == "params.source_labels"
        assert (f"is {escaped_length(labels)} characters long as the message header carries it, JSON-escaped "
                f"({len(labels)} as written" in refused.value.message), refused.value.message
        assert refused.value.message.endswith(f"the limit is {SOURCE_LABELS_MAX}"), refused.value.message


def test_labels_holding_a_batch_of_poses_per_hand_are_refused_naming_the_hand():
    # before: taken; the ihpt engine then failed inside the job as internal ("axis-angles must have shape (..., 3),
    # got (6,)") and the reference engine reported a batch of source poses (found by tests/test_job_params_fuzz.py)
    from handforge.engines.transfer.jobs import source_pose
    from handforge_shared.protocol import ProtocolError

    labels = json.loads(labels_of("fist"))
    pose = labels["hands"]["right"]["params_world"]
    labels["hands"]["right"]["params_world"] = {name: [values, values] for name, values in pose.items()}
    with pytest.raises(ProtocolError) as failed:
        source_pose({"source_labels": json.dumps(labels), "hand_model": "open"}, {})
    assert failed.value.field == "params.source_labels"
    assert "hands.right.params_world: holds a batch of poses (global_orient of shape (2, 3))" in failed.value.message


def test_the_ihpt_engines_sd_parts_are_loaded_again_for_another_or_an_edited_sd_config(tmp_path, monkeypatch):
    """The ihpt engine's SD parts were cached by the SD model's path and files alone: a single-file model's
    ``image.sd_config`` folder, another one or one edited, went unseen until the server restarted."""
    from handforge.engines.transfer.jobs import _sd_parts
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache

    from tests.support.single_file_sd import write_single_file

    sd = tiny_sd.build_sd(tmp_path / "sd")
    file = write_single_file(sd, tmp_path / "one.safetensors")
    for name in ("a", "same_as_a"):
        shutil.copytree(sd, tmp_path / name)
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(file))
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(tmp_path / "a"))
    cache = ModelCache()

    def parts() -> dict:
        return _sd_parts(JobContext("j", "image.transfer", lambda fraction, message, previews: None, models=cache),
                         {"dtype": "float32"})

    first = parts()
    assert parts() is first and first["scheduler"].config.beta_schedule != "linear"
    scheduler = tmp_path / "a" / "scheduler" / "scheduler_config.json"  # edited in place: another schedule
    (tmp_path / "new.json").write_text(json.dumps({**json.loads(scheduler.read_text()), "beta_schedule": "linear"}))
    os.replace(tmp_path / "new.json", scheduler)
    edited = parts()
    assert edited["scheduler"].config.beta_schedule == "linear"
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(tmp_path / "same_as_a"))  # another folder, with A's first files
    assert parts()["scheduler"].config.beta_schedule == first["scheduler"].config.beta_schedule


def test_a_source_pose_sent_as_arrays_of_one_hand_is_that_hand_alone():
    """source.<side>.* arrays: the hands sent, no other (the ihpt engine's pose vector marks each hand present or
    not, and the job warns when the source's hands are not the rigs'), betas and transl zeros when left out.
    Before this test, a missing hand made up of zeros passed every test here."""
    from handforge.engines.transfer.jobs import source_pose

    fist = pose_library.get("fist", side="right")
    arrays = {"source.right.global_orient": np.asarray(fist.global_orient)[None],
              "source.right.hand_pose": np.asarray(fist.hand_pose)[None]}
    hands = source_pose({"source_labels": "", "hand_model": "open"}, arrays)
    assert list(hands) == ["right"]
    np.testing.assert_array_equal(hands["right"].global_orient, np.ravel(fist.global_orient))
    np.testing.assert_array_equal(hands["right"].hand_pose, np.ravel(fist.hand_pose))
    assert not np.any(hands["right"].betas) and not np.any(hands["right"].transl)
    assert source_pose({"source_labels": "", "hand_model": "open"}, {}) == {}
