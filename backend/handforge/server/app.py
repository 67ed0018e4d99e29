"""The backend's socket loop: one ROUTER socket, one thread, never blocked by a job.

The loop decodes and validates each request, queues jobs on the worker pool, forwards the
workers' progress and results, enforces deadlines, and sends heartbeats to clients with jobs in
flight. Every job gets exactly one terminal event (``result``, ``error`` or ``cancelled``) unless
its client is gone. Nothing a client sends can stop the loop: a bad message gets a typed ``error``.
"""

from __future__ import annotations

import errno
import ipaddress
import itertools
import logging
import math
import os
import queue
import re
import signal
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from handforge import __version__
from handforge_shared.files import write_atomic
from handforge.server import capabilities, security
from handforge.server.jobs import JobContext
from handforge.server.builtin_jobs import default_registry
from handforge.server.model_cache import DEFAULT_BUDGET, ModelCache
from handforge.server.registry import JobKind, Registry, discover_engines
from handforge.server.workers import Finished, Job, Progress, Started, WorkerPool
from handforge_shared.frames import EVENTS, POLLIN, read_monitor_event, recv_frames, send_frames
from handforge_shared.protocol import (
    CLIENT_TYPES,
    DEFAULT_HEARTBEAT_S,
    DEFAULT_HOST,
    DEFAULT_LIMITS,
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    ErrorCode,
    Limits,
    Message,
    MessageType,
    ProtocolError,
    decode,
    encode,
    endpoint,
    error_from,
    error_message,
    parse_endpoint,
    wants_zero_copy,
)

log = logging.getLogger("handforge.server")
# Control characters (newlines, ANSI escapes, C1 codes, line separators) from job ids, client names and
# error messages are escaped so that a client cannot forge or hide log lines.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _escape_control_characters(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    if _CONTROL.search(message):
        record.msg, record.args = _CONTROL.sub(lambda m: ascii(m.group())[1:-1], message), None
    return True


log.addFilter(_escape_control_characters)
# libzmq closes a connection that sends a frame over the socket's hard limit; between the announced limit and
# this one the message reaches Python, which answers it with a typed ``too_large``.
HARD_LIMIT_FACTOR = 2
# The device probe imports torch (seconds, holding the GIL for long stretches): it starts once the first
# hello is answered, a job or a hello that asks for devices arrives, or the backend has been idle this long.
PROBE_IDLE_DELAY_S = 0.5


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT                  # 0: any free port (see endpoint_file)
    curve_secret: Path | None = None          # the server's .key_secret file
    curve_clients: Path | None = None         # folder of authorised client .key files
    max_queue: int = 32                       # jobs waiting to start; one more answers "busy"
    max_queued_bytes: int = 1 << 30           # their arrays together; a request passing it answers "busy"
    cpu_workers: int = 4                      # threads for "cpu"-class jobs
    devices: tuple[str, ...] | None = None    # serial workers for "gpu"-class jobs; None: every GPU, else the CPU
    heartbeat_s: float = DEFAULT_HEARTBEAT_S
    progress_interval_s: float = 0.05
    shutdown_grace_s: float = 2.0
    limits: Limits = DEFAULT_LIMITS
    endpoint_file: Path | None = None         # written once listening (for tests and scripts)
    model_memory_bytes: int = DEFAULT_BUDGET  # per device, for the model cache shared by every engine
    engine_packages: tuple[str, ...] = ()     # packages of engines besides handforge.engines (e.g. tests.engines)


@dataclass
class _ProbeDone:
    devices: list[dict[str, Any]]
    compute: list[str]
    error: str | None


