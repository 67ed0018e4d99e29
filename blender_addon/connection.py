"""The connection to the backend: start a local one, connect, keep the status and capabilities.

All of it runs on Blender's main thread. The client library (``shared/client``) never blocks in
``poll()``; a ``bpy.app.timers`` timer polls it a few times a second while connected, and job
operators poll it too. Under ``blender -b`` (no timers) the operators wait in a loop instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

import bpy
from bpy.app.handlers import persistent

from . import app_handlers, preferences
from .properties import pasted
from handforge_shared.client import Client, Connected, CurveKeys, Disconnected, Error
from handforge_shared.protocol import (STOP_WITH_STDIN_ENV, escaped_length, is_loopback, parse_endpoint, sentence,
                                      with_hint)

TICK_S = 0.25


class BackendError(RuntimeError):
    """The backend cannot be reached or started; the message says what to do."""


class Backend:
    def __init__(self) -> None:
        self.client: Client | None = None
        self.process: subprocess.Popen | None = None
        self.process_endpoint = ""  # where the local backend (``process``) listens
        self.log_path: Path | None = None
        self.endpoint = ""
        self.since = 0.0
        self.connect_timeout = 60.0
        self.status = "Not connected"
        self.problem = ""  # the last connection problem, with its fix
        self.capabilities: dict | None = None

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected and self.capabilities is not None


BACKEND = Backend()


# ---------------------------------------------------------------------- addresses and keys
def parse_address(address: str) -> tuple[str, int]:
    try:
        return parse_endpoint(address)
    except ValueError as exc:
        raise BackendError(str(exc)) from None


def _curve_keys(prefs) -> CurveKeys | None:
    if not prefs.server_public_key and not prefs.client_secret_key:
        return None
    if not (prefs.server_public_key and prefs.client_secret_key):
        raise BackendError("a remote backend needs both keys: set Server Public Key (.key) and Client Secret Key "
                           "(.key_secret) in the HandForge preferences (create them with `handforge keys`)")
    try:  # (pasted in quotes or as a file:// address, as the add-on's other path fields take them)
        paths = [pasted(p) for p in (prefs.server_public_key, prefs.client_secret_key)]
    except ValueError as exc:
        raise BackendError(f"a CurveZMQ key path in the HandForge preferences: {exc}") from None
    relative = [p for p in paths if p.startswith("//")]
    if relative:  # (preferences hold for every .blend: "//" named a file beside whichever one was open)
        raise BackendError(f"the key path {relative[0]!r} is relative to the open .blend, and the preferences serve "
                           "every .blend: give the keys' absolute paths in the HandForge preferences")
    try:
        return CurveKeys.from_files(*(os.path.expanduser(bpy.path.abspath(p)) for p in paths))
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read the CurveZMQ keys: {exc}") from None


# ---------------------------------------------------------------------- lifecycle
def connect(address: str | None = None, blocking: bool = False) -> None:
    """Connect to ``address`` (default: the preferences'). ``blocking``: wait for the welcome."""
    prefs = preferences.get()
    address = address or prefs.address
    host, _ = parse_address(address)
    remote = not is_loopback(host)
    if remote and not bpy.app.online_access:
        raise BackendError(f"{host} is not this computer and Blender's online access is off: enable "
                           "Preferences > System > Network > Allow Online Access, or use a local backend")
    keys = _curve_keys(prefs)
    if remote and keys is None:
        raise BackendError(f"a backend on another computer ({host}) only accepts clients with CurveZMQ keys: set "
                           "them in the HandForge preferences (create them with `handforge keys`)")
    disconnect(stop_local=False, why=f"to connect to {address}")
    try:
        BACKEND.client = Client(address, curve=keys, connect_timeout=prefs.connect_timeout)
    except ValueError as exc:
        raise BackendError(str(exc)) from None
    BACKEND.endpoint, BACKEND.since, BACKEND.connect_timeout = address, time.monotonic(), prefs.connect_timeout
    BACKEND.capabilities, BACKEND.problem = None, ""
    _set_status(f"Connecting to {address}…")
    if blocking:
        _wait_welcome()
    else:
        _ensure_timer()


def _listening(host: str, port: int) -> bool:
    """Whether a TCP server accepts connections at (host, port) now (a quick connect, then closed)."""
    import socket

    try:
        with socket.create_connection((host.strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


def start_command(template: str, port: int, python: str, windows: bool = os.name == "nt") -> list[str]:
    """The start command's words, split before ``{port}`` and ``{python}`` are filled in (Blender's Python
    under "Program Files" stays one word): by POSIX shell rules, or on Windows at spaces outside double
    quotes, the quotes taken off a word they enclose whole (``shlex`` kept them: a program path in quotes,
    needed for one with a space, was not found; quote whole words, not part of one). Raises KeyError,
    IndexError or ValueError for a malformed template."""
    words = shlex.split(template, posix=not windows)
    if windows:
        words = [w[1:-1] if len(w) >= 2 and w[0] == w[-1] == '"' else w for w in words]
    return [w.format(port=port, python=python) for w in words]


def start_local(blocking: bool = False) -> None:
    """Start the configured backend command as a subprocess and connect to it; connect back to the one started
    before if it still runs (left by a Connect to another address)."""
    prefs = preferences.get()
    if BACKEND.process is not None and BACKEND.process.poll() is None:
        if on_local_backend():
            raise BackendError(f"a local backend is already running (pid {BACKEND.process.pid}) and connected: "
                               "press Stop Backend first to start it again")
        connect(BACKEND.process_endpoint, blocking=blocking)
        return
    host, port = parse_address(prefs.address)
    if not is_loopback(host):
        raise BackendError(f"a local backend listens on this computer: set the address to tcp://127.0.0.1:{port}")
    if _listening(host, port):  # a new backend could not bind; the client would reach the old one meanwhile
        raise BackendError(f"something already listens at tcp://{host}:{port} (a backend started elsewhere?): "
                           "press Connect to use it, or set another address in the HandForge preferences")
    try:
        command = start_command(prefs.server_command, port, sys.executable)
    except (KeyError, IndexError, ValueError) as exc:
        raise BackendError(f"the start command {prefs.server_command!r} is not valid ({exc}): e.g. "
                           "`handforge serve --port {port}`") from None
    if not command:
        raise BackendError("the start command is empty: set it in the HandForge preferences")
    _remove_log()  # the previous backend's, replaced by the new one's
    # its error output (and logs), in a file of its own (O_EXCL, owner-only): a fixed name in the shared
    # temporary folder could be a link another user planted, and opening it for writing would follow it
    fd, name = tempfile.mkstemp(prefix="handforge-backend-", suffix=".log")
    log = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            # a pipe on its stdin that only this process holds: when Blender exits, a crash too, the OS closes
            # it and the backend stops (it outlived a crash, holding the port and its models' memory)
            # in a process group of its own: a Ctrl-C at Blender's terminal (under blender -b it cancels the job
            # running) stopped the backend too, its models lost (stopped, it stops through the pipe or terminate)
            group = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
                     else {"start_new_session": True})
            BACKEND.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=fh, stdin=subprocess.PIPE,
                                               env={**os.environ, STOP_WITH_STDIN_ENV: "1",
                                                    "PYTHONIOENCODING": "utf-8"},  # (read back as UTF-8)
                                               **group)
    except OSError as exc:
        log.unlink(missing_ok=True)  # (empty: nothing ran)
        example = (r'"C:\path\to\HandForge\.venv\Scripts\handforge.exe"' if os.name == "nt"
                   else "/path/to/HandForge/.venv/bin/handforge")
        message = (f"cannot run {command[0]!r} ({exc.strerror or exc}): put the full path of `handforge` in the "
                   f"start command (HandForge preferences), e.g. {example} after "
                   "`python3 scripts/dev.py setup` in the HandForge checkout, or start Blender where it is on the PATH")
        _set_status(f"The local backend did not start: {message}")  # not an older, unrelated status
        raise BackendError(message) from None
    except BaseException:  # (a bad argument in the command, Ctrl-C): no file left behind either
        log.unlink(missing_ok=True)
        raise
    BACKEND.log_path, BACKEND.problem, BACKEND.process_endpoint = log, "", f"tcp://{host}:{port}"
    try:
        connect(f"tcp://{host}:{port}", blocking=blocking)
    except BackendError:
        stop_process(keep_log=True)  # (the error may name the log)
        raise
    if not blocking:
        _set_status(f"Starting the local backend (pid {BACKEND.process.pid})…")


# what closed each client ``disconnect`` closed, said by the jobs it ended (``closed_why``)
_CLOSED_WHY: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def closed_why(client: Client) -> str:
    """Why ``disconnect`` closed ``client`` under its jobs ('' if it did not)."""
    return _CLOSED_WHY.get(client, "")


def disconnect(stop_local: bool = True, why: str = "") -> None:
    """Close the connection and, with ``stop_local``, stop the local backend. ``why``: what closes it (Stop
    Backend, a Connect elsewhere), said by the jobs it ends (they said "the backend was stopped" of a backend
    still running: another computer's, or the one just left for another address)."""
    if BACKEND.client is not None:
        if stop_local and on_local_backend():
            _CLOSED_WHY[BACKEND.client] = "the backend was stopped before the job ended (Start Local Backend)"
        else:  # (the client says bye, and the backend cancels a leaving client's jobs: none runs on unseen)
            cause = f" ({why})" if why else ""
            _CLOSED_WHY[BACKEND.client] = (f"Blender disconnected from {BACKEND.endpoint}{cause} before the job ended; "
                                           "the backend there cancels the jobs of a client that leaves")
        BACKEND.client.close()
    BACKEND.client, BACKEND.capabilities = None, None
    if stop_local:
        stop_process()
    _set_status("Not connected")


WINDOWS_STOP_GRACE_S = 3.0  # a backend stops within a second of its stdin closing; a wrapper that keeps it open waits


def stop_process(timeout: float = 10.0, keep_log: bool = False) -> None:
    """Stop the local backend (Stop, Disconnect, quitting) and remove its log, also one that exited by itself
    (its status named the log until now); ``keep_log``: a start that failed, whose error names the log."""
    proc = BACKEND.process
    BACKEND.process = None
    if proc is not None and proc.stdin is not None:
        proc.stdin.close()  # its pipe closed: the backend cancels its jobs, tells its clients and exits
    if proc is not None and proc.poll() is None:
        if os.name == "nt":  # terminate() kills at once there (no goodbye): first a moment for the clean stop
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(WINDOWS_STOP_GRACE_S)
        if proc.poll() is None:
            proc.terminate()  # (POSIX: the same clean stop, for a start command that does not pass its stdin on)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if not keep_log:
        _remove_log()


def _remove_log() -> None:
    path, BACKEND.log_path = BACKEND.log_path, None
    if path is not None:
        try:
            path.unlink(missing_ok=True)
        except OSError:  # (a stop must not fail on it)
            pass


EXIT_LINES = 3  # lines of the backend's error output quoted when it has exited


# A log record of the backend's own (``2026-01-31 12:00:00,000 INFO handforge...``) below WARNING says
# nothing about why it stopped; tracebacks, warnings and errors do.
_ROUTINE_LOG = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ (DEBUG|INFO) ")


# A Python warning ("…/x.py:12: UserWarning: …" and the source line echoed after it, indented): no reason either
_WARNING = re.compile(r"^\S.*:\d+: \w*Warning: ")


def _error_tail(path: Path | None) -> list[str]:
    if path is None or not path.is_file():
        return []
    kept, after_warning = [], False
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if after_warning and raw[:1].isspace():  # (the warning's source line)
            continue
        after_warning = bool(_WARNING.match(raw))
        if raw.strip() and not after_warning and not _ROUTINE_LOG.match(raw.strip()):
            kept.append(raw.strip())
    return kept[-EXIT_LINES:]


RESTART_HINT = "press Start Local Backend to start it again"


def process_exit(grace: float = 0.0) -> str:
    """'' while the local backend runs (or there is none); why it stopped otherwise: its exit
    code, what to do, and the last lines of its error output. ``grace``: seconds to wait for an exit."""
    proc = BACKEND.process
    if proc is not None and grace > 0:
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    if proc is None or proc.poll() is None:
        return ""
    tail = _error_tail(BACKEND.log_path)
    return f"the local backend exited with code {proc.returncode} ({RESTART_HINT})" + \
        (f": {' | '.join(tail)}" if tail else "") + (f"; log: {BACKEND.log_path}" if BACKEND.log_path else "")


def _same_endpoint(a: str, b: str) -> bool:
    """Whether two addresses reach the same backend: the same port on the same host, or both on this computer
    (tcp://localhost:N and tcp://127.0.0.1:N)."""
    try:
        (host_a, port_a), (host_b, port_b) = parse_endpoint(a), parse_endpoint(b)
    except ValueError:
        return False
    return port_a == port_b and (host_a == host_b or is_loopback(host_a) and is_loopback(host_b))


def on_local_backend() -> bool:
    """Whether the connection (or the last one) is to the local backend this Blender started. Connect to another
    address leaves that backend running, detached: Start Local Backend gets back to it without a new start (its
    models loaded), Stop Backend or quitting Blender stops it; meanwhile its exit is none of the connection's
    business (it closed the other connection and failed its jobs, "the local backend exited")."""
    return BACKEND.process is not None and _same_endpoint(BACKEND.endpoint, BACKEND.process_endpoint)


def check_local(grace: float = 0.0) -> str:
    """Notice at once that the local backend has exited (a cheap ``waitpid``), while connected to it: the client
    is closed, job buttons grey out with the reason, and '' is returned while all is well. ``grace``: seconds to
    wait for an exit, when the connection was lost: a killed process closes its sockets before the
    kernel reports its exit, so the loss can be seen first."""
    exited = process_exit(grace) if on_local_backend() else ""
    if not exited:
        return BACKEND.problem if BACKEND.client is None and BACKEND.problem.startswith("the local backend exited") else ""
    if BACKEND.client is not None:
        BACKEND.client.close()
        BACKEND.client = None
    BACKEND.process = None  # gone; its reason stays in ``problem`` until the next start or connect
    BACKEND.problem = exited
    _set_status(sentence(exited))
    return exited


NOT_CONNECTED = "Not connected to a backend: press Start Local Backend or Connect in the HandForge panel"


def unavailable() -> str:
    """Why no job can be sent now ('' if one can): the local backend's exit, or no connection."""
    dead = check_local()
    if dead:
        return sentence(dead)
    return NOT_CONNECTED if BACKEND.client is None else ""


def require_client() -> Client:
    why = unavailable()
    if why:
        raise BackendError(why)
    return BACKEND.client


# ---------------------------------------------------------------------- polling
def pump(timeout: float = 0.0) -> None:
    """Read what the backend sent (waiting up to ``timeout``); update the status. Main thread only."""
    if check_local():
        return
    client = BACKEND.client
    if client is None:
        return
    for event in client.poll(timeout):
        if isinstance(event, Connected):
            BACKEND.capabilities, BACKEND.problem = event.capabilities, ""
            _set_status(_connected_text(event.capabilities))
        elif isinstance(event, Disconnected):
            _set_status(f"Connection to {BACKEND.endpoint} lost: reconnecting…")
        elif isinstance(event, Error) and event.job is None:
            BACKEND.problem = str(event)
            _set_status(f"Backend problem: {event}")
    if not BACKEND.connected:
        if check_local():
            return
        if time.monotonic() - BACKEND.since > min(5.0, BACKEND.connect_timeout) and BACKEND.capabilities is None:
            hint = (_port_unsaid() or "starting (it probes its devices first)…") if on_local_backend() else \
                "start it with `handforge serve` or press Start Local Backend"
            _set_status(f"No answer from {BACKEND.endpoint} yet: {hint}")


def _wait_welcome() -> None:
    while BACKEND.capabilities is None:
        pump(0.1)
        if BACKEND.client is None and BACKEND.problem:
            raise BackendError(BACKEND.problem)
        if time.monotonic() - BACKEND.since > BACKEND.connect_timeout:
            hint = "; ".join(filter(None, (_port_unsaid(), "its log is " + str(BACKEND.log_path)))) \
                if on_local_backend() else \
                "start it with `handforge serve` (or Start Local Backend), or check the address"
            raise BackendError(f"no backend answered at {BACKEND.endpoint} within {BACKEND.connect_timeout:g} s: {hint}")


def _port_unsaid() -> str:
    """Why the local backend may not answer at the address: a start command without {port} nor the address's port
    ('' with either)."""
    command = preferences.get().server_command
    if "{port}" in command or str(parse_address(BACKEND.endpoint)[1]) in command:
        return ""
    return ("the start command has no {port}, so the backend listens on a port of its own, not the address's: put "
            "`--port {port}` in it (HandForge preferences)")


def _tick():
    if BACKEND.client is None:
        return None  # stop the timer
    try:
        pump()
    except Exception as exc:  # noqa: BLE001 - a timer must never raise into Blender's loop
        _set_status(f"Backend polling failed: {exc}")
    return TICK_S


def _ensure_timer() -> None:
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TICK_S, persistent=True)


