"""Run a test script inside Blender (the ``bpy`` module) in a fresh subprocess.

bpy state is process-global, so every Blender session is its own process with its own temporary
Blender user directory (``BLENDER_USER_RESOURCES``) where the script installs the add-on zip as an
extension, exactly as a user would. A script batches many checks and hands back a JSON summary and
numpy arrays; the pytest side does the asserting.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def free_port() -> int:
    """A loopback port free now, for a backend a session starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_zip(out_dir: Path) -> Path:
    """Build the real extension zip (wheels from the build cache, downloaded once)."""
    sys.path.insert(0, str(ROOT))
    try:
        import build_addon
    finally:
        sys.path.pop(0)
    out = Path(out_dir) / "handforge-test.zip"
    if build_addon.main(["--out", str(out)]) != 0:
        raise RuntimeError("build_addon.py failed (see its message above)")
    return out


class BlenderSession:
    """The outcome of one script: ``results`` (JSON) and ``arrays`` (npz), or the failure output."""

    def __init__(self, results: dict[str, Any], arrays: dict[str, np.ndarray], log: str):
        self.results = results
        self.arrays = arrays
        self.log = log

    def __getitem__(self, key: str) -> Any:
        if key not in self.results:
            raise KeyError(f"the Blender script did not report {key!r}; its output:\n{self.log[-4000:]}")
        return self.results[key]

    def no_error(self, *names: str) -> None:
        """Assert that the script's checks ``names`` raised nothing (else: their traceback, and the log's end)."""
        for name in names:
            assert f"{name}__error" not in self.results, self.results[f"{name}__error"] + self.log[-3000:]


def run_blender(script: str, zip_path: Path, work_dir: Path, args: dict[str, Any] | None = None,
                timeout: float = 300.0, env: dict[str, str] | None = None,
                unset: tuple[str, ...] = ()) -> BlenderSession:
    """Run ``tests/blender/<script>`` in a new Python process that imports bpy, with this process's
    environment plus ``env`` and without the variables ``unset`` (e.g. the developer's HANDFORGE_MANO_DIR)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    spec = {"zip": str(zip_path), "work": str(work_dir), "args": args or {}}
    spec_path = work_dir / "session.json"
    spec_path.write_text(json.dumps(spec))
    full_env = {k: v for k, v in os.environ.items() if k not in unset}
    # the scripts' own folder first; a PYTHONPATH already set (a work tree's sources) is kept after it
    python_path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    full_env.update({"BLENDER_USER_RESOURCES": str(work_dir / "blender_user"), "PYTHONPATH": python_path})
    full_env.update(env or {})
    # Blender's session temp dir (blender_XXXXXX), and the backend's scratch, in a folder removed here: Blender
    # removes its own only at a normal exit, and a session killed at its timeout or crashing left it in /tmp.
    # Short (not in work_dir): Ray's socket paths under TMPDIR must stay under 108 characters.
    with tempfile.TemporaryDirectory(prefix="hf-blender-", ignore_cleanup_errors=True) as tmp:
        proc = subprocess.run([sys.executable, str(HERE / script), str(spec_path)], capture_output=True, text=True,
                              timeout=timeout, env={**full_env, "TMPDIR": tmp}, cwd=work_dir)
    log = proc.stdout + proc.stderr
    result_path = work_dir / "results.json"
    if proc.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"Blender script {script} failed (exit {proc.returncode}):\n{log[-6000:]}")
    arrays_path = work_dir / "arrays.npz"
    arrays = dict(np.load(arrays_path)) if arrays_path.is_file() else {}
    return BlenderSession(json.loads(result_path.read_text()), arrays, log)


# the backend a session starts itself, on the port it is given: the CPU, a short heartbeat (a lost backend seen at once)
BACKEND_COMMAND = f"{sys.executable} -m handforge serve --port {{port}} --heartbeat 0.25 --devices cpu"


def run_with_backend(script: str, zip_path: Path, work_dir: Path, args: dict[str, Any] | None = None,
                     unset: tuple[str, ...] = (), timeout: float = 600.0) -> BlenderSession:
    """``run_blender`` for a session that starts its own backend (``args`` gain ``port`` and ``command``), on the
    open hand whatever the developer's setup (HANDFORGE_MANO_DIR unset, and the variables ``unset``)."""
    return run_blender(script, zip_path, work_dir, {"port": free_port(), "command": BACKEND_COMMAND, **(args or {})},
                       timeout=timeout, unset=("HANDFORGE_MANO_DIR", *unset))
