"""Export workers as Ray actors (``handforge export --ray [ADDRESS]``): one actor per slot holding a
``SampleWorker``, on a Ray started for the run or on a cluster (https://docs.ray.io/en/latest/cluster/).

Ray is the optional extra ``handforge[cluster]`` and is imported here only. The dataset folder must be
shared storage (the same path on every node): actors write their samples there themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

from handforge import config
from handforge.arguments import usable_cpus
from handforge.export.shards import Event
from handforge.termination import Terminated, ctrl_c_deferred, handlers_kept, sigterm_received

# the addresses --ray takes, as errors name them
FORMS = "HOST:PORT of a Ray head (e.g. head:6379) or ray://HOST:10001 (Ray Client)"
TOKEN = ("A cluster started by `ray start` (Ray 2.60) wants its token: RAY_AUTH_MODE=token with the head's "
         "~/.ray/auth_token or RAY_AUTH_TOKEN (https://docs.ray.io/en/latest/ray-security/token-auth.html)")
NO_AUTO = ("Start a cluster here first (`ray start --head`), give its address, or use --ray without an address "
           "for a Ray of this run's own")
INSTALL = 'pip install "handforge[cluster]" (or: pip install "ray[default]~=2.60")'


class RayUnavailable(RuntimeError):
    """Ray cannot be used (not installed, no head at the address, no token): the message says what to do."""


def _import_ray():
    try:
        import ray
    except ImportError:
        raise RayUnavailable(f"--ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def _connect(ray, **kwargs: Any) -> None:
    # ray.init puts its own SIGTERM handlers in place of the command's (``handforge.termination``): a SIGTERM then
    # ended the run with Ray's "*** SIGTERM received" dump and status 1 or 15, not as Ctrl-C does (status 143).
    # One while it starts is still Ray's (``sys.exit(15)``): said as the command's own stop, and what it started
    # goes (a Ctrl-C or SIGTERM there left a local Ray's dashboard and runtime-env agents, 200 MB, for a minute)
    main = threading.current_thread() is threading.main_thread()
    try:
        with handlers_kept():
            try:
                # a Ctrl-C that cut ray.init midway made the driver segfault as it ended (3 of 10 at 5-6 s, 2026-12-07)
                # and left Ray's agents running for a minute: taken once Ray is up, which then shuts down whole
                with ctrl_c_deferred("handforge export: Ctrl-C: stopping once Ray has started (a few seconds; Ctrl-C "
                                     "again to stop now)"):
                    ray.init(**kwargs)
            except BaseException:
                with contextlib.suppress(Exception):
                    ray.shutdown()
                raise
    except SystemExit as exc:
        if exc.code == signal.SIGTERM and main:
            raise Terminated from None
        raise
    except ConnectionError as exc:  # most often a cluster with token authentication and no token here
        if kwargs.get("address") == "auto":
            raise RayUnavailable(f"--ray auto: {str(exc).rstrip('.')}. {NO_AUTO}") from None
        raise RayUnavailable(f"--ray {kwargs.get('address')}: {exc}. {TOKEN}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. a local Ray that cannot start (no room in its temp folder)
        where = "a local Ray" if kwargs.get("address") in (None, "local") else f"--ray {kwargs['address']}"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        fix = ("set RAY_TMPDIR to a folder of a shorter path: Ray's sockets are made in it" if "AF_UNIX path" in first
               else "check the free space and permissions of Ray's temporary folder, RAY_TMPDIR, /tmp/ray by default")
        raise RayUnavailable(f"{where} did not start: {type(exc).__name__}: {first} ({fix})") from None


def _shutdown(ray) -> None:
    """``ray.shutdown()``, the command's signal handlers kept: it left SIGTERM at its default in the kernel, so a
    SIGTERM while the aggregate files were written killed the run outright (status -15, no word)."""
    with handlers_kept():
        ray.shutdown()


def _parse(address: str, named: str | None = None) -> tuple[str, str, int]:
    """(scheme, host, port) of ``--ray ADDRESS``; ValueError, with what to pass, where Ray's driver cannot use it.
    ``named``: how the errors name the address (``auto (...)`` when ``auto`` found it)."""
    named = named or address
    parts = urlsplit(address if "://" in address else f"//{address}")
    if parts.scheme in ("http", "https"):  # the dashboard's (what `ray job submit` takes): ray.init refuses it
        head = parts.hostname or "HEAD"
        raise ValueError(f"--ray {named}: that is the dashboard's address (for `ray job submit`), not the cluster's; "
                         f"pass the head's, --ray {head}:6379 (the --port of `ray start --head`), or Ray Client's, "
                         f"--ray ray://{head}:10001")
    if parts.scheme not in ("", "ray"):
        raise ValueError(f"--ray {named}: Ray's driver cannot connect through {parts.scheme}://; give {FORMS}")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = None
    if not parts.hostname or port is None:
        raise ValueError(f"--ray {named}: expected {FORMS}")
    return parts.scheme, parts.hostname, port


def _auto_address() -> str | None:
    """The address ``--ray auto`` means, found as ray.init finds it: RAY_ADDRESS, else the cluster started
    last on this machine (None: a Ray that moved its lookup, ray.init decides). No Ray found: RayUnavailable."""
    try:
        from ray._private.services import get_ray_address_from_environment
    except ImportError:
        return None
    try:
        return get_ray_address_from_environment("auto", None)
    except ConnectionError:
        raise RayUnavailable(f"--ray auto: no Ray is running on this machine and RAY_ADDRESS is not set. {NO_AUTO}") \
            from None


def _dialled(host: str) -> str:
    """The host ray.init connects to for a head: it replaces a local one (127.0.0.1) by this machine's address."""
    try:
        from ray._private.services import resolve_ip_for_localhost
    except ImportError:  # a Ray that moved it: probe the host as given
        return host
    return resolve_ip_for_localhost(host)


