"""The add-on between two backends: the local one it started and one started elsewhere. Connecting elsewhere
leaves the local one running, detached: its exit no longer closes the other connection, and Start Local Backend
gets back to it. A job whose connection Connect or Stop Backend closes says so, not that a backend was stopped."""

from __future__ import annotations

import re
import sys

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import free_port, run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("backend_switch")
    args = {"port": free_port(), "other_port": free_port(),
            "command": f"{sys.executable} -m handforge serve --port {{port}} --heartbeat 0.25"}
    result = run_blender("backend_switch_session.py", addon_zip, work / "blender", args,
                         unset=("HANDFORGE_MANO_DIR",), timeout=300)
    result.ports = args["port"], args["other_port"]
    return result


def test_connect_elsewhere_leaves_the_local_backend_running(session):
    session.no_error("start", "connect_elsewhere")
    _, other = session.ports
    found = session["connect_elsewhere"]
    assert f"at tcp://127.0.0.1:{other}" in found["status"] and found["local_alive"] is True, found


def test_start_local_backend_gets_back_to_the_running_local_backend(session):
    session.no_error("start_local_reconnects")
    local, _ = session.ports
    found = session["start_local_reconnects"]
    # before: "a local backend is already running (pid N): stop it first", while connected elsewhere
    assert found["message"] == "" and f"at tcp://127.0.0.1:{local}" in found["status"], found
    assert found["pid"] == session["start"]["pid"] and found["ping"] == "", found


def test_a_job_cut_off_by_connect_says_the_connection_moved_not_that_a_backend_stopped(session):
    session.no_error("connect_mid_job")
    local, other = session.ports
    found = session["connect_mid_job"]
    assert found["connected"] == [["FINISHED"]] and f":{other}" in found["status"], found
    # before: "the backend was stopped before the job ended (Start Local Backend)": nothing had stopped
    assert "was stopped" not in found["message"], found
    assert (f"Blender disconnected from tcp://127.0.0.1:{local} (to connect to tcp://127.0.0.1:{other}) before the "
            "job ended; the backend there cancels the jobs of a client that leaves" in found["message"]), found
    assert found["local_alive"] is True, found  # detached, still running
    assert "said bye: cancelling its 1 job(s)" in found["local_log"], found["local_log"][-2000:]


def test_the_local_backend_exiting_leaves_the_connection_elsewhere_and_its_job_alone(session):
    session.no_error("local_exits")
    _, other = session.ports
    found = session["local_exits"]
    # before: the other connection was closed, its job failed "the local backend exited with code -9"
    assert found["killed"] == ["killed"] and found["message"] == "", found
    assert found["connected"] is True and f"at tcp://127.0.0.1:{other}" in found["status"], found
    assert found["ping"] == "", found


def test_stop_backend_mid_job_on_another_backend_says_it_disconnected_and_leaves_that_backend_running(session):
    session.no_error("stop_elsewhere")
    _, other = session.ports
    found = session["stop_elsewhere"]
    assert found["stopped"] == [["FINISHED"]] and found["other_alive"] is True, found
    # before: "the backend was stopped before the job ended (Start Local Backend)", of a backend still running
    assert "was stopped" not in found["message"], found
    assert (f"Blender disconnected from tcp://127.0.0.1:{other} (Stop Backend) before the job ended; the backend "
            "there cancels the jobs of a client that leaves" in found["message"]), found
    # cancelled there: on Stop Backend's cancel, or on its bye if that came first (nothing runs on for no one)
    assert re.search(r"said bye: cancelling its 1 job\(s\)|\(sleep\) -> cancelled", found["other_log"]), \
        found["other_log"][-2000:]
