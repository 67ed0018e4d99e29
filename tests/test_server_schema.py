"""Request schemas: declarative, JSON-describable, and every rejection names its field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handforge.server import default_registry
from handforge.server.schema import ANY_ARRAY, ArraySpec, Boolean, Integer, ListOf, Number, Schema, String
from handforge_shared.protocol import ErrorCode, ProtocolError

SCHEMA = Schema(
    params={"steps": Integer(default=10, min=1, max=50), "strength": Number(min=0, max=1),
            "mode": String(default="fast", choices=("fast", "good")), "loop": Boolean(default=False),
            "seed": Integer(default=None, nullable=True),
            "sides": ListOf(default=["right"], item=String(choices=("left", "right")), max_items=2, unique=True)},
    arrays={"keys": ArraySpec(shape=("frames", 48), min=-10, max=10),
            "times": ArraySpec(shape=("frames",), dtypes=("int32", "int64"), finite=False),
            "mask": ArraySpec(shape=("frames",), dtypes=("bool",), required=False, requires=("times",))},
    dims={"frames": (2, 100)},
)


def _ok_arrays(frames=5):
    return {"keys": np.zeros((frames, 48), np.float32), "times": np.arange(frames, dtype=np.int32)}


def _rejected(params, arrays, field, code=ErrorCode.INVALID_PARAMS) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        SCHEMA.validate(params, arrays)
    assert info.value.code == code
    assert info.value.field == field and str(info.value).startswith(field), info.value
    return info.value


def test_valid_request_gets_defaults():
    params = SCHEMA.validate({"strength": 0.5, "sides": ["left", "right"]}, _ok_arrays())
    assert params == {"steps": 10, "strength": 0.5, "mode": "fast", "loop": False, "seed": None,
                      "sides": ["left", "right"]}


@pytest.mark.parametrize("params, field, needle", [
    ({}, "params.strength", "required"),
    ({"strength": "0.5"}, "params.strength", "number"),
    ({"strength": 1.5}, "params.strength", "between 0 and 1"),
    ({"strength": True}, "params.strength", "number"),
    ({"strength": 0.5, "steps": 2.0}, "params.steps", "integer"),
    ({"strength": 0.5, "steps": 0}, "params.steps", "between 1 and 50"),
    ({"strength": 0.5, "mode": "slow"}, "params.mode", "'fast', 'good'"),
    ({"strength": 0.5, "loop": 1}, "params.loop", "true or false"),
    ({"strength": 0.5, "sides": ["right", "right"]}, "params.sides", "repeat"),
    ({"strength": 0.5, "sides": ["up"]}, "params.sides[0]", "one of"),
    ({"strength": 0.5, "stepz": 3}, "params.stepz", "not a parameter"),
    ({"strength": 10 ** 400}, "params.strength", "finite number, got 10000000000000000000…(401 characters)"),
    ({"strength": 0.5, "steps": 10 ** 400}, "params.steps", "between 1 and 50, got 1000"),
])
def test_bad_params_are_named(params, field, needle):
    assert needle in str(_rejected(params, _ok_arrays(), field))


def test_text_with_half_a_surrogate_pair_is_refused_as_the_param():
    # JSON's "\ud800" escape decodes to a lone surrogate: image.generate's tokenizer failed on it as "internal"
    schema = Schema(params={"prompt": String(), "words": ListOf(item=String(), default=[])}, arrays={})
    assert schema.validate({"prompt": "a hand \U0001F91D"}, {})["prompt"] == "a hand \U0001F91D"  # a whole pair
    for params, field in (({"prompt": "a hand \ud800"}, "params.prompt"),
                          ({"prompt": "x", "words": ["\udfff"]}, "params.words[0]")):
        with pytest.raises(ProtocolError) as info:
            schema.validate(params, {})
        assert info.value.code == ErrorCode.INVALID_PARAMS and info.value.field == field
        assert "half of a UTF-16 surrogate pair" in str(info.value), info.value


def test_bad_arrays_are_named():
    good = {"strength": 0.5}
    nan = _ok_arrays()
    nan["keys"] = nan["keys"].copy()
    nan["keys"][3, 7] = np.nan
    assert "index [3, 7]" in str(_rejected(good, nan, "arrays.keys"))
    assert "dtype float64; send int32 or int64" in str(
        _rejected(good, {**_ok_arrays(), "times": np.arange(5.0)}, "arrays.times"))
    assert "shape (frames, 48), got (5, 47)" in str(
        _rejected(good, {**_ok_arrays(), "keys": np.zeros((5, 47))}, "arrays.keys"))
    assert "is 4 here but 5" in str(_rejected(good, {**_ok_arrays(), "times": np.arange(4, dtype=np.int32)},
                                              "arrays.times"))
    assert "between 2 and 100" in str(_rejected(good, _ok_arrays(frames=1), "arrays.keys"))
    assert "above 10" in str(_rejected(good, {**_ok_arrays(), "keys": np.full((5, 48), 11.0)}, "arrays.keys"))
    assert "is required" in str(_rejected(good, {"keys": _ok_arrays()["keys"]}, "arrays.times"))
    assert "not an input" in str(_rejected(good, {**_ok_arrays(), "extra": np.zeros(1)}, "arrays.extra"))
    mask_only = {"keys": _ok_arrays()["keys"], "mask": np.ones(5, bool)}
    _rejected(good, mask_only, "arrays.times")


def test_numbers_and_integers_at_their_bounds_are_accepted_just_past_them_refused():
    # min and max are inclusive: "between 0.0 and 1.0" takes 1.0 itself
    number, integer = Number(min=0.0, max=1.0), Integer(min=1, max=50)
    assert number.check(1.0, "p") == 1.0 and number.check(0.0, "p") == 0.0 and number.check(1, "p") == 1.0
    assert integer.check(50, "n") == 50 and integer.check(1, "n") == 1
    for value in (np.nextafter(1.0, 2.0), np.nextafter(0.0, -1.0)):
        with pytest.raises(ProtocolError, match=r"^p: must be between 0.0 and 1.0"):
            number.check(float(value), "p")
    for value in (51, 0):
        with pytest.raises(ProtocolError, match=r"^n: must be between 1 and 50"):
            integer.check(value, "n")
    assert SCHEMA.validate({"strength": 1.0, "steps": 50}, _ok_arrays())["strength"] == 1.0


def test_a_bound_is_met_in_the_arrays_own_precision():
    # before: float32(4π) (a hair above float64's 4π) was refused as "above 12.566370614359172 (largest 12.566371)"
    schema = Schema(arrays={"angle": ArraySpec(shape=(3,), min=-4 * np.pi, max=4 * np.pi)})
    for dtype in (np.float32, np.float64):
        schema.validate({}, {"angle": np.array([-4 * np.pi, 0.0, 4 * np.pi], dtype)})
        with pytest.raises(ProtocolError, match="above"):
            schema.validate({}, {"angle": np.array([0.0, 0.0, np.nextafter(dtype(4 * np.pi), dtype(20))], dtype)})


def test_size_limit_and_extra_arrays():
    schema = Schema(extra_arrays=ANY_ARRAY, max_bytes=100)
    schema.validate({}, {"anything": np.zeros(10, np.uint8), "more": np.full(2, np.nan)})  # finite not required
    with pytest.raises(ProtocolError) as info:
        schema.validate({}, {"big": np.zeros(101, np.uint8)})
    assert info.value.code == ErrorCode.TOO_LARGE


def test_schema_definitions_are_checked():
    with pytest.raises(ValueError, match="need bounds"):
        Schema(arrays={"x": ArraySpec(shape=("n",))})
    with pytest.raises(ValueError, match="unknown dtypes"):
        ArraySpec(dtypes=("float128",))


def test_every_builtin_kind_describes_itself_as_json():
    registry = default_registry()
    described = json.loads(json.dumps(registry.describe_kinds()))
    assert {"ping", "echo", "sleep", "sleep.gpu", "hand_model", "forward_hands"} <= set(described)
    fh = described["forward_hands"]
    assert fh["device"] == "gpu" and fh["arrays"]["right.hand_pose"]["shape"] == ["batch_right", 45]
    assert fh["dims"]["batch_right"] == [1, 4096]
    assert described["sleep"]["params"]["steps"] == {"type": "integer", "required": False, "doc": "number of steps",
                                                     "default": 10, "min": 1, "max": 100000}
    assert set(json.loads(json.dumps(registry.describe_engines()))) >= {"builtin", "hands"}


def test_engine_availability_follows_its_settings(tmp_path, monkeypatch):
    from handforge import config
    from handforge.server.registry import Engine

    config.register(config.Setting(key="testengine.weights", env="HANDFORGE_TEST_ENGINE_WEIGHTS",
                                   help="weights of a test engine"))
    engine = Engine("testengine", settings=("testengine.weights",))
    monkeypatch.delenv("HANDFORGE_TEST_ENGINE_WEIGHTS", raising=False)
    status = engine.status()
    assert not status.available and "testengine.weights is not set" in status.reason
    assert "HANDFORGE_TEST_ENGINE_WEIGHTS=<value>" in status.hint
    monkeypatch.setenv("HANDFORGE_TEST_ENGINE_WEIGHTS", str(tmp_path / "missing.safetensors"))
    assert "does not exist" in engine.status().reason
    (tmp_path / "missing.safetensors").write_bytes(b"")
    assert engine.status().available
    assert not Engine("broken", settings=("no.such",)).status().available


def test_every_job_bounds_a_hands_pose_arrays_alike():
    # before: forward_hands refused a 50 rad hand_pose (degrees sent for radians), image.generate,
    # image.transfer and export_renders took it (their bound was ±100 for every field)
    registry = default_registry()
    for kind, name in (("forward_hands", "right.hand_pose"), ("image.generate", "right.hand_pose"),
                       ("image.transfer", "right.hand_pose"), ("export_renders", "right.hand_pose")):
        spec = registry.kind(kind).schema.arrays[name]
        assert spec.max == pytest.approx(4 * np.pi) and spec.min == pytest.approx(-4 * np.pi), kind


def _refused(kind, params, arrays) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        kind.check(kind.schema.validate(params, arrays), arrays)
    assert info.value.code == ErrorCode.INVALID_PARAMS
    return info.value


def test_image_generate_refuses_a_matrix_world_whose_bottom_row_is_not_0_0_0_1():
    # before: a projective matrix_world (bottom row 0.5 0 0 1) was accepted for a rig and a Blender camera:
    # its last row was dropped unsaid
    from handforge.render.camera import look_at
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    kind = default_registry().kind("image.generate")
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    pose = pose_arrays({"right": pose_library.get("fist", side="right")})
    projective = np.eye(4)
    projective[3] = (0.5, 0.0, 0.0, 1.0)
    K = np.array([[150.0, 0, 32.0], [0, 150.0, 32.0], [0, 0, 1]])
    params = {"prompt": "hands", "width": 64, "height": 64}
    error = _refused(kind, params, {"camera.K": K, "camera.R": R, "camera.t": t, **pose,
                                    "right.matrix_world": projective})
    assert str(error).startswith("arrays.right.matrix_world: ") and "bottom row must be 0 0 0 1" in str(error)
    camera = np.eye(4)
    camera[:3, 3] = (-0.08, -0.35, 0.06)
    camera[3, 3] = 2.0  # a homogeneous scale
    blender = {"camera.matrix_world": camera, "camera.lens": np.array([35.0]), "camera.sensor": np.array([36.0, 24.0]),
               "camera.shift": np.zeros(2), **pose}
    error = _refused(kind, params, blender)
    assert str(error).startswith("arrays.camera.matrix_world: ") and "bottom row must be 0 0 0 1" in str(error)


def test_every_job_bounds_a_blender_cameras_settings_alike():
    # before: image.generate and image.transfer took any lens, sensor and shift (a 1e9 mm lens, a shift of
    # 1e9) while export_renders bounded them
    registry = default_registry()
    export = registry.kind("export_renders").schema.arrays
    for kind in ("image.generate", "image.transfer"):
        arrays = registry.kind(kind).schema.arrays
        for name in ("camera.matrix_world", "camera.lens", "camera.sensor", "camera.shift"):
            assert (arrays[name].min, arrays[name].max) == (export[name].min, export[name].max), (kind, name)
        camera = {"camera.matrix_world": np.eye(4), "camera.lens": np.array([35.0]),
                  "camera.sensor": np.array([36.0, 24.0]), "camera.shift": np.zeros(2)}
        for name, value in (("camera.lens", np.array([1e9])), ("camera.sensor", np.array([36.0, 1e9])),
                            ("camera.shift", np.array([1e9, 0.0]))):
            with pytest.raises(ProtocolError) as info:
                registry.kind(kind).schema.validate({"prompt": "hands"}, {**camera, name: value})
            assert info.value.code == ErrorCode.INVALID_PARAMS and str(info.value).startswith(f"arrays.{name}: ")


def _longest(param, name: str):
    """The value of ``param`` that takes most of a message header while its schema takes it: text at its
    max_length of characters beyond the BMP (12 bytes each, JSON-escaped) or, counted escaped, of quotes; lists at
    max_items of such items; numbers with the most digits."""
    from handforge.server.schema import JsonObject

    if isinstance(param, String):
        if param.choices:
            return max(param.choices, key=len)
        return '"' * (param.max_length // 2) if param.escaped else "\U0001F91D" * param.max_length
    if isinstance(param, ListOf):
        return [_longest(param.item, name)] * param.max_items
    if isinstance(param, Integer):
        return -(10 ** 18) if param.min is None or param.max is None else max(param.min, param.max, key=lambda v: len(str(v)))
    if isinstance(param, Number):
        return -1.2345678901234567e-300
    if isinstance(param, Boolean):
        return False
    assert isinstance(param, JsonObject), f"{name}: a param type this test does not know, {type(param).__name__}"
    return {}  # bounded by the header alone, as its doc says


def test_every_kinds_params_at_their_limits_fit_the_message_header():
    """What welcome.kinds promises a client (each string's max_length, each list's max_items) fits the 64 KiB
    header the request travels in: the image kinds' prompts counted characters, and two of 2,000 emoji each (24 KB
    JSON-escaped) with the transfer's source labels overflowed it, refused by the client as too_large, not by the
    schema naming the prompt."""
    from handforge_shared.protocol import DEFAULT_LIMITS, Message, MessageType, check_outgoing, encode

    for kind in default_registry().kinds():
        params = {name: _longest(param, f"{kind.name}.{name}") for name, param in kind.schema.params.items()}
        message = Message(MessageType.SUBMIT, id="0" * 32, job="0" * 32, kind=kind.name, params=params)
        check_outgoing(encode(message), DEFAULT_LIMITS, message)


def test_an_object_where_a_string_goes_is_said_short_with_how_to_send_it():
    # a script sent image.generate's result.data as image.transfer's source_labels: its 7 KB came back in the error
    schema = Schema(params={"labels": String()})
    with pytest.raises(ProtocolError) as refused:
        schema.validate({"labels": {"hands": {"right": {"keypoints": list(range(500))}}}}, {})
    assert refused.value.message.startswith("params.labels: must be a string, got {'hands': {'right': …(2427 characters)")
    assert len(refused.value.message) < 100 and refused.value.hint == "send it as JSON text: json.dumps(value)"


def test_a_string_at_its_max_length_is_accepted_one_past_it_refused():
    # (mutation testing: "len(value) >= max_length", a text of exactly the limit refused, went unnoticed)
    text = String(max_length=5)
    assert text.check("abcde", "t") == "abcde"
    with pytest.raises(ProtocolError, match=r"^t: is 6 characters long; the limit is 5"):
        text.check("abcdef", "t")


def test_an_escaped_strings_limit_counts_it_as_the_header_carries_it():
    # each '"' takes 2 characters JSON-escaped, a non-ASCII character 6: 3 quotes are 6 against a limit of 5 (mutation
    # testing: counting len(value), the characters as written, went unnoticed)
    text = String(max_length=5, escaped=True)
    assert text.check("ab\"c", "t") == "ab\"c"  # 5 escaped
    for value in ('"""', "é"):
        with pytest.raises(ProtocolError, match=r"^t: is 6 characters long as the message header carries it"):
            text.check(value, "t")


