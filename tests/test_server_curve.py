"""Remote use: `handforge keys` makes CurveZMQ key pairs; a backend bound beyond loopback with keys
accepts exactly the clients whose public key it holds."""

from __future__ import annotations

import errno
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from handforge.server import security
from handforge_shared.client import BackendUnavailable, Client, CurveKeys
from handforge_shared.protocol import Message, MessageType
from tests.support.server import RawPeer, running_server

pytestmark = pytest.mark.timeout(120)


def _keys(out, name, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handforge", "keys", "--out", str(out), "--name", name, *extra],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    root = tmp_path_factory.mktemp("keys")
    for out, name in ((root / "server", "server"), (root / "alice", "alice"), (root / "carol", "carol"),
                      (root / "others", "mallory")):
        done = _keys(out, name)
        assert done.returncode == 0, done.stderr
    # As the README says: only the client's public key goes into the server's client-key folder.
    (root / "clients").mkdir()
    shutil.copy(root / "alice/alice.key", root / "clients/alice.key")
    shutil.copy(root / "carol/carol.key", root / "clients/carol.key")
    return root


@pytest.fixture(scope="module")
def server(keys):
    alice = CurveKeys.from_files(keys / "server/server.key", keys / "alice/alice.key_secret")
    with running_server("--bind", "0.0.0.0", "--curve-secret", str(keys / "server/server.key_secret"),
                        "--curve-clients", str(keys / "clients"), curve=alice) as s:
        # the endpoint file names an address to connect to, not the wildcard bound (tcp://0.0.0.0:PORT)
        assert s.endpoint == f"tcp://127.0.0.1:{s.port}"
        yield s


def test_keys_command_writes_a_private_key_pair_and_refuses_to_overwrite(keys):
    secret = keys / "alice/alice.key_secret"
    assert (keys / "alice/alice.key").is_file() and secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "secret" not in (keys / "alice/alice.key").read_text().split("curve")[1]  # public file: no secret key
    again = _keys(keys / "alice", "alice")
    assert again.returncode == 2 and again.stderr.startswith("handforge keys: ") and "--force" in again.stderr
    bad = _keys(keys / "alice", "a/b")
    assert bad.returncode == 2 and "handforge keys: --name 'a/b'" in bad.stderr
    long = _keys(keys / "new", "k" * 300)  # refused before --out is made (it was made, then the write failed)
    assert long.returncode == 2 and "use up to 200 letters" in long.stderr and not (keys / "new").exists()


def test_a_secret_key_is_private_from_its_first_byte_and_a_pair_is_written_whole_or_not_at_all(tmp_path,
                                                                                                 monkeypatch, capsys):
    import zmq.auth

    from handforge.cli import main

    real = zmq.auth.create_certificates
    folders = []

    def interrupted(folder, name):  # Ctrl-C once the files are written
        folders.append(folder)
        assert stat.S_IMODE(Path(folder).stat().st_mode) & 0o077 == 0  # nobody else can read what is written in it
        real(folder, name)
        raise KeyboardInterrupt

    monkeypatch.setattr(zmq.auth, "create_certificates", interrupted)
    assert main(["keys", "--out", str(tmp_path), "--name", "bob"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no key, no staging folder left
    monkeypatch.setattr(zmq.auth, "create_certificates", real)
    assert main(["keys", "--out", str(tmp_path), "--name", "bob"]) == 0  # not refused as existing
    assert stat.S_IMODE((tmp_path / "bob.key_secret").stat().st_mode) == 0o600
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def disk_full(folder, name):  # the secret written, the public key not
        real(folder, name)
        (Path(folder) / f"{name}.key").unlink()
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zmq.auth, "create_certificates", disk_full)
    assert main(["keys", "--out", str(tmp_path), "--name", "bob", "--force"]) == 1  # before: a traceback
    assert "could not write the key pair into" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old pair, whole


def test_keys_into_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    done = _keys("/proc", "server")  # before: a FileNotFoundError traceback (a failed write: the test above)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "argument --out: cannot write into /proc: it refuses new files" in done.stderr, done.stderr
    hidden = _keys(tmp_path, "..")  # before: the hidden files ...key and ...key_secret
    assert hidden.returncode == 2 and "not starting with '.'" in hidden.stderr and not any(tmp_path.iterdir())


def test_the_authorised_key_is_accepted(server):
    with server.client() as client:  # alice's keys
        assert client.run("echo", {"text": "hi"}).data["text"] == "hi"
        assert client.hello()["server"]["curve"] is True


def test_doctor_reaches_a_curve_backend_with_a_clients_keys(server, keys):
    """doctor --endpoint reported a running CurveZMQ backend as none (it could not pass keys)."""
    done = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--json", "--endpoint", server.endpoint,
                           "--curve-server-key", str(keys / "server/server.key"),
                           "--curve-client-secret", str(keys / "alice/alice.key_secret")],
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"]["running"] is True
    # without keys, or with a key it refuses: said so, with the options to pass (before: "none at ...: start
    # one with `handforge serve`", beside the client's Python-API hint)
    for extra, said in (([], "pass --curve-server-key server.key --curve-client-secret NAME.key_secret"),
                        (["--curve-server-key", str(keys / "server/server.key"), "--curve-client-secret",
                          str(keys / "others/mallory.key_secret")], "refused this client's CurveZMQ key")):
        done = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--endpoint", server.endpoint, *extra],
                              capture_output=True, text=True, timeout=100)
        backend = done.stdout.split("Backend:")[1]
        assert "NOT usable: " in backend and said in " ".join(backend.split()) and "handforge serve" not in backend
        assert done.returncode == 1  # (0 before: `handforge doctor --endpoint X && ...` went on)


