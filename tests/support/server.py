"""Run a real HandForge backend (``python -m handforge serve``) in a subprocess, for tests.

    from tests.support.server import running_server

    with running_server("--heartbeat", "0.2") as server:   # a free loopback port; waits until it answers
        with server.client() as client:                     # a handforge_shared.client.Client
            client.run("ping")
        server.kill()                                       # SIGKILL, e.g. to test recovery
        server.restart()                                    # same port, new process

As a fixture: ``yield`` from ``running_server(...)`` inside a (module-scoped) pytest fixture. The
server logs to a file (``server.log()`` returns it; ``ServerError`` messages include its tail), and
is always stopped when the block ends. Extra arguments go to ``handforge serve`` as they are.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import zmq

from handforge_shared.client import TERMINAL_EVENTS, BackendUnavailable, Client, CurveKeys, Event, JobHandle
from handforge_shared.protocol import SERVER_TYPES, Message, decode, encode


class ServerError(RuntimeError):
    """The server subprocess did not start or stop as expected (the message has its log tail)."""


@dataclass
class ServerProcess:
    endpoint: str
    process: subprocess.Popen
    args: tuple[str, ...]
    workdir: Path
    log_path: Path
    curve: CurveKeys | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def port(self) -> int:
        return int(self.endpoint.rsplit(":", 1)[1])

    def log(self) -> str:
        """Everything the current server process wrote to stderr/stdout so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self, **kwargs) -> Client:
        """A client connected to this server (with its CurveZMQ keys, if it was started with some)."""
        kwargs.setdefault("curve", self.curve)
        return Client(self.endpoint, **kwargs)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        return self._stop(signal.SIGTERM, timeout)

    def interrupt(self, timeout: float = 15.0) -> int:
        """SIGINT (Ctrl-C) and wait; returns the exit code."""
        return self._stop(signal.SIGINT, timeout)

    def kill(self) -> None:
        """SIGKILL: the server dies without telling anyone."""
        if self.alive:
            self.process.kill()
        self.process.wait(10)

    def restart(self, ready_timeout: float = 60.0) -> "ServerProcess":
        """Start a new server process on the same port with the same arguments (kill the old one first)."""
        if self.alive:
            self.kill()
        new = _spawn(self.args, self.port, self.workdir, self.env, self.curve, ready_timeout)
        self.process, self.endpoint, self.log_path = new.process, new.endpoint, new.log_path
        return self

    def _stop(self, sig: int, timeout: float) -> int:
        if self.alive:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise ServerError(f"the server ignored {signal.Signals(sig).name} for {timeout:g} s\n{self._tail()}")
        return self.process.returncode

    def _tail(self, lines: int = 40) -> str:
        return "--- server log (tail) ---\n" + "\n".join(self.log().splitlines()[-lines:])


def start_server(*args: str, port: int = 0, env: dict[str, str] | None = None, curve: CurveKeys | None = None,
                 workdir: Path | None = None, ready_timeout: float = 60.0) -> ServerProcess:
    """Start ``handforge serve ARGS`` on loopback (``port`` 0: a free one) and wait until it answers a
    ping. ``curve``: client keys to reach a server started with ``--curve-secret``. Stop it with
    ``terminate()``/``kill()``, or use ``running_server`` which always does."""
    made = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="handforge-serve-"))
    try:
        return _spawn(tuple(args), port, workdir, dict(env or {}), curve, ready_timeout)
    except BaseException:
        if made:  # (the ServerError carries the log's tail: the folder was left in /tmp)
            shutil.rmtree(workdir, ignore_errors=True)
        raise


