"""image.transfer's input checks at their bounds, as the server runs them before queueing a job (the schema, then the
kind's check; ``refusal``): each limit taken at its value and refused one past it, naming the field. Mutation
testing of handforge/engines/transfer/jobs.py found these unpinned (each test names the mutation it catches).

No weights are set up here, and no model is loaded: the kind's check reads the engines' status after the schema's
and the source's checks (before the target's, image.generate's own), so a request those checks take is refused for
its missing weights alone; that is what "taken" means below."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handforge.engines.hands.jobs import POSE_LIMITS
from handforge.render.camera import look_at
from handforge_shared import pose_library
from handforge_shared.client import pose_arrays
from handforge_shared.poses import POSE_FIELDS
from handforge_shared.protocol import ErrorCode, ProtocolError

from tests.support.job_requests import refusal, refused

KIND = "image.transfer"
SIZE = 64


def request(**params) -> tuple[dict, dict]:
    """A request every input check takes: a camera that sees the right hand's rig, a (96, 80) RGB source."""
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    K = np.array([[75.0, 0, SIZE / 2], [0, 75.0, SIZE / 2], [0, 0, 1]])
    source = np.random.default_rng(0).integers(0, 256, (96, 80, 3), dtype=np.uint8)
    arrays = {"camera.K": K, "camera.R": R, "camera.t": t, "source.image": source,
              **pose_arrays({"right": pose_library.get("point", side="right")})}
    return {"width": SIZE, "height": SIZE, "steps": 2, **params}, arrays


def taken(params: dict, arrays: dict) -> None:
    error = refusal(KIND, params, arrays)
    assert error is None or error.code == ErrorCode.MISSING_WEIGHTS, f"{error.code}: {error}"


def source_arrays(side: str = "right", **values) -> dict[str, np.ndarray]:
    """A source pose as source.<side>.* arrays (float64, (1, n)): the fist, with ``values`` for some fields."""
    pose = pose_library.get("fist", side=side)
    return {f"source.{side}.{name}": np.asarray(values.get(name, np.ravel(getattr(pose, name))), np.float64)
            .reshape(1, size) for name, size in POSE_FIELDS.items()}


def camera_dict(width: int, height: int) -> dict:
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    return {"K": [[75.0, 0, width / 2], [0, 75.0, height / 2], [0, 0, 1]], "R": R.tolist(), "t": t.tolist(),
            "width": width, "height": height}


def labels(camera: dict | None = None, **pose_values) -> str:
    """A HandForge image's labels of the right hand's fist (``pose_values`` replacing some fields), with ``camera``."""
    pose = {**pose_library.get("fist", side="right").to_dict(), **pose_values}
    return json.dumps({"hands": {"right": {"params_world": pose}}, "camera": camera or {}})


# ------------------------------------------------------------------------------------- the schema
@pytest.mark.parametrize("shape", [(16, 80, 3), (96, 16, 3), (4096, 80, 3), (96, 4096, 3)])
def test_a_source_image_side_of_16_to_4096_pixels_is_taken(shape):
    # (mutation testing: SOURCE_SIZE (17, 4096) or (16, 4095) went unnoticed)
    params, arrays = request()
    taken(params, {**arrays, "source.image": np.zeros(shape, np.uint8)})


@pytest.mark.parametrize("shape, says", [
    ((15, 80, 3), "dimension source_height (axis 0) must be between 16 and 4096, got 15"),
    ((96, 15, 3), "dimension source_width (axis 1) must be between 16 and 4096, got 15"),
    ((4097, 80, 3), "dimension source_height (axis 0) must be between 16 and 4096, got 4097"),
    ((96, 4097, 3), "dimension source_width (axis 1) must be between 16 and 4096, got 4097"),
])
def test_a_source_image_side_past_16_to_4096_pixels_is_refused(shape, says):
    # (mutation testing: SOURCE_SIZE (15, 4096) or (16, 4097) went unnoticed)
    params, arrays = request()
    error = refused(KIND, params, {**arrays, "source.image": np.zeros(shape, np.uint8)}, field="arrays.source.image")
    assert says in str(error)


def test_an_rgba_source_is_taken():
    # (straight alpha: the job composites it over white)
    params, arrays = request()
    rgba = np.dstack([arrays["source.image"], np.full((96, 80), 255, np.uint8)])
    taken(params, {**arrays, "source.image": rgba})


