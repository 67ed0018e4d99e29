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