def _spawn(args: tuple[str, ...], port: int, workdir: Path, env: dict[str, str], curve: CurveKeys | None,
           ready_timeout: float) -> ServerProcess:
    stamp = time.monotonic_ns()
    endpoint_file, log_path = workdir / f"endpoint-{stamp}", workdir / f"serve-{stamp}.log"
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    # the server runs in workdir: a relative PYTHONPATH (backend:shared:., as the Development section runs the tests)
    # would name nothing there, and the code imported be another checkout's, through the environment's install
    if full_env.get("PYTHONPATH"):
        full_env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) if p else p
                                                 for p in full_env["PYTHONPATH"].split(os.pathsep))
    command = [sys.executable, "-m", "handforge", "serve", "--port", str(port), "--endpoint-file",
               str(endpoint_file), *args]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=workdir)
    server = ServerProcess("", process, args, workdir, log_path, curve, env)
    deadline = time.monotonic() + ready_timeout
    while not endpoint_file.exists():
        if not server.alive:
            raise ServerError(f"`{' '.join(command[1:])}` exited with {process.returncode}\n{server._tail()}")
        if time.monotonic() > deadline:
            server.kill()
            raise ServerError(f"the server did not listen within {ready_timeout:g} s\n{server._tail()}")
        time.sleep(0.02)
    server.endpoint = endpoint_file.read_text().strip()
    try:
        wait_ready(server.endpoint, max(1.0, deadline - time.monotonic()), curve=curve)
    except BaseException:
        server.kill()  # never leave a server behind
        raise
    return server


def wait_ready(endpoint: str, timeout: float = 30.0, curve: CurveKeys | None = None) -> float:
    """Ping ``endpoint`` until it answers; returns the seconds it took. Raises ``BackendUnavailable``."""
    start = time.monotonic()
    with Client(endpoint, curve=curve, connect_timeout=timeout) as client:
        while True:
            try:
                client.ping(timeout=max(0.1, timeout - (time.monotonic() - start)))
                return time.monotonic() - start
            except BackendUnavailable as exc:
                if exc.code == "auth_failed" or time.monotonic() - start > timeout:
                    raise
                time.sleep(0.05)


@contextlib.contextmanager
def running_server(*args: str, **kwargs) -> Iterator[ServerProcess]:
    """``start_server`` as a context manager: the server is stopped (SIGTERM, then SIGKILL) on exit."""
    server = start_server(*args, **kwargs)
    try:
        yield server
    finally:
        try:
            server.terminate(timeout=10)
        except ServerError:
            pass
        finally:
            if kwargs.get("workdir") is None:  # the folder start_server made (they piled up in /tmp)
                shutil.rmtree(server.workdir, ignore_errors=True)


class RawPeer:
    """A bare DEALER socket speaking raw frames, for sending what a well-behaved client never would.

        with RawPeer(server.endpoint) as peer:
            peer.send([b"not json"])
            reply = peer.recv()            # a decoded Message (an ``error`` here)
    """

    def __init__(self, endpoint: str, curve: CurveKeys | None = None, routing_id: bytes | None = None) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.linger = 0
        if routing_id is not None:
            self.socket.routing_id = routing_id
        if curve is not None:
            self.socket.curve_serverkey = curve.server_public
            self.socket.curve_publickey = curve.client_public
            self.socket.curve_secretkey = curve.client_secret
        self.socket.connect(endpoint)

    def send(self, frames: list[bytes] | Message) -> None:
        self.socket.send_multipart(encode(frames) if isinstance(frames, Message) else frames)

    def recv(self, timeout: float = 10.0) -> Message:
        """The next message from the server, decoded; raises ``TimeoutError`` if none comes."""
        if not self.socket.poll(int(timeout * 1000)):
            raise TimeoutError(f"no message from the server within {timeout:g} s")
        return decode(self.socket.recv_multipart(), accept=SERVER_TYPES, local_role="client")

    def close(self) -> None:
        self.socket.close(linger=0)

    def __enter__(self) -> "RawPeer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def collect(client: Client, handles: list[JobHandle] | JobHandle, timeout: float = 30.0) -> dict[str, list[Event]]:
    """Poll ``client`` until every handle has ended; returns each job's events in arrival order
    (other events are dropped). Raises ``TimeoutError`` naming the jobs still running."""
    handles = [handles] if isinstance(handles, JobHandle) else list(handles)
    events: dict[str, list[Event]] = {h.id: [] for h in handles}
    end = time.monotonic() + timeout
    while not all(any(isinstance(e, TERMINAL_EVENTS) for e in events[h.id]) for h in handles):
        if time.monotonic() > end:
            running = [h for h in handles if not h.done]
            raise TimeoutError(f"jobs still running after {timeout:g} s: {running}")
        for event in client.poll(0.05):
            if event.job in events:
                events[event.job].append(event)
    return events


__all__ = ["RawPeer", "ServerError", "ServerProcess", "collect", "running_server", "start_server", "wait_ready"]