@pytest.mark.parametrize("name", list(POSE_FIELDS))
def test_a_source_pose_array_is_taken_at_its_limits_and_refused_past_them(name):
    # bounded as the rigs' pose arrays are (mutation testing: the source arrays' min or max dropped went unnoticed)
    params, arrays = request()
    limit, size = POSE_LIMITS[name], POSE_FIELDS[name]
    for value in (limit, -limit):
        taken(params, {**arrays, **source_arrays(**{name: np.full(size, value)})})
    for value, says in ((np.nextafter(limit, np.inf), f"has values above {limit}"),
                        (np.nextafter(-limit, -np.inf), f"has values below {-limit}")):
        error = refused(KIND, params, {**arrays, **source_arrays(**{name: np.full(size, value)})},
                        field=f"arrays.source.right.{name}")
        assert says in str(error)


@pytest.mark.parametrize("sent, missing", [
    ("global_orient", "hand_pose"), ("hand_pose", "global_orient"), ("betas", "global_orient"),
    ("transl", "global_orient")])
def test_a_source_hand_without_its_global_orient_and_hand_pose_is_refused_naming_the_one_missing(sent, missing):
    # (mutation testing: the source arrays' requires dropped went unnoticed: the hand was taken with the missing
    # rotations as zeros, a flat hand, or not taken at all)
    params, arrays = request()
    one = {f"source.left.{sent}": source_arrays("left")[f"source.left.{sent}"]}
    error = refused(KIND, params, {**arrays, **one}, field=f"arrays.source.left.{missing}")
    assert error.message == f"arrays.source.left.{missing}: is required with arrays.source.left.{sent}"


def test_a_batch_of_source_poses_per_hand_is_refused():
    # one source image shows one pose per hand (mutation testing: shape (None, n) went unnoticed; the job then
    # failed inside as internal)
    params, arrays = request()
    batch = {name: np.repeat(array, 2, axis=0) for name, array in source_arrays().items()}
    error = refused(KIND, params, {**arrays, **batch}, field="arrays.source.right.global_orient")
    assert "must have shape (1, 3), got (2, 3)" in str(error)


def test_reference_scale_is_taken_from_0_to_1():
    # (mutation testing: max 2.0 went unnoticed)
    params, arrays = request()
    for scale in (0.0, 1.0):
        taken({**params, "reference_scale": scale}, arrays)
    for scale in (np.nextafter(1.0, 2.0), -np.nextafter(0.0, 1.0)):
        error = refused(KIND, {**params, "reference_scale": float(scale)}, arrays, field="params.reference_scale")
        assert f"must be between 0.0 and 1.0, got {float(scale)!r}" in str(error)


def test_an_engine_other_than_reference_or_ihpt_is_refused():
    # (mutation testing: the engine's choices dropped went unnoticed: 'sdxl' ran the reference engine unsaid)
    params, arrays = request(engine="sdxl")
    error = refused(KIND, params, arrays, field="params.engine")
    assert "must be one of 'reference', 'ihpt', got 'sdxl'" in str(error)


@pytest.mark.parametrize("guide", ["auto", "controlnet", "attentionhand"])
def test_every_guide_is_taken_auto_as_blenders_transfer_pose_sends_it(guide):
    # (mutation testing: 'auto' left out of the guide's choices went unnoticed; the add-on sends it)
    params, arrays = request(guide=guide)
    taken(params, arrays)


@pytest.mark.parametrize("name, value", [("tas", True), ("tas_strength", 1.0), ("tas_steps", 1),
                                         ("refine_hands", True), ("refine_strength", 0.5)])
def test_image_generates_settings_the_transfer_does_not_read_are_refused(name, value):
    # taken, they would have no effect, unsaid (mutation testing: 'tas' left out of NOT_TAKEN went unnoticed)
    params, arrays = request(**{name: value})
    error = refused(KIND, params, arrays, field=f"params.{name}")
    assert "is not a parameter of this job kind" in str(error)


# ------------------------------------------------------------------------------------- the source's labels
def test_source_labels_of_a_hand_neither_left_nor_right_are_refused():
    # (mutation testing: the sides check dropped went unnoticed; a 'middle' hand was then posed as no rig's)
    from handforge.engines.transfer.jobs import source_pose

    pose = pose_library.get("fist", side="right").to_dict()
    text = json.dumps({"hands": {"right": {"params_world": pose}, "middle": {"params_world": pose}}, "camera": {}})
    with pytest.raises(ProtocolError) as info:
        source_pose({"source_labels": text, "hand_model": "open"}, {})
    assert info.value.field == "params.source_labels"
    assert "hands ['middle', 'right']: expected 'left' and/or 'right'" in str(info.value)


