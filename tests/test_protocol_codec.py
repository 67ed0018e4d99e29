"""Wire protocol v1: messages round-trip exactly, and every malformed message is refused with a typed code."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from handforge_shared import protocol as P
from handforge_shared.protocol import ErrorCode, Message, MessageType, ProtocolError


def _frames(header: dict, *buffers: bytes) -> list[bytes]:
    return [json.dumps(header).encode(), *buffers]


def _refused(frames, code: str, **kwargs) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        P.decode(frames, **kwargs)
    assert info.value.code == code, info.value
    return info.value


@pytest.mark.parametrize("dtype", list(P.DTYPES))
def test_every_wire_dtype_round_trips_bit_exact(dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((3, 4, 2)) * 100).astype(P.DTYPES[dtype]) if dtype != "bool" else rng.random((3, 4, 2)) > 0.5
    msg = Message(MessageType.RESULT, id="m1", job="j1", data={"x": [1, "two", None]}, arrays={"a": arr})
    out = P.decode(P.encode(msg), accept=P.SERVER_TYPES, local_role="client")
    assert out.type == "result" and out.id == "m1" and out.job == "j1" and out.data == {"x": [1, "two", None]}
    assert out.arrays["a"].dtype == P.DTYPES[dtype] and out.arrays["a"].shape == (3, 4, 2)
    assert out.arrays["a"].tobytes() == np.asarray(arr, dtype=P.DTYPES[dtype]).tobytes()
    assert not out.arrays["a"].flags.writeable  # views of the received frames, not copies


def test_shapes_order_and_byte_order_are_kept():
    arrays = {"scalar": np.array(2.5), "empty": np.zeros((0, 3), np.float32),
              "big_endian": np.arange(6, dtype=">f8").reshape(2, 3), "strided": np.arange(12.0).reshape(3, 4).T,
              "z.last": np.ones(2, np.int32)}
    out = P.decode(P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="echo", arrays=arrays)))
    assert list(out.arrays) == list(arrays)
    for name, arr in arrays.items():
        assert out.arrays[name].shape == arr.shape
        np.testing.assert_array_equal(out.arrays[name], arr)
    assert out.arrays["big_endian"].dtype == np.dtype("<f8")


def test_encode_refuses_what_the_wire_cannot_carry():
    with pytest.raises(ProtocolError, match="int16"):
        P.encode(Message(MessageType.RESULT, id="1", job="j", arrays={"a": np.zeros(2, np.int16)}))
    with pytest.raises(ProtocolError, match="not plain JSON"):
        P.encode(Message(MessageType.RESULT, id="1", job="j", data={"x": float("nan")}))
    with pytest.raises(ProtocolError, match="not plain JSON"):
        P.encode(Message(MessageType.RESULT, id="1", job="j", data={"x": np.zeros(2)}))
    nested: list = []
    for _ in range(100_000):  # deeper than Python's recursion limit: a RecursionError escaped Client.submit
        nested = [nested]
    with pytest.raises(ProtocolError, match="nested too deeply"):
        P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="k", params={"x": nested}))
    with pytest.raises(ProtocolError, match="name"):
        P.encode(Message(MessageType.RESULT, id="1", job="j", arrays={"bad name": np.zeros(2)}))
    # before: json wrote 1 as "1" unsaid, so {1: 2, "1": 3} became a duplicate key the backend refused, and the
    # client took the job for lost ("backend_lost"); None and True became "null" and "true"
    for params, field, key in (({"data": {1: 2, "1": 3}}, "params.data", 1), ({"a": [{"b": {None: 2}}]}, "params.a[0].b", None),
                               ({"x": {True: 1}}, "params.x", True)):
        with pytest.raises(ProtocolError, match=rf"^{re.escape(field)}: the key {key!r} is not a string") as keyed:
            P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="k", params=params))
        assert keyed.value.field == field
    # before: a masked array went without its mask, the masked places' values sent as if they held
    masked = np.ma.masked_array(np.arange(3.0), mask=[False, True, False])
    with pytest.raises(ProtocolError, match=r"^arrays.x is a masked array with masked values") as dropped:
        P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="k", arrays={"x": masked}))
    assert dropped.value.field == "arrays.x"
    unmasked = P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="k",
                                arrays={"x": np.ma.masked_array(np.arange(3.0))}))  # nothing masked: its values
    assert bytes(unmasked[1]) == np.arange(3.0).tobytes()
    # before: numpy's bare ValueError ("inhomogeneous shape") escaped Client.submit, naming no array
    with pytest.raises(ProtocolError, match=r"^arrays.betas is no array numpy can convert \(ValueError") as ragged:
        P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="k", arrays={"betas": [[1.0, 2.0], [3.0]]}))
    assert ragged.value.field == "arrays.betas" and ragged.value.code == ErrorCode.BAD_MESSAGE
    # before: "$" matched before a trailing newline, so "a\n" was sent and arrived as a name
    with pytest.raises(ProtocolError, match="name"):
        P.encode(Message(MessageType.RESULT, id="1", job="j", arrays={"a\n": np.zeros(2)}))
    header = {"v": 1, "type": "submit", "id": "1", "job": "j", "kind": "echo",
              "arrays": [{"name": "a\n", "dtype": "uint8", "shape": [1]}]}
    with pytest.raises(ProtocolError, match="invalid name"):
        P.decode(_frames(header, b"\x00"))


_HEADER_TEXTS = ['{"v":1,"type":"ping","id":"1"}', ' \n{"v": 1, "x": [1.5, -0.0, 2e-300, "\\u00e9"]}\t ', '{}', '[]', '"s"',
                 '17', '{"a": {"b": {"c": [null, true, false]}}}', '{"a": 1} x', '{"a": 1}}', '', ' ', '{"a": NaN}',
                 '{"a": 1e999}', '{"a": 1, "a": 2}', '{"a": [1, 2,]}', 'nul', '\ufeff{}', '{"a": 1}\x00']


@pytest.mark.parametrize("text", _HEADER_TEXTS)
def test_the_fast_header_parser_reads_as_the_json_decoder_does(text):
    """``_parse_header`` skips ``JSONDecoder.decode``'s whitespace matches: the same values, and the same
    errors, as the standard library's decoder with the same hooks (the oracle)."""
    oracle = json.JSONDecoder(parse_float=P._finite_float, parse_constant=P._reject_constant,
                              object_pairs_hook=P.unique_keys)
    try:
        expected = oracle.decode(text)
    except ValueError as exc:
        with pytest.raises(type(exc)) as info:
            P._parse_header(text)
        assert str(info.value) == str(exc)
    else:
        assert P._parse_header(text) == expected


