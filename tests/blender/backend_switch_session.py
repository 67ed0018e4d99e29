"""Blender session with two backends: the local one the add-on starts, and one started elsewhere (as from a
terminal; here by this script). Connect moves the connection to the other, Start Local Backend gets back to the
local one, Connect moves it away while a job runs, the local one exits while the other is used, and Stop Backend
ends a job on the other."""

from __future__ import annotations

import importlib
import os
import re
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
SLEEP_1_5_S = '{"steps": 30, "step_seconds": 0.05}'

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


def log_once_it_says(path, pattern: str, deadline_s: float = 20.0) -> str:
    """A backend's log once a line matches ``pattern`` (or at the deadline): written once it handled the message."""
    end = time.monotonic() + deadline_s
    while not re.search(pattern, text := path.read_text(errors="replace")) and time.monotonic() < end:
        time.sleep(0.1)
    return text


BYE = r"said bye: cancelling its 1 job\(s\)"
# Stop Backend asks to cancel the job before it leaves: the backend may have cancelled it before the bye
CANCELLED = BYE + r"|\(sleep\) -> cancelled"


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


def connect_mid_job():
    """Connect to the other backend while a job runs on the local one (connected to it again): the job ends saying
    why."""
    done, acting = once_a_job_runs(lambda: sorted(bpy.ops.handforge.connect(address=elsewhere)))
    with acting:
        message = error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_20_S))
    return {"connected": done, "message": message, "status": wm.handforge.status,
            "local_alive": alive(s.results["start"]["pid"]),
            "local_log": log_once_it_says(connection.BACKEND.log_path, BYE)}


s.check("connect_mid_job", connect_mid_job)


def local_exits_while_elsewhere():
    """The local backend dies while a job runs on the other one: the other connection and its job carry on."""
    assert bpy.ops.handforge.connect(address=elsewhere) == {"FINISHED"}
    pid = s.results["start"]["pid"]
    done, acting = once_a_job_runs(lambda: os.kill(pid, signal.SIGKILL) or time.sleep(0.5) or "killed")
    with acting:
        message = error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_1_5_S))
    return {"killed": done, "message": message, "status": wm.handforge.status, "connected": wm.handforge.connected,
            "ping": error_of(lambda: bpy.ops.handforge.run_job(kind="ping"))}


s.check("local_exits", local_exits_while_elsewhere)


def stop_mid_job_elsewhere():
    """Stop Backend while a job runs on the other backend (not this Blender's): the job ends saying why."""
    assert bpy.ops.handforge.connect(address=elsewhere) == {"FINISHED"}
    done, acting = once_a_job_runs(lambda: sorted(bpy.ops.handforge.stop_backend()))
    with acting:
        message = error_of(lambda: bpy.ops.handforge.run_job(kind="sleep", params=SLEEP_20_S))
    return {"stopped": done, "message": message, "other_log": log_once_it_says(s.work / "other.log", CANCELLED),
            "other_alive": other.poll() is None}


s.check("stop_elsewhere", stop_mid_job_elsewhere)

other.stdin.close()
try:
    other.wait(10)
except subprocess.TimeoutExpired:
    other.kill()
s.finish()
