"""image.generate's input checks at their bounds, as the server runs them before queueing a job (the schema, then
``check_request``; ``refusal``): each limit taken at its value and refused one past it, naming the field. Mutation
testing of handforge/engines/image/jobs.py found these unpinned (each test names the mutation it catches).

No weights are set up here, and no model is loaded: ``check_request`` reads the engine's status after the request's
own checks, so a request those take is refused for its missing weights alone; that is what "taken" means below."""

from __future__ import annotations

import numpy as np
import pytest

from handforge.render.camera import look_at
from handforge_shared import pose_library
from handforge_shared.client import pose_arrays
from handforge_shared.poses import POSE_FIELDS
from handforge_shared.protocol import ErrorCode

from tests.support.job_requests import refusal, refused

KIND = "image.generate"
SIZE = 64


def request(**params) -> tuple[dict, dict]:
    """A request every input check takes: a camera that sees the right hand's rig."""
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    K = np.array([[75.0, 0, SIZE / 2], [0, 75.0, SIZE / 2], [0, 0, 1]])
    arrays = {"camera.K": K, "camera.R": R, "camera.t": t,
              **pose_arrays({"right": pose_library.get("point", side="right")})}
    return {"prompt": "two hands", "width": SIZE, "height": SIZE, "steps": 20, **params}, arrays


def taken(params: dict, arrays: dict) -> None:
    error = refusal(KIND, params, arrays)
    assert error is None or error.code == ErrorCode.MISSING_WEIGHTS, f"{error.code}: {error}"


@pytest.mark.parametrize("width, height, field", [(68, 64, "params.width"), (64, 68, "params.height")])
def test_a_side_not_a_multiple_of_8_is_refused_naming_that_side(width, height, field):
    # (mutation testing: the height unchecked, or the field always the width, went unnoticed)
    params, arrays = request(width=width, height=height)
    error = refused(KIND, params, arrays, field=field)
    assert error.message == f"{field}: {width}×{height}: both sides must be multiples of 8"


def test_a_request_without_a_hand_is_refused():
    # (mutation testing: the check dropped went unnoticed)
    params, arrays = request()
    error = refused(KIND, params, {k: v for k, v in arrays.items() if k.startswith("camera.")},
                    field="arrays.right.global_orient")
    assert "no hand given" in str(error)


def test_intrinsics_beyond_any_lens_are_refused():
    """camera.K with a focal length of 1e300 px was taken: the float32 render overflowed, and the image came without
    hands, unsaid (the fuzzing of 2026-12-07)."""
    params, arrays = request()
    for row, column in ((0, 0), (0, 1), (1, 2)):
        K = arrays["camera.K"].copy()
        K[row, column] = 1e300
        error = refused(KIND, params, {**arrays, "camera.K": K}, field="arrays.camera.K")
        assert "1e+07" in str(error) or "10000000" in str(error), str(error)
    K = arrays["camera.K"].copy()
    K[0, 0] = K[1, 1] = 1e6  # a long lens: taken
    taken(params, {**arrays, "camera.K": K})


def test_tas_steps_up_to_the_steps_are_taken_one_more_refused():
    # (mutation testing: 'tas_steps > steps + 1' went unnoticed)
    params, arrays = request(tas_steps=20)
    taken(params, arrays)
    error = refused(KIND, {**params, "tas_steps": 21}, arrays, field="params.tas_steps")
    assert error.message == "params.tas_steps: 21 is more than the 20 steps"


def test_tas_strength_0_is_taken_with_tas_off_and_refused_with_it_on():
    # (mutation testing: the check dropped went unnoticed here; tests/test_image_models.py calls it bare)
    params, arrays = request(tas_strength=0.0)
    taken({**params, "tas": False}, arrays)
    error = refused(KIND, params, arrays, field="params.tas_strength")
    assert "0 with tas on" in str(error)