def test_source_labels_at_the_pose_limits_are_taken_past_them_refused():
    # bounded as the source.<side>.* arrays are, inclusive (mutation testing: 'worst >= limit' went unnoticed)
    from handforge.engines.transfer.jobs import source_pose

    for betas, ok in ((POSE_LIMITS["betas"], True), (np.nextafter(POSE_LIMITS["betas"], np.inf), False)):
        text = labels(betas=[float(betas)] + [0.0] * 9)
        if ok:
            assert set(source_pose({"source_labels": text, "hand_model": "open"}, {})) == {"right"}
        else:
            with pytest.raises(ProtocolError, match=r"^params.source_labels: right betas has a value of magnitude"):
                source_pose({"source_labels": text, "hand_model": "open"}, {})


def test_labels_without_a_hand_model_are_taken_as_the_jobs():
    # labels written before the hand model was recorded (mutation testing: taken as 'open', which refused a
    # 'mano' job's own image, went unnoticed)
    from handforge.engines.transfer.jobs import source_pose

    for hand_model in ("open", "mano"):
        assert set(source_pose({"source_labels": labels(), "hand_model": hand_model}, {})) == {"right"}


@pytest.mark.parametrize("name", list(POSE_FIELDS))
def test_labels_pose_is_taken_at_minus_its_limit_and_refused_past_it(name):
    # bounded in magnitude, negative values as positive ones (mutation testing: the abs() dropped went unnoticed)
    params, arrays = request()
    limit, size = POSE_LIMITS[name], POSE_FIELDS[name]
    taken({**params, "source_labels": labels(**{name: [-limit] * size})}, arrays)
    past = float(np.nextafter(-limit, -np.inf))
    error = refused(KIND, {**params, "source_labels": labels(**{name: [past] * size})}, arrays,
                    field="params.source_labels")
    # in full digits, as the arrays' bounds are said (before: "magnitude 20, more than 20", ':g' rounding both)
    assert f"right {name} has a value of magnitude {abs(past)!r}, more than {limit!r}" in str(error)
    assert error.hint == "send the labels of a HandForge image as they were written"


def test_a_labels_camera_of_a_size_beyond_any_float_is_refused_naming_the_labels():
    # (mutation testing: OverflowError no longer caught went unnoticed; it was an internal error)
    params, arrays = request()
    camera = json.dumps(camera_dict(64, 64)).replace('"width": 64', '"width": 1' + "0" * 400)
    text = labels().replace('"camera": {}', f'"camera": {camera}')
    error = refused(KIND, {**params, "source_labels": text}, arrays, field="params.source_labels")
    assert error.message.startswith("params.source_labels: its camera: image size must be whole numbers of pixels")


# ------------------------------------------------------------------------------------- engines' needs
def test_a_new_background_compares_the_source_image_with_its_labels_camera_width_by_width():
    # a 80 wide, 96 high source and its camera (mutation testing: the sizes compared as (height, width) went
    # unnoticed: a transposed camera was taken, and the square case the other tests use could not tell)
    params, arrays = request(background_prompt="a table")
    taken({**params, "source_labels": labels(camera_dict(80, 96))}, arrays)
    error = refused(KIND, {**params, "source_labels": labels(camera_dict(96, 80))}, arrays,
                    field="arrays.source.image")
    assert error.message == "arrays.source.image: 80×96 pixels, its labels' camera sees 96×80"
    assert error.hint == "send the image the labels belong to, unresized"


def test_the_ihpt_engine_without_the_source_pose_is_refused_before_its_weights_are_read():
    # (mutation testing: the check dropped went unnoticed: with its weights here, the job failed inside)
    params, arrays = request(engine="ihpt")
    error = refused(KIND, params, arrays, field="params.source_labels")
    assert error.message == "params.source_labels: the ihpt engine needs the source image's pose"
    assert error.hint == "send source_labels (a HandForge image's labels) or source.<side>.* arrays"
    taken({**params, "source_labels": labels()}, arrays)
    taken(params, {**arrays, **source_arrays()})