def test_the_fast_header_encoder_writes_what_json_dumps_writes():
    """``_encode_header`` uses json's C encoder built once: the same text as ``json.dumps`` with the same
    options (the oracle) for random headers, and the same refusals (NaN, other types, circular, too deep)."""
    rng = np.random.default_rng(5)

    def value(depth: int):
        pick = rng.integers(0, 8 if depth < 4 else 5)
        return [lambda: int(rng.integers(-10**12, 10**12)), lambda: float(rng.normal() * 10.0 ** rng.integers(-300, 300)),
                lambda: "".join(chr(int(c)) for c in rng.integers(1, 0x2FFF, rng.integers(0, 6))),
                lambda: bool(rng.integers(2)), lambda: None, lambda: [value(depth + 1) for _ in range(rng.integers(0, 4))],
                lambda: {f"k{i}\u00e9\"": value(depth + 1) for i in range(rng.integers(0, 4))},
                lambda: np.float32(rng.normal())][pick]()

    for _ in range(300):
        head = {"v": 1, "type": "result", "id": "1", "data": {"x": value(0)}}
        assert P._encode_header(head) == json.dumps(head, separators=(",", ":"), allow_nan=False,
                                                    default=P._numpy_scalar)
    circular: dict = {}
    circular["self"] = circular
    for bad, needle in ((float("inf"), "Out of range"), (object(), "not JSON serializable"),
                        (circular, "Circular reference")):
        with pytest.raises((ValueError, TypeError), match=needle):
            P._encode_header({"x": bad})
        with pytest.raises(ProtocolError, match="not plain JSON"):
            P.encode(Message(MessageType.RESULT, id="1", job="j", data={"x": bad}))