def test_an_unknown_client_key_is_refused(server, keys):
    mallory = CurveKeys.from_files(keys / "server/server.key", keys / "others/mallory.key_secret")
    with Client(server.endpoint, curve=mallory, connect_timeout=3) as client:
        with pytest.raises(BackendUnavailable) as info:
            client.run("ping")
    assert info.value.code == "auth_failed" and "refused this client's CurveZMQ key" in info.value.message
    assert "--curve-clients" in info.value.hint
    mallory_public = (keys / "others/mallory.key").read_text().split('public-key = "')[1].split('"')[0]
    assert f"its public key {mallory_public} is not in" in server.log()  # the operator sees who was refused
    assert "refused a CurveZMQ client from 127.0.0.1" in server.log()


def test_a_job_belongs_to_the_key_that_submitted_it_not_to_the_routing_id(server, keys):
    alice = CurveKeys.from_files(keys / "server/server.key", keys / "alice/alice.key_secret")
    carol = CurveKeys.from_files(keys / "server/server.key", keys / "carol/carol.key_secret")
    with RawPeer(server.endpoint, curve=alice, routing_id=b"shared-id") as owner:
        owner.send(Message(MessageType.SUBMIT, id="s", job="alices-job", kind="sleep",
                           params={"steps": 40, "step_seconds": 0.05}))
        assert owner.recv().type == "accepted"
        with RawPeer(server.endpoint, curve=carol, routing_id=b"shared-id") as other:  # same routing id
            other.send(Message(MessageType.PING, id="p"))
            other.send(Message(MessageType.CANCEL, id="c", job="alices-job"))
            with pytest.raises(TimeoutError):  # nothing of alice's reaches carol, and carol cannot cancel it
                while True:
                    leaked = other.recv(timeout=3.0)
                    assert leaked.job != "alices-job", leaked
        while (event := owner.recv()).type in ("progress", "heartbeat"):
            pass
        assert event.type == "result" and event.job == "alices-job"


def test_clients_gone_without_a_bye_are_not_remembered(keys):
    """The backend notes each routing id's key (a job belongs to its key): a client that left without a bye (killed,
    its machine off the network) stayed noted for the backend's life, one entry per such client."""
    import threading

    from handforge.server.app import Server, ServerConfig

    alice = CurveKeys.from_files(keys / "server/server.key", keys / "alice/alice.key_secret")
    server = Server(ServerConfig(port=0, curve_secret=keys / "server/server.key_secret",
                                 curve_clients=keys / "clients"))
    endpoint = server.bind()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        with RawPeer(endpoint, curve=alice, routing_id=b"stays") as owner:
            owner.send(Message(MessageType.SUBMIT, id="s", job="kept", kind="sleep", params={"steps": 100}))
            assert owner.recv().type == "accepted"
            for n in range(300):
                with RawPeer(endpoint, curve=alice, routing_id=f"gone-{n}".encode()) as peer:
                    peer.send(Message(MessageType.PING, id="p"))
                    assert peer.recv().type == "pong"
            assert len(server._peer_keys) <= 100 and b"stays" in server._peer_keys  # the job's owner is still known
    finally:
        server.stop()
        thread.join(10)


def test_a_client_without_keys_is_refused(server):
    with Client(server.endpoint, connect_timeout=2) as client:
        with pytest.raises(BackendUnavailable) as info:
            client.run("ping")
    assert info.value.code == "auth_failed" and "CurveZMQ" in info.value.hint


def test_a_client_with_the_wrong_server_key_is_refused(server, keys):
    wrong = CurveKeys.from_files(keys / "others/mallory.key", keys / "alice/alice.key_secret")
    with Client(server.endpoint, curve=wrong, connect_timeout=2) as client:
        with pytest.raises(BackendUnavailable) as info:
            client.run("ping")
    assert info.value.code == "auth_failed"
    with server.client() as client:  # the backend is unharmed
        assert client.ping() < 1.0


