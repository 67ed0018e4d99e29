"""``--ray ADDRESS`` is checked before Ray is asked, since Ray retries a bad address for minutes: real
listeners that are not Ray, nothing listening, and addresses Ray's driver cannot use."""

from __future__ import annotations

import json
import os
import shutil
import signal
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
TOKEN = "0123456789abcdef" * 2  # the test head's (RAY_AUTH_TOKEN: ~/.ray is left alone)


def checkout(**env: str | None) -> dict[str, str]:
    """This environment with ``env`` (None: removed), importing this checkout (an installed handforge may be
    another one)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), str(ROOT / "shared")]), **env}
    return {name: value for name, value in env.items() if value is not None}


def handforge(*args: str, cwd: Path, timeout: float, **env: str | None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "handforge", *args], cwd=cwd, env=checkout(**env),
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        return taken.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """A Ray head as the README starts one (`ray start --head`, token authentication), in a RAY_TMPDIR of
    its own: its port and its Ray Client port."""
    ports = free_port(), free_port()
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-rayaddr-{os.getpid()}"  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(scratch), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    process = subprocess.Popen([str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", "--port",
                                str(ports[0]), "--ray-client-server-port", str(ports[1]), "--num-cpus", "1",
                                "--include-dashboard", "false", "--disable-usage-stats"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + 120
        while not all(_accepts(port) for port in ports):
            assert process.poll() is None and time.monotonic() < end, "ray start --head did not come up"
            time.sleep(0.5)
        yield ports
    finally:  # its whole process group, at once (a SIGTERMed head took over 40 s to go here)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


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
    # two probes of 2 s each, plus importing Ray's gRPC modules on a loaded machine: a bound, not a benchmark
    assert time.monotonic() - start < 60


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
    port = free_port()
    with pytest.raises(RayUnavailable, match=rf"--ray ray://127.0.0.1:{port}: no Ray Client server answers there: "
                                             rf"cannot connect to 127.0.0.1:{port} .*`ray start --head`") as error:
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


@pytest.mark.slow
def test_a_real_head_passes_by_either_address(head):
    check = "import sys; from handforge.export.ray_pool import RayPool as P; [P.check_address(a) for a in sys.argv[1:]]"
    run = subprocess.run([sys.executable, "-c", check, f"127.0.0.1:{head[0]}", f"ray://127.0.0.1:{head[1]}", "auto"],
                         env=checkout(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN, RAY_ADDRESS=f"127.0.0.1:{head[0]}"),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr[-2000:]


@pytest.mark.parametrize("client", [False, True], ids=["head", "ray-client"])
def test_auto_with_a_stale_ray_address_is_refused_at_once(client, tmp_path):
    """ray.init(address="auto") retried a RAY_ADDRESS nothing listens at for over two minutes."""
    stale = f"{'ray://' if client else ''}127.0.0.1:{free_port()}"
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    run = handforge("export", "spec.json", "--out", "data", "--ray", "auto", cwd=tmp_path, timeout=60,
                    RAY_ADDRESS=stale)
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"--ray auto ({stale}): no Ray {'Client server' if client else 'head'} answers there" in run.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
@pytest.mark.parametrize("client", [False, True], ids=["head", "ray-client"])
def test_a_real_head_that_wants_a_token_this_driver_lacks_is_named_at_once(head, client, tmp_path):
    """ray.init said so after 24 s (HOST:PORT) or 35 s (ray://)."""
    address = f"ray://127.0.0.1:{head[1]}" if client else f"127.0.0.1:{head[0]}"
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    run = handforge("export", "spec.json", "--out", "data", "--ray", address, cwd=tmp_path, timeout=60,
                    RAY_AUTH_MODE="disabled")
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"--ray {address}: the Ray {'Client server' if client else 'head'} at " in run.stderr
    assert "refused this driver, which lacks the cluster's token" in run.stderr and "RAY_AUTH_TOKEN" in run.stderr


def test_token_mode_without_a_token_here_is_a_clear_error(http_port, tmp_path):
    """The probe raised Ray's AuthenticationError, a traceback (before it: 'did not start: ... check the free
    space of Ray's temporary folder')."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    run = handforge("export", "spec.json", "--out", "data", "--ray", f"127.0.0.1:{http_port}", cwd=tmp_path,
                    timeout=60, HOME=str(tmp_path), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=None,
                    RAY_AUTH_TOKEN_PATH=None)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert f"--ray 127.0.0.1:{http_port}: RAY_AUTH_MODE=token is set but this machine has no token" in run.stderr


def test_a_ray_tmpdir_too_long_for_rays_sockets_says_to_shorten_it(tmp_path):
    """Said with "check the free space and permissions of Ray's temporary folder", not the fix."""
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    long = tmp_path / ("r" * 100)
    long.mkdir()
    run = handforge("export", "spec.json", "--out", "data", "--ray", cwd=tmp_path, timeout=120, RAY_TMPDIR=str(long))
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert "AF_UNIX path length" in run.stderr and "(set RAY_TMPDIR to a folder of a shorter path" in run.stderr
    assert "free space" not in run.stderr


@pytest.mark.slow
def test_relative_spec_paths_are_read_from_the_drivers_folder_on_a_cluster(head, tmp_path):
    """The spec's relative paths mean the folder the command runs in; the actors of a `ray start` head run in
    the head's folder (on a cluster, each node's own), where the background folder was not found."""
    from PIL import Image

    (tmp_path / "backgrounds").mkdir()
    Image.new("RGB", (32, 32), (40, 90, 200)).save(tmp_path / "backgrounds" / "blue.png")
    spec = {**SPEC, "samples": 2, "background": {"kinds": ["images"], "folder": "backgrounds"}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run = handforge("export", "spec.json", "--out", "data", "--ray", f"127.0.0.1:{head[0]}", "--workers", "1",
                    "--quiet", cwd=tmp_path, timeout=240, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=TOKEN)
    assert run.returncode == 0, run.stderr[-2000:]
    labels = json.loads((tmp_path / "data" / "samples" / "000001" / "labels.json").read_text())
    assert labels["background"]["image"] == "backgrounds/blue.png"  # recorded as written, as a local run does


def test_an_actor_on_a_node_without_the_drivers_folder_says_so_for_the_specs_paths(tmp_path):
    """Where the driver's folder is not on the node, a relative path of the spec names nothing there: said, with
    what to do."""
    from handforge.export.ray_pool import _Actor

    spec = {**SPEC, "background": {"kinds": ["images"], "folder": "backgrounds"}}
    actor = _Actor(spec, str(tmp_path / "data"), None, str(tmp_path / "not-on-this-node"))
    assert actor.ready()["fatal"].startswith("SpecError: background.folder: 'backgrounds'")
    assert "is not on that node: run it from the shared storage, or give absolute paths" in actor.ready()["fatal"]