def test_large_arrays_go_zero_copy():
    big = np.zeros(P.ZERO_COPY_THRESHOLD // 4, np.float32)
    frames = P.encode(Message(MessageType.RESULT, id="1", job="j", arrays={"a": big}))
    assert P.wants_zero_copy(frames)
    assert np.shares_memory(np.frombuffer(frames[1], np.float32), big)  # the array's own buffer, no copy
    assert not P.wants_zero_copy(P.encode(Message(MessageType.RESULT, id="1", job="j", arrays={"a": big[:10]})))


@pytest.mark.parametrize("frames, code, needle", [
    ([], ErrorCode.BAD_MESSAGE, "empty"),
    ([b"\xff\xfe"], ErrorCode.BAD_MESSAGE, "UTF-8 JSON"),
    ([b"{not json"], ErrorCode.BAD_MESSAGE, "JSON"),
    ([b"[1, 2]"], ErrorCode.BAD_MESSAGE, "not an object"),
    ([b'{"v": 1, "type": "ping", "id": "1", "x": NaN}'], ErrorCode.BAD_MESSAGE, "NaN"),
    ([b'{"v": 1, "type": "ping", "id": "1", "x": -Infinity}'], ErrorCode.BAD_MESSAGE, "-Infinity"),
    ([b'{"v": 1, "type": "submit", "id": "1", "job": "j", "kind": "echo", "data": {"timeout": 1e999}}'],
     ErrorCode.BAD_MESSAGE, "1e999 overflows to infinity"),
    ([b'{"v": 1, "type": "ping", "id": "1", "x": [-1.5e400]}'], ErrorCode.BAD_MESSAGE, "overflows"),
    ([b'{"v": 1, "v": 1, "type": "ping", "id": "1"}'], ErrorCode.BAD_MESSAGE, "duplicate"),
    ([b'{"type": "ping", "id": "1"}'], ErrorCode.BAD_MESSAGE, "'v'"),
    ([b'{"v": true, "type": "ping", "id": "1"}'], ErrorCode.BAD_MESSAGE, "'v'"),
    ([b'{"v": 1.0, "type": "ping", "id": "1"}'], ErrorCode.BAD_MESSAGE, "'v'"),
    ([b' {"v": 1, "v": 1, "type": "ping", "id": "1"}'], ErrorCode.BAD_MESSAGE, "duplicate"),
    ([b'{"v": 1, "type": "ping", "id": "1"} {}'], ErrorCode.BAD_MESSAGE, "Extra data"),
    ([b''], ErrorCode.BAD_MESSAGE, "Expecting value"),
    ([b'  '], ErrorCode.BAD_MESSAGE, "Expecting value"),
    ([b'{"v": 1, "type": "launch", "id": "1"}'], ErrorCode.BAD_MESSAGE, "unknown message type"),
    ([b'{"v": 1, "type": "result", "id": "1", "job": "j"}'], ErrorCode.BAD_MESSAGE, "unknown message type"),
    ([b'{"v": 1, "type": "ping"}'], ErrorCode.BAD_MESSAGE, "'id'"),
    ([b'{"v": 1, "type": "ping", "id": ""}'], ErrorCode.BAD_MESSAGE, "'id'"),
    ([b'{"v": 1, "type": "submit", "id": "1", "job": "j"}'], ErrorCode.BAD_MESSAGE, "needs 'kind'"),
    ([b'{"v": 1, "type": "cancel", "id": "1"}'], ErrorCode.BAD_MESSAGE, "needs 'job'"),
    ([b'{"v": 1, "type": "submit", "id": "1", "job": "j", "kind": "k", "params": [1]}'], ErrorCode.BAD_MESSAGE,
     "'params'"),
    ([b'{"v": 1, "type": "ping", "id": "1", "arrays": {}}'], ErrorCode.BAD_MESSAGE, "list"),
])
def test_malformed_headers_are_refused(frames, code, needle):
    err = _refused(frames, code)
    assert needle in str(err)


def _arrays_header(entries):
    return {"v": 1, "type": "submit", "id": "7", "job": "j7", "kind": "echo", "arrays": entries}


@pytest.mark.parametrize("entries, buffers, code, needle", [
    ([{"name": "a", "dtype": "float32", "shape": [2]}], [], ErrorCode.BAD_MESSAGE, "frames follow"),
    ([], [b"x"], ErrorCode.BAD_MESSAGE, "frames follow"),
    ([{"name": "a", "dtype": "float32", "shape": [2]}], [b"1234567"], ErrorCode.BAD_MESSAGE, "needs 8 bytes"),
    ([{"name": "a", "dtype": "complex64", "shape": [1]}], [b"12345678"], ErrorCode.BAD_MESSAGE, "dtype"),
    ([{"name": "a", "dtype": "object", "shape": [1]}], [b"12345678"], ErrorCode.BAD_MESSAGE, "dtype"),
    ([{"name": "a", "dtype": "uint8", "shape": [-1]}], [b"1"], ErrorCode.BAD_MESSAGE, "shape"),
    ([{"name": "a", "dtype": "uint8", "shape": [1.0]}], [b"1"], ErrorCode.BAD_MESSAGE, "shape"),
    ([{"name": "a", "dtype": "uint8", "shape": [10**30]}], [b"1"], ErrorCode.BAD_MESSAGE, "bytes"),
    # empty, so their bytes match, yet no numpy array: "malformed message (ValueError: ...)" naming no request
    ([{"name": "a", "dtype": "uint8", "shape": [10**20, 0]}], [b""], ErrorCode.BAD_MESSAGE, "shape [100000000000"),
    ([{"name": "a", "dtype": "uint8", "shape": [2**62, 2**62, 0]}], [b""], ErrorCode.BAD_MESSAGE, "cannot be made"),
    ([{"name": "a", "dtype": "uint8", "shape": [1], "extra": 1}], [b"1"], ErrorCode.BAD_MESSAGE, "exactly"),
    ([{"name": "1a", "dtype": "uint8", "shape": [1]}], [b"1"], ErrorCode.BAD_MESSAGE, "name"),
    ([{"name": "a", "dtype": "uint8", "shape": [1]}] * 2, [b"1", b"1"], ErrorCode.BAD_MESSAGE, "twice"),
    ([{"name": "a", "dtype": "bool", "shape": [2]}], [b"\x00\x07"], ErrorCode.BAD_MESSAGE, "bool"),
    ([{"name": f"a{i}", "dtype": "uint8", "shape": [1]} for i in range(17)], [b"1"] * 17, ErrorCode.TOO_LARGE,
     "limit is 16"),
])
def test_array_descriptions_must_match_their_frames(entries, buffers, code, needle):
    err = _refused(_frames(_arrays_header(entries), *buffers), code)
    assert needle in str(err)
    assert err.msg_id == "7" and err.job == "j7"  # the refusal can name the request it answers


def test_limits_are_enforced_before_parsing():
    limits = P.Limits(max_header_bytes=100, max_arrays=2, max_message_bytes=1000)
    _refused([b" " * 101], ErrorCode.TOO_LARGE, limits=limits)
    header = {"v": 1, "type": "submit", "id": "1", "job": "j", "kind": "echo",
              "arrays": [{"name": "a", "dtype": "uint8", "shape": [600]}, {"name": "b", "dtype": "uint8", "shape": [600]}]}
    _refused(_frames(header, b"\0" * 600, b"\0" * 600), ErrorCode.TOO_LARGE, limits=P.Limits(max_message_bytes=1000))
    with pytest.raises(ProtocolError) as info:
        P.check_outgoing(P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="echo",
                                          arrays={"a": np.zeros(2000, np.uint8)})), limits)
    assert info.value.code == ErrorCode.TOO_LARGE


