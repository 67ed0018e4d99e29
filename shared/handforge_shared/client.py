"""HandForge client: talk to a backend (``handforge serve``) from Blender, scripts or ``blender -b``.

pyzmq and numpy only, no threads: everything happens in the calls below, on the caller's thread.

Non-blocking (a Blender timer calls ``poll()`` every few tenths of a second)::

    client = Client()                                   # tcp://127.0.0.1:5780; connects in the background
    handle = client.submit("forward_hands", arrays={"right.global_orient": go, "right.hand_pose": hp})
    for event in client.poll():                         # never blocks (timeout 0)
        if isinstance(event, Progress): ...             # event.job == handle.id
        elif isinstance(event, Result): ...             # event.arrays["right.vertices"]
        elif isinstance(event, Error): ...              # event.code, event.message, event.hint
    handle.cancel()

Blocking (scripts, ``blender -b``)::

    with Client() as client:
        result = client.run("sleep", {"steps": 3}, timeout=30, on_progress=lambda p: print(p.fraction))

Every submitted job ends with exactly one of ``Result``, ``Error`` or ``Cancelled``, also when the
backend dies or restarts: the client watches the connection, the backend's heartbeats and its own
deadlines, and reports a lost job as ``Error(code="backend_lost")``. It reconnects by itself.
A ``Client`` serves one thread at a time (a call from a second thread while one is in a call raises
``RuntimeError``): give each thread its own.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import numbers
import os
import threading
import time
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import zmq

from . import __version__
from .events import (
    TERMINAL_EVENTS,
    Accepted,
    BackendUnavailable,
    Cancelled,
    Connected,
    Disconnected,
    Error,
    Event,
    JobCancelledError,
    JobFailed,
    Progress,
    Result,
)
from .files import check_key_file
from .frames import EVENTS, POLLIN, read_monitor_event, recv_frames, send_frames
from .protocol import (
    DEFAULT_ENDPOINT,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_LIMITS,
    PROTOCOL_VERSION,
    SERVER_TYPES,
    ErrorCode,
    Limits,
    Message,
    MessageType,
    ProtocolError,
    check_outgoing,
    decode,
    encode,
    new_id,
    wants_zero_copy,
)

log = logging.getLogger(__name__)

# What the client accepts from its backend (the backend's own limits bound what we send).
RECEIVE_LIMITS = Limits(max_header_bytes=16 * 2**20, max_arrays=4096, max_message_bytes=2**40)
# What any backend accepts (`handforge serve --max-message-mb` is at least 1): before its welcome says its
# limits, a larger message waits for it instead of risking a dropped connection.
UNWELCOMED_LIMITS = Limits(max_message_bytes=2**20)
_TICK_S = 0.05  # how often blocking waits re-check deadlines
# Events kept for poll(); beyond, the oldest of jobs that have ended are dropped (their outcome stays on their
# handle): a script that submits and waits, never polling, kept every job's events, results' arrays included
MAX_PENDING = 1024
# ... and of their arrays (a 4,096-hand forward_hands result is 80 MB: 1,024 events of those were 5 GB)
MAX_PENDING_BYTES = 256 * 2**20


# ------------------------------------------------------------------------------------------ keys
@dataclass(frozen=True)
class CurveKeys:
    """CurveZMQ keys of a client: the server's public key and the client's own key pair (z85)."""

    server_public: bytes
    client_public: bytes
    client_secret: bytes

    @classmethod
    def from_files(cls, server_public_file: str | os.PathLike, client_secret_file: str | os.PathLike) -> "CurveKeys":
        """From ``handforge keys`` files: the server's ``.key`` and this client's ``.key_secret``."""
        import zmq.auth  # only with CurveZMQ: it pulls in asyncio

        def load(path: str | os.PathLike) -> tuple[bytes, bytes | None]:
            check_key_file(path)
            try:
                return zmq.auth.load_certificate(Path(path))
            except ValueError as exc:  # zmq's own words name no file: "No public key found in afile"
                raise ValueError(f"{path} is not a CurveZMQ key file ({exc}); use the files `handforge keys` "
                                 "writes") from None
            except OSError as exc:  # (/proc/self/mem: "[Errno 5] Input/output error", the file unnamed)
                raise ValueError(f"cannot read the CurveZMQ key file {path}: {exc.strerror or exc}") from None

        server_public, server_secret = load(server_public_file)
        if server_secret:  # (a client's own .key_secret given as the server's key: a silent timeout)
            raise ValueError(f"{server_public_file} holds a secret key, not the server's public key: pass the server's "
                             ".key file (`handforge keys` writes it beside its .key_secret, which stays with its owner)")
        client_public, client_secret = load(client_secret_file)
        if not client_secret:
            raise ValueError(f"{client_secret_file} holds no secret key: pass this client's .key_secret file")
        return cls(server_public, client_public, client_secret)


# ------------------------------------------------------------------------------------------ jobs
class JobHandle:
    """A submitted job. ``state``: "sent" → "queued" → "running" → "done"; ``outcome`` is its
    terminal event (``Result``/``Error``/``Cancelled``) once done."""

    def __init__(self, client: "Client", job_id: str, kind: str, deadline: float | None) -> None:
        self.client = client
        self.id = job_id
        self.kind = kind
        self.state = "sent"
        self.position: int | None = None
        self.fraction = 0.0
        self.message = ""
        self.preview: dict[str, np.ndarray] = {}
        self.outcome: Result | Error | Cancelled | None = None
        self.sent_at = time.monotonic()
        self.deadline = deadline  # monotonic; None: only the backend's own limits apply
        self.instance: str | None = None  # the backend instance that accepted it
        self.given_as: dict[str, str] = {}  # "arrays.<name>" -> what a list sent for it was (``_given_as``)

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def cancel(self) -> None:
        self.client.cancel(self.id)

    def wait(self, timeout: float | None = None) -> Result | Error | Cancelled | None:
        """Block until the job ends (or ``timeout``); returns its outcome (None on timeout).
        Its events stay queued for ``poll()`` (the newest ``MAX_PENDING``, ``MAX_PENDING_BYTES`` of
        ended jobs')."""
        self.client._wait(lambda: self.done, timeout)
        return self.outcome

    def __repr__(self) -> str:
        return f"<JobHandle {self.id} {self.kind} {self.state} {self.fraction:.0%}>"


def _number(value: Any, default: int | float) -> int | float:
    """A number field of a backend's message, or ``default`` when it is not one (a bad backend's "x" raised
    out of ``poll()``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return type(default)(value) if ok else default


def _check_seconds(name: str, value: Any, unset: str = "", *, positive: bool = False) -> None:
    """A number of seconds a script passes, refused in its terms unless finite (and > 0 when ``positive``):
    a NaN connect_timeout, lost_after or ping timeout compares false with every time, so a call to a dead
    or stuck backend waited forever; 10**400 raised an OverflowError from deep inside."""
    if type(value) is float and math.isfinite(value) and (value > 0 or not positive):
        return  # the usual case, first: the ABC check below costs half a microsecond on every request
    try:
        ok = (not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
              and (value > 0 or not positive))
    except OverflowError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a {'positive ' if positive else ''}finite number of seconds{unset}, "
                         f"got {value!r}")


def _check_submit_arguments(kind: Any, params: Any, arrays: Any, timeout: Any) -> None:
    """What a script passes wrongly, said in its terms (a list of params was "cannot convert dictionary update
    sequence element #0", a timeout of inf or NaN "the submit header is not plain JSON")."""
    if not isinstance(kind, str):
        raise TypeError(f"kind must be a job kind's name (str), got {kind!r}")
    for name, value in (("params", params), ("arrays", arrays)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{name} must be a dict (or None), got {type(value).__name__}")
    if timeout is not None:
        _check_seconds("timeout", timeout, " (or None: the job kind's own limit)", positive=True)


def _one_thread_at_a_time(method: Callable) -> Callable:
    """A public call of a ``Client``, refused while another thread is in one: two threads on one ZeroMQ socket
    interleaved their messages' frames, and their jobs were refused as malformed or reported lost."""
    @functools.wraps(method)
    def guarded(self: "Client", *args: Any, **kwargs: Any) -> Any:
        if not self._in_call.acquire(blocking=False):  # (reentrant: run() calls submit() and _wait())
            raise RuntimeError(f"this HandForge client is in a call on another thread ({self._caller}); a client "
                               "serves one thread at a time: create one Client per thread")
        caller, self._caller = self._caller, threading.current_thread().name
        try:
            return method(self, *args, **kwargs)
        finally:
            self._caller = caller
            self._in_call.release()
    return guarded


# ------------------------------------------------------------------------------------------ client
class Client:
    """One connection to one backend.

    ``connect_timeout``: how long to wait for any answer before saying there is no backend.
    ``lost_after``: how long the backend may stay silent while jobs run before they are reported
    lost (default: four of the backend's heartbeat intervals, at least 3 s).
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, *, curve: CurveKeys | None = None,
                 name: str = f"handforge-client/{__version__}", connect_timeout: float = 5.0,
                 lost_after: float | None = None, context: zmq.Context | None = None) -> None:
        if not isinstance(endpoint, str):  # (Client(5780): an AttributeError from deep inside)
            raise TypeError(f"endpoint must be an address such as {DEFAULT_ENDPOINT!r}, got {endpoint!r}")
        _check_seconds("connect_timeout", connect_timeout, positive=True)
        if lost_after is not None:
            _check_seconds("lost_after", lost_after, " (or None: four heartbeats)", positive=True)
        self.endpoint = endpoint
        self.name = name
        self.connect_timeout = connect_timeout
        self._lost_after_arg = lost_after
        self.capabilities: dict[str, Any] | None = None
        self.instance: str | None = None
        self.connected = False
        self._limits: Limits | None = None     # the backend's, from its welcome
        self._held: list[Message] = []          # submits too large to send before the welcome
        self._heartbeat_s = DEFAULT_HEARTBEAT_S
        self._ids = itertools.count(1)
        self._prefix = new_id()[:8]
        self._jobs: dict[str, JobHandle] = {}
        self._pending: list[Event] = []
        self._pending_bytes = 0                 # of the arrays of the events in _pending
        self._replies: dict[str, Message | Error | None] = {}
        self._pings: dict[str, set[str]] = {}       # ping id -> jobs sent before it
        self._cancel_ids: dict[str, None] = {}      # ids of our cancel requests (ordered, bounded)
        self._cancel_on_reconnect: set[str] = set()
        self._created = time.monotonic()
        self._last_heard: float | None = None
        self._last_ping = 0.0
        self._ever_connected = False
        self._tcp_connected = False     # a TCP connection was made (even if its handshake then failed)
        self._last_word = ""            # what the backend said as it shut down, until one welcomes us again
        self._handshake_error: Error | None = None
        self._with_keys = curve is not None  # (a handshake that fails without keys: maybe no HandForge backend there)
        self._closed = False
        self._dropped_events = False    # said once: events of ended jobs dropped, never taken with poll()
        self._in_call = threading.RLock()  # held by the thread in a public call (_one_thread_at_a_time)
        self._caller = ""
        self._curve = curve
        self._context = context or zmq.Context.instance()
        self._routing_id = f"hf-{new_id()}".encode()  # fixed: the backend finds us again after a reconnect
        self._queued_while_down = False  # a submit went into the socket's queue while no backend was connected
        self._asked: dict[str, Message] = {}  # requests (hello, ping) waiting for their answer
        self._open_socket()

    def _open_socket(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.routing_id = self._routing_id
        sock.linger = 0
        sock.sndhwm = 1000
        sock.rcvhwm = 10_000
        sock.reconnect_ivl = 100
        sock.reconnect_ivl_max = 1000
        sock.heartbeat_ivl = 1000       # ZMTP pings: a dead TCP peer is noticed within heartbeat_timeout
        sock.heartbeat_timeout = 5000
        if self.endpoint.startswith("tcp://["):
            sock.ipv6 = True
        if self._curve is not None:
            sock.curve_serverkey = self._curve.server_public
            sock.curve_publickey = self._curve.client_public
            sock.curve_secretkey = self._curve.client_secret
        # Connection events (connected, lost, handshake refused) arrive on an inproc PAIR socket.
        try:
            monitor = sock.get_monitor_socket(addr=f"inproc://handforge-monitor-{new_id()}")
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        try:
            sock.connect(self.endpoint)
        except zmq.ZMQError as exc:
            sock.disable_monitor()
            monitor.close(linger=0)
            sock.close(linger=0)
            raise ValueError(f"cannot connect to {self.endpoint!r}: {exc} (expected tcp://HOST:PORT)") from None
        self._socket, self._monitor = sock, monitor
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(monitor, zmq.POLLIN)
        # A client dropped without close() (one per loop or notebook cell): garbage-collected, its sockets kept
        # their monitor and four file descriptors, until Client() raised "Too many open files"
        self._release = weakref.finalize(self, _release_sockets, sock, monitor)

    def _drop_queued(self) -> None:
        """Forget what waits in the socket for a backend that is not there: ZeroMQ keeps a message sent with no
        backend connected and delivers it once one is, so a job reported failed (no backend, lost) ran all the
        same when a backend came up later, ahead of the user's next job. Only a new socket (same identity)
        forgets them; the cancels owed to jobs of an earlier connection go out again on the next connect, and a
        request still waiting for its answer (hello, ping) is sent again on the new socket."""
        release = self._release
        try:
            self._open_socket()
        except (zmq.ZMQError, ValueError) as exc:  # (e.g. no file descriptor left: the old socket serves on)
            log.warning("could not renew the socket to drop the requests queued for %s: %s", self.endpoint, exc)
            return
        release()
        self._queued_while_down = False
        for mid, message in list(self._asked.items()):
            try:
                self._send(message)
            except BackendUnavailable:
                self._asked.pop(mid, None)

    # ---------------------------------------------------------------- non-blocking API
    @_one_thread_at_a_time
    def submit(self, kind: str, params: Mapping[str, Any] | None = None,
               arrays: Mapping[str, np.ndarray] | None = None, *, timeout: float | None = None) -> JobHandle:
        """Send a job; never blocks. ``timeout``: seconds the job may take from now, queue included
        (the backend enforces it and answers ``timeout``). Raises ``ProtocolError`` at once for what
        can never be sent (an unsupported dtype, a message over the backend's limits).

        Large arrays are sent without a copy: do not modify them until the job is accepted.
        """
        self._check_open()
        _check_submit_arguments(kind, params, arrays, timeout)
        job_id = new_id()
        message = Message(MessageType.SUBMIT, id=self._next_id(), job=job_id, kind=kind, params=dict(params or {}),
                          # (float: a Fraction passed the check, then failed the header as no JSON value)
                          arrays=dict(arrays or {}), data={"timeout": float(timeout)} if timeout is not None else None)
        grace = max(2.0, self._heartbeat_s)
        handle = JobHandle(self, job_id, kind, None if timeout is None else time.monotonic() + timeout + grace)
        handle.given_as = _given_as(arrays or {})
        self._jobs[job_id] = handle
        if self._handshake_error is not None:  # it could not reach the backend: say why at once
            err = self._handshake_error
            self._fail(handle, err.code, err.message, err.hint)
            return handle
        try:
            if self._limits is None and not _fits(message, UNWELCOMED_LIMITS):
                check_outgoing(encode(message), DEFAULT_LIMITS, message)  # what no backend takes fails at once
                self._held.append(message)  # sent (or refused as too_large) once the welcome says the limits
            else:
                self._send(message)
                self._queued_while_down |= not self.connected
        except Exception:
            self._jobs.pop(job_id, None)
            raise
        return handle

    @_one_thread_at_a_time
    def cancel(self, job: str | JobHandle) -> None:
        """Ask the backend to stop a job; its ``Cancelled`` event follows (or its result, if it had
        already finished)."""
        if not isinstance(job, (str, JobHandle)):  # (None or 5 did nothing, unsaid)
            raise TypeError(f"cancel takes a JobHandle or a job id (str), got {type(job).__name__}")
        job_id = job.id if isinstance(job, JobHandle) else job
        handle = self._jobs.get(job_id)
        if handle is None or handle.done:
            return  # (also once closed: close() ended every job)
        if any(m.job == job_id for m in self._held):  # not sent yet: a cancel sent now would reach the backend first
            self._finish(handle, Cancelled(job_id, "cancelled", "cancelled before it was sent to the backend"))
            return
        self._send_cancel(job_id)

    @_one_thread_at_a_time
    def poll(self, timeout: float = 0.0) -> list[Event]:
        """Events that arrived since the last call. ``timeout`` 0 (default): never blocks; otherwise, when
        none is there yet, waits up to ``timeout`` seconds for the first one (those arriving with it come
        with the next call)."""
        self._check_open()
        _check_seconds("timeout", timeout, " (0: do not wait)")
        end = time.monotonic() + timeout
        self._pump(0.0, handing_over=True)
        while not self._pending and timeout > 0:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            self._pump(min(remaining, _TICK_S), handing_over=True)
        events, self._pending, self._pending_bytes = self._pending, [], 0
        return events

    def jobs(self) -> list[JobHandle]:
        """Jobs still in flight."""
        return list(self._jobs.values())

    # ---------------------------------------------------------------- blocking API
    @_one_thread_at_a_time
    def run(self, kind: str, params: Mapping[str, Any] | None = None,
            arrays: Mapping[str, np.ndarray] | None = None, *, timeout: float | None = None,
            on_progress: Callable[[Progress], None] | None = None) -> Result:
        """Submit a job and wait for its end: returns the ``Result`` or raises ``JobFailed``
        (``BackendUnavailable`` when no backend answers, ``JobCancelledError`` when cancelled).
        Never waits forever: a dead backend is noticed by heartbeats. Interrupted (Ctrl-C, or ``on_progress``
        raising), it cancels the job before the exception goes on: nobody would wait for its result."""
        if on_progress is not None and not callable(on_progress):  # (found at the first progress, the job cancelled)
            raise TypeError(f"on_progress must be a function taking a Progress, got {type(on_progress).__name__}")
        handle = self.submit(kind, params, arrays, timeout=timeout)
        try:
            while True:
                self._wait(lambda: handle.done or any(e.job == handle.id for e in self._pending), None)
                mine = [e for e in self._pending if e.job == handle.id]
                self._pending = [e for e in self._pending if e.job != handle.id]
                self._pending_bytes -= sum(map(_array_bytes, mine))
                for event in mine:
                    if isinstance(event, Progress) and on_progress is not None:
                        on_progress(event)
                if handle.done:
                    break
        except BaseException:
            if not handle.done and not self._closed:  # (it ran on in the backend, holding a worker)
                self.cancel(handle)
            raise
        if isinstance(handle.outcome, Result):
            return handle.outcome
        raise JobFailed.from_event(handle.outcome)

    @_one_thread_at_a_time
    def hello(self, timeout: float = 60.0, *, devices: bool = True) -> dict[str, Any]:
        """The backend's capabilities (``welcome`` data). ``devices``: wait until the backend knows its
        devices (the first seconds after it starts: it probes them); False answers at once, with
        ``devices`` and ``compute_devices`` None until then."""
        reply = self._request(MessageType.HELLO, {"client": self.name, "protocol": PROTOCOL_VERSION,
                                                  "devices": devices}, timeout)
        return reply.data or {}

    @_one_thread_at_a_time
    def ping(self, timeout: float | None = None) -> float:
        """Round trip to the backend's socket loop, in seconds."""
        start = time.perf_counter()
        self._request(MessageType.PING, None, self.connect_timeout if timeout is None else timeout)
        return time.perf_counter() - start

    @_one_thread_at_a_time
    def close(self) -> None:
        """Tell the backend we leave (it cancels our jobs) and close the socket. Jobs still running end
        here, ``Cancelled`` with reason "closed": every job ends with one outcome."""
        if self._closed:
            return
        self._closed = True
        for handle in list(self._jobs.values()):
            self._finish(handle, Cancelled(handle.id, "closed", "the client was closed before the job ended"))
        if self.connected:
            try:
                send_frames(self._socket, encode(Message(MessageType.BYE, id=self._next_id())))
            except zmq.ZMQError:
                pass
        self._release.detach()
        _release_sockets(self._socket, self._monitor, linger=100 if self.connected else 0)
        self.connected = False  # (it stayed True once closed)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- internals: sending
    def _next_id(self) -> str:
        return f"{self._prefix}.{next(self._ids)}"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this HandForge client is closed (make a new Client, or make the calls inside its "
                               "with block)")

    def _send(self, message: Message) -> None:
        frames = encode(message)
        check_outgoing(frames, self._limits or UNWELCOMED_LIMITS, message)
        try:
            send_frames(self._socket, frames, copy=not wants_zero_copy(frames))
        except zmq.Again:
            raise BackendUnavailable(ErrorCode.NO_BACKEND, f"too many requests are waiting for the backend at "
                                     f"{self.endpoint}", self._start_hint()) from None

    def _send_cancel(self, job_id: str) -> None:
        mid = self._next_id()
        self._cancel_ids[mid] = None
        _trim(self._cancel_ids)
        try:
            self._send(Message(MessageType.CANCEL, id=mid, job=job_id))
        except BackendUnavailable:
            pass  # the job will be reported lost anyway

    def _request(self, mtype: MessageType, data: dict | None, timeout: float) -> Message:
        self._check_open()
        _check_seconds("timeout", timeout, positive=True)
        mid = self._next_id()
        self._asked[mid] = Message(mtype, id=mid, data=data)
        try:
            self._send(self._asked[mid])
        except BaseException:
            self._asked.pop(mid, None)
            raise
        self._replies[mid] = None  # (after the send: a send refused left its entry, one per ping to a dead backend)
        start = time.monotonic()

        def answered() -> bool:
            if self._replies[mid] is not None:
                return True
            if self._handshake_error is not None:
                return True
            if not self._ever_connected and time.monotonic() - start > self.connect_timeout:
                return True
            if self._ever_connected and not self.connected and time.monotonic() - start > self._lost_after():
                return True  # (its connection is gone: no use waiting the whole timeout, as a job does not)
            return False

        try:
            self._wait(answered, timeout)
        finally:
            self._asked.pop(mid, None)
        reply = self._replies.pop(mid)
        if isinstance(reply, Message):
            return reply
        if isinstance(reply, Error):
            raise JobFailed(reply.code, reply.message, reply.hint, field=reply.field)
        if self._handshake_error is not None:
            raise JobFailed.from_event(self._handshake_error)
        if not self._ever_connected:
            raise BackendUnavailable(*self._no_backend())
        if not self.connected:
            raise BackendUnavailable(ErrorCode.BACKEND_LOST, f"the connection to the backend at {self.endpoint} was "
                                     f"lost and has not come back for {time.monotonic() - start:.1f} s ({mtype} "
                                     "unanswered)", self._start_hint())
        raise BackendUnavailable(ErrorCode.BACKEND_LOST, f"the backend at {self.endpoint} did not answer "
                                 f"{mtype} within {timeout:g} s", "it may be overloaded or stuck: see its log")

    def _no_backend(self) -> tuple[str, str, str]:
        if self._tcp_connected and not self._with_keys:  # (said to be about keys that were never given)
            return (ErrorCode.AUTH_FAILED, f"something at {self.endpoint} accepts connections but never completes "
                    "a ZeroMQ handshake", "it is not a HandForge backend (another program on that port? check the "
                    "address), or a backend that requires CurveZMQ keys (connect with curve=CurveKeys.from_files(...))")
        if self._tcp_connected:  # something listens there, but the handshake never completes
            return (ErrorCode.AUTH_FAILED, f"the backend at {self.endpoint} accepts connections but the security "
                    "handshake never completes", "check the CurveZMQ keys: the server public key given to this "
                    "client must match the backend's --curve-secret, and the backend may require keys")
        return ErrorCode.NO_BACKEND, f"no backend at {self.endpoint}", self._start_hint()

    def _start_hint(self) -> str:
        return "start it with `handforge serve`" + ("" if "127.0.0.1" in self.endpoint or "localhost" in
                                                    self.endpoint else ", check the address and that its port is reachable")

    # ---------------------------------------------------------------- internals: receiving
    @_one_thread_at_a_time
    def _wait(self, done: Callable[[], bool], timeout: float | None) -> None:
        if timeout is not None:  # (handle.wait(nan) waited until the job ended; 10**400 raised OverflowError)
            _check_seconds("timeout", timeout, " (or None: until it ends)")
        if done():
            return
        self._check_open()
        end = None if timeout is None else time.monotonic() + timeout
        while not done():  # each pump polls first, then reads: no separate read before the first poll
            remaining = _TICK_S if end is None else min(_TICK_S, end - time.monotonic())
            if remaining <= 0:
                self._pump(0.0)  # what has arrived by now still counts
                return
            self._pump(remaining)

    def _pump(self, timeout: float, handing_over: bool = False) -> None:
        """Read everything available (waiting up to ``timeout`` for something), then check deadlines. ``handing_over``:
        ``poll`` reads to return them all, so none is dropped (its first read cut a burst of more than ``MAX_PENDING``
        events to that, events of ended jobs lost though the script was polling)."""
        if timeout > 0:
            # Each EVENTS query is a system call (~3 us): only the sockets the poll named are read.
            ready = dict(self._poller.poll(int(timeout * 1000) or 1))
            if self._socket in ready:
                self._drain_socket(known_ready=True)
            if self._monitor in ready:
                self._drain_monitor()
        else:
            self._drain_socket()
            self._drain_monitor()
        self._check_deadlines(time.monotonic())
        if self._queued_while_down and not self.connected and not self._waiting_in_socket():
            self._drop_queued()  # every job sent while down has ended: none may reach a backend that comes later
        if not handing_over and (len(self._pending) > MAX_PENDING or self._pending_bytes > MAX_PENDING_BYTES):
            self._drop_old_events()

    def _waiting_in_socket(self) -> bool:
        held = self._held_jobs()
        return any(h.state == "sent" and h.id not in held for h in self._jobs.values())

    def _held_jobs(self) -> set[str]:
        """The jobs not sent yet, waiting in the client for a welcome: the backend cannot know them."""
        return {m.job for m in self._held}

    def _drop_old_events(self) -> None:
        """Down to ``MAX_PENDING`` events and ``MAX_PENDING_BYTES`` of arrays, the oldest of ended jobs dropped (said
        once in the log); those of jobs in flight and those of no job (connected, lost) are kept."""
        excess, kept = len(self._pending) - MAX_PENDING, []
        for event in self._pending:
            if ((excess > 0 or self._pending_bytes > MAX_PENDING_BYTES) and event.job is not None
                    and event.job not in self._jobs):
                excess -= 1
                self._pending_bytes -= _array_bytes(event)
            else:
                kept.append(event)
        self._pending = kept
        if not self._dropped_events:
            self._dropped_events = True
            log.warning("events were not taken with poll() (more than %d, or %d MiB of arrays): the oldest events "
                        "of ended jobs are dropped (their outcomes stay on their JobHandle)", MAX_PENDING,
                        MAX_PENDING_BYTES // 2**20)

    def _drain_socket(self, known_ready: bool = False) -> None:
        """Read every message that has arrived; ``known_ready`` (a poll just named the socket): read one
        and leave the rest to the next poll, which sees them at once, saving an EVENTS query per round trip."""
        # Checking EVENTS first is much cheaper than letting recv raise zmq.Again when nothing is there.
        while known_ready or self._socket.get(EVENTS) & POLLIN:
            try:
                frames = recv_frames(self._socket)
            except zmq.Again:
                return
            self._on_frames(frames)
            if known_ready:
                return

    def _on_frames(self, frames: list) -> None:
        try:
            message = decode(frames, limits=RECEIVE_LIMITS, accept=SERVER_TYPES, local_role="client")
        except ProtocolError as exc:
            log.warning("ignored a malformed message from the backend: %s", exc)
            self._last_heard = time.monotonic()
            if exc.code == ErrorCode.UNSUPPORTED_VERSION:
                # the request or job it answers ends here, saying what to upgrade: dropped, a hello() waited its
                # whole timeout to say "did not answer", and a job its own
                error = Error(None, exc.code, exc.message, exc.hint)
                for held in [self._jobs.get(m.job) for m in self._held]:  # waiting for a welcome it cannot read
                    if held is not None:
                        self._finish(held, replace(error, job=held.id))
                handle = self._jobs.get(exc.job) if exc.job else None
                if self._replies.get(exc.msg_id, False) is None:
                    self._replies[exc.msg_id] = error
                elif handle is not None:
                    self._finish(handle, replace(error, job=handle.id))
                else:
                    self._pending.append(error)
            return
        self._on_message(message)

    def _drain_monitor(self) -> None:
        while self._monitor.get(EVENTS) & POLLIN:
            try:
                kind, value = read_monitor_event(self._monitor)
            except zmq.Again:
                return
            if kind == zmq.EVENT_CONNECTED:
                self._tcp_connected = True
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._on_connected()
            elif kind == zmq.EVENT_DISCONNECTED:
                self._drain_socket()  # what the backend said before it went comes first
                self._on_disconnected("the connection was closed")
            elif kind in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                          zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
                self._on_handshake_failed(kind, value)

    def _on_connected(self) -> None:
        self.connected = True
        self._queued_while_down = False  # delivered now, to jobs still waiting for them
        self._ever_connected = True
        self._handshake_error = None
        self._last_heard = time.monotonic()
        try:  # refresh capabilities and learn which backend instance this is
            self._send(Message(MessageType.HELLO, id=self._next_id(), data={"client": self.name,
                                                                            "protocol": PROTOCOL_VERSION}))
        except BackendUnavailable:
            pass
        for job_id in self._cancel_on_reconnect:  # jobs we reported lost must not run on
            self._send_cancel(job_id)
        self._cancel_on_reconnect.clear()

    def _on_disconnected(self, reason: str) -> None:
        if not self.connected:
            return
        self.connected = False
        self._pending.append(Disconnected(None, self.endpoint, reason))
        for handle in list(self._jobs.values()):
            if handle.state == "sent":  # maybe still in the socket's queue
                self._queued_while_down = True
            else:  # accepted: it cannot report back on a new connection
                self._lose(handle, f"the connection to the backend at {self.endpoint} was lost while job "
                                   f"{handle.id} ({handle.kind}) was {_state_said(handle)}")

    def _on_handshake_failed(self, kind: int, value: Any) -> None:
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            message = f"the backend at {self.endpoint} refused this client's CurveZMQ key"
            hint = "ask its operator to add your public .key file to the backend's --curve-clients folder"
        elif not self._with_keys:  # (garbage from a program that is no backend was said to be about keys)
            message = f"the ZeroMQ handshake with {self.endpoint} failed"
            hint = ("it is not a HandForge backend (another program on that port? check the address), or a backend "
                    "that requires CurveZMQ keys (connect with curve=CurveKeys.from_files(server.key, "
                    "client.key_secret))")
        else:
            message = f"the security handshake with the backend at {self.endpoint} failed"
            hint = ("the backend may not use CurveZMQ keys, or have another public key than the one given")
        first = self._handshake_error is None
        self._handshake_error = Error(None, ErrorCode.AUTH_FAILED, message, hint)
        if first:
            self._pending.append(self._handshake_error)
        for handle in list(self._jobs.values()):
            self._fail(handle, ErrorCode.AUTH_FAILED, message, hint)

    def _on_message(self, message: Message) -> None:
        now = time.monotonic()
        self._last_heard = now
        data = message.data or {}
        instance = data.get("instance") or _fields(data.get("server")).get("instance")
        if isinstance(instance, str):
            self._note_instance(instance)
        mtype = message.type
        if mtype == MessageType.WELCOME:
            # the answer to hello() goes to its caller: as an event too it piled up (the capabilities, ~100 KB
            # each) in a script that only calls run() and hello() and so never polls
            self._on_welcome(message, announce=message.id not in self._replies)
        elif mtype == MessageType.PONG:
            self._on_job_list(data.get("jobs"), self._pings.pop(message.id, None))
        elif mtype == MessageType.HEARTBEAT:
            self._on_job_list(data.get("jobs"), {h.id for h in self._jobs.values() if h.state != "sent"})
        if message.id in self._replies and mtype in (MessageType.WELCOME, MessageType.PONG, MessageType.ERROR):
            self._replies[message.id] = message if mtype != MessageType.ERROR else _error_event(message)
            return
        if mtype == MessageType.ERROR and message.id in self._cancel_ids:
            self._cancel_ids.pop(message.id, None)  # e.g. unknown_job: it had finished already
            log.debug("cancel of %s answered: %s", message.job, data.get("message"))
            return
        handle = self._jobs.get(message.job) if message.job else None
        if handle is None:
            if mtype == MessageType.ERROR and not message.job:
                self._pending.append(_error_event(message))
            return  # events of jobs we no longer wait for (ended, reported lost, or closed): each has its outcome
        if mtype == MessageType.ACCEPTED:
            handle.state, handle.instance = "queued", self.instance
            handle.position = _number(data.get("position"), 0)
            self._pending.append(Accepted(handle.id, handle.position))
        elif mtype == MessageType.PROGRESS:
            handle.state = "running"
            handle.fraction = float(_number(data.get("fraction"), 0.0))
            handle.message = str(data.get("message", ""))
            handle.preview = message.arrays
            self._pending.append(Progress(handle.id, handle.fraction, handle.message, message.arrays))
            self._pending_bytes += _array_bytes(self._pending[-1])
        elif mtype == MessageType.RESULT:
            self._finish(handle, Result(handle.id, data, message.arrays))
        elif mtype == MessageType.CANCELLED:
            if data.get("reason") == "shutdown":
                self._last_word = str(data.get("message", "it was shutting down"))
            self._finish(handle, Cancelled(handle.id, str(data.get("reason", "cancelled")), str(data.get("message", ""))))
        elif mtype == MessageType.ERROR:
            self._finish(handle, _error_event(message))

    def _on_welcome(self, message: Message, announce: bool = True) -> None:
        data = message.data or {}
        self._last_word = ""
        self.capabilities = data
        self._limits = Limits.from_json(_fields(data.get("limits")))
        held, self._held = self._held, []
        for message in held:
            handle = self._jobs.get(message.job)
            if handle is None or handle.done:
                continue
            try:
                self._send(message)
            except ProtocolError as exc:
                self._fail(handle, exc.code, exc.message, exc.hint)
            except BackendUnavailable as exc:
                self._fail(handle, exc.code, exc.message, exc.hint)
        server = _fields(data.get("server"))
        heartbeat = server.get("heartbeat_s")
        if isinstance(heartbeat, (int, float)) and heartbeat > 0:
            self._heartbeat_s = float(heartbeat)
        if announce:
            self._pending.append(Connected(None, self.endpoint, str(server.get("instance", "")), data))

    def _note_instance(self, instance: str) -> None:
        if self.instance is not None and instance != self.instance:
            for handle in list(self._jobs.values()):
                if handle.instance is not None and handle.instance != instance:
                    self._lose(handle, f"the backend at {self.endpoint} restarted: job {handle.id} ({handle.kind}) "
                                       "was lost with it")
        self.instance = instance

    def _on_job_list(self, listed: Any, expected: set[str] | None) -> None:
        """The backend's list of our live jobs: a job it should know and does not is lost."""
        if not isinstance(listed, list) or expected is None:
            return
        for job_id in expected - {j for j in listed if isinstance(j, str)}:  # ([[1]] raised out of poll())
            handle = self._jobs.get(job_id)
            if handle is not None and not handle.done:
                self._lose(handle, f"the backend at {self.endpoint} has no record of job {job_id} ({handle.kind}): "
                                   "it restarted or the request was lost")

    def _check_deadlines(self, now: float) -> None:
        if not self._jobs:
            return
        late = [h for h in self._jobs.values() if h.deadline is not None and now > h.deadline]
        if late:
            self._drain_socket()  # an answer already queued (after a progress event) is not late
        for handle in late:
            if handle.done:
                continue
            self._send_cancel(handle.id)
            said = f"; its last word was: {self._last_word}" if self._last_word else ""
            if self._ever_connected and not self.connected:  # (a timeout, where run() without one said backend lost)
                self._fail(handle, ErrorCode.BACKEND_LOST, f"job {handle.id} ({handle.kind}) was never answered by the "
                           f"backend at {self.endpoint}: the connection to it was lost{said}", self._start_hint())
            elif handle.state == "sent":  # not even accepted: a backend stopped, not a slow job
                self._fail(handle, ErrorCode.TIMEOUT, f"job {handle.id} ({handle.kind}) was never answered by the "
                           f"backend at {self.endpoint}{said}", f"check that it runs ({self._start_hint()}), or ask "
                           "for a longer timeout")
            else:
                self._fail(handle, ErrorCode.TIMEOUT, f"job {handle.id} ({handle.kind}) got no answer from the "
                           f"backend in time", "ask for a longer timeout, or check the backend's log")
        if not self._jobs:
            return
        since = max(self._last_heard or self._created, min(h.sent_at for h in self._jobs.values()))
        silence = now - since
        if not self._ever_connected:
            if silence > self.connect_timeout:
                code, message, hint = self._no_backend()
                for handle in list(self._jobs.values()):
                    # (ZeroMQ may hand its submit to a backend connecting just now, before the socket is renewed)
                    self._cancel_on_reconnect.add(handle.id)
                    self._fail(handle, code, message, hint)
            return
        if silence > self._lost_after():
            # (a job sent after the backend shut down: its shutdown notice, not only the silence, says why)
            said = f"; its last word was: {self._last_word}" if self._last_word else ""
            for handle in list(self._jobs.values()):
                self._lose(handle, f"the backend at {self.endpoint} stopped answering ({silence:.1f} s without a "
                                   f"word) while job {handle.id} ({handle.kind}) was {_state_said(handle)}{said}")
        elif now - (self._last_heard or 0.0) >= self._heartbeat_s and now - self._last_ping >= self._heartbeat_s:
            self._last_ping = now  # ask which of our jobs the backend knows: answers within one round trip
            mid = self._next_id()
            held = self._held_jobs()
            self._pings[mid] = {h.id for h in self._jobs.values() if h.id not in held}
            _trim(self._pings)  # pings a dead backend never answers
            try:
                self._send(Message(MessageType.PING, id=mid))
            except BackendUnavailable:
                self._pings.pop(mid, None)

    def _lost_after(self) -> float:
        return self._lost_after_arg or max(4 * self._heartbeat_s, 3.0)

    def _lose(self, handle: JobHandle, message: str) -> None:
        # it must not run on, its result dropped: cancel it now when the connection is up (the backend was silent),
        # and again on a reconnect (a cancel still queued on a connection that then drops goes with it)
        if self.connected:
            self._send_cancel(handle.id)
        self._cancel_on_reconnect.add(handle.id)
        self._fail(handle, ErrorCode.BACKEND_LOST, message, "submit it again once the backend is back "
                   "(`handforge serve`); the client reconnects by itself")

    def _fail(self, handle: JobHandle, code: str, message: str, hint: str) -> None:
        self._finish(handle, Error(handle.id, str(code), message, hint))

    def _finish(self, handle: JobHandle, outcome: Result | Error | Cancelled) -> None:
        if handle.done:
            return
        if isinstance(outcome, Error) and outcome.field in handle.given_as:  # (the backend sees an array only)
            outcome = replace(outcome, message=f"{outcome.message} (it was given as {handle.given_as[outcome.field]})")
        handle.outcome = outcome
        handle.state = "done"
        self._jobs.pop(handle.id, None)
        if self._held:  # a job waiting for the welcome that ended without it: its arrays are not needed
            self._held = [m for m in self._held if m.job != handle.id]
        self._pending.append(outcome)
        self._pending_bytes += _array_bytes(outcome)


def _state_said(handle: JobHandle) -> str:
    """What the client knows of a job's state, in words: "queued" only says it was accepted, and a job that had
    started without a progress event yet was said to be queued."""
    if handle.state == "running":
        return f"running ({handle.fraction:.0%} done)"
    if handle.state == "queued":
        return "accepted, with no progress reported yet (queued or running)"
    return "sent, not yet accepted"


def _given_as(arrays: Mapping[str, Any]) -> dict[str, str]:
    """What each array given as a list or tuple was, and what numpy made of it, by its error field: "a list of 10
    ints, which numpy sends as int64 of shape (10,)". The backend refused it as an int64 array, and nothing said
    that it was the list the script wrote, nor why it was int64."""
    kinds = {"i": "int", "u": "int", "f": "float", "b": "bool", "c": "complex"}
    given = {}
    for name, value in arrays.items():
        if not isinstance(value, (list, tuple)):
            continue
        try:
            array = np.asarray(value)
        except ValueError:  # (ragged: the send refuses it, saying so)
            continue
        if array.dtype.kind in kinds and array.ndim:
            count = "×".join(map(str, array.shape))
            given[f"arrays.{name}"] = (f"a {type(value).__name__} of {count} {kinds[array.dtype.kind]}s, which numpy "
                                       f"sends as {array.dtype} of shape {tuple(array.shape)}")
    return given


def _array_bytes(event: Event) -> int:
    """The bytes of an event's arrays (a result's, a progress's preview)."""
    arrays = event.arrays if isinstance(event, Result) else event.preview if isinstance(event, Progress) else {}
    return sum(a.nbytes for a in arrays.values())


def _release_sockets(sock: zmq.Socket, monitor: zmq.Socket, linger: int = 0) -> None:
    if not sock.closed:  # (closed already when their context was destroyed)
        sock.disable_monitor()
    monitor.close(linger=0)
    sock.close(linger=linger)


def _fields(value: Any) -> Mapping[str, Any]:
    """An object field of a backend's message, or {} when it is not one ("server": "x" in a welcome raised
    AttributeError out of ``poll()``)."""
    return value if isinstance(value, Mapping) else {}


def _fits(message: Message, limits: Limits) -> bool:
    try:
        check_outgoing(encode(message), limits)
        return True
    except ProtocolError:
        return False


def _trim(ordered: dict, keep: int = 256) -> None:
    """Forget the oldest entries of a bookkeeping dict, so a long session does not grow it forever."""
    for key in list(ordered)[: max(0, len(ordered) - keep)]:
        del ordered[key]


def _error_event(message: Message) -> Error:
    data = message.data or {}
    return Error(message.job, str(data.get("code", ErrorCode.INTERNAL)), str(data.get("message", "")),
                 str(data.get("hint", "")), str(data.get("field") or ""))


# ------------------------------------------------------------------------------------------ helpers
def hand_rigs(result: Result) -> dict[str, Any]:
    """The ``HandRig`` of each side in a ``hand_model`` result."""
    from .poses import hand_array_name
    from .rig import HandRig

    metas = result.data.get("rigs") if isinstance(result, Result) else None
    if not isinstance(metas, Mapping):  # (a forward_hands result was KeyError: 'rigs')
        raise ValueError("hand_rigs takes the Result of a hand_model job (client.run(\"hand_model\", ...)), got "
                         + (f"a Result without rigs (its data: {', '.join(result.data)})" if isinstance(result, Result)
                            else type(result).__name__))
    rigs = {}
    for side, meta in metas.items():
        prefix = hand_array_name(side, "")
        arrays = {name[len(prefix):]: a for name, a in result.arrays.items() if name.startswith(prefix)}
        rigs[side] = HandRig.from_arrays(meta, arrays)
    return rigs


def pose_arrays(poses: Any) -> dict[str, np.ndarray]:
    """``forward_hands`` input arrays from ``{side: HandPose}`` (batched or single), or from anything holding one as
    ``.hands`` (a ``TwoHandPose``, a ``MotionClip``: its frames as the batch), float32 (B, n)."""
    from .poses import POSE_FIELDS, HandPose, hand_array_name

    if not isinstance(poses, Mapping) and isinstance(getattr(poses, "hands", None), Mapping):
        poses = poses.hands  # (a TwoHandPose or a clip was an AttributeError: 'TwoHandPose' has no 'items')
    if not isinstance(poses, Mapping):
        raise TypeError(f"pose_arrays takes {{side: HandPose}}, a TwoHandPose or a MotionClip, got {type(poses).__name__}")
    out = {}
    for side, pose in poses.items():
        if not isinstance(pose, HandPose):  # (a dict of arrays, or a pose's name, was an AttributeError)
            raise TypeError(f"pose_arrays takes {{side: HandPose}}; {side!r} is a {type(pose).__name__}: make one with "
                            "HandPose(global_orient=..., hand_pose=...) or pose_library.get(name, side=...)")
        for name, size in POSE_FIELDS.items():
            out[hand_array_name(side, name)] = np.asarray(getattr(pose, name), dtype=np.float32).reshape(-1, size)
    return out


def motion_clips(result: Any) -> list[Any]:
    """A motion job's ``Result`` (``motion.inbetween``, ``motion.trajectory``, ``motion.generate``) as one
    ``MotionClip`` per sample: sample 0 is the result's own clip (``data["motion"]`` and its ``<side>.*`` arrays),
    sample k row k of its ``samples.<side>`` arrays (N, T, 51: global_orient, hand_pose, transl), with sample 0's
    shapes, presence, frame rate and records."""
    from .poses import HandPose, MotionClip, PoseFormatError

    meta = result.data.get("motion") if isinstance(getattr(result, "data", None), Mapping) else None
    if not isinstance(meta, Mapping):
        raise PoseFormatError("motion_clips takes the Result of a motion job (motion.inbetween, motion.trajectory or "
                              "motion.generate): this one holds no motion (data['motion'])")
    base = MotionClip.from_arrays(meta, {k: v for k, v in result.arrays.items() if not k.startswith("samples.")},
                                  strict=False)
    packed = {side: np.asarray(result.arrays[f"samples.{side}"]) for side in base.hands
              if f"samples.{side}" in result.arrays}
    wrong = {side: p.shape for side, p in packed.items() if p.ndim != 3 or p.shape[1:] != (base.num_frames, 51)}
    if wrong or len({len(p) for p in packed.values()}) > 1:
        raise PoseFormatError(f"the result's samples.<side> arrays must be (N, {base.num_frames}, 51) alike, got "
                              f"{ {side: p.shape for side, p in packed.items()} }")
    clips = [base]
    for k in range(1, max((len(p) for p in packed.values()), default=1)):
        hands = {side: HandPose(global_orient=packed[side][k][:, :3], hand_pose=packed[side][k][:, 3:48],
                                transl=packed[side][k][:, 48:51], betas=pose.betas) if side in packed else pose
                 for side, pose in base.hands.items()}
        clips.append(MotionClip(hands=hands, present=dict(base.present), fps=base.fps, hand_model=base.hand_model,
                                extra=dict(base.extra)))
    return clips


def anchor_arrays(pose: Any) -> dict[str, np.ndarray]:
    """``interaction.sample``'s anchor arrays (``anchor.global_orient`` (3,), ...) from one ``HandPose``; its side is
    the job's ``anchor_side``."""
    from .poses import POSE_FIELDS, HandPose

    if not isinstance(pose, HandPose) or pose.batch_shape != ():
        raise TypeError("anchor_arrays takes one HandPose (not batched), e.g. pose_library.get(name, side=...), got "
                        + (f"a batch of shape {pose.batch_shape}" if isinstance(pose, HandPose) else type(pose).__name__))
    return {f"anchor.{name}": np.asarray(getattr(pose, name), dtype=np.float32) for name in POSE_FIELDS}


def inbetween_arrays(keys: Mapping[int, Any], num_frames: int) -> dict[str, np.ndarray]:
    """``motion.inbetween`` input arrays from two-hand poses keyed at any frames: ``keys`` {frame: TwoHandPose}, frames
    0 to ``num_frames`` - 1. Every part of each hand a key holds is a key (kept exactly); the frames between are the
    engine's. A hand is sent where a key holds it, with its shape (betas), one per motion, from its first key.
    (Keys on some joints only: set the mask's columns yourself, ``KEY_PARTS`` per frame.)"""
    from .poses import KEY_PARTS, MOTION_MAX_FRAMES, POSE_FIELDS, TwoHandPose, hand_array_name
    from .skeleton import NUM_BETAS, SIDES

    if isinstance(num_frames, bool) or not isinstance(num_frames, numbers.Integral) \
            or not 2 <= num_frames <= MOTION_MAX_FRAMES:
        raise ValueError(f"num_frames must be a whole number from 2 to {MOTION_MAX_FRAMES}, got {num_frames!r}")
    if not isinstance(keys, Mapping) or not keys:
        raise TypeError("inbetween_arrays takes keys as {frame: TwoHandPose}, at least one, got "
                        + (type(keys).__name__ if not isinstance(keys, Mapping) else "none"))
    for frame, pose in keys.items():
        if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or not 0 <= frame < num_frames:
            raise ValueError(f"key frame {frame!r} is not one of the frames 0 to {num_frames - 1}")
        if not isinstance(pose, TwoHandPose) or any(h.batch_shape != () for h in pose.hands.values()):
            raise TypeError(f"the key at frame {frame} must be one TwoHandPose (e.g. side_by_side(pose) or "
                            f"TwoHandPose(left=..., right=...)), got {type(pose).__name__}")
    out: dict[str, np.ndarray] = {}
    for side in SIDES:
        held = sorted((int(frame), pose.hands[side]) for frame, pose in keys.items() if side in pose.hands)
        if not held:
            continue
        betas = held[0][1].betas
        for frame, hand in held:
            if not np.array_equal(hand.betas, betas):
                raise ValueError(f"the {side} hand's shape (betas) at frame {frame} differs from its first key's (frame "
                                 f"{held[0][0]}): a motion has one shape per hand")
        for name, size in POSE_FIELDS.items():
            if name != "betas":
                values = out[hand_array_name(side, name)] = np.zeros((num_frames, size), np.float32)
                for frame, hand in held:
                    values[frame] = getattr(hand, name)
        out[hand_array_name(side, "betas")] = np.asarray(betas, np.float32).reshape(NUM_BETAS)
        mask = out[hand_array_name(side, "mask")] = np.zeros((num_frames, KEY_PARTS), np.uint8)
        mask[[frame for frame, _ in held]] = 1
    return out


__all__ = ["Accepted", "BackendUnavailable", "Cancelled", "Client", "Connected", "CurveKeys", "Disconnected", "Error",
           "Event", "JobCancelledError", "JobFailed", "JobHandle", "Progress", "Result", "TERMINAL_EVENTS", "anchor_arrays",
           "hand_rigs", "inbetween_arrays", "motion_clips", "pose_arrays"]