def _bind_hint(errno_: int, host: str) -> str:
    """What to do when the socket cannot listen: a port in use is the usual case, but a --bind that is no
    address of this machine ("256.1.1.1", a host name) was told to choose another port too."""
    # libzmq's own numbers, which on Windows are not the C library's (EADDRINUSE 100 there, not 10048)
    if errno_ in (errno.EADDRINUSE, zmq.EADDRINUSE):
        return "is another `handforge serve` running? choose another --port"
    if errno_ in (errno.ENODEV, errno.EADDRNOTAVAIL, zmq.EADDRNOTAVAIL):
        return (f"{host!r} is no address or network interface of this machine: give one of its IP addresses, "
                "127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
    return "check --bind and --port"


class Server:
    """``Server(config).serve()`` runs until SIGINT/SIGTERM (in the main thread) or ``stop()``."""

    def __init__(self, config: ServerConfig = ServerConfig(), registry: Registry | None = None) -> None:
        self.config = config
        self.registry = registry or default_registry()
        for package in config.engine_packages:
            discover_engines(self.registry, package)
        self.models = ModelCache(config.model_memory_bytes)
        self.instance = os.urandom(8).hex()  # a restarted backend is a different instance
        self.endpoint: str | None = None
        self.failure: str | None = None      # set when the server stopped because of an error
        self._started = time.time()
        self._context = zmq.Context()
        self._router: zmq.Socket | None = None
        self._auth = None
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._pool = WorkerPool(self._post, config.cpu_workers)
        self._jobs: dict[tuple[bytes, str], Job] = {}
        # asked for devices before the probe ended: one per connection (a flood of hellos held a list of them)
        self._pending_hellos: dict[bytes, Message] = {}
        self._provisional: set[bytes] = set()                   # welcomed before it: welcomed again after
        self._peer_keys: dict[bytes, str] = {}                  # routing id -> CurveZMQ key of its connection
        self._monitor: zmq.Socket | None = None
        self._probe_thread: threading.Thread | None = None
        self._handlers = {MessageType.HELLO: self._on_hello, MessageType.SUBMIT: self._on_submit,
                          MessageType.CANCEL: self._on_cancel, MessageType.PING: self._on_ping,
                          MessageType.BYE: self._on_bye}
        self._peers: dict[int, str] = {}                        # connection fd -> peer address, for the log
        self._devices: list[dict[str, Any]] | None = None
        self._compute: list[str] = []
        self._stop_reason: str | None = None
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ life cycle
    def bind(self) -> str:
        """Check the security settings and start listening; returns the endpoint."""
        cfg = self.config
        security.check_bind(cfg.host, cfg.curve_secret, cfg.curve_clients)
        router = self._context.socket(zmq.ROUTER)
        router.linger = 0
        router.router_mandatory = 1   # sending to a vanished client raises: we cancel its jobs
        # A client that reconnects keeps its identity; with CurveZMQ a routing id in use is not handed over
        # (another key's connection could take a client's results), and heartbeats free a dead one in seconds.
        router.router_handover = 0 if cfg.curve_secret is not None else 1
        router.heartbeat_ivl = 1000
        router.heartbeat_timeout = 5000
        router.sndhwm = 10_000
        router.rcvhwm = 1_000
        router.maxmsgsize = self.hard_limit_bytes
        if ":" in cfg.host.strip("[]"):
            router.ipv6 = True
        if cfg.curve_secret is not None:
            keys = security.load_secret(cfg.curve_secret)  # a bad key file: refused before the clients' warnings
            self._auth = security.start_authenticator(self._context, cfg.curve_clients)
            security.configure_router(router, keys)
        address = endpoint(cfg.host, cfg.port) if cfg.port else endpoint(cfg.host, 0).rsplit(":", 1)[0] + ":*"
        try:
            router.bind(address)
        except zmq.ZMQError as exc:
            router.close()
            raise security.SecurityError(f"cannot listen on {address}: {exc.strerror} "
                                         f"({_bind_hint(exc.errno, cfg.host)})") from None
        self._router = router
        self._monitor = router.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        self.endpoint = router.last_endpoint.decode()
        if cfg.endpoint_file is not None:
            write_atomic(cfg.endpoint_file, local_endpoint(self.endpoint))
        return self.endpoint

    @property
    def hard_limit_bytes(self) -> int:
        """The socket's own limit per frame: above it libzmq drops the connection (logged), below it the
        announced ``max_message_bytes`` is checked in Python and answered with ``too_large``."""
        return HARD_LIMIT_FACTOR * self.config.limits.max_message_bytes

    def stop(self, reason: str = "stop requested") -> None:
        """Ask the loop to stop (thread-safe); running jobs are cancelled and their clients told."""
        self._stop_reason = self._stop_reason or reason
        self._wake()

    def serve(self) -> None:
        if self._router is None:
            self.bind()
        restore = self._install_signal_handlers()
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        log.info("HandForge backend %s (protocol v%d) listening on %s%s; requests over %g MiB are refused, and a "
                 "message part over %g MiB also closes its connection", __version__, PROTOCOL_VERSION, self.endpoint,
                 " with CurveZMQ" if self._auth else "", self.config.limits.max_message_bytes / 2**20,
                 self.hard_limit_bytes / 2**20)
        next_heartbeat = time.monotonic() + self.config.heartbeat_s
        probe_at = time.monotonic() + PROBE_IDLE_DELAY_S
        try:
            while self._stop_reason is None:
                timeout_ms = self._poll_timeout_ms(next_heartbeat)
                if self._probe_thread is None:
                    timeout_ms = min(timeout_ms, max(0, int((probe_at - time.monotonic()) * 1000) + 1))
                ready = dict(poller.poll(timeout_ms))
                if self._wake_r.fileno() in ready:
                    self._drain_wake()
                self._drain_events()
                if self._router in ready:
                    self._read_router()
                if self._monitor in ready:
                    self._drain_monitor()
                now = time.monotonic()
                if self._probe_thread is None and (now >= probe_at or self._provisional or self._jobs):
                    self._start_probe()
                self._enforce_deadlines(now)
                if now >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = now + self.config.heartbeat_s
        finally:
            restore()
            self._shutdown()

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def on_signal(signum, frame):
            self._stop_reason = self._stop_reason or f"received {signal.Signals(signum).name}"

        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        old_fd = signal.set_wakeup_fd(self._wake_w.fileno())  # wakes the poll when a signal arrives

        def restore() -> None:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old.items():
                signal.signal(sig, handler)

        return restore

    def _shutdown(self) -> None:
        reason = self._stop_reason or "stopped"
        notice = f"the backend is shutting down ({reason})"  # e.g. what was wrong with --devices, for every client
        log.info("stopping (%s): cancelling %d job(s)", reason, len(self._jobs))
        for job in list(self._jobs.values()):
            if job.done:  # cancelling one found its client gone, which dropped the client's others
                continue
            self._pool.remove(job)
            job.ctx.request_stop("shutdown")
            self._send(job.client, Message(MessageType.CANCELLED, id=self._new_id(), job=job.job_id, data={
                "reason": "shutdown", "message": notice}))
            self._close(job)
        for identity, hello in self._pending_hellos.items():
            self._send(identity, error_message(ErrorCode.INTERNAL, notice, msg_id=hello.id))
        self._pool.stop(self.config.shutdown_grace_s)
        if self._monitor is not None:
            self._router.disable_monitor()
            self._monitor.close(linger=0)
        if self._router is not None:
            self._router.close(linger=1000)  # give the notices above a moment to leave
        if self._auth is not None:
            self._auth.stop()
        self._context.term()
        self._wake_r.close()
        self._wake_w.close()
        if self.config.endpoint_file is not None:
            Path(self.config.endpoint_file).unlink(missing_ok=True)
        log.info("stopped")

    # ------------------------------------------------------------------ plumbing
    def _post(self, event: object) -> None:
        """From any thread: hand an event to the loop."""
        self._events.put(event)
        self._wake()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"\0")
        except OSError:  # buffer full (the loop is awake anyway) or closed
            pass

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass

    def _poll_timeout_ms(self, next_heartbeat: float) -> int:
        now = time.monotonic()
        until = next_heartbeat
        for job in self._jobs.values():
            deadline = job.next_deadline()
            if deadline is not None:
                until = min(until, deadline)
        return max(0, int((until - now) * 1000) + 1)

    def _new_id(self) -> str:
        return f"{self.instance[:8]}.{next(self._ids)}"

    def _send(self, identity: bytes, message: Message) -> bool:
        try:
            frames = encode(message)
        except ProtocolError as exc:
            log.error("cannot encode a %s message: %s", message.type, exc)
            return False
        return self._send_frames(identity, frames, message.type)

    def _send_frames(self, identity: bytes, frames: list, what: str) -> bool:
        try:
            send_frames(self._router, [identity, *frames], copy=not wants_zero_copy(frames))
            return True
        except zmq.Again:
            log.warning("client %s is not reading (queue full): dropped a %s message", _peer(identity), what)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:
                self._forget_client(identity, "disconnected")
            else:
                log.error("sending to %s failed: %s", _peer(identity), exc)
        return False

    def _read_router(self) -> None:
        """Read and handle one message (the poll just named the socket). Any further message is left to the
        next poll, which returns at once: asking EVENTS after each message (a system call) cost every round
        trip a few microseconds, and worker events get their turn between messages."""
        try:
            frames = recv_frames(self._router)
        except zmq.Again:
            return
        identity = frames[0].bytes
        try:
            if self._auth is not None:
                self._note_key(identity, frames[-1].get("User-Id"))
            self._handle(identity, frames[1:])
        except Exception:  # a bug here must not stop the loop
            log.exception("unexpected failure while handling a message from %s", _peer(identity))
            self._send(identity, error_message(ErrorCode.INTERNAL, "the backend failed to handle the message",
                                               "the backend log has the traceback"))

    def _note_key(self, identity: bytes, key: str) -> None:
        """With CurveZMQ a job belongs to the key that submitted it: a routing id now used by a connection
        with another key does not inherit the jobs of the one before (they are cancelled, never sent)."""
        previous = self._peer_keys.get(identity)
        if previous is not None and previous != key:
            log.warning("routing id %s is now used by CurveZMQ key %s (was %s): its jobs are cancelled",
                        _peer(identity), key, previous)
            self._forget_client(identity, "was replaced by a connection with another key")
        self._peer_keys[identity] = key
        if len(self._peer_keys) > 2 * len(self._jobs) + 64:
            # a key guards only jobs: forget those of routing ids without any (each client gone without a bye
            # stayed here for the backend's life); this one's is kept, for the job it may be submitting now
            owners = {client for client, _ in self._jobs} | {identity}
            self._peer_keys = {i: k for i, k in self._peer_keys.items() if i in owners}

    def _drain_monitor(self) -> None:
        while self._monitor.get(EVENTS) & POLLIN:
            kind, fd = read_monitor_event(self._monitor)
            if kind == zmq.EVENT_ACCEPTED:
                self._peers[fd] = _peer_address(fd)
            elif kind == zmq.EVENT_DISCONNECTED:
                # (libzmq does not say whether the client left or a frame over the hard limit, said at start, closed
                # it: every client's normal end read as a possible fault)
                log.info("connection from %s closed", self._peers.pop(fd, "an unknown peer"))

    def _handle(self, identity: bytes, frames: list) -> None:
        msg = None
        try:
            msg = decode(frames, limits=self.config.limits, accept=CLIENT_TYPES, local_role="backend")
            self._handlers[msg.type](identity, msg)
        except ProtocolError as exc:
            log.info("refused a %s from %s: [%s] %s", msg.type if msg else "message", _peer(identity), exc.code, exc)
            self._send(identity, error_from(exc, msg_id=msg.id if msg else "", job=msg.job if msg else None))
        except Exception:  # a bug in a handler or a job kind's check: the reply still names the request
            if msg is None:
                raise
            log.exception("unexpected failure while handling a %s from %s", msg.type, _peer(identity))
            self._send(identity, error_message(ErrorCode.INTERNAL, f"the backend failed to handle this {msg.type}",
                                               "the backend log has the traceback", msg_id=msg.id, job=msg.job))

    # ------------------------------------------------------------------ requests
    def _on_hello(self, identity: bytes, msg: Message) -> None:
        client = (msg.data or {}).get("client", "unknown client")
        log.info("hello from %s (%s)", _peer(identity), client)
        if self._devices is None and (msg.data or {}).get("devices") is True:
            self._pending_hellos[identity] = msg  # asked to wait for the device probe (its last hello answered)
            self._start_probe()
        elif self._devices is None:
            self._provisional.add(identity)  # devices unknown yet: a full welcome follows the probe
            self._welcome(identity, msg)
        else:
            self._welcome(identity, msg)

    def _welcome(self, identity: bytes, msg: Message) -> None:
        data = capabilities.welcome_data(
            registry=self.registry, limits=self.config.limits, devices=self._devices,
            compute=self._compute if self._devices is not None else None,
            server={"name": "handforge", "version": __version__, "instance": self.instance,
                    "started": self._started, "endpoint": self.endpoint, "curve": self._auth is not None,
                    "heartbeat_s": self.config.heartbeat_s, "max_queue": self.config.max_queue})
        self._send(identity, Message(MessageType.WELCOME, id=msg.id, data=data))

    def _on_ping(self, identity: bytes, msg: Message) -> None:
        self._send(identity, Message(MessageType.PONG, id=msg.id, data={
            "instance": self.instance, "jobs": self._job_ids(identity)}))

    def _on_bye(self, identity: bytes, msg: Message) -> None:
        self._forget_client(identity, "said bye")
        self._peer_keys.pop(identity, None)

    def _on_submit(self, identity: bytes, msg: Message) -> None:
        if (identity, msg.job) in self._jobs:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, f"job id {msg.job!r} is already used by another of your jobs",
                                "use a fresh id for each job")
        kind = self.registry.kind(msg.kind)
        # the request first: a user without weights fixed it one refusal at a time, each said after them
        params = kind.schema.validate(msg.params, msg.arrays)
        self.registry.require_available(kind)
        if kind.check is not None:
            kind.check(params, msg.arrays)
        devices = self._devices_for(kind)
        if devices is not None:  # (unknown yet: checked when the probe ends, before a GPU worker exists)
            kind.check_devices(params, devices)
        wait_limit = _requested_timeout(msg.data)
        waiting = self._pool.waiting()
        if waiting >= self.config.max_queue:
            raise ProtocolError(ErrorCode.BUSY, f"the backend is busy: {waiting} jobs are waiting "
                                f"(limit {self.config.max_queue})",
                                "try again when a job has finished, or start the backend with a larger --max-queue")
        self._check_queued_bytes(msg)
        now = time.monotonic()
        job = Job(identity, msg.job, kind, params, dict(msg.arrays), ctx=None, accepted_at=now,
                  deadline=None if wait_limit is None else now + wait_limit)
        job.ctx = JobContext(msg.job, kind.name, lambda f, m, p, job=job: self._post(Progress(job, f, m, p)),
                             self.config.progress_interval_s, models=self.models)
        self._jobs[(identity, msg.job)] = job
        position = self._pool.waiting(kind.device)
        # ``accepted`` leaves before the job is queued: a worker woken first would take the GIL and delay it
        # by the whole job (a third of a millisecond for a ping job on these cores).
        self._send(identity, Message(MessageType.ACCEPTED, id=msg.id, job=msg.job, data={
            "position": position, "instance": self.instance, "kind_timeout": kind.timeout, "timeout": wait_limit,
            "device_class": kind.device}))
        if job.done:  # sending found the client gone (and forgot its jobs): nothing to run
            log.info("job %s (%s) from %s dropped: the client left before it was accepted", msg.job, kind.name,
                     _peer(identity))
            return
        self._pool.enqueue(job)
        log.info("job %s (%s) from %s accepted, %d ahead", msg.job, kind.name, _peer(identity), position)

    def _devices_for(self, kind: JobKind) -> list[str] | None:
        """The devices a job of this kind may run on: the CPU threads', or the compute devices (None until
        the device probe has ended)."""
        if kind.device == "cpu":
            return ["cpu"]
        return self._compute if self._devices is not None else None

    def _check_devices_of_queued(self) -> None:
        """Once the devices are known, fail the GPU-class jobs accepted before that which cannot run on them
        (``JobKind.check_devices``): told now, not after they waited their turn."""
        for job in [j for j in self._jobs.values() if j.kind.device == "gpu" and j.started_at is None]:
            try:
                job.kind.check_devices(job.params, self._compute)
            except ProtocolError as exc:
                # (done: failing one found its client gone, which dropped the client's others; not failed again)
                if not job.done:
                    self._pool.remove(job)
                    self._terminal(job, error=(exc.code, exc.message, exc.hint))

    def _check_queued_bytes(self, msg: Message) -> None:
        """Waiting jobs keep their arrays in memory: ``max_queue`` requests of the largest size would hold
        gigabytes, so the arrays of waiting jobs together stay under ``max_queued_bytes`` (a request larger
        than that alone still waits when nothing else does: it could never run otherwise)."""
        incoming = sum(a.nbytes for a in msg.arrays.values())
        if not incoming:
            return
        queued = sum(a.nbytes for job in self._jobs.values() if job.started_at is None and not job.done
                     for a in job.arrays.values())
        limit = self.config.max_queued_bytes
        if queued and queued + incoming > limit:
            mib = 1 << 20
            raise ProtocolError(ErrorCode.BUSY, f"the backend is busy: waiting jobs hold {queued / mib:.1f} MiB of "
                                f"arrays, and this request's {incoming / mib:.1f} MiB would pass the limit of "
                                f"{limit / mib:.0f} MiB", "try again when a job has started, or start the backend "
                                "with a larger --max-queued-mb")

    def _on_cancel(self, identity: bytes, msg: Message) -> None:
        job = self._jobs.get((identity, msg.job))
        if job is None:
            raise ProtocolError(ErrorCode.UNKNOWN_JOB, f"no job {msg.job!r} of yours is queued or running",
                                "it may have finished already (its last event is on its way), or it was never "
                                "accepted", job=msg.job)
        job.cancel_requested = True
        if self._pool.remove(job):
            self._terminal(job, cancelled="cancelled")
        else:  # running: it stops at its next step and the worker reports it
            job.ctx.request_stop("cancelled")

    # ------------------------------------------------------------------ worker events, deadlines
    def _drain_events(self) -> None:
        while not self._events.empty():
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, _ProbeDone):
                self._on_probe(event)
            elif isinstance(event, Started):
                event.job.started_at = time.monotonic()
                event.job.device = event.device
            elif event.job.done:
                continue  # timed out, cancelled or its client left: drop what the worker still says
            elif isinstance(event, Progress):
                self._send(event.job.client, Message(MessageType.PROGRESS, id=self._new_id(), job=event.job.job_id,
                                                     data={"fraction": event.fraction, "message": event.message},
                                                     arrays=event.preview))
            elif isinstance(event, Finished):
                self._terminal(event.job, result=event.result, error=event.error, cancelled=event.cancelled)

    def _terminal(self, job: Job, *, result=None, error=None, cancelled: str | None = None) -> None:
        """Send the job's one terminal event and forget it."""
        mid = self._new_id()
        if job.cancel_requested or cancelled is not None:
            reason = "cancelled" if job.cancel_requested else cancelled
            message = Message(MessageType.CANCELLED, id=mid, job=job.job_id, data={"reason": reason, "message": ""})
        elif error is not None:
            message = error_message(error[0], error[1], error[2], msg_id=mid, job=job.job_id)
        else:
            message = Message(MessageType.RESULT, id=mid, job=job.job_id, data=result.data, arrays=result.arrays)
        try:
            frames = encode(message)  # no copies: the arrays' own buffers
        except ProtocolError as exc:  # a result the protocol cannot carry (dtype, non-JSON data)
            message = error_message(ErrorCode.INTERNAL, f"the result of {job.kind.name} cannot be sent: {exc}",
                                    exc.hint, msg_id=mid, job=job.job_id)
            frames = encode(message)
        except Exception as exc:  # the workers check results; whatever gets past them must not stop the backend
            log.exception("the result of job %s (%s) cannot be sent", job.job_id, job.kind.name)
            message = error_message(ErrorCode.INTERNAL, f"the result of {job.kind.name} cannot be sent: "
                                    f"{type(exc).__name__}: {exc}", "the backend log has the traceback; the backend "
                                    "carries on", msg_id=mid, job=job.job_id)
            frames = encode(message)
        self._close(job)
        self._send_frames(job.client, frames, message.type)
        outcome = message.data.get("code") if message.type == MessageType.ERROR else str(message.type)
        log.info("job %s (%s) -> %s after %.2f s", job.job_id, job.kind.name, outcome,  # after the send: off the
                 time.monotonic() - job.accepted_at)                                    # client's critical path

    def _close(self, job: Job) -> None:
        job.done = True
        job.arrays = {}  # its input arrays are freed now, whoever still holds the record
        self._jobs.pop((job.client, job.job_id), None)

    def _enforce_deadlines(self, now: float) -> None:
        for job in list(self._jobs.values()):
            deadline = job.next_deadline()
            if deadline is None or now < deadline or job.done:
                continue
            self._pool.remove(job)
            job.ctx.request_stop("timeout")
            # (a job whose cancel was asked for ends as cancelled, not timed out: _terminal says so, whatever it is given)
            if job.run_deadline is not None and job.run_deadline <= now:
                text = f"job {job.job_id} ({job.kind.name}) ran past the {job.kind.timeout:g} s limit of its kind"
                hint = "ask for less work per job (a smaller batch or fewer steps)"
            else:
                # (a worker may have taken it before the loop read its Started event: the worker's own mark)
                running = job.started_at is not None or job.ctx.started is not None
                state = "running" if running else "still waiting in the queue"
                text = (f"job {job.job_id} ({job.kind.name}) did not finish within the {job.deadline - job.accepted_at:g} s "
                        f"asked for in its submit (it was {state})")
                hint = "ask for a longer timeout, or submit when the backend is less busy"
            self._terminal(job, error=(ErrorCode.TIMEOUT, text, hint))

    def _heartbeat(self) -> None:
        clients: dict[bytes, list[str]] = defaultdict(list)
        for client, job_id in self._jobs:
            clients[client].append(job_id)
        for client, ids in clients.items():
            self._send(client, Message(MessageType.HEARTBEAT, id=self._new_id(), data={
                "instance": self.instance, "jobs": ids, "time": time.time()}))

    def _job_ids(self, identity: bytes) -> list[str]:
        return [job_id for client, job_id in self._jobs if client == identity]

    def _forget_client(self, identity: bytes, why: str) -> None:
        jobs = [job for (client, _), job in self._jobs.items() if client == identity]
        if jobs:
            log.info("client %s %s: cancelling its %d job(s)", _peer(identity), why, len(jobs))
        for job in jobs:
            self._pool.remove(job)
            job.ctx.request_stop("client gone")
            self._close(job)

    # ------------------------------------------------------------------ device probe
    def _start_probe(self) -> None:
        if self._probe_thread is None:
            self._probe_thread = threading.Thread(target=self._probe, name="handforge-probe", daemon=True)
            self._probe_thread.start()

    def _probe(self) -> None:
        error = None
        try:
            devices = capabilities.probe_devices()
            compute = capabilities.compute_devices(devices, self.config.devices)
            self.registry.warm_up()  # e.g. imports the hand models before the first hello or job needs them
        except Exception as exc:
            log.exception("device probe failed")
            devices, compute, error = [{"name": "cpu", "type": "cpu"}], ["cpu"], str(exc)
        self._post(_ProbeDone(devices, compute, error))

    def _on_probe(self, done: _ProbeDone) -> None:
        if done.error is not None and self.config.devices:
            self.failure = done.error
            self.stop(f"bad --devices: {done.error}")
        if self._stop_reason is not None:
            # stopping: no worker starts on the fallback devices, and the queued jobs are not checked against
            # them; ``_shutdown`` cancels each with the reason (they ran on the CPU, or failed as needing CUDA)
            return
        self._devices, self._compute = done.devices, done.compute
        self._check_devices_of_queued()  # before a worker can take them
        self._pool.start_devices(done.compute)
        log.info("devices: %s; GPU-class jobs run on %s",
                 ", ".join(f"{d['name']} ({d.get('description', '')})" for d in done.devices), ", ".join(done.compute))
        pending, self._pending_hellos = self._pending_hellos, {}
        for identity, hello in pending.items():
            self._welcome(identity, hello)
        provisional, self._provisional = self._provisional, set()
        for identity in provisional:
            self._welcome(identity, Message(MessageType.HELLO, id=self._new_id()))