def test_an_optional_array_sent_without_the_one_it_requires_is_refused_naming_that_one():
    # (mutation testing: the requires check dropped went unnoticed; SCHEMA's mask requires times, which is required)
    schema = Schema(arrays={"a": ArraySpec(shape=(3,), required=False, requires=("b",)),
                            "b": ArraySpec(shape=(3,), required=False)})
    schema.validate({}, {"a": np.zeros(3), "b": np.zeros(3)})
    schema.validate({}, {"b": np.zeros(3)})
    with pytest.raises(ProtocolError) as info:
        schema.validate({}, {"a": np.zeros(3)})
    assert info.value.field == "arrays.b" and str(info.value).startswith("arrays.b: is required with arrays.a")


def test_arrays_of_exactly_max_bytes_are_accepted_one_byte_more_too_large():
    # (mutation testing: "total >= max_bytes", a request of exactly the limit refused, went unnoticed)
    schema = Schema(extra_arrays=ANY_ARRAY, max_bytes=100)
    schema.validate({}, {"a": np.zeros(60, np.uint8), "b": np.zeros(40, np.uint8)})
    with pytest.raises(ProtocolError) as info:
        schema.validate({}, {"a": np.zeros(60, np.uint8), "b": np.zeros(41, np.uint8)})
    assert info.value.code == ErrorCode.TOO_LARGE and "101 bytes" in str(info.value)