def _first_call(target: tuple[str, int], client: bool, timeout: float) -> str:
    """Make the first call of ray.init at ``target`` under a deadline (a head: its cluster ID; Ray Client: a
    ping): "OK", the gRPC status's name, or "NO_TOKEN" (token mode and no token here, raised before sending)."""
    import grpc

    try:
        from ray._private.grpc_utils import init_grpc_channel  # with Ray's TLS and token settings
        from ray.core.generated import gcs_service_pb2, gcs_service_pb2_grpc, ray_client_pb2, ray_client_pb2_grpc
        from ray.exceptions import AuthenticationError
    except ImportError:  # a Ray that moved them: ray.init decides
        return "OK"
    host, port = target
    try:
        with init_grpc_channel(f"[{host}]:{port}" if ":" in host else f"{host}:{port}") as channel:
            if client:
                ray_client_pb2_grpc.RayletDriverStub(channel).ClusterInfo(
                    ray_client_pb2.ClusterInfoRequest(type=ray_client_pb2.ClusterInfoType.PING), timeout=timeout)
            else:
                gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
                    gcs_service_pb2.GetClusterIdRequest(), timeout=timeout)
    except grpc.RpcError as exc:
        return exc.code().name
    except AuthenticationError:
        return "NO_TOKEN"
    return "OK"


def _advice(client: bool, port: int) -> tuple[str, str, str]:
    """What should answer at a Ray Client or a head address, what its port is called, and how to fix it."""
    if client:
        return ("Ray Client server", "a Ray Client port", "start a head with `ray start --head` (it serves Ray Client "
                "on port 10001), or check the address (a head's own port is given as HOST:PORT, without ray://)")
    return ("Ray head", "a Ray head's port", f"start a head there with `ray start --head --port {port}`, or check "
            "the address (`ray start --head` prints it; a Ray Client port is given as ray://HOST:PORT)")


# what a port that is not Ray's does to the first call (other answers come from a Ray)
_NOT_RAY = {"DEADLINE_EXCEEDED": "was silent for {timeout:g} s",
            "UNAVAILABLE": "does not speak gRPC (an HTTP server, say)",
            "UNIMPLEMENTED": "is a gRPC server of another kind"}


@contextlib.contextmanager
def _sigterm_said() -> Iterator[None]:
    """A SIGTERM during a call of Ray's (``ray.wait``, ``ray.get``) is said as one: Ray turns the ``Terminated``
    the command's handler raises there into a plain KeyboardInterrupt ("interrupted", status 130)."""
    before = sigterm_received()
    try:
        yield
    except KeyboardInterrupt as exc:
        if not isinstance(exc, Terminated) and not before and sigterm_received():
            raise Terminated from None
        raise