def test_a_header_too_large_names_the_param_that_takes_most_of_it():
    # before: "the header is 70102 bytes; the limit is 65536", which of the params unsaid (a pasted labels JSON)
    message = Message(MessageType.SUBMIT, id="1", job="j", kind="image.transfer",
                      params={"prompt": "two hands", "source_labels": "0" * 70_000, "steps": 20})
    with pytest.raises(ProtocolError) as info:
        P.check_outgoing(P.encode(message), P.DEFAULT_LIMITS, message)
    assert info.value.code == ErrorCode.TOO_LARGE
    assert info.value.message.endswith("the limit is 65536; params.source_labels is 70002 bytes of it"), info.value
    assert "max_length" in info.value.hint


def test_escaped_length_is_what_a_string_takes_in_the_header():
    # a string param whose spec says "escaped" (image.transfer's source_labels) is limited by this count: it must be
    # what the header encoder spends on it, or a text within the limit could still overflow the header
    def header_bytes(value: str) -> int:
        return P.payload_size(P.encode(Message(MessageType.SUBMIT, id="1", job="j", kind="k", params={"p": value})))

    for value in ('{"hands": {"right": null}}', "a\\b", "tab\there\n", "\x00\x1f", "héllo", "\u2028", "👋 hands",
                  "\ud800", "plain"):
        assert P.escaped_length(value) == header_bytes(value) - header_bytes(""), value
    assert P.escaped_length('""') == 4 and P.escaped_length("é") == 6 and P.escaped_length("👋") == 12


