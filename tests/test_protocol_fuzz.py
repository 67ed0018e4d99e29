"""Fuzzing the decoder: whatever arrives, it answers with a typed ProtocolError or a checked Message."""

from __future__ import annotations

import math

from hypothesis import given, settings

from handforge_shared import protocol as P
from tests.support.malformed import broken_submits, malformed_messages


@settings(max_examples=300, deadline=None)
@given(malformed_messages)
def test_decoder_raises_only_typed_protocol_errors(frames):
    for accept, role in ((P.CLIENT_TYPES, "backend"), (P.SERVER_TYPES, "client")):
        try:
            msg = P.decode(frames, accept=accept, local_role=role)
        except P.ProtocolError as exc:
            assert exc.code in P.WIRE_ERROR_CODES
            assert exc.message
            continue
        # Accepted: then it really is what its header says.
        assert msg.type in accept and msg.v == P.PROTOCOL_VERSION
        assert len(frames) == 1 + len(msg.arrays)
        for array, frame in zip(msg.arrays.values(), frames[1:]):
            assert array.nbytes == len(frame) == math.prod(array.shape) * array.itemsize


@settings(max_examples=200, deadline=None)
@given(broken_submits())
def test_every_broken_submit_is_refused(frames):
    try:
        P.decode(frames)
    except P.ProtocolError as exc:
        assert exc.code in (P.ErrorCode.BAD_MESSAGE, P.ErrorCode.UNSUPPORTED_VERSION)
    else:
        raise AssertionError(f"accepted a broken message: {frames!r}")
