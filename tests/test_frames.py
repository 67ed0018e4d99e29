"""The frame helpers both sides use instead of pyzmq's send_multipart/recv_multipart."""

import numpy as np
import pytest
import zmq

from handforge_shared.frames import recv_frames, send_frames


@pytest.fixture
def pair():
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    a.bind("inproc://frames-test")
    b.connect("inproc://frames-test")
    yield a, b
    a.close(0)
    b.close(0)
    ctx.term()


@pytest.mark.parametrize("copy", [True, False])
def test_a_message_arrives_whole_and_in_order(pair, copy):
    a, b = pair
    big = np.arange(100_000, dtype=np.float32)
    parts = [b"header", b"", memoryview(big).cast("B"), b"tail"]
    send_frames(a, parts, copy=copy)
    send_frames(a, [b"next"], copy=copy)
    got = recv_frames(b)
    assert [bytes(f.buffer) for f in got] == [b"header", b"", big.tobytes(), b"tail"]
    assert [f.bytes for f in recv_frames(b)] == [b"next"]  # the second message is not merged into the first


def test_nothing_to_read_raises_again_at_once(pair):
    with pytest.raises(zmq.Again):
        recv_frames(pair[1])
