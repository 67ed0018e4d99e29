"""``--ray ADDRESS`` is checked before Ray is asked, since Ray retries a bad address for minutes: real
listeners that are not Ray, nothing listening, and addresses Ray's driver cannot use."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("ray")

from handforge.export.ray_pool import RayPool, RayUnavailable  # noqa: E402
from tests.support.scale import SPEC  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def handforge(*args: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """The command, from this checkout (an installed handforge may be another one)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT / "shared")])}
    return subprocess.run([sys.executable, "-m", "handforge", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def http_port():
    """An HTTP server on every interface (as `python -m http.server`): it answers, but not as Ray."""
    server = ThreadingHTTPServer(("", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_port():
    """A bare TCP listener that accepts and never says a word."""
    with socket.create_server(("", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize("listener", ["http_port", "silent_port"])
def test_a_head_address_where_something_else_answers_is_refused_in_seconds(listener, request):
    port = request.getfixturevalue(listener)
    start = time.monotonic()
    with pytest.raises(RayUnavailable, match=rf"--ray 127.0.0.1:{port}: no Ray head answers there: .*"
                                             rf"`ray start --head --port {port}`"):
        RayPool.check_address(f"127.0.0.1:{port}", timeout=2)
    assert time.monotonic() - start < 10


def test_the_command_stops_at_once_where_an_http_server_answers(http_port, tmp_path):
    """It waited in ray.init for more than 5 minutes (20 tries of about 40 s each)."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    run = handforge("export", "spec.json", "--out", "data", "--ray", f"127.0.0.1:{http_port}", cwd=tmp_path, timeout=60)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"--ray 127.0.0.1:{http_port}: no Ray head answers there" in run.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("address, says", [
    # the dashboard's address (what `ray job submit` takes) said "did not start: ... check the free space"
    ("http://head:8265", r"--ray http://head:8265: that is the dashboard's address .*--ray head:6379 .*"
                         r"--ray ray://head:10001"),
    ("https://head.example/", r"that is the dashboard's address .*--ray head.example:6379"),
    ("tcp://head:6379", r"--ray tcp://head:6379: Ray's driver cannot connect through tcp://; give HOST:PORT"),
    ("ray://head", r"--ray ray://head: expected HOST:PORT of a Ray head .* or ray://HOST:10001"),
], ids=["http", "https", "tcp", "no-port"])
def test_an_address_ray_cannot_use_says_what_to_pass_instead(address, says):
    with pytest.raises(ValueError, match=says):
        RayPool.check_address(address)


def test_a_ray_client_address_nothing_listens_at_is_refused_at_once():
    """It took 32 s and advised a token."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
    with pytest.raises(RayUnavailable, match=rf"--ray ray://127.0.0.1:{port}: no Ray Client server answers there: "
                                             rf"nothing listens at 127.0.0.1:{port} .*`ray start --head`") as error:
        RayPool.check_address(f"ray://127.0.0.1:{port}")
    assert "token" not in str(error.value)


@pytest.mark.parametrize("listener", ["http_port", "silent_port"])
def test_a_ray_client_address_where_something_else_answers_is_refused_in_seconds(listener, request):
    """It took 33–50 s and advised a token."""
    port = request.getfixturevalue(listener)
    with pytest.raises(RayUnavailable, match=rf"--ray ray://127.0.0.1:{port}: no Ray Client server answers there: "
                                             rf"127.0.0.1:{port} .*, so it is not") as error:
        RayPool.check_address(f"ray://127.0.0.1:{port}", timeout=2)
    assert "token" not in str(error.value)