def test_a_secret_key_given_as_the_servers_key_is_refused_naming_it(keys):
    """A client's own .key_secret given as the server's key was taken (its public half read): a silent time-out."""
    with pytest.raises(ValueError, match=r"alice\.key_secret holds a secret key, not the server's public key: pass "
                                         r"the server's \.key file"):
        CurveKeys.from_files(keys / "alice/alice.key_secret", keys / "alice/alice.key_secret")


def test_keys_says_where_each_file_goes_and_the_server_warns_of_secrets_among_client_keys(tmp_path, caplog):
    done = _keys(tmp_path / "bob-keys", "bob")
    assert done.returncode == 0
    assert f"copy only {tmp_path / 'bob-keys/bob.key'} into the folder passed as --curve-clients" in done.stdout
    assert "never put bob.key_secret in the --curve-clients folder" in done.stdout
    server = _keys(tmp_path / "server", "server")
    assert f"--curve-secret {tmp_path / 'server/server.key_secret'}" in server.stdout
    spaced = _keys(tmp_path / "my keys", "server")  # the printed command works when copied (it split the path)
    assert f"--curve-secret '{tmp_path / 'my keys/server.key_secret'}' " in spaced.stdout
    # A folder that a careless workflow left a secret key in: the server says so.
    context = zmq.Context()
    with caplog.at_level("WARNING", logger="handforge.server.security"):
        auth = security.start_authenticator(context, tmp_path / "bob-keys")
    auth.stop()
    context.term()
    assert "holds client secret key(s) bob.key_secret: move them to their clients" in caplog.text


@pytest.mark.parametrize("bad", ["notes", "folder", "fifo", "device", "huge"])
def test_a_client_key_that_is_no_key_is_said_in_one_line(tmp_path, keys, bad):
    """Before: a ValueError ("No public key found in ...") or IsADirectoryError traceback, status 1; a FIFO named
    bob.key hung the start, a link to /dev/zero filled memory (4.5 GB in 5 s), a 2 GB file took 4 GB to refuse."""
    import os

    clients = tmp_path / "clients"
    clients.mkdir()
    shutil.copy(keys / "alice/alice.key", clients / "alice.key")
    if bad == "notes":
        (clients / "bob.key").write_text("ask Bob for his key\n")
    elif bad == "folder":
        (clients / "bob.key").mkdir()
    elif bad == "fifo":
        os.mkfifo(clients / "bob.key")
    elif bad == "device":
        (clients / "bob.key").symlink_to("/dev/zero")
    else:
        (clients / "bob.key").write_bytes(b"#" * 100_000)
    done = subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", "0", "--curve-secret",
                           str(keys / "server/server.key_secret"), "--curve-clients", str(clients)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"handforge serve: cannot read the client keys in --curve-clients {clients}: ")
    assert str(clients / "bob.key") in line and line.endswith("`handforge keys` writes there")


@pytest.mark.parametrize("bad", ["fifo", "device", "huge", "unreadable"])
def test_key_files_that_are_no_key_files_are_refused_naming_them(tmp_path, keys, bad):
    """doctor and serve read a key file whole: /dev/zero grew doctor by a GB a second, a FIFO hung it with no word,
    /proc/self/mem said only "[Errno 5] Input/output error"."""
    import os

    path = tmp_path / "server.key"
    if bad == "fifo":
        os.mkfifo(path)
    elif bad == "device":
        path = Path("/dev/zero")
    elif bad == "huge":
        path.write_bytes(b"#" * 100_000)
    else:
        path = Path("/proc/self/mem")
    doctor = subprocess.run([sys.executable, "-m", "handforge", "doctor", "--curve-server-key", str(path),
                             "--curve-client-secret", str(keys / "alice/alice.key_secret")],
                            capture_output=True, text=True, timeout=60)
    assert doctor.returncode == 2, doctor.stderr
    said = {"fifo": f"{path} is a FIFO, not a file", "device": f"{path} is a device, not a file",
            "huge": f"{path} is 100,000 bytes, not a CurveZMQ key file",
            "unreadable": f"cannot read the CurveZMQ key file {path}: "}[bad]
    assert said in doctor.stderr and "Traceback" not in doctor.stderr, doctor.stderr
    if bad in ("device", "huge"):  # (serve's own load, past its argument check for "huge")
        serve = subprocess.run([sys.executable, "-m", "handforge", "serve", "--port", "0", "--bind", "0.0.0.0",
                                "--curve-secret", str(path), "--curve-clients", str(keys / "clients")],
                               capture_output=True, text=True, timeout=60)
        assert serve.returncode == 2 and "Traceback" not in serve.stderr, serve.stderr
        assert (f"{path} is a device, not a file" if bad == "device" else said) in serve.stderr, serve.stderr