def test_version_mismatch_says_which_side_to_upgrade():
    newer = _refused([b'{"v": 2, "type": "hello", "id": "h"}'], ErrorCode.UNSUPPORTED_VERSION)
    assert "upgrade the backend" in newer.hint and newer.msg_id == "h"
    older = _refused([b'{"v": 0, "type": "hello", "id": "h"}'], ErrorCode.UNSUPPORTED_VERSION)
    assert "upgrade the client" in older.hint
    # Seen from the client: a newer backend means upgrading the client.
    from_server = _refused([b'{"v": 2, "type": "welcome", "id": "h"}'], ErrorCode.UNSUPPORTED_VERSION,
                           accept=P.SERVER_TYPES, local_role="client")
    assert "upgrade the client" in from_server.hint


def test_an_error_from_another_version_is_still_readable():
    frames = _frames({"v": 9, "type": "error", "id": "x", "data": {"code": "unsupported_version", "message": "m",
                                                                   "hint": "h"}})
    msg = P.decode(frames, accept=P.SERVER_TYPES, local_role="client")
    assert msg.type == "error" and msg.data["code"] == "unsupported_version"


def test_unknown_header_fields_are_ignored_for_forward_compatibility():
    msg = P.decode([b'{"v": 1, "type": "ping", "id": "1", "priority": 3}'])
    assert msg.type == MessageType.PING


def test_error_message_carries_code_hint_and_field():
    err = ProtocolError(ErrorCode.INVALID_PARAMS, "params.steps: must be an integer", "see welcome", msg_id="5",
                        job="j", field="params.steps")
    msg = P.decode(P.encode(P.error_from(err)), accept=P.SERVER_TYPES, local_role="client")
    assert msg.id == "5" and msg.job == "j"
    assert msg.data == {"code": "invalid_params", "message": "params.steps: must be an integer", "hint": "see welcome",
                        "field": "params.steps"}


def test_loopback_detection():
    assert all(P.is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost"))
    assert not any(P.is_loopback(h) for h in ("0.0.0.0", "192.168.1.4", "*", "example.org", "::"))
    assert P.endpoint("::1", 5) == "tcp://[::1]:5" and P.DEFAULT_ENDPOINT == "tcp://127.0.0.1:5780"
