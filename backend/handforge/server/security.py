"""Who may connect: loopback by default; any other address only with CurveZMQ keys.

Keys are zmq.auth certificate files (``handforge keys`` writes them): the server holds its
``*.key_secret``; each authorised client's public ``*.key`` lies in the ``--curve-clients`` folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import zmq

from handforge_shared.files import check_key_file
from handforge_shared.protocol import is_loopback

log = logging.getLogger(__name__)
ZAP_DOMAIN = "handforge"


class SecurityError(RuntimeError):
    """The server may not start with these settings; the message says how to fix it."""


def check_bind(host: str, curve_secret: Path | None, curve_clients: Path | None) -> None:
    if (curve_secret is None) != (curve_clients is None):
        raise SecurityError("CurveZMQ needs both --curve-secret (the server's .key_secret file) and "
                            "--curve-clients (the folder of authorised client .key files)")
    if not is_loopback(host) and curve_secret is None:
        raise SecurityError(
            f"refusing to listen on {host}: only loopback (127.0.0.1) is allowed without encryption and "
            "client authentication. Create the server's keys with `handforge keys --out keys --name server` and "
            "each client's outside the server's client folder (`handforge keys --out <client>-keys --name "
            "<client>`), copy only the client's public <client>.key into keys/clients, then run `handforge serve "
            f"--bind {host} --curve-secret keys/server.key_secret --curve-clients keys/clients`")


def load_secret(path: Path) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` certificate file."""
    if not path.is_file() and not os.path.lexists(path):
        raise SecurityError(f"CurveZMQ key file {path} does not exist (create one with `handforge keys`)")
    try:
        check_key_file(path)  # (/dev/zero was read until memory ran out, and said "does not exist" once it was not)
    except ValueError as exc:
        raise SecurityError(str(exc)) from None
    import zmq.auth  # only with CurveZMQ: it pulls in asyncio

    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise SecurityError(f"cannot read CurveZMQ key file {path}: {exc}") from None
    if not secret:
        raise SecurityError(f"{path} holds only a public key: pass the matching .key_secret file")
    return public, secret


def start_authenticator(context: zmq.Context, clients_dir: Path) -> Any:
    """ZAP handler (a started ``zmq.auth.thread.ThreadAuthenticator``) that accepts exactly the client
    public keys found in ``clients_dir`` and logs every refused client with its address and key."""
    import zmq.auth
    from zmq.auth.thread import ThreadAuthenticator

    if not clients_dir.is_dir():
        raise SecurityError(f"--curve-clients {clients_dir} is not a folder of client public keys (*.key)")
    keys = sorted(clients_dir.glob("*.key"))
    secrets = sorted(p.name for p in clients_dir.glob("*.key_secret"))
    if secrets:
        log.warning("%s holds client secret key(s) %s: move them to their clients; the server needs only the "
                    "public .key files there", clients_dir, ", ".join(secrets))
    if not keys:
        log.warning("no client keys (*.key) in %s: every client will be refused", clients_dir)
    for key in keys:  # (zmq reads each whole: a FIFO named evil.key hung the start, a link to /dev/zero filled memory)
        try:
            check_key_file(key)
        except ValueError as exc:
            raise SecurityError(f"cannot read the client keys in --curve-clients {clients_dir}: {exc}; put only the "
                                "clients' public .key files that `handforge keys` writes there") from None
    try:
        authorised = set(zmq.auth.load_certificates(clients_dir))  # z85 public keys, read once at start
    except (ValueError, OSError) as exc:  # a .key that is no key (a note, a folder): it was a traceback
        raise SecurityError(f"cannot read the client keys in --curve-clients {clients_dir}: {exc}; put only the "
                            "clients' public .key files that `handforge keys` writes there") from None

    class LoggingAuthenticator(ThreadAuthenticator):
        address = "?"

        async def handle_zap_message(self, msg: list[bytes]) -> None:
            # frame 3 is the peer's address (ZAP, https://rfc.zeromq.org/spec/27/); the key check below logs it
            self.address = msg[3].decode("ascii", "replace") if len(msg) > 3 else "?"
            await super().handle_zap_message(msg)

    class KeysFolder:
        def callback(self, domain: str, key: bytes) -> bool:
            if key in authorised:
                return True
            log.warning("refused a CurveZMQ client from %s: its public key %s is not in %s", auth.address,
                        key.decode("ascii", "replace"), clients_dir)
            return False

    auth = LoggingAuthenticator(context, log=logging.getLogger(f"{__name__}.zap"))
    auth.start()
    auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=KeysFolder())
    log.info("CurveZMQ on: %d authorised client key(s) from %s", len(authorised), clients_dir)
    return auth


def configure_router(socket: zmq.Socket, keys: tuple[bytes, bytes]) -> None:
    """Make ``socket`` a CurveZMQ server with ``keys`` (``load_secret``), its clients checked by ZAP."""
    public, secret = keys
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    socket.zap_domain = ZAP_DOMAIN.encode()


__all__ = ["SecurityError", "check_bind", "configure_router", "load_secret", "start_authenticator"]
