"""Starting and stopping the backend: clean shutdown on SIGTERM/SIGINT with clients told, clients that
vanish mid-job, and refusals at start-up (remote bind without keys, unknown devices)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from handforge.cli import main
from handforge_shared.client import Cancelled, Disconnected
from handforge_shared.protocol import STOP_WITH_STDIN_ENV, Message, MessageType
from tests.support.server import RawPeer, ServerError, running_server, wait_ready

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("stop", ["terminate", "interrupt"])
def test_stopping_cancels_running_jobs_and_tells_their_clients(stop):
    with running_server("--heartbeat", "0.25") as server, server.client() as client:
        handles = [client.submit("sleep", {"steps": 400, "step_seconds": 0.05}),
                   client.submit("sleep", {"steps": 400, "step_seconds": 0.05})]
        end = time.monotonic() + 30
        while not all(h.state == "running" for h in handles):
            assert time.monotonic() < end, handles
            client.poll(0.05)
        started = time.monotonic()
        assert getattr(server, stop)() == 0  # clean exit
        assert time.monotonic() - started < 5
        seen, end = [], time.monotonic() + 5
        while not (all(h.done for h in handles) and any(isinstance(e, Disconnected) for e in seen)):
            assert time.monotonic() < end, seen
            seen += client.poll(0.05)
        for handle in handles:
            outcome = handle.outcome
            assert isinstance(outcome, Cancelled) and outcome.reason == "shutdown"
            assert "shutting down" in outcome.message
            assert outcome in seen and seen.index(outcome) < seen.index(next(e for e in seen if isinstance(e, Disconnected)))
        signal_name = "SIGTERM" if stop == "terminate" else "SIGINT"
        assert f"stopping (received {signal_name}): cancelling 2 job(s)" in server.log()
        assert not client.connected


def test_the_server_helper_leaves_no_folder_behind_even_when_the_server_does_not_start(tmp_path, monkeypatch):
    """running_server's folder (the server's log and endpoint file) is removed when the block ends; one whose server
    did not start (ServerError, its log tail in the message) was left in /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # (where start_server makes its folder)
    with running_server() as server:
        assert server.workdir.parent == tmp_path
    with pytest.raises(ServerError, match="unrecognized arguments: --no-such-option"):
        with running_server("--no-such-option"):
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_client_that_vanishes_mid_job_does_not_hurt():
    with running_server("--heartbeat", "0.2") as server:
        with RawPeer(server.endpoint) as peer:
            peer.send(Message(MessageType.SUBMIT, id="s", job="orphan", kind="sleep.gpu",
                              params={"steps": 1000, "step_seconds": 0.05}))
            while peer.recv().type != "progress":
                pass
        # The peer is gone; its job holds the only GPU-class worker until the server notices.
        with server.client() as client:
            start = time.monotonic()
            result = client.run("sleep.gpu", {"steps": 1, "step_seconds": 0.01}, timeout=20)
            assert result.data["steps"] == 1
            assert time.monotonic() - start < 5  # far less than the orphan's 50 s
        assert "disconnected: cancelling its 1 job(s)" in server.log()


def _serve(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", "0", *args],
                          capture_output=True, text=True, timeout=60)


def test_a_bind_address_that_is_not_this_machines_is_said_so_not_taken_for_a_port_in_use(tmp_path):
    keys = tmp_path / "keys"
    assert main(["keys", "--out", str(keys), "--name", "server"]) == 0
    (keys / "clients").mkdir()
    curve = ("--curve-secret", str(keys / "server.key_secret"), "--curve-clients", str(keys / "clients"))
    for host in ("256.1.1.1", "10.255.255.1", "example.invalid"):
        done = _serve("--bind", host, *curve)  # before: "(is another `handforge serve` running? choose another --port)"
        assert done.returncode == 2 and f"{host!r} is no address or network interface of this machine" in \
            done.stderr and "another --port" not in done.stderr, done.stderr
    empty = _serve("--bind", "")  # before: "refusing to listen on : only loopback ..."
    assert empty.returncode == 2 and "argument --bind: is empty: give an address to listen on" in empty.stderr, empty.stderr


def test_a_remote_bind_without_keys_is_refused():
    done = _serve("--bind", "0.0.0.0")
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0" in done.stderr and "handforge keys" in done.stderr


def test_half_a_curve_configuration_is_refused(tmp_path):
    (tmp_path / "server.key_secret").write_text("")  # (a missing one is refused first, by argparse)
    done = _serve("--curve-secret", str(tmp_path / "server.key_secret"))
    assert done.returncode == 2 and "--curve-clients" in done.stderr