def test_controls_with_the_attentionhand_engine_are_refused():
    # (mutation testing: the check dropped went unnoticed)
    params, arrays = request(engine="attentionhand", controls=["control_sd15_depth"])
    error = refused(KIND, params, arrays, field="params.controls")
    assert error.message == "params.controls: controls choose ControlNets of the controlnet engine"
    assert error.hint == "leave them out for attentionhand, or set engine to 'controlnet'"


@pytest.mark.parametrize("name, low, high", [("steps", 1, 200), ("batch", 1, 16), ("width", 64, 2048),
                                             ("height", 64, 2048), ("tas_steps", 0, 200)])
def test_each_whole_number_is_taken_at_its_bounds_and_refused_past_them(name, low, high):
    # (mutation testing: steps from 0, batch to 17, width to 2056 went unnoticed; sizes step by 8)
    step = 8 if name in ("width", "height") else 1
    params, arrays = request(steps=200)
    for value in (low, high):
        taken({**params, name: value}, arrays)
    for value in (low - step, high + step):
        error = refused(KIND, {**params, name: value}, arrays, field=f"params.{name}")
        assert f"must be between {low} and {high}, got {value}" in str(error)


@pytest.mark.parametrize("name, low, high", [("guidance_scale", 1.0, 30.0), ("control_scale", 0.0, 3.0),
                                             ("tas_strength", 0.0, 200.0), ("refine_strength", 0.05, 1.0)])
def test_each_number_is_taken_at_its_bounds_and_refused_past_them(name, low, high):
    # (mutation testing: guidance_scale from 0, refine_strength from 0, control_scale to 4, tas_strength from -1
    # went unnoticed)
    params, arrays = request(tas=False)
    for value in (low, high):
        taken({**params, name: value}, arrays)
    for value in (float(np.nextafter(low, -np.inf)), float(np.nextafter(high, np.inf))):
        error = refused(KIND, {**params, name: value}, arrays, field=f"params.{name}")
        assert f"must be between {low} and {high}, got {value!r}" in str(error)


def test_pixel_aspect_is_two_numbers():
    # (mutation testing: one number taken went unnoticed; the camera then failed unpacking it)
    params, arrays = request()
    error = refused(KIND, {**params, "pixel_aspect": [1.0]}, arrays, field="params.pixel_aspect")
    assert "must have between 2 and 2 items, got 1" in str(error)


def test_up_to_8_controls_are_taken():
    # (mutation testing: 9 taken went unnoticed)
    params, arrays = request(engine="controlnet")
    taken({**params, "controls": [f"c{i}" for i in range(8)]}, arrays)
    error = refused(KIND, {**params, "controls": [f"c{i}" for i in range(9)]}, arrays, field="params.controls")
    assert "must have between 0 and 8 items, got 9" in str(error)


@pytest.mark.parametrize("name", list(POSE_FIELDS))
def test_a_batch_of_poses_per_hand_is_refused(name):
    # one image shows one pose per hand (mutation testing: shape (None, n) went unnoticed)
    params, arrays = request()
    key = f"right.{name}"
    size = POSE_FIELDS[name]
    batch = {**arrays, key: np.zeros((2, size), np.float32)}
    error = refused(KIND, params, batch, field=f"arrays.{key}")
    assert f"must have shape (1, {size}), got (2, {size})" in str(error)


def test_a_mano_request_without_the_mano_files_is_refused_for_them_before_the_weights(monkeypatch, tmp_path):
    # (mutation testing: require_hand_model dropped went unnoticed; the weights' refusal came instead)
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path))
    params, arrays = request(hand_model="mano")
    error = refusal(KIND, params, arrays)
    assert error is not None and error.code == ErrorCode.MISSING_WEIGHTS, error
    assert str(error).startswith(f"hand model 'mano' is not available here: {tmp_path} holds neither MANO_RIGHT "
                                 "nor MANO_LEFT"), str(error)
    assert error.field == "params.hand_model"  # (it was "": the fuzzing of 2026-12-07)
    assert "MANO" not in str(refusal(KIND, *request()))  # the open hand: the weights' refusal alone
