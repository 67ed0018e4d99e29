"""A Blender that crashes leaves no backend behind: the one its add-on started stops by itself (it held
the port, so the next Start Local Backend was refused, and its models' memory)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import HERE
from tests.test_blender_backend import free_port

pytestmark = [pytest.mark.blender, pytest.mark.slow, pytest.mark.timeout(300)]


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child nobody reaped yet, a zombie, has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc (Linux)")
def test_the_local_backend_stops_when_blender_crashes(addon_zip, tmp_path):  # noqa: F811 - fixture
    spec = tmp_path / "session.json"
    spec.write_text(json.dumps({"zip": str(addon_zip), "work": str(tmp_path), "args": {
        "port": free_port(), "command": f"{sys.executable} -m handforge serve --port {{port}}"}}))
    env = {**os.environ, "BLENDER_USER_RESOURCES": str(tmp_path / "blender_user"),
           "PYTHONPATH": os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)}
    with tempfile.TemporaryDirectory(prefix="hf-blender-", ignore_cleanup_errors=True) as tmp:
        done = subprocess.run([sys.executable, str(HERE / "crash_session.py"), str(spec)], capture_output=True,
                              text=True, timeout=240, env={**env, "TMPDIR": tmp}, cwd=tmp_path)
    assert done.returncode == -signal.SIGKILL, done.stdout[-3000:] + done.stderr[-3000:]
    pid = int((tmp_path / "backend.pid").read_text())
    try:
        deadline = time.monotonic() + 20
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(pid), "the backend outlived the Blender that started it"
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
