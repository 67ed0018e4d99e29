"""Blender session with two backends: the local one the add-on starts, and one started elsewhere (as from a
terminal; here by this script). Connect moves the connection to the other, Start Local Backend gets back to the
local one, which then exits while the other is used."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import time

import bpy

from handforge_shared.protocol import STOP_WITH_STDIN_ENV
from session import ADDON_MODULE, Session, error_of, while_a_job_runs

s = Session()
s.install()
a = s.args
wm = bpy.context.window_manager
connection = importlib.import_module(f"{ADDON_MODULE}.connection")
local, elsewhere = f"tcp://127.0.0.1:{a['port']}", f"tcp://127.0.0.1:{a['other_port']}"
SLEEP_20_S = '{"steps": 400, "step_seconds": 0.05}'

# the other backend, with its log (which says what it did with this Blender's jobs); it stops with this script
other_log = open(s.work / "other.log", "wb")  # noqa: SIM115 - open until the end
other = subprocess.Popen([sys.executable, "-m", "handforge", "serve", "--port", str(a["other_port"]),
                          "--heartbeat", "0.25"], stdout=subprocess.DEVNULL, stderr=other_log, stdin=subprocess.PIPE,
                         env={**os.environ, STOP_WITH_STDIN_ENV: "1"})


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (Linux /proc; a zombie, exited and not yet waited for, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def once_a_job_runs(action) -> list:
    """``action()`` once, on the main thread from the job's wait loop, once the job runs on the backend."""
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    done: list = []

    def act():
        if not done and any(job.handle.state == "running" for job in jobs.RUNNING.values()):
            done.append(action())

    return done, while_a_job_runs(act)


def start():
    s.start_backend()
    return {"status": wm.handforge.status, "pid": connection.BACKEND.process.pid}


s.check("start", start)


def connect_elsewhere():
    assert bpy.ops.handforge.connect(address=elsewhere) == {"FINISHED"}
    return {"status": wm.handforge.status, "local_alive": alive(s.results["start"]["pid"])}


s.check("connect_elsewhere", connect_elsewhere)


def start_local_reconnects():
    """Start Local Backend while connected elsewhere, the local backend still running: back to it."""
    message = error_of(lambda: bpy.ops.handforge.start_backend())
    return {"message": message, "status": wm.handforge.status,
            "pid": connection.BACKEND.process.pid if connection.BACKEND.process else None,
            "ping": error_of(lambda: bpy.ops.handforge.run_job(kind="ping"))}


s.check("start_local_reconnects", start_local_reconnects)


def local_exits_while_elsewhere():
    """The local backend dies while a job runs on the other one: the other connection and its job carry on."""
    assert bpy.ops.handforge.connect(address=elsewhere) == {"FINISHED"}
    pid = s.results["start"]["pid"]
    done, acting = once_a_job_runs(lambda: os.kill(pid, signal.SIGKILL) or time.sleep(0.5) or "killed")
    with acting:
        message = error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params='{"steps": 30, "step_seconds": 0.05}'))
    return {"killed": done, "message": message, "status": wm.handforge.status, "connected": wm.handforge.connected,
            "ping": error_of(lambda: bpy.ops.handforge.run_job(kind="ping"))}


s.check("local_exits", local_exits_while_elsewhere)


other.stdin.close()
try:
    other.wait(10)
except subprocess.TimeoutExpired:
    other.kill()
s.finish()