def _requested_timeout(data: dict[str, Any] | None) -> float | None:
    value = (data or {}).get("timeout")
    if value is None:
        return None
    try:  # (a JSON integer has no size limit: 10**400 is no float, and float() raised OverflowError: "internal")
        seconds = float(value) if not isinstance(value, bool) and isinstance(value, (int, float)) else math.nan
    except OverflowError:
        seconds = math.inf
    if not (math.isfinite(seconds) and seconds > 0):
        shown = repr(value) if len(repr(value)) <= 40 else f"an integer of {len(str(value))} digits"
        raise ProtocolError(ErrorCode.INVALID_PARAMS, f"data.timeout: must be a positive finite number of seconds, "
                            f"got {shown}", "e.g. 60 for a minute", field="data.timeout")
    return seconds


def local_endpoint(bound: str) -> str:
    """The address a client on this machine connects to for the endpoint the server bound: a wildcard
    (``--bind 0.0.0.0`` or ``::``) is a bind address, not one a client can connect to on every system."""
    host, port = parse_endpoint(bound)
    try:
        wildcard = ipaddress.ip_address(host).is_unspecified
    except ValueError:  # a host name
        wildcard = False
    return endpoint(("::1" if ":" in host else "127.0.0.1") if wildcard else host, port)


def _peer(identity: bytes) -> str:
    text = identity.decode("ascii", "replace")
    return text if text.isprintable() and identity.isascii() else identity.hex()


def _peer_address(fd: int) -> str:
    """host:port of the peer of a connection libzmq accepted (read through a duplicate of its descriptor)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as dup:  # the family is read from the descriptor
            host, port = dup.getpeername()[:2]
        return f"{host}:{port}"
    except (OSError, ValueError):
        return f"connection {fd}"


__all__ = ["Server", "ServerConfig"]
