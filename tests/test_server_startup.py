"""Start-up: the first welcome does not wait for the device probe (which imports torch); a client that
asks for devices gets them once known, and every client welcomed early gets a complete welcome then."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from typing import Iterator

import pytest

from handforge.server import Boolean, Engine, JobKind, JobResult, Registry, Schema
from handforge.server.app import Server, ServerConfig
from handforge_shared.client import Client, Connected

pytestmark = pytest.mark.timeout(120)


@contextlib.contextmanager
def server_whose_probe_waits(devices: tuple[str, ...] | None = None, kinds: tuple[JobKind, ...] = (),
                             heartbeat_s: float = 0.25) -> Iterator[tuple[Server, str, threading.Event]]:
    """A server in a thread whose device probe ends when the test sets the event it yields (``devices``: its
    --devices; ``kinds``: job kinds of its engine "slow")."""
    probe_may_end = threading.Event()
    registry = Registry()
    registry.add_engine(Engine("slow", "a probe that waits for the test", warm_up=lambda: probe_may_end.wait(60)))
    for kind in kinds:
        registry.add_kind(kind)
    server = Server(ServerConfig(port=0, heartbeat_s=heartbeat_s, devices=devices), registry=registry)
    endpoint = server.bind()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server, endpoint, probe_may_end
    finally:
        probe_may_end.set()
        server.stop()
        thread.join(10)


def test_hello_is_answered_before_the_probe_ends_and_a_complete_welcome_follows():
    with server_whose_probe_waits() as (server, endpoint, probe_may_end):
        with Client(endpoint) as early, Client(endpoint) as patient:
            first = early.hello(timeout=30, devices=False)
            assert first["devices"] is None and first["compute_devices"] is None  # the probe has not ended
            assert "slow" in first["engines"] and first["limits"]["max_message_bytes"] > 0
            waiting = threading.Thread(target=lambda: results.append(patient.hello(timeout=30)))
            results: list[dict] = []
            waiting.start()
            time.sleep(0.3)  # the hello with devices=True is in; it must not be answered before the probe ends
            assert not results
            probe_may_end.set()
            waiting.join(30)
            assert results and results[0]["devices"][0]["name"] == "cpu" and results[0]["compute_devices"] == ["cpu"]
            end, complete = time.monotonic() + 30, None
            while complete is None and time.monotonic() < end:  # the early client is told the devices too
                complete = next((e for e in early.poll(0.05) if isinstance(e, Connected)
                                 and e.capabilities.get("devices")), None)
            assert complete is not None and early.capabilities["compute_devices"] == ["cpu"]


def _offload_kind() -> JobKind:
    return JobKind("offload", lambda ctx, params, arrays: JobResult({"ran": True}),
                   Schema(params={"offload": Boolean(default=False)}), device="gpu", engine="slow",
                   needs_cuda=("offload",))


def test_a_job_accepted_before_the_probe_that_its_devices_cannot_run_fails_when_the_probe_ends():
    """A GPU-class job that needs CUDA (``JobKind.needs_cuda``), submitted before the backend knows its devices,
    is failed as soon as it does, before a worker takes it (its handler here would have run and succeeded)."""
    with server_whose_probe_waits(devices=("cpu",), kinds=(_offload_kind(),)) as (server, endpoint, probe_may_end):
        with Client(endpoint) as client:
            handle = client.submit("offload", {"offload": True})
            end = time.monotonic() + 30
            while handle.position is None and time.monotonic() < end:
                client.poll(0.05)
            assert handle.position == 0  # accepted: the devices are not known yet
            probe_may_end.set()
            outcome = handle.wait(30)
            assert outcome.code == "invalid_params", outcome
            assert outcome.message == "params.offload: needs a CUDA GPU; this backend runs offload jobs on cpu"
            assert client.run("offload", {"offload": False}, timeout=30).data == {"ran": True}
            handle = client.submit("offload", {"offload": True})  # known now: refused, never accepted
            assert handle.wait(30).code == "invalid_params" and handle.position is None


def _submit_two_and_leave(context, endpoint: str, caplog, kind: str, params: dict) -> float:
    """Jobs "a" and "b" of ``kind`` sent from a raw DEALER, accepted, and the client gone (the server has logged
    its connection closed, its routing id with it); the deadline (30 s on) for what the test waits for next."""
    import zmq

    from handforge_shared.protocol import Message, MessageType, encode

    dealer = context.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(endpoint)
    for job in ("a", "b"):
        dealer.send_multipart(encode(Message(MessageType.SUBMIT, id=job, job=job, kind=kind, params=params)))
    for _ in range(2):
        assert dealer.poll(30_000)
        dealer.recv_multipart()  # accepted
    dealer.close()
    end = time.monotonic() + 30
    while not any(" closed" in r.getMessage() for r in caplog.records) and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.3)  # (the connection's end logged: its routing id goes with it)
    return end


def test_jobs_failed_when_the_probe_ends_whose_client_has_left_are_dropped_once(caplog):
    """Failing the first job found its client gone, which drops the client's other jobs: those were then failed
    too, each sent to a client no longer there and logged as ended by invalid_params after being dropped."""
    import logging

    import zmq

    caplog.set_level(logging.INFO, logger="handforge.server")
    # (no heartbeat before the probe ends: it would find the client gone first)
    with server_whose_probe_waits(devices=("cpu",), kinds=(_offload_kind(),), heartbeat_s=600) as \
            (server, endpoint, probe_may_end), zmq.Context() as context:
        end = _submit_two_and_leave(context, endpoint, caplog, "offload", {"offload": True})
        probe_may_end.set()
        while server._jobs and time.monotonic() < end:
            time.sleep(0.05)
    ended = [r.getMessage() for r in caplog.records if " (offload) -> " in r.getMessage()]
    assert len(ended) == 1 and ended[0].startswith("job a (offload) -> invalid_params"), ended


def test_serve_without_curve_imports_neither_torch_nor_zmq_auth_before_its_first_welcome():
    code = ("import sys, threading\n"
            "from handforge.server import app\n"
            "from handforge_shared.client import Client\n"
            "app.PROBE_IDLE_DELAY_S = 60  # the probe starts after the first welcome, not while we connect\n"
            "seen = []\n"
            "welcome = app.Server._welcome\n"
            "app.Server._welcome = lambda self, *a: (seen.append(sorted(m for m in ('torch', 'zmq.auth', "
            "'asyncio', 'smplx') if m in sys.modules)), welcome(self, *a))\n"
            "server = app.Server(app.ServerConfig(port=0))\n"
            "endpoint = server.bind()\n"
            "threading.Thread(target=server.serve, daemon=True).start()\n"
            "with Client(endpoint) as c:\n"
            "    c.hello(devices=False)\n"
            "print(seen[0])\n"
            "server.stop()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_hellos_waiting_for_the_probe_are_one_per_connection():
    """A client that repeats its hello while the device probe runs is answered once, for its last hello: the
    server kept every one of them (a loop of hellos grew its memory until the probe ended)."""
    import zmq

    from handforge_shared.protocol import SERVER_TYPES, Message, MessageType, decode, encode

    with server_whose_probe_waits() as (server, endpoint, probe_may_end), zmq.Context() as context, \
            context.socket(zmq.DEALER) as dealer:  # (closed before the context ends)
        dealer.linger = 0
        dealer.connect(endpoint)
        for k in range(200):
            dealer.send_multipart(encode(Message(MessageType.HELLO, id=f"h{k}", data={"devices": True})))
        time.sleep(0.5)  # the hellos are in; none is answered before the probe ends
        assert len(server._pending_hellos) == 1
        probe_may_end.set()
        replies = []
        while dealer.poll(1000):
            replies.append(decode(dealer.recv_multipart(), accept=SERVER_TYPES, local_role="client"))
        welcomes = [m for m in replies if m.type == MessageType.WELCOME]
        assert [m.id for m in welcomes] == ["h199"] and welcomes[0].data["devices"]


def _recording_kind(ran: threading.Event) -> JobKind:
    return JobKind("record", lambda ctx, params, arrays: (ran.set(), JobResult({"ran": True}))[1], Schema(),
                   device="gpu", engine="slow")


@pytest.mark.parametrize("kind, params", [("offload", {"offload": True}), ("record", {})])
def test_jobs_queued_when_the_probe_finds_bad_devices_end_once_with_the_shutdown(kind, params):
    """A probe that refuses --devices stops the backend: the GPU-class jobs queued before it ended were failed
    as needing a CUDA GPU on the CPU fallback ("offload"), or ran on that CPU while the backend stopped
    ("record"); each is now cancelled once, with the reason the backend stops."""
    import zmq

    from handforge_shared.protocol import SERVER_TYPES, Message, MessageType, decode, encode

    ran = threading.Event()
    with server_whose_probe_waits(devices=("cuda:7",), kinds=(_offload_kind(), _recording_kind(ran))) as \
            (server, endpoint, probe_may_end), zmq.Context() as context, context.socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        dealer.connect(endpoint)
        # (the probe starts once this job is in: it is queued before the probe can end)
        dealer.send_multipart(encode(Message(MessageType.SUBMIT, id="s", job="j", kind=kind, params=params)))
        replies = []
        while dealer.poll(3000):
            replies.append(decode(dealer.recv_multipart(), accept=SERVER_TYPES, local_role="client"))
    assert [m.type for m in replies] == [MessageType.ACCEPTED, MessageType.CANCELLED], replies
    assert replies[1].data["reason"] == "shutdown"
    assert replies[1].data["message"].startswith("the backend is shutting down (bad --devices: unknown device(s) "
                                                 "cuda:7: this machine has cpu")
    assert not ran.is_set() and server.failure.startswith("unknown device(s) cuda:7")


def test_a_hello_waiting_for_the_probe_that_finds_bad_devices_is_told_why_the_backend_stops():
    """A client waiting for its welcome when the probe refuses --devices was told only "the backend is shutting
    down"; it is told what was wrong with --devices, as the cancelled jobs are."""
    from handforge_shared.client import JobFailed

    with server_whose_probe_waits(devices=("cuda:7",)) as (server, endpoint, probe_may_end), \
            Client(endpoint) as client:
        with pytest.raises(JobFailed) as refused:
            client.hello(timeout=30, devices=True)  # (the hello starts the probe, which fails before warming up)
    assert refused.value.code == "internal"
    assert "the backend is shutting down (bad --devices: unknown device(s) cuda:7: this machine has cpu" in \
        str(refused.value), refused.value
    assert server.failure.startswith("unknown device(s) cuda:7")


def test_shutdown_sends_one_cancelled_for_the_jobs_of_a_client_found_gone(caplog):
    """Cancelling the first job at shutdown found its client gone, which dropped the client's other jobs: each
    of those was then cancelled again, its notice sent to a client no longer there."""
    import logging

    import zmq

    from handforge_shared.protocol import MessageType

    caplog.set_level(logging.INFO, logger="handforge.server")
    ran = threading.Event()
    # (the probe never ends here: no worker takes the jobs; no heartbeat finds the client gone first)
    with server_whose_probe_waits(kinds=(_recording_kind(ran),), heartbeat_s=600) as \
            (server, endpoint, probe_may_end), zmq.Context() as context:
        sent: list[str] = []
        send_frames = server._send_frames
        server._send_frames = lambda identity, frames, what: (sent.append(str(what)),
                                                              send_frames(identity, frames, what))[1]
        end = _submit_two_and_leave(context, endpoint, caplog, "record", {})
        server.stop()
        while not any(r.getMessage() == "stopped" for r in caplog.records) and time.monotonic() < end:
            time.sleep(0.05)
    assert sent.count(str(MessageType.CANCELLED)) == 1 and not ran.is_set(), sent
