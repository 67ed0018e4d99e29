"""handforge keys: create a CurveZMQ key pair for remote use of the backend."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tempfile
from pathlib import Path

from handforge.arguments import output_folder
from handforge_shared.files import file_error, write_atomic

NAME = "keys"
HELP = "create a CurveZMQ key pair (NAME.key public, NAME.key_secret private) for remote backends"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=lambda text: Path(output_folder(text)), required=True, metavar="DIR", help="folder to write the key pair into")
    parser.add_argument("--name", default="server", help="base name of the files (default: server)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing key pair of that name")


def run(args: argparse.Namespace) -> int:
    # at most 200: the files add ".key_secret" within a file name's 255 bytes (a longer one made --out, then failed);
    # no leading '.': "--name .." wrote the hidden files ...key and ...key_secret
    if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}", args.name):
        print(f"handforge keys: --name {args.name!r}: use up to 200 letters, digits, '.', '_' or '-', not starting "
              "with '.'", file=sys.stderr)
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
    try:
        write_pair(args.out, args.name)
    except OSError as exc:  # e.g. a folder that cannot be written (a traceback before)
        print(f"handforge keys: could not write the key pair into {args.out}: {file_error(exc, 'choose another --out')}; "
              "nothing was written", file=sys.stderr)
        return 1
    print(f"public key: {public}\nsecret key: {secret} (keep it private)")
    print(where_they_go(args.name, public, secret))
    return 0


def write_pair(out: Path, name: str) -> None:
    """NAME.key and NAME.key_secret in ``out``, whole or not at all (an interrupted or failed write leaves the
    files there before, or none, never a half-written or empty key to be refused as existing)."""
    import zmq.auth

    out.mkdir(parents=True, exist_ok=True)
    # pyzmq writes the pair into a private (0700) folder beside them; each file then goes into place whole,
    # the secret owner-only from its first byte, and a failure there (a full disk) keeps the pair --force replaces
    with tempfile.TemporaryDirectory(prefix=".handforge-keys-", dir=out) as staging:
        public, secret = (Path(p) for p in zmq.auth.create_certificates(staging, name))
        write_atomic(out / secret.name, secret.read_bytes(), private=True)
        write_atomic(out / public.name, public.read_bytes())


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