def test_a_missing_curve_secret_is_refused_alone_before_start_up(tmp_path):
    # it was found at bind, after start-up's warnings (here: no client keys in the folder)
    done = _serve("--curve-secret", str(tmp_path / "server.key_secret"), "--curve-clients", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"handforge serve: error: argument --curve-secret: no such file '{tmp_path}/"
                                        "server.key_secret' (create one with `handforge keys`) (see handforge serve --help)"]


def test_an_unusable_curve_secret_is_refused_before_start_up_warnings(tmp_path):
    # a public key given as the secret: it was read at bind, after the warnings of the config file (a
    # setting no engine declares) and of the clients folder (no client keys)
    import zmq.auth

    public, _ = zmq.auth.create_certificates(str(tmp_path), "server")
    clients = tmp_path / "clients"
    clients.mkdir()
    config = tmp_path / "config.toml"
    config.write_text('[motion]\nno_such_setting = 1\n')
    done = subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", "0", "--curve-secret", public,
                           "--curve-clients", str(clients)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HANDFORGE_CONFIG": str(config)})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"handforge serve: {public} holds only a public key: pass the matching "
                                        ".key_secret file"]


def test_unknown_devices_are_refused():
    done = _serve("--devices", "cuda:7")
    assert done.returncode == 2 and "unknown device(s) cuda:7" in done.stderr


def test_a_port_in_use_is_said_once():
    # before: a log line and the command's own line said it twice (the add-on quoted both)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", str(port)], capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("cannot listen on") == 1, done.stderr


def _serving(tmp_path, env: dict, stdin: int, stderr: int) -> tuple[subprocess.Popen, str]:
    """`handforge serve` started as the add-on starts it (``stdin``: a pipe, or not), once it answers: the
    process and its endpoint."""
    endpoint_file = tmp_path / "endpoint"
    process = subprocess.Popen([sys.executable, "-m", "handforge", "serve", "--port", "0", "--endpoint-file",
                                str(endpoint_file)], stdin=stdin, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    deadline = time.monotonic() + 60
    while not endpoint_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(process.stderr.read().decode() if process.stderr else "the server did not start")
        time.sleep(0.02)
    endpoint = endpoint_file.read_text().strip()
    wait_ready(endpoint)
    return process, endpoint


@pytest.mark.parametrize("told", [True, False])
def test_a_backend_started_with_a_pipe_stops_when_the_pipe_closes_and_only_then(tmp_path, told):
    # before: a backend the add-on started outlived a Blender that crashed, holding the port and its models'
    # memory; a server started without the setting (e.g. under nohup, stdin closed) must not stop
    env = {k: v for k, v in os.environ.items() if k != STOP_WITH_STDIN_ENV}
    if told:
        env[STOP_WITH_STDIN_ENV] = "1"
    process, endpoint = _serving(tmp_path, env, subprocess.PIPE, subprocess.PIPE)
    try:
        assert process.poll() is None  # the pipe open: it serves
        process.stdin.close()
        if told:
            assert process.wait(20) == 0
            assert "stdin closed" in process.stderr.read().decode()
        else:
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(3)
            assert wait_ready(endpoint) >= 0  # still answering
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(20)
        process.stderr.close()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_backend_watching_its_stdin_stops_cleanly_by_a_signal_too(tmp_path, stop):
    # before: the watching thread blocked in stdin's buffered reader, holding its lock, and the interpreter's
    # exit then aborted ("Fatal Python error: _enter_buffered_busy", status -6), 5 times in 5 on SIGTERM
    process, _ = _serving(tmp_path, {**os.environ, STOP_WITH_STDIN_ENV: "1"}, subprocess.PIPE, subprocess.PIPE)
    try:
        process.send_signal(stop)
        code = process.wait(20)
        log = process.stderr.read().decode()
        assert code == 0 and "Fatal Python error" not in log, (code, log)
        assert f"stopping (received {stop.name})" in log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(20)
        process.stdin.close()
        process.stderr.close()


def test_a_backend_told_to_watch_its_stdin_but_given_no_pipe_does_not_stop_by_itself(tmp_path):
    # before: a start command that backgrounds the server (its stdin /dev/null, at its end) stopped it at once
    process, _ = _serving(tmp_path, {**os.environ, STOP_WITH_STDIN_ENV: "1"}, subprocess.DEVNULL, subprocess.DEVNULL)
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(2)
    finally:
        process.terminate()
        process.wait(20)
