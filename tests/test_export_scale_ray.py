"""Scale-out export on a local Ray (2 CPU workers, one Ray start for the module): the single-process
dataset byte for byte, also when a worker dies mid-run; a driver restart resumes."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import ray

from handforge.export.ray_pool import RayPool
from handforge.export.shards import export_sharded
from tests.support.scale import COMMAND, SPEC, single_process, spec, tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # one GPU, a logical one (Ray schedules GPUs as counted resources; nothing here runs on it): a worker asking
    # for one holds it, as on a node with one real GPU
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    return single_process(tmp_path_factory.mktemp("single") / "data")


def on_ray(out: Path, **kwargs) -> dict:
    return export_sharded(spec(), out, lambda: RayPool(spec().to_dict(), str(out), None, 2), 2, command=COMMAND,
                          progress=False, **kwargs)


def test_two_ray_workers_write_the_single_process_dataset(local_ray, reference, tmp_path):
    summary = on_ray(tmp_path / "data")
    assert summary["finished"] == SPEC["samples"] and summary["failed"] == {} and summary["worker_restarts"] == 0
    assert tree(tmp_path / "data") == reference
    assert ray.is_initialized()  # the pool used the running Ray and left it running


def test_a_ray_worker_killed_mid_run_is_replaced_and_the_result_is_identical(local_ray, reference, tmp_path):
    summary = on_ray(tmp_path / "data", fault="die_after=3")  # mid-chunk: chunks of 40 // (2 × 8) = 2
    assert summary["worker_restarts"] in (1, 2) and summary["failed"] == {}
    assert tree(tmp_path / "data") == reference


def test_a_sample_that_kills_every_ray_worker_fails_alone(local_ray, tmp_path):
    from handforge.export.spec import parse_spec

    twelve, out = parse_spec({**SPEC, "samples": 12}), tmp_path / "data"
    summary = export_sharded(twelve, out, lambda: RayPool(twelve.to_dict(), str(out), None, 2), 2, command=COMMAND,
                             progress=False, chunk_size=8, fault="die_at=3")  # the healthy 4..7 failed with it
    assert sorted(summary["failed"]) == [3] and summary["finished"] == 11
    assert summary["failed"][3].startswith("3 workers died on this sample (last: Ray actor died")


def test_a_ray_worker_whose_run_raises_is_replaced_and_its_sample_fails_alone(local_ray, tmp_path):
    """An error out of a Ray worker's run (one no sample's own handling catches: a stale NFS handle while it
    checked the folder) reached the driver as a RayTaskError traceback and ended the run; a local worker's
    process exits on it and is replaced."""
    from handforge.export.spec import parse_spec

    twelve, out = parse_spec({**SPEC, "samples": 12}), tmp_path / "data"
    summary = export_sharded(twelve, out, lambda: RayPool(twelve.to_dict(), str(out), None, 2), 2, command=COMMAND,
                             progress=False, chunk_size=8, fault="raise_at=3")
    assert sorted(summary["failed"]) == [3] and summary["finished"] == 11
    assert "Ray worker failed: OSError: [Errno 116] Stale file handle" in summary["failed"][3], summary["failed"]


def test_a_stopped_ray_driver_resumes(local_ray, reference, tmp_path):
    out = tmp_path / "data"
    first = on_ray(out, limit=15)  # the driver stops after 15 samples, as a killed one leaves them
    assert first["finished"] == 15
    second = on_ray(out)
    assert (second["skipped"], second["written"]) == (15, SPEC["samples"] - 15)
    assert tree(out) == reference


def test_the_command_runs_on_ray_and_survives_a_killed_worker(local_ray, reference, tmp_path, monkeypatch, capsys):
    import json

    from handforge.cli import main

    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDFORGE_EXPORT_FAULT", "die_after=1")
    assert main(["export", "spec.json", "--out", "data", "--ray", "--workers", "2", "--quiet"]) == 0
    assert ("worker(s) died or stopped answering (--sample-timeout) and were replaced; the samples they left "
            "unfinished were redone one at a time"
            in capsys.readouterr().out)
    result, expected = tree(tmp_path / "data"), dict(reference)
    for name in ("dataset_card.json", "dataset_card.md"):  # the commands differ (the reference's is a stand-in)
        result.pop(name), expected.pop(name)
    assert result == expected


def test_more_workers_than_gpus_run_one_per_gpu_and_write_the_single_process_dataset(local_ray, reference,
                                                                                      tmp_path):
    """A cluster of fewer GPUs than workers (`--workers 32` on 8 GPUs): the workers beyond the GPUs wait for one
    (Ray keeps them pending); the run must not wait for them, and no two workers share the GPU."""
    started: list[int] = []

    class Watched(RayPool):
        def wait(self, timeout: float):
            events = super().wait(timeout)
            started.extend(event.slot for event in events if event.kind == "ready")
            return events

    out = tmp_path / "data"
    summary = export_sharded(spec(), out, lambda: Watched(spec().to_dict(), str(out), None, 2, gpus_per_worker=1), 2,
                             command=COMMAND, progress=False)
    assert summary["finished"] == SPEC["samples"] and summary["failed"] == {} and summary["worker_restarts"] == 0
    assert tree(out) == reference
    assert len(started) == 1  # one worker on the one GPU; the other never started
    assert ray.available_resources().get("GPU") == 1  # the waiting worker was given up, the GPU freed


def test_gpus_per_worker_on_a_ray_without_enough_gpus_is_a_clear_error_not_a_hang(local_ray, tmp_path, monkeypatch,
                                                                                   capsys):
    import json

    from handforge.cli import main

    assert ray.cluster_resources().get("GPU", 0) == 1  # this test's local Ray has one GPU
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    monkeypatch.chdir(tmp_path)
    assert main(["export", "spec.json", "--out", "data", "--ray", "--workers", "2", "--gpus-per-worker", "2",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--gpus-per-worker 2: no node of this machine's Ray has that many GPUs (the most on one node: 1)" in err
    assert "drop the flag" in err
    assert not (tmp_path / "data" / "samples").exists()  # nothing written
    assert ray.is_initialized()  # a Ray the command did not start is left running



def test_ray_without_an_address_starts_its_own_beside_a_running_one(reference, tmp_path):
    """`--ray` alone is a Ray of the run's own, also on a machine where `ray start --head` already runs
    (a cluster's head node, following this README): ray.init() attached to that one and refused the
    run's num_cpus ("When connecting to an existing cluster, num_cpus and num_gpus must not be
    provided", before 2026-12-02). Both live in a private RAY_TMPDIR, where a node finds its cluster."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    root = Path(__file__).resolve().parents[1]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-ray-{os.getpid()}"  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join([str(root / "backend"), str(root / "shared")])}
    ray_cli = Path(sys.executable).with_name("ray")
    head = subprocess.Popen([str(ray_cli), "start", "--head", "--block", "--num-cpus", "1", "--include-dashboard",
                             "false", "--port", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        end = time.monotonic() + 120
        while not (scratch / "ray" / "ray_current_cluster").exists():
            assert head.poll() is None and time.monotonic() < end, "ray start --head did not come up"
            time.sleep(0.2)
        done = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--ray",
                               "--workers", "2", "--quiet"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert head.poll() is None  # the running Ray was left alone
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    result, expected = tree(tmp_path / "data"), dict(reference)
    for name in ("dataset_card.json", "dataset_card.md"):  # the commands differ (the reference's is a stand-in)
        result.pop(name), expected.pop(name)
    assert result == expected


def test_sigterm_stops_a_ray_run_as_ctrl_c_does(reference, tmp_path):
    """SIGTERM (a scheduler's stop, `kill`) ends a `--ray` run as it ends any other: the samples made kept,
    "stopped by SIGTERM" with the hint, status 143, and a rerun finishes the single-process dataset. ray.init put
    its own SIGTERM handler in place of the command's: Ray's "*** SIGTERM received" dump and status 15, no hint."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    root = Path(__file__).resolve().parents[1]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-ray-{os.getpid()}"  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(scratch), "HANDFORGE_EXPORT_FAULT": "hang_after=2",  # still running
           "PYTHONPATH": os.pathsep.join([str(root / "backend"), str(root / "shared")])}
    command = [sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--ray", "--workers", "2",
               "--quiet"]
    out = tmp_path / "data"
    try:
        driver = subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        end = time.monotonic() + 120
        while len(list(out.glob("samples/[0-9]*/labels.json"))) < 4:  # both workers hang after their 2
            assert driver.poll() is None and time.monotonic() < end, _stopped_and_said(driver)
            time.sleep(0.05)
        driver.send_signal(signal.SIGTERM)
        stderr = driver.communicate(timeout=120)[1]
        assert driver.returncode == 143, stderr[-2000:]
        assert "stopped by SIGTERM: finished samples are kept" in stderr and "SIGTERM received" not in stderr
        assert not list(out.glob("samples/.partial-*"))
        env.pop("HANDFORGE_EXPORT_FAULT")
        rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result, expected = tree(out), dict(reference)
    for name in ("dataset_card.json", "dataset_card.md"):  # the commands differ (the reference's is a stand-in)
        result.pop(name), expected.pop(name)
    assert result == expected


SHUTDOWN_KEEPS_SIGTERM = r"""
import json, signal, sys
from handforge.export.ray_pool import RayPool
from handforge.termination import sigterm_unwinds

def caught(signum):  # the kernel's own word: Python's signal.getsignal kept naming the handler after ray.shutdown
    mask = next(line for line in open("/proc/self/status") if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (signum - 1) & 1)

signal.signal(signal.SIGINT, signal.default_int_handler)  # (a suite run in the background starts it ignored)
with sigterm_unwinds():
    with RayPool(json.loads(sys.argv[1]), sys.argv[2], None, 1):
        pass
    print(caught(signal.SIGTERM), caught(signal.SIGINT), type(signal.getsignal(signal.SIGTERM)).__name__)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the kernel's signal dispositions (Linux)")
def test_the_commands_sigterm_handler_outlives_the_local_rays_shutdown(tmp_path):
    """ray.shutdown() left SIGTERM at its default in the kernel: a SIGTERM after the last sample, while the
    aggregate files were written, killed a `--ray` run outright (status -15, no word, no coco.json)."""
    import json
    import os
    import sys

    root = Path(__file__).resolve().parents[1]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-ray-{os.getpid()}"  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join([str(root / "backend"), str(root / "shared")])}
    try:
        done = subprocess.run([sys.executable, "-c", SHUTDOWN_KEEPS_SIGTERM, json.dumps(SPEC), str(tmp_path / "data")],
                              env=env, capture_output=True, text=True, timeout=300)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "True", "_Stop"], done.stderr[-2000:]


STOPPED_WHILE_RAY_STARTS = r"""
import json, os, signal, sys, threading, time
from handforge.export.ray_pool import RayPool
from handforge.termination import Terminated, sigterm_unwinds

threading.Timer(1.5, os.kill, (os.getpid(), signal.SIGTERM)).start()  # (a local Ray takes 3-4 s to start here)
try:
    with sigterm_unwinds():
        with RayPool(json.loads(sys.argv[1]), sys.argv[2], None, 1):
            time.sleep(60)
except Terminated:
    print("stopped")
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's processes in /proc (Linux)")
def test_sigterm_while_the_local_ray_starts_is_the_commands_stop_and_leaves_nothing_running(tmp_path):
    """ray.init's own SIGTERM handler was in place while it started: status 15, no word (sometimes Ray's
    "*** SIGTERM received" dump), and a Ctrl-C there left its agents running for a minute."""
    import json
    import os
    import sys
    import time

    root = Path(__file__).resolve().parents[1]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-ray-{os.getpid()}"  # short: Ray's socket paths
    env = {**os.environ, "RAY_TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join([str(root / "backend"), str(root / "shared")])}

    def rays() -> list[str]:  # the processes of this Ray (each names its session folder, under RAY_TMPDIR)
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                if str(scratch).encode() in cmdline.read_bytes():
                    found.append(cmdline.parent.name)
        return found

    try:
        done = subprocess.run([sys.executable, "-c", STOPPED_WHILE_RAY_STARTS, json.dumps(SPEC),
                               str(tmp_path / "data")], env=env, capture_output=True, text=True, timeout=300)
        assert (done.returncode, done.stdout) == (0, "stopped\n"), done.stderr[-2000:]
        end = time.monotonic() + 15
        while rays() and time.monotonic() < end:
            time.sleep(0.5)
        assert rays() == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def test_a_ray_worker_that_never_started_is_not_waited_for_at_the_end(local_ray, reference, tmp_path):
    """The run's end asked each actor to close its worker, 10 s at most each: one still waiting for a node with its
    resources (`--workers 32` on a cluster with room for 8) has none, and held the end 10 s (4 minutes for 24),
    or, placed once another's resources were freed, made its whole worker only to close it."""
    import time

    stops: dict[int, float] = {}
    started: set[int] = set()

    class Timed(RayPool):
        def wait(self, timeout: float):
            events = super().wait(timeout)
            started.update(event.slot for event in events if event.kind == "ready")
            return events

        def stop(self, slot: int, force: bool = False) -> None:
            start = time.perf_counter()
            super().stop(slot, force)
            stops[slot] = time.perf_counter() - start

    out = tmp_path / "data"
    summary = export_sharded(spec(), out, lambda: Timed(spec().to_dict(), str(out), None, 3, gpus_per_worker=1), 3,
                             command=COMMAND, progress=False)  # the one GPU: one worker runs, two wait
    assert summary["finished"] == SPEC["samples"] and tree(out) == reference
    assert len(stops) == 3 and len(started) == 1
    assert max(seconds for slot, seconds in stops.items() if slot not in started) < 1, stops


def test_a_stopped_ray_run_of_rgb_renders_leaves_no_scratch_folder(tmp_path):
    """Ctrl-C (or SIGTERM) kills the actors, and with them their Blender, as a SIGKILL does: each actor's
    Blender scratch folder (handforge-blender-*) stayed in $TMPDIR until the next export, where local workers
    remove theirs."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    rgb = {**SPEC, "render": {"engine": "workbench", "antialiasing": "OFF"}, "outputs": ["rgb", "mesh"]}
    (tmp_path / "spec.json").write_text(json.dumps(rgb))
    root = Path(__file__).resolve().parents[1]
    scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"hf-ray-{os.getpid()}"  # short: Ray's socket paths
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "RAY_TMPDIR": str(scratch), "TMPDIR": str(temporary),
           "HANDFORGE_EXPORT_FAULT": "hang_after=2",  # still running when stopped
           "PYTHONFAULTHANDLER": "1", "PYTHONPATH": os.pathsep.join([str(root / "backend"), str(root / "shared")])}
    out = tmp_path / "data"
    try:
        # Ctrl-C's default, as in a terminal: a suite run in the background (`... &` in a script) ignores SIGINT, its
        # children inherit that, and the command keeps an ignored SIGINT ignored: it ran on after the "Ctrl-C"
        driver = subprocess.Popen([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--ray",
                                   "--workers", "2", "--quiet"], cwd=tmp_path, env=env, stderr=subprocess.PIPE,
                                  text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        end = time.monotonic() + 180
        while len(list(out.glob("samples/[0-9]*/labels.json"))) < 4:  # both workers hang after their 2
            assert driver.poll() is None and time.monotonic() < end, _stopped_and_said(driver)
            time.sleep(0.05)
        assert len(list(temporary.glob("handforge-blender-*"))) == 2  # each actor's Blender
        driver.send_signal(signal.SIGINT)
        try:
            stderr = driver.communicate(timeout=120)[1]
        except subprocess.TimeoutExpired:
            pytest.fail("no end of the driver's stderr within 120 s of Ctrl-C:\n" + _stopped_and_said(driver))
        assert driver.returncode == 130, stderr[-2000:]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert list(temporary.glob("handforge-*")) == []


def _stopped_and_said(driver: subprocess.Popen) -> str:
    """The end of a driver's stderr, once it is stopped: read from one still running (a hang past the test's
    limit), the failure waited for the driver's end, that is for pytest's own timeout. One still running is asked
    where it stands first: its signal masks (ignored, blocked, pending, caught) and, with PYTHONFAULTHANDLER, its
    threads' tracebacks (on SIGABRT). A process it started may hold its stderr open: what was read is said."""
    said = ""
    if driver.poll() is None:
        with contextlib.suppress(OSError):
            said = ", ".join(line.strip() for line in open(f"/proc/{driver.pid}/status")
                             if line.startswith(("SigIgn", "SigBlk", "SigPnd", "SigCgt"))) + "\n"
        driver.send_signal(signal.SIGABRT)
    try:
        read = driver.communicate(timeout=30)[1]
    except subprocess.TimeoutExpired as late:  # (what was read comes as bytes)
        read = ((late.stderr or b"").decode(errors="replace")
                + "\n(its stderr is still open: a process it started holds it)")
    driver.kill()  # (with it, at its exit, the Ray it started)
    driver.wait(30)
    return said + read[-6000:]
