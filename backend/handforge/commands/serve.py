"""handforge serve: run the backend (ZeroMQ ROUTER) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import re
import stat
import sys
import threading
from pathlib import Path

from handforge.arguments import (at_least, existing_path, finite_number, given_text, path_errors_said, python_package,
                                 repeated, thread_count, torch_thread_count, whole_number, writable_file)
from handforge_shared.protocol import (DEFAULT_HEARTBEAT_S, DEFAULT_HOST, DEFAULT_LIMITS, DEFAULT_PORT,
                                       STOP_WITH_STDIN_ENV, Limits, parse_endpoint)

NAME = "serve"
HELP = "run the backend server that Blender and scripts talk to (ZeroMQ, loopback by default)"
CHECKS_CONFIG = True  # reads the config file itself, once the engine packages declared their settings


MIN_MESSAGE_MB = 1.0  # below this not even a hand model's rig fits in a reply
# 4 TiB, more than any machine's memory: --max-message-mb 1e30 overflowed libzmq's 64-bit frame limit (twice
# this), a traceback once the server was built
MAX_MESSAGE_MB = float(1 << 22)


# --heartbeat 1e-6 sent a client ~900 heartbeats a second (the loop's pace): one busy for 40 s between reads
# filled its queues, its connection stalled, and the server dropped it after 17 s, cancelling its job
MIN_HEARTBEAT_S = 0.1
# an hour between heartbeats already leaves a client blind to a dead backend for hours; 1e16 s overflowed
# zmq_poll's timeout (a traceback once the server ran)
MAX_HEARTBEAT_S = 3600.0


def _heartbeat_seconds(text: str) -> float:
    value = finite_number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    if value < MIN_HEARTBEAT_S:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_HEARTBEAT_S:g} seconds, got {text!r}")
    if value > MAX_HEARTBEAT_S:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_HEARTBEAT_S:g} seconds (an hour), got {text!r}")
    return value


def _message_mb(text: str) -> float:
    value = finite_number(text)
    if value < MIN_MESSAGE_MB:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_MESSAGE_MB:g} (MiB), got {text!r}")
    if value > MAX_MESSAGE_MB:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_MESSAGE_MB:.0f} (MiB, 4 TiB), got {text!r}")
    return value


def _bind_host(text: str) -> str:
    """An address to listen on: a host alone ("tcp://127.0.0.1", "127.0.0.1:5780" or a trailing space were
    refused as not loopback, with advice to create CurveZMQ keys)."""
    host = given_text(f"an address to listen on, e.g. {DEFAULT_HOST} (this machine only)")(text)
    if "://" in host or host.count(":") == 1 or "]:" in host or any(c.isspace() for c in host):
        raise argparse.ArgumentTypeError(f"must be a host name or IP address alone, e.g. {DEFAULT_HOST}, got {text!r} "
                                         "(the port is --port)")
    return host


def _device_list(text: str) -> tuple[str, ...]:
    devices = tuple(d.strip() for d in text.split(",") if d.strip())
    bad = [d for d in devices if not re.fullmatch(r"cpu|cuda:\d+", d)]
    if not devices or bad:
        raise argparse.ArgumentTypeError(f"must be cpu or cuda:N, comma-separated (e.g. cuda:0,cuda:1), got {text!r}")
    # one worker per entry, and the workers of one device share its cached models: a device named twice
    # ran two jobs at once on one pipeline (image.transfer's reference attention hooks crossed, jobs failed)
    twice = repeated(devices)
    if twice:
        raise argparse.ArgumentTypeError(f"{', '.join(twice)} named more than once, got {text!r}; each device "
                                         "runs one job at a time: name it once")
    return devices


def _check_devices_exist(devices: tuple[str, ...] | None) -> str | None:
    """Why the requested devices cannot be used, or None; probes CUDA (imports torch) only when one is asked for."""
    if not devices or all(d == "cpu" for d in devices):
        return None
    from handforge.server import capabilities

    try:
        capabilities.compute_devices(capabilities.probe_devices(), devices)
    except ValueError as exc:
        return str(exc)
    return None


def _memory_size(text: str) -> int:
    from handforge.server.model_cache import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


@path_errors_said
def _endpoint_file(text: str) -> Path:
    """A file to write the endpoint into, and remove at exit: an existing one only when empty (mktemp's) or an
    endpoint (one left by a server killed outright); any other was overwritten, then removed (a user's notes)."""
    path = Path(writable_file(text))
    if path.is_file():
        with open(path, "rb") as fh:
            held = fh.read(1024)
        try:
            text = held.decode().strip()
            if text:  # (empty: mktemp's, taken)
                parse_endpoint(text)
        except (UnicodeDecodeError, ValueError):
            raise argparse.ArgumentTypeError(f"{path} exists and is not an endpoint file (tcp://HOST:PORT): the "
                                             "server replaces it and removes it at exit; choose another file, or "
                                             "remove it first") from None
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", type=_bind_host,
                        default=DEFAULT_HOST, metavar="HOST",
                        help=f"address to listen on (default {DEFAULT_HOST}; any other needs CurveZMQ keys)")
    parser.add_argument("--port", type=whole_number(0, 65535), default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one, see --endpoint-file)")
    parser.add_argument("--curve-secret", type=existing_path(hint="create one with `handforge keys`"), metavar="FILE",
                        help="the server's CurveZMQ secret key (a .key_secret file from `handforge keys`)")
    parser.add_argument("--curve-clients", type=existing_path(folder=True), metavar="DIR",
                        help="folder with the public keys (*.key) of the clients allowed to connect")
    parser.add_argument("--max-queue", type=at_least(1), default=32, metavar="N",
                        help="jobs that may wait to start; more are answered 'busy' (default 32)")
    parser.add_argument("--max-queued-mb", type=_message_mb, default=1024.0, metavar="MIB",
                        help="MiB of arrays that waiting jobs may hold together; a request passing it is answered "
                             "'busy' (default 1024)")
    parser.add_argument("--cpu-workers", type=thread_count(), default=4, metavar="N",
                        help="threads for light (cpu-class) jobs (default 4)")
    parser.add_argument("--devices", type=_device_list, metavar="LIST",
                        help="comma-separated devices for GPU-class jobs, e.g. cuda:0,cuda:1 or cpu "
                             "(default: every CUDA GPU, else the CPU)")
    parser.add_argument("--heartbeat", type=_heartbeat_seconds, default=DEFAULT_HEARTBEAT_S, metavar="SECONDS",
                        help=f"heartbeat interval to clients with jobs in flight (default {DEFAULT_HEARTBEAT_S:g})")
    parser.add_argument("--max-message-mb", type=_message_mb, default=DEFAULT_LIMITS.max_message_bytes / 2**20,
                        metavar="MB", help="largest request accepted, in MiB (default 256)")
    parser.add_argument("--model-memory", type=_memory_size, default="8GiB", metavar="SIZE",
                        help="memory for cached models per device, e.g. 8GiB or 512MB; the least recently used "
                             "models are unloaded past it (default 8GiB)")
    parser.add_argument("--engine-package", type=python_package, action="append", default=[], metavar="PACKAGE",
                        help="also load the engines of this Python package (each <engine>/jobs.py), besides "
                             "handforge.engines; repeatable")
    parser.add_argument("--torch-threads", type=torch_thread_count(), metavar="N",
                        help="CPU threads of each torch operation (default: torch's own, one per core); 1 is "
                             "the safe choice on a small machine busy with other work, where torch's threads "
                             "wait on each other (the backend lets them sleep while they wait, OMP_WAIT_POLICY="
                             "PASSIVE, unless set: without it in-betweening 200 frames took 1.2-5.7 s instead "
                             "of 0.4-0.75 s on 2 loaded cores)")
    parser.add_argument("--endpoint-file", type=_endpoint_file, metavar="FILE",
                        help="write the endpoint to connect to (tcp://host:port; 127.0.0.1 for a --bind 0.0.0.0) here once "
                             "listening; removed on exit")


def limit_torch_threads(count: int) -> None:
    """Before torch is imported (engines import it at their first job) the environment decides its
    thread pools; after, ``set_num_threads`` does."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(count)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(count)


def openmp_threads_sleep_when_idle() -> None:
    """Unless the user chose otherwise, torch's OpenMP threads (libgomp) wait for work asleep, not spinning
    (``OMP_WAIT_POLICY=PASSIVE``), read once, when torch is first imported (the engines' first job). A backend
    shares its machine with Blender and whatever else runs: with two threads on two busy cores, spinning threads
    took the core from the one with work, several times slower than one thread (measured: README, Motion)."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def stop_when_stdin_closes(server) -> None:
    """With ``STOP_WITH_STDIN_ENV`` set, stop ``server`` once stdin reaches its end: the parent that holds the
    pipe's other end (Blender) exited. A backend the add-on started outlived a Blender that crashed,
    holding its port (the next Start Local Backend was refused) and its models' memory."""
    if os.environ.get(STOP_WITH_STDIN_ENV) != "1" or sys.stdin is None:
        return
    try:  # a pipe only: a start command that puts the server in the background gives it /dev/null, at its end
        if not stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):  # at once ("sh -c '... &'" stopped it)
            return
    except (OSError, ValueError):
        return
    fd = sys.stdin.fileno()

    def watch() -> None:
        try:
            # the descriptor, not sys.stdin's buffered reader: blocked in it, this thread held the reader's lock,
            # and an exit by a signal aborted at the interpreter's shutdown ("Fatal Python error", status -6)
            while os.read(fd, 4096):  # the parent writes nothing: this waits for the end
                pass
        except (OSError, ValueError):  # closed under us: the same news
            pass
        server.stop("stdin closed: Stop pressed, or the program that started the backend exited")

    threading.Thread(target=watch, name="stdin-watch", daemon=True).start()


def run(args: argparse.Namespace) -> int:
    from handforge.server.app import Server, ServerConfig

    openmp_threads_sleep_when_idle()
    if args.torch_threads:
        limit_torch_threads(args.torch_threads)
    from handforge.server.security import SecurityError

    devices = args.devices
    problem = _check_devices_exist(devices)
    if problem:
        print(f"handforge serve: bad --devices: {problem}", file=sys.stderr)
        return 2
    config = ServerConfig(
        host=args.bind, port=args.port, curve_secret=args.curve_secret, curve_clients=args.curve_clients,
        max_queue=args.max_queue, max_queued_bytes=int(args.max_queued_mb * (1 << 20)),
        cpu_workers=args.cpu_workers, devices=devices, heartbeat_s=args.heartbeat,
        limits=Limits(max_header_bytes=DEFAULT_LIMITS.max_header_bytes, max_arrays=DEFAULT_LIMITS.max_arrays,
                      max_message_bytes=int(args.max_message_mb * 2**20)),
        endpoint_file=args.endpoint_file, model_memory_bytes=args.model_memory,
        engine_packages=tuple(args.engine_package))
    server = Server(config)
    from handforge import config as settings_file

    try:  # once the engines (and --engine-package's) have declared their settings
        unknown = settings_file.check_file()
    except settings_file.ConfigError as exc:
        print(f"handforge serve: {settings_file.refusal(exc)}", file=sys.stderr)
        return 2
    if wrong := settings_file.wrong_values():  # every job reading such a value would fail (it started, unsaid)
        print(f"handforge serve: {'; '.join(wrong)}", file=sys.stderr)  # (each with its fix)
        return 2
    try:
        server.bind()
    except SecurityError as exc:  # said once (a log line beside it repeated it, twice in the add-on's quote)
        print(f"handforge serve: {exc}", file=sys.stderr)
        return 2
    if unknown:  # (after the refusals: a server that does not start says only why)
        logging.getLogger("handforge.server").warning("the config file %s names settings no engine declares: %s "
                                                      "(misspelled?)%s", settings_file.config_path(), ", ".join(unknown),
                                                      "".join(f"; {h}" for h in settings_file.unknown_hints(unknown)))
    if os.environ.get("HANDFORGE_CONFIG") and not settings_file.config_path().exists():  # (a typo: defaults, unsaid)
        logging.getLogger("handforge.server").warning(
            "HANDFORGE_CONFIG names %s, which does not exist: every setting is its environment variable's or its "
            "default (`handforge doctor` lists them); point HANDFORGE_CONFIG at your config file",
            settings_file.config_path())
    stop_when_stdin_closes(server)
    server.serve()
    if server.failure:
        print(f"handforge serve: {server.failure}", file=sys.stderr)
        return 2
    return 0