# ---------------------------------------------------------------------- capabilities
def _reported(section: str, name: str, unknown: str) -> tuple[dict | None, str]:
    """The connected backend's capability entry ``section``/``name``, or None and why not."""
    caps = BACKEND.capabilities
    if caps is None or BACKEND.client is None:
        return None, unavailable() or NOT_CONNECTED
    info = (caps.get(section) or {}).get(name)
    return info, ("" if info is not None else unknown)


def kind_status(kind: str) -> tuple[bool, str]:
    """(can run, why not) for a job kind on the connected backend."""
    info, why = _reported("kinds", kind, f"this backend has no job kind {kind!r}: update the backend")
    if info is None:
        return False, why
    engine, _ = _reported("engines", info.get("engine"), "")
    if engine is not None and not engine.get("available", True):
        return False, f"engine {info.get('engine')} cannot run: {_with_hint(engine)}"
    return True, info.get("description", "")


def param_spec(kind: str, name: str) -> dict:
    """The connected backend's schema of parameter ``name`` of job kind ``kind`` (its type, default, limits), {} where
    it reports none: the backend's limits are read from it, not copied into the add-on."""
    info, _ = _reported("kinds", kind, "")
    spec = ((info or {}).get("params") or {}).get(name)
    return spec if isinstance(spec, dict) else {}


