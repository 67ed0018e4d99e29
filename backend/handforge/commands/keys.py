"""handforge keys: create a CurveZMQ key pair for remote use of the backend."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

NAME = "keys"
HELP = "create a CurveZMQ key pair (NAME.key public, NAME.key_secret private) for remote backends"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder to write the key pair into")
    parser.add_argument("--name", default="server", help="base name of the files (default: server)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing key pair of that name")


def run(args: argparse.Namespace) -> int:
    import zmq.auth

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", args.name):
        raise SystemExit(f"--name {args.name!r}: use letters, digits, '.', '_' or '-'")
    public, secret = args.out / f"{args.name}.key", args.out / f"{args.name}.key_secret"
    if (public.exists() or secret.exists()) and not args.force:
        raise SystemExit(f"{public} or {secret} exists already: pass --force to replace it, or choose another --name")
    args.out.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(args.out, args.name)
    os.chmod(secret_file, 0o600)
    print(f"public key: {public_file}\nsecret key: {secret_file} (keep it private)")
    print("server: handforge serve --bind 0.0.0.0 --curve-secret server.key_secret --curve-clients DIR_OF_CLIENT_KEYS\n"
          "client: put the client's .key in the server's --curve-clients folder, and give the client the server's "
          ".key and its own .key_secret")
    return 0
