"""handforge serve: run the backend (ZeroMQ ROUTER) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from handforge_shared.protocol import DEFAULT_HEARTBEAT_S, DEFAULT_HOST, DEFAULT_LIMITS, DEFAULT_PORT, Limits

NAME = "serve"
HELP = "run the backend server that Blender and scripts talk to (ZeroMQ, loopback by default)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bind", default=DEFAULT_HOST, metavar="HOST",
                        help=f"address to listen on (default {DEFAULT_HOST}; any other needs CurveZMQ keys)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one, see --endpoint-file)")
    parser.add_argument("--curve-secret", type=Path, metavar="FILE",
                        help="the server's CurveZMQ secret key (a .key_secret file from `handforge keys`)")
    parser.add_argument("--curve-clients", type=Path, metavar="DIR",
                        help="folder with the public keys (*.key) of the clients allowed to connect")
    parser.add_argument("--max-queue", type=int, default=32, metavar="N",
                        help="jobs that may wait to start; more are answered 'busy' (default 32)")
    parser.add_argument("--cpu-workers", type=int, default=4, metavar="N",
                        help="threads for light (cpu-class) jobs (default 4)")
    parser.add_argument("--devices", metavar="LIST",
                        help="comma-separated devices for GPU-class jobs, e.g. cuda:0,cuda:1 or cpu "
                             "(default: every CUDA GPU, else the CPU)")
    parser.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT_S, metavar="SECONDS",
                        help=f"heartbeat interval to clients with jobs in flight (default {DEFAULT_HEARTBEAT_S:g})")
    parser.add_argument("--max-message-mb", type=float, default=DEFAULT_LIMITS.max_message_bytes / 2**20,
                        metavar="MB", help="largest request accepted, in MiB (default 256)")
    parser.add_argument("--model-memory", default="8GiB", metavar="SIZE",
                        help="memory for cached models per device, e.g. 8GiB or 512MB; the least recently used "
                             "models are unloaded past it (default 8GiB)")
    parser.add_argument("--engine-package", action="append", default=[], metavar="PACKAGE",
                        help="also load the engines of this Python package (each <engine>/jobs.py), besides "
                             "handforge.engines; repeatable")
    parser.add_argument("--endpoint-file", type=Path, metavar="FILE",
                        help="write the endpoint (tcp://host:port) here once listening; removed on exit")


def run(args: argparse.Namespace) -> int:
    from handforge.server.app import Server, ServerConfig
    from handforge.server.security import SecurityError

    for name in ("max_queue", "cpu_workers"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if args.heartbeat <= 0 or args.max_message_mb <= 0 or not 0 <= args.port <= 65535:
        raise SystemExit("--heartbeat and --max-message-mb must be positive, --port between 0 and 65535")
    from handforge.server.model_cache import parse_size

    try:
        model_memory = parse_size(args.model_memory)
    except ValueError as exc:
        raise SystemExit(f"--model-memory: {exc}") from None
    for package in args.engine_package:
        if not _importable(package):
            raise SystemExit(f"--engine-package {package}: no such Python package (is its folder on PYTHONPATH?)")
    devices = tuple(d.strip() for d in args.devices.split(",") if d.strip()) if args.devices else None
    config = ServerConfig(
        host=args.bind, port=args.port, curve_secret=args.curve_secret, curve_clients=args.curve_clients,
        max_queue=args.max_queue, cpu_workers=args.cpu_workers, devices=devices, heartbeat_s=args.heartbeat,
        limits=Limits(max_header_bytes=DEFAULT_LIMITS.max_header_bytes, max_arrays=DEFAULT_LIMITS.max_arrays,
                      max_message_bytes=int(args.max_message_mb * 2**20)),
        endpoint_file=args.endpoint_file, model_memory_bytes=model_memory,
        engine_packages=tuple(args.engine_package))
    server = Server(config)
    try:
        server.bind()
    except SecurityError as exc:
        logging.getLogger("handforge.server").error("%s", exc)
        print(f"handforge serve: {exc}", file=sys.stderr)
        return 2
    server.serve()
    if server.failure:
        print(f"handforge serve: {server.failure}", file=sys.stderr)
        return 2
    return 0


def _importable(package: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(package) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False
