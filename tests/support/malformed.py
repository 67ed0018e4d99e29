"""Hypothesis strategies for malformed protocol messages (lists of frames), for fuzzing the decoder
in-process and the live server. They mix random bytes, random JSON headers and valid messages
with one thing broken, so that most examples get past the first checks."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from handforge_shared.protocol import DTYPES, MessageType

FIELDS = ["v", "type", "id", "job", "kind", "params", "arrays", "data"]
json_scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
array_entries = st.fixed_dictionaries({
    "name": st.sampled_from(["a", "b", "1x", "", "right.hand_pose"]) | st.text(max_size=4),
    "dtype": st.sampled_from([*DTYPES, "complex64", "object", "<f4", 3]),
    "shape": st.lists(st.integers(-2, 6), max_size=3) | json_values,
})


@st.composite
def random_headers(draw) -> list[bytes]:
    """A JSON object built from the header vocabulary with values of any type, plus random frames."""
    header = draw(st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8))
    if draw(st.booleans()):
        header["v"] = draw(st.sampled_from([1, 1, 1, 0, 2]))
        header["type"] = draw(st.sampled_from([t.value for t in MessageType] + ["nope"]))
        header["id"] = draw(st.sampled_from(["1", "", "x" * 200]) | json_values)
    if draw(st.booleans()):
        header["arrays"] = draw(st.lists(array_entries, max_size=3))
    frames = draw(st.lists(st.binary(max_size=24), max_size=3))
    return [json.dumps(header).encode(), *frames]


@st.composite
def broken_submits(draw) -> list[bytes]:
    """A well-formed submit with one array, then one of its parts broken."""
    n = draw(st.integers(1, 4))
    header = {"v": 1, "type": "submit", "id": "f1", "job": "fj", "kind": "echo",
              "arrays": [{"name": "a", "dtype": "float32", "shape": [n]}]}
    frames = [b"", b"\0" * (4 * n)]
    breakage = draw(st.sampled_from(["truncate", "extend", "drop_frame", "extra_frame", "dtype", "shape", "name",
                                     "version", "utf8", "json"]))
    if breakage == "truncate":
        frames[1] = frames[1][:-1]
    elif breakage == "extend":
        frames[1] += draw(st.binary(min_size=1, max_size=5))
    elif breakage == "drop_frame":
        frames.pop()
    elif breakage == "extra_frame":
        frames.append(draw(st.binary(max_size=8)))
    elif breakage == "dtype":
        header["arrays"][0]["dtype"] = draw(st.sampled_from(["float128", "F4", "", "int16"]))
    elif breakage == "shape":
        header["arrays"][0]["shape"] = draw(st.sampled_from([[n, -1], [n + 1], [str(n)], None, [True]]))
    elif breakage == "name":
        header["arrays"][0]["name"] = draw(st.sampled_from(["", "9", "a b", "x" * 300]))
    elif breakage == "version":
        header["v"] = draw(st.sampled_from([0, 2, 99, -1]))
    text = json.dumps(header).encode()
    if breakage == "utf8":
        text = text[:5] + b"\xc3\x28" + text[5:]
    elif breakage == "json":
        text = text[: draw(st.integers(0, len(text) - 1))]
    frames[0] = text
    return frames


malformed_messages = st.lists(st.binary(max_size=40), min_size=1, max_size=4) | random_headers() | broken_submits()
