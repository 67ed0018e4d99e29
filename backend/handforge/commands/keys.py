"""handforge keys: create a CurveZMQ key pair for remote use of the backend."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from pathlib import Path

from handforge.arguments import output_folder

NAME = "keys"
HELP = "create a CurveZMQ key pair (NAME.key public, NAME.key_secret private) for remote backends"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=lambda text: Path(output_folder(text)), required=True, metavar="DIR", help="folder to write the key pair into")
    parser.add_argument("--name", default="server", help="base name of the files (default: server)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing key pair of that name")


def run(args: argparse.Namespace) -> int:
    import zmq.auth

    # at most 200: the files add ".key_secret" within a file name's 255 bytes (a longer one made --out, then failed)
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", args.name):
        print(f"handforge keys: --name {args.name!r}: use up to 200 letters, digits, '.', '_' or '-'", file=sys.stderr)
        return 2
    public, secret = args.out / f"{args.name}.key", args.out / f"{args.name}.key_secret"
    taken = [p for p in (public, secret) if p.is_dir()]  # (--force then ended in an IsADirectoryError traceback)
    if taken:
        print(f"handforge keys: {taken[0]} is a folder, not a key file: move it, or choose another --name",
              file=sys.stderr)
        return 2
    if (public.exists() or secret.exists()) and not args.force:
        print(f"handforge keys: {public} or {secret} exists already: pass --force to replace it, or choose another "
              "--name", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    # private before the key is written into it (zmq's open(..., "w") keeps the mode): chmod after the
    # write left it readable by all in between, and for good when interrupted there
    os.close(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600))
    os.chmod(secret, 0o600)  # (a file replaced with --force has its own mode)
    public_file, secret_file = zmq.auth.create_certificates(args.out, args.name)
    print(f"public key: {public_file}\nsecret key: {secret_file} (keep it private)")
    print(where_they_go(args.name, Path(public_file), Path(secret_file)))
    return 0


def where_they_go(name: str, public: Path, secret: Path) -> str:
    """Where each file of a new pair must go; a secret key never goes into the server's client-key folder."""
    if name == "server":
        # (quoted: the command is copied as is, and a path may hold spaces)
        return (f"on the server: handforge serve --bind 0.0.0.0 --curve-secret {shlex.quote(str(secret))} "
                "--curve-clients CLIENT_KEYS_DIR\n"
                f"to every client: a copy of {public} (public); {secret} never leaves the server")
    return (f"on the server: copy only {public} into the folder passed as --curve-clients\n"
            f"on the client '{name}': {secret} plus the server's server.key; never put {secret.name} in the "
            "--curve-clients folder (the server only needs public keys there)")
