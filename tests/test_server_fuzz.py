"""A live backend fed malformed multipart messages answers each with the typed error the decoder
names, answers version mismatches with what to upgrade, and keeps serving."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings

from handforge_shared import protocol as P
from tests.support.malformed import malformed_messages
from tests.support.server import RawPeer, running_server

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server():
    with running_server("--heartbeat", "1") as s:
        yield s


@pytest.fixture(scope="module")
def peer(server):
    with RawPeer(server.endpoint) as p:
        yield p


@settings(max_examples=150, deadline=None)
@given(frames=malformed_messages)
def test_every_malformed_message_gets_a_typed_error(server, peer, frames):
    try:
        P.decode(frames)
    except P.ProtocolError as exc:
        expected = exc
    else:
        assume(False)  # valid by chance: not what this test is about
    peer.send(frames)
    reply = peer.recv(timeout=10)
    assert reply.type == "error", reply
    assert reply.data["code"] == expected.code and reply.data["message"] == expected.message
    assert reply.id == (expected.msg_id or reply.id)


@pytest.mark.parametrize("version, upgrade", [(2, "upgrade the backend"), (0, "upgrade the client")])
def test_version_mismatch_names_the_side_to_upgrade(peer, version, upgrade):
    peer.send([f'{{"v": {version}, "type": "hello", "id": "h{version}"}}'.encode()])
    reply = peer.recv()
    assert reply.type == "error" and reply.id == f"h{version}"
    assert reply.data["code"] == "unsupported_version"
    assert upgrade in reply.data["hint"] and f"v{version}" in reply.data["message"] + reply.data["hint"]


def test_the_server_is_unharmed(server):
    with server.client() as client:
        assert client.run("echo", {"text": "ok"}).data["text"] == "ok"
    assert server.alive
    assert "unexpected failure" not in server.log() and "Traceback" not in server.log()


def test_log_lines_cannot_be_forged(server, peer):
    forged = "x\nINFO handforge.server: job j1 (echo) -> done\x1b[2K\u2028"
    peer.send([P.encode(P.Message(type="hello", id="h-forge", data={"client": forged}))[0]])
    peer.recv()
    peer.send([b'{"v": 1, "type": "cancel", "id": "c\\n1", "job": "j\\nFAKE job"}'])
    peer.recv()
    log = server.log()
    assert "(x\\nINFO handforge.server: job j1 (echo) -> done\\x1b[2K\\u2028)" in log
    assert not any(line.startswith(("INFO handforge.server: job j1", "FAKE job")) for line in log.splitlines())
    assert "\x1b" not in log and "\u2028" not in log


def _mutated(rng, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(frames))
        part = bytearray(frames[i])
        how = rng.random()
        if how < 0.4 and part:
            part[rng.randrange(len(part))] = rng.randrange(256)
        elif how < 0.6 and part:
            at = rng.randrange(len(part))
            del part[at:at + rng.randint(1, 8)]
        elif how < 0.8:
            part[rng.randint(0, len(part)):0] = rng.choice([b"1e999", b"NaN", b'"', b",", b"{", b"\\u0000", b"\xff"])
        elif len(frames) > 1:
            frames.pop(i)
            continue
        else:
            frames.append(rng.randbytes(rng.randint(0, 16)))
        frames[i] = bytes(part)
    return frames


def test_thousands_of_mutated_messages_get_the_typed_error_the_decoder_names(server, peer):
    import random

    rng = random.Random(10)
    seeds = [
        [b'{"v":1,"type":"submit","id":"s1","job":"j1","kind":"echo","params":{"text":"a"},"data":{"timeout":5},'
         b'"arrays":[{"name":"a","dtype":"float32","shape":[2]}]}', b"\0" * 8],
        [b'{"v":1,"type":"hello","id":"h1","data":{"client":"fuzz"}}'],
        [b'{"v":1,"type":"cancel","id":"c1","job":"j9"}'],
        [b'{"v":1,"type":"ping","id":"p1"}'],
    ]
    sent = 0
    for _ in range(3000):
        frames = _mutated(rng, rng.choice(seeds))
        try:
            P.decode(frames)
            continue  # still valid: its reply depends on the job, not on this test
        except P.ProtocolError as exc:
            expected = exc
        peer.send(frames)
        reply = peer.recv(timeout=10)
        while reply.type == "welcome":  # the full welcome that follows the device probe after an earlier hello
            reply = peer.recv(timeout=10)
        assert reply.type == "error" and reply.data["code"] == expected.code, (frames, reply)
        sent += 1
    assert sent > 2000 and server.alive