def over_limit(kind: str, name: str, text: str) -> tuple[str, int] | None:
    """Where ``text`` is longer than the connected backend takes as parameter ``name`` of ``kind`` (``param_spec``'s
    max_length, counted JSON-escaped where the spec says so: the message header carries it so, quotes taking 2):
    its length as said ("9,000 characters long", "… as sent, JSON-escaped (N as written)") and the limit; else
    None. Refused in the add-on, the artist reads which field and by how much, not the backend's "params.prompt"."""
    spec = param_spec(kind, name)
    limit, escaped = spec.get("max_length"), spec.get("escaped") is True
    length = escaped_length(text) if escaped else len(text)
    if not isinstance(limit, int) or length <= limit:
        return None
    return f"{length:,} characters long" + (f" as sent, JSON-escaped ({len(text):,} as written)" if escaped else ""), limit


def may_return_images(kind: str) -> bool:
    """Whether a job kind's result may hold images (``image``, ``images``, ``<name>.image``: what the importers take
    as images), by the result keys the connected backend documents for it; True where it documents none."""
    info, _ = _reported("kinds", kind, "")
    returns = (info or {}).get("returns")
    if not isinstance(returns, dict) or not returns:
        return True
    return any(name in ("*", "image", "images") or name.endswith(".image") for name in returns)