def _sweep_killed(pids: set[int], seconds: float = 5.0) -> None:
    """The scratch folders of this machine's actors (``pids``) killed by a stop (Ctrl-C, SIGTERM, an error): their
    Blender's, left as a SIGKILL leaves them, where local workers remove theirs. A killed actor's process ends a
    moment after ``ray.kill``: waited for, ``seconds`` at most, then its folders swept (``handforge.scratch``)."""
    import time

    from handforge.scratch import running, sweep

    end = time.monotonic() + seconds
    while any(running(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.05)
    sweep()


class _Actor:
    """The actor around a ``SampleWorker``: a constructor error is kept and reported by ``ready``, so
    the driver tells a worker that cannot start (fatal) from one that died (replaced)."""

    def __init__(self, spec: dict[str, Any], out: str, fault: str | None, folder: str):
        from handforge.export.spec import SpecError
        from handforge.export.worker import SampleWorker

        # the spec's relative paths mean the driver's folder, as in a local run (and are recorded as written):
        # an actor starts in its node's own (a `ray start` head's), where they named nothing
        moved = os.path.isdir(folder)
        if moved:
            os.chdir(folder)  # (an actor is a process of its own)
        try:
            self.worker, self.error = SampleWorker(spec, out, fault), None
        except Exception as exc:
            self.worker, self.error = None, f"{type(exc).__name__}: {exc} (on {socket.gethostname()})"
            if not moved and isinstance(exc, (OSError, SpecError)):  # (a path the spec names, read from here)
                self.error += (f"; the folder the command runs in, {folder}, is not on that node: run it from the "
                               "shared storage, or give absolute paths in the spec")

    def ready(self) -> dict[str, str]:
        return {"fatal": self.error} if self.error else {"ready": self.worker.renderer_name, "pid": os.getpid(),
                                                         "host": socket.gethostname()}

    def run(self, indices: list[int]) -> list[dict[str, Any]]:
        return self.worker.run(indices)

    def close(self) -> None:
        """Its Blender worker and temporary folder go (``ray.kill`` alone left them behind)."""
        if self.worker is not None:
            self.worker.close()


class RayPool:
    """``start``/``submit``/``wait``/``stop`` of ``handforge.export.shards.Pool`` on Ray actors.
    ``address``: a cluster (``ray://host:10001`` or ``host:6379``); None starts a local Ray for the run."""

    @staticmethod
    def check_installed() -> None:
        """Raise ``RayUnavailable`` (what to install) before anything is started."""
        _import_ray()

    @staticmethod
    def check_address(address: str, timeout: float = 5.0) -> None:
        """Refuse at once an address Ray's driver cannot use (http://, another scheme, no port) or where no
        Ray answers: nothing listens there, or what does is not Ray (ray.init retries either for minutes, or
        blames a token). Each of the two probes waits ``timeout`` at most."""
        if not address:
            return
        named = address
        if address == "auto":  # ray.init(address="auto") retried a stale RAY_ADDRESS for minutes too
            address = _auto_address()
            if address in (None, "local"):  # ray.init decides, or starts a Ray of its own
                return
            named = f"auto ({address})"
        scheme, host, port = _parse(address, named)
        client = scheme == "ray"  # Ray Client dials the host as given, ray.init a head's as _dialled says
        target = (host if client else _dialled(host)), port
        where = f"{target[0]}:{port}" + (f" (Ray dials this machine's address for {host})" if target[0] != host else "")
        what, port_of, fix = _advice(client, port)
        try:
            socket.create_connection(target, timeout=timeout).close()
        except OSError as exc:  # refused, timed out, or an unknown host name
            raise RayUnavailable(f"--ray {named}: no {what} answers there: cannot connect to {where} ({exc}); "
                                 f"{fix}") from None
        status = _first_call(target, client, timeout)
        if status == "NO_TOKEN":
            raise RayUnavailable(f"--ray {named}: RAY_AUTH_MODE=token is set but this machine has no token. {TOKEN}")
        if status == "UNAUTHENTICATED":  # ray.init says so too, after 25-35 s of retries
            raise RayUnavailable(f"--ray {named}: the {what} at {where} refused this driver, which lacks the "
                                 f"cluster's token (none here, or another one). {TOKEN}")
        if status in _NOT_RAY:
            raise RayUnavailable(f"--ray {named}: no {what} answers there: {where} "
                                 f"{_NOT_RAY[status].format(timeout=timeout)}, so it is not {port_of}; {fix}")

    @staticmethod
    def cluster_workers(address: str, cpus_per_worker: float = 1.0) -> int:
        """How many workers the cluster at ``address`` has CPUs for (connects; the pool then reuses it)."""
        ray = _import_ray()
        if not ray.is_initialized():
            _connect(ray, address=address, logging_level=logging.WARNING)
        return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))

    def __init__(self, spec: dict[str, Any], out: str, address: str | None, workers: int,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0):
        self.ray = _import_ray()
        # absolute: actors run in other folders (and on a cluster, the same path must be the shared storage)
        self.spec, self.out, self.address, self.workers = spec, str(Path(out).absolute()), address, workers
        self.options = {"num_cpus": cpus_per_worker, "num_gpus": gpus_per_worker, "max_restarts": 0}
        # The actors use this driver's settings (weights, MANO files), which the card records, whatever the
        # nodes' own config says; the paths must be on the shared storage.
        settings = config.environment()
        if settings:
            self.options["runtime_env"] = {"env_vars": settings}
        self.actors: dict[int, Any] = {}
        self.ready: set[int] = set()  # the slots whose actor has started (its worker made)
        self.pids: set[int] = set()  # the processes of the actors started on this machine
        self.pending: dict[Any, tuple[int, str, int | None]] = {}  # object ref → (slot, "ready"|"run", chunk)
        self._started = False

    def __enter__(self) -> "RayPool":
        ray = self.ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": True}
            if self.address:
                kwargs["address"] = self.address
            else:  # enough CPUs that every worker is placed even on a small machine; "local": a Ray of this
                # run's own even where one is running (ray.init() would attach to it, and refuse num_cpus)
                kwargs.update(address="local", num_cpus=max(self.workers, usable_cpus()), include_dashboard=False)
            _connect(ray, **kwargs)
            self._started = True
        wanted = self.options["num_gpus"]
        if wanted:  # Ray would keep the actors pending for ever: say so now
            most = max((node.get("Resources", {}).get("GPU", 0) for node in ray.nodes() if node.get("Alive")),
                       default=0)
            if most < wanted:
                if self._started:
                    _shutdown(ray)
                    self._started = False
                where = f"the Ray cluster at {self.address}" if self.address else "this machine's Ray"
                raise RayUnavailable(f"--gpus-per-worker {wanted:g}: no node of {where} has that many GPUs (the most "
                                     f"on one node: {most:g}), so no worker could start; drop the flag to render on "
                                     "CPUs, or add nodes with GPUs (`ray start --address HEAD --num-gpus N`; an "
                                     "autoscaling cluster must have one GPU node up first)")
        self.actor_class = ray.remote(_Actor)
        return self

    starts_at_once = False  # an actor may wait for a node with its resources: no start timeout (``shards``)

    def __exit__(self, kind: Any, *exc: Any) -> None:
        try:  # after a Ctrl-C or an error the actors are killed, not asked one by one
            for slot in list(self.actors):
                self.stop(slot, force=kind is not None)
        finally:
            if self._started:
                _shutdown(self.ray)
            if kind is not None and self.pids:
                _sweep_killed(self.pids)

    def describe(self) -> str:
        return f"Ray at {self.address}" if self.address else "a local Ray"

    def start(self, slot: int, fault: str | None = None) -> None:
        actor = self.actor_class.options(**self.options).remote(self.spec, self.out, fault, os.getcwd())
        self.actors[slot] = actor
        self.pending[actor.ready.remote()] = (slot, "ready", None)

    def submit(self, slot: int, chunk: int, indices: list[int]) -> None:
        self.pending[self.actors[slot].run.remote(indices)] = (slot, "run", chunk)

    def wait(self, timeout: float) -> list[Event]:
        if not self.pending:
            return []
        with _sigterm_said():
            ready, _ = self.ray.wait(list(self.pending), num_returns=1, timeout=timeout)
        events: list[Event] = []
        for ref in ready:
            slot, kind, chunk = self.pending.pop(ref)
            if slot not in self.actors:
                continue
            try:
                with _sigterm_said():
                    value = self.ray.get(ref)
            except self.ray.exceptions.RayActorError as exc:
                self._forget(slot)
                events.append(Event("died", slot, f"Ray actor died: {str(exc).splitlines()[0]}"))
                continue
            except self.ray.exceptions.RayTaskError as exc:  # its run raised: as a local worker, it is replaced
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                self.stop(slot, force=True)  # (its state is unknown; the driver redoes its unfinished samples)
                events.append(Event("died", slot, f"Ray worker failed: {type(cause).__name__}: "
                                                  f"{(str(cause).splitlines() or [''])[0]}"))
                continue
            if kind == "ready":
                if "fatal" not in value:
                    self.ready.add(slot)
                    if value.get("host") == socket.gethostname():
                        self.pids.add(value["pid"])
                events.append(Event("fatal", slot, value["fatal"]) if "fatal" in value
                              else Event("ready", slot, value["ready"]))
            else:
                events.append(Event("done", slot, (chunk, value)))
        return events

    def stop(self, slot: int, force: bool = False) -> None:
        """End an actor: asked to close its worker first (10 s), unless ``force`` (a hung one) or it has not
        started (waiting for a node with its resources, or still making its worker), then killed. Asked, one never
        started held the end of the run 10 s (`--workers 32` on a cluster with room for 8: 4 minutes), or made its
        worker, a Blender too, only to close it."""
        actor = self.actors.get(slot)
        if actor is not None:
            if not force and slot in self.ready:
                try:
                    self.ray.get(actor.close.remote(), timeout=10)
                except Exception:  # dead, busy or slow: killed all the same
                    pass
            self.ray.kill(actor)
            self._forget(slot)

    def _forget(self, slot: int) -> None:
        self.actors.pop(slot, None)
        self.ready.discard(slot)
        for ref in [r for r, (s, _, _) in self.pending.items() if s == slot]:
            del self.pending[ref]