def hand_model_status(name: str) -> tuple[bool, str]:
    """(available, why not) for a hand model on the connected backend."""
    info, why = _reported("hand_models", name, f"the backend does not know the hand model {name!r}")
    if info is None:
        return False, why
    if not info.get("available"):
        return False, _with_hint(info)
    return True, ""


def _with_hint(info: dict) -> str:
    """An unavailable item's reason, with its hint unless the reason already says it."""
    return with_hint(info.get("reason") or "", info.get("hint") or "")


def _connected_text(caps: dict) -> str:
    version = (caps.get("versions") or {}).get("handforge", "?")
    devices = ", ".join(caps.get("compute_devices") or []) or "cpu"
    return f"Connected to HandForge {version} at {BACKEND.endpoint} ({devices})"


def _set_status(text: str) -> None:
    BACKEND.status = text
    try:
        wm = bpy.context.window_manager
        wm.handforge.status = text
        wm.handforge.connected = BACKEND.connected
        _sync_capabilities(wm.handforge)
        for window in wm.windows:
            for area in window.screen.areas:
                if area.type == "VIEW_3D":
                    area.tag_redraw()
    except AttributeError:  # during registration or shutdown
        pass


def _sync_capabilities(props) -> None:
    caps = BACKEND.capabilities or {}
    engines = caps.get("engines") or {}
    props.engines.clear()
    for name, info in engines.items():
        item = props.engines.add()
        item.name, item.available = name, bool(info.get("available"))
        # why it cannot run, or what it lacks while it runs (e.g. a learned model: a fallback engine runs)
        item.reason = _with_hint(info) if not item.available else str(info.get("note") or "")
        item.description = info.get("description", "")
    props.kinds.clear()
    for name, info in (caps.get("kinds") or {}).items():
        item = props.kinds.add()
        item.name, item.engine, item.description = name, info.get("engine", ""), info.get("description", "")
    props.hand_models.clear()
    for name, info in (caps.get("hand_models") or {}).items():
        item = props.hand_models.add()
        item.name, item.available = name, bool(info.get("available"))
        item.reason = _with_hint(info)


@persistent
def _status_after_load(*_args) -> None:
    """A file opened: its window manager starts with the panel's default state ("Not connected", no
    engines) while the backend is still connected; show the real state again."""
    _set_status(BACKEND.status or ("Connected" if BACKEND.connected else "Not connected"))


def register() -> None:
    app_handlers.add(("load_post", _status_after_load))
    _status_after_load()  # re-enabled (an add-on update): the panel kept the last session's "Connected"


def unregister() -> None:
    app_handlers.remove(("load_post", _status_after_load))


def shutdown() -> None:
    """On unregister / quit: close the socket and stop the backend we started."""
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    if BACKEND.client is not None:
        BACKEND.client.close()
        BACKEND.client = None
    stop_process()
    BACKEND.capabilities, BACKEND.status = None, "Not connected"
