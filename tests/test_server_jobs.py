"""The backend's job life cycle over real loopback sockets: progress, results, cancel, timeouts, busy,
failures, scheduling and validation. One server subprocess for the module."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from handforge_shared.client import Accepted, Cancelled, Error, JobFailed, Progress, Result
from handforge_shared.protocol import ErrorCode, Message, MessageType, ProtocolError
from tests.support.server import RawPeer, collect, running_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server():
    with running_server("--heartbeat", "0.25", "--max-queue", "3", "--cpu-workers", "3",
                        "--max-message-mb", "1", "--max-queued-mb", "1", env={"HANDFORGE_MANO_DIR": ""}) as s:
        yield s


@pytest.fixture
def client(server):
    with server.client() as c:
        yield c


def _first_progress(client, handle, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for event in client.poll(0.02):
            if event.job == handle.id and isinstance(event, Progress):
                return event
    raise AssertionError(f"no progress from {handle}")


def test_submit_reports_accepted_progress_then_one_result(client):
    handle = client.submit("sleep", {"steps": 4, "step_seconds": 0.06})
    events = collect(client, handle)[handle.id]
    assert isinstance(events[0], Accepted)
    progress = [e for e in events if isinstance(e, Progress)]
    assert [round(p.fraction, 2) for p in progress] == [0.25, 0.5, 0.75, 1.0]
    assert progress[-1].message == "step 4/4"
    assert isinstance(events[-1], Result) and events[-1].data["steps"] == 4
    assert sum(isinstance(e, (Result, Error, Cancelled)) for e in events) == 1
    assert handle.state == "done" and handle.outcome is events[-1]


def test_cancel_stops_a_running_job_at_its_next_step(client):
    handle = client.submit("sleep", {"steps": 400, "step_seconds": 0.05})
    _first_progress(client, handle)
    asked = time.monotonic()
    handle.cancel()
    events = collect(client, handle, timeout=10)[handle.id]
    assert isinstance(events[-1], Cancelled) and events[-1].reason == "cancelled"
    assert time.monotonic() - asked < 2.0
    assert len([e for e in events if isinstance(e, Progress)]) < 50
    assert client.run("ping").data["pong"] is True  # and the worker is free again


def test_cancel_a_queued_job_and_an_unknown_one(server, client):
    running = client.submit("sleep.gpu", {"steps": 400, "step_seconds": 0.05})
    _first_progress(client, running)
    queued = client.submit("sleep.gpu", {"steps": 2})
    end = time.monotonic() + 5
    while queued.state == "sent" and time.monotonic() < end:
        client.poll(0.02)
    assert queued.state == "queued" and queued.position == 0
    queued.cancel()
    assert isinstance(collect(client, queued, timeout=5)[queued.id][-1], Cancelled)
    assert not running.done  # cancelling the queued job left the running one alone
    running.cancel()
    assert isinstance(collect(client, running, timeout=5)[running.id][-1], Cancelled)
    with RawPeer(server.endpoint) as peer:
        peer.send(Message(MessageType.CANCEL, id="c1", job="no-such-job"))
        reply = peer.recv()
    assert reply.type == "error" and reply.data["code"] == "unknown_job" and reply.job == "no-such-job"


def test_a_job_past_its_timeout_is_stopped_and_reported(client):
    start = time.monotonic()
    with pytest.raises(JobFailed) as info:
        client.run("sleep", {"steps": 100, "step_seconds": 0.1}, timeout=0.6)
    assert info.value.code == ErrorCode.TIMEOUT and "0.6 s" in info.value.message
    assert info.value.message.endswith("(it was running)")
    assert time.monotonic() - start < 5.0  # the job itself would run 10 s


def test_a_job_that_times_out_in_the_queue_is_said_to_have_waited(client):
    busy = client.submit("sleep.gpu", {"steps": 30, "step_seconds": 0.1})  # the one GPU-class worker taken
    with pytest.raises(JobFailed) as info:
        client.run("sleep.gpu", {"steps": 1, "step_seconds": 0.0}, timeout=0.5)
    assert info.value.code == ErrorCode.TIMEOUT and info.value.message.endswith("(it was still waiting in the queue)")
    client.cancel(busy)


def test_a_job_that_ignores_cancel_still_times_out_on_time(client):
    start = time.monotonic()
    with pytest.raises(JobFailed) as info:
        client.run("sleep", {"steps": 1, "step_seconds": 6.0, "cooperative": False}, timeout=0.5)
    assert info.value.code == ErrorCode.TIMEOUT
    assert time.monotonic() - start < 4.0  # reported at the deadline, not when the handler returned (6 s)
    assert client.ping() < 1.0


def test_a_sleep_that_ignores_cancel_cannot_outlast_its_kinds_limit(client):
    # before: accepted: 100,000 steps of 60 s that ignore cancel held a worker for 69 days after the watchdog
    # had reported the job's timeout (sleep.gpu: the only GPU-class worker), every later job waiting behind it
    for kind in ("sleep", "sleep.gpu"):
        with pytest.raises(JobFailed) as info:
            client.run(kind, {"steps": 100_000, "step_seconds": 60.0, "cooperative": False}, timeout=5)
        assert info.value.code == ErrorCode.INVALID_PARAMS and info.value.message.startswith("params.cooperative")
        assert "6e+06 s asleep" in info.value.message
    assert client.run("sleep.gpu", {"steps": 1, "step_seconds": 0.0, "cooperative": False}, timeout=5).data["steps"] == 1

def test_waiting_jobs_arrays_stay_under_their_memory_limit(client):
    """--max-queued-mb 1: with the workers busy, a 0.6 MiB request waits, a second one would pass the
    limit and is answered busy (with what to change); it fits again once the first has run."""
    busy = [client.submit("sleep", {"steps": 400, "step_seconds": 0.05}) for _ in range(3)]  # --cpu-workers 3
    for handle in busy:
        _first_progress(client, handle)
    big = {"x": np.zeros(600 * 1024 // 8)}  # 0.6 MiB of float64
    first = client.submit("echo", arrays=big)
    refused = client.submit("echo", arrays=big)
    events = collect(client, [refused], timeout=5)[refused.id]
    assert isinstance(events[-1], Error) and events[-1].code == "busy", events
    assert "would pass the limit of 1 MiB" in events[-1].message and "--max-queued-mb" in events[-1].hint
    assert first.state == "queued"
    for handle in busy:
        handle.cancel()
    assert np.array_equal(first.wait(30).arrays["x"], big["x"])
    assert client.run("echo", arrays=big, timeout=30).arrays["x"].shape == big["x"].shape


def test_a_request_larger_than_the_queued_arrays_limit_alone_still_runs():
    """--max-queued-mb 1 (requests up to 4 MiB): a 1.5 MiB request with nothing else waiting is run, whether a
    worker is free or it must wait for one ("a request larger than that alone still waits when nothing else
    does: it could never run otherwise"); only a second request waiting beside it is answered busy."""
    big = {"x": np.arange(3 * 2**17, dtype=np.float32)}  # 1.5 MiB
    with running_server("--cpu-workers", "1", "--max-queued-mb", "1", "--max-message-mb", "4") as server, \
            server.client() as client:
        assert np.array_equal(client.run("echo", arrays=big, timeout=30).arrays["x"], big["x"])  # a free worker
        busy = client.submit("sleep", {"steps": 400, "step_seconds": 0.05})
        _first_progress(client, busy)
        waits = client.submit("echo", {"text": "waits"}, arrays=big)  # the one worker taken: it waits, alone
        refused = client.submit("echo", arrays={"y": np.zeros(8, np.float32)})
        assert collect(client, [refused], timeout=10)[refused.id][-1].code == "busy"
        assert waits.state == "queued"
        busy.cancel()
        result = waits.wait(30)
        assert result.data["text"] == "waits" and np.array_equal(result.arrays["x"], big["x"])


def test_a_full_queue_answers_busy(client):
    running = client.submit("sleep.gpu", {"steps": 400, "step_seconds": 0.05})
    _first_progress(client, running)
    waiting = [client.submit("sleep.gpu", {"steps": 1}) for _ in range(3)]  # --max-queue 3
    refused = client.submit("sleep.gpu", {"steps": 1})
    events = collect(client, [refused], timeout=5)[refused.id]
    assert isinstance(events[-1], Error) and events[-1].code == "busy"
    assert "--max-queue" in events[-1].hint
    assert [h.state for h in waiting] == ["queued"] * 3 and [h.position for h in waiting] == [0, 1, 2]
    for h in [running, *waiting]:
        h.cancel()
    assert all(isinstance(evs[-1], Cancelled) for evs in collect(client, [running, *waiting]).values())


def test_a_cancel_of_a_job_that_ignores_it_ends_as_cancelled_at_its_deadline(client):
    """A running job that ignores cancel (a non-cooperative sleep) is still cancelled by its client: at its
    deadline its one terminal event says ``cancelled`` (what its client asked), not a timeout error."""
    handle = client.submit("sleep", {"steps": 1, "step_seconds": 4.0, "cooperative": False}, timeout=1.0)
    end = time.monotonic() + 10
    while handle.state == "sent" and time.monotonic() < end:
        client.poll(0.02)
    time.sleep(0.3)  # accepted, and a free worker has taken it (it sends no progress)
    handle.cancel()
    events = collect(client, handle, timeout=10)[handle.id]
    terminal = [e for e in events if isinstance(e, (Result, Error, Cancelled))]
    assert len(terminal) == 1 and isinstance(terminal[0], Cancelled) and terminal[0].reason == "cancelled", events
    assert time.monotonic() - handle.sent_at < 3.5  # at the deadline (1 s), not when the sleep returned (4 s)


def test_a_ping_lists_only_the_jobs_of_its_own_client(server):
    """pong: ``jobs``, the ids of the peer's jobs still queued or running (PROTOCOL), not another client's."""
    def submit(peer, job):
        peer.send(Message(MessageType.SUBMIT, id=f"s-{job}", job=job, kind="sleep",
                          params={"steps": 400, "step_seconds": 0.05}))
        while (reply := peer.recv()).type != "accepted":
            assert reply.type in ("progress", "heartbeat"), reply

    def pong(peer, mid):
        peer.send(Message(MessageType.PING, id=mid))
        while (reply := peer.recv()).type != "pong":
            assert reply.type in ("progress", "heartbeat"), reply
        return reply

    with RawPeer(server.endpoint) as a, RawPeer(server.endpoint) as b:
        submit(a, "a-1")
        submit(b, "b-1")
        submit(a, "a-2")
        assert sorted(pong(a, "pa").data["jobs"]) == ["a-1", "a-2"]
        assert pong(b, "pb").data["jobs"] == ["b-1"]
        for peer, jobs in ((a, ["a-1", "a-2"]), (b, ["b-1"])):
            for job in jobs:
                peer.send(Message(MessageType.CANCEL, id=f"c-{job}", job=job))
            ended = set()
            while ended != set(jobs):
                reply = peer.recv()
                if reply.type == "cancelled":
                    ended.add(reply.job)
        assert pong(a, "pa2").data["jobs"] == []


def test_a_number_param_exactly_at_its_announced_max_is_accepted(client):
    """sleep's step_seconds, sent at the max the welcome announces for it (bounds are inclusive)."""
    announced = client.hello()["kinds"]["sleep"]["params"]["step_seconds"]
    assert announced["type"] == "number" and announced["max"] == 60.0
    handle = client.submit("sleep", {"steps": 1, "step_seconds": announced["max"]})
    end = time.monotonic() + 10
    while handle.state == "sent" and time.monotonic() < end:
        client.poll(0.02)
    assert handle.state in ("queued", "running"), handle.outcome  # accepted, not invalid_params
    handle.cancel()
    assert isinstance(collect(client, handle, timeout=10)[handle.id][-1], Cancelled)
    with pytest.raises(JobFailed) as info:  # just past it: refused, naming the field
        client.run("sleep", {"steps": 1, "step_seconds": float(np.nextafter(60.0, 61.0))})
    assert info.value.code == ErrorCode.INVALID_PARAMS and info.value.message.startswith("params.step_seconds")


def test_a_job_that_raises_becomes_an_internal_error_and_the_server_carries_on(client):
    with pytest.raises(JobFailed) as info:
        client.run("sleep", {"steps": 3, "step_seconds": 0.01, "fail_at": 2})
    assert info.value.code == ErrorCode.INTERNAL
    assert "RuntimeError: sleep failed at step 2" in info.value.message
    assert client.run("echo", {"text": "still here"}).data["text"] == "still here"


def _events_until(client, predicate, timeout=30.0):
    """Every event in arrival order until ``predicate(events)`` holds."""
    seen, end = [], time.monotonic() + timeout
    while not predicate(seen):
        assert time.monotonic() < end, f"condition not met within {timeout} s; events: {seen}"
        seen += client.poll(0.02)
    return seen


def _started(handle):
    return lambda seen: any(isinstance(e, Progress) and e.job == handle.id for e in seen)


def test_gpu_class_jobs_run_one_at_a_time_light_jobs_concurrently(client):
    # Ordered by events, not by durations: the jobs would run 20 s each, and are cancelled.
    gpu = [client.submit("sleep.gpu", {"steps": 400, "step_seconds": 0.05}) for _ in range(2)]
    seen = _events_until(client, _started(gpu[0]))
    gpu[0].cancel()
    seen += _events_until(client, _started(gpu[1]))
    first_end = seen.index(gpu[0].outcome)
    assert isinstance(gpu[0].outcome, Cancelled)
    assert not _started(gpu[1])(seen[:first_end])  # the second waited for the first to end
    gpu[1].cancel()
    assert isinstance(collect(client, gpu[1])[gpu[1].id][-1], Cancelled)
    cpu = [client.submit("sleep", {"steps": 400, "step_seconds": 0.05}) for _ in range(2)]
    _events_until(client, lambda seen: all(_started(h)(seen) for h in cpu))
    assert not any(h.done for h in cpu)  # both run at once
    for h in cpu:
        h.cancel()
    assert all(isinstance(evs[-1], Cancelled) for evs in collect(client, cpu).values())


def test_ping_is_answered_while_jobs_run(client):
    running = client.submit("sleep.gpu", {"steps": 400, "step_seconds": 0.05})
    _first_progress(client, running)
    assert max(client.ping() for _ in range(5)) < 1.0  # the job itself runs for 20 s
    running.cancel()
    collect(client, running)


def _pose(batch=2):
    return {"right.global_orient": np.zeros((batch, 3), np.float32), "right.hand_pose": np.zeros((batch, 45), np.float32)}


@pytest.mark.parametrize("arrays, params, field, needle", [
    ({**_pose(), "right.hand_pose": np.zeros((2, 45), np.int32)}, {}, "arrays.right.hand_pose", "dtype int32"),
    ({**_pose(), "right.hand_pose": np.zeros((2, 44), np.float32)}, {}, "arrays.right.hand_pose", "(batch_right, 45)"),
    ({**_pose(), "right.hand_pose": np.full((2, 45), np.nan, np.float32)}, {}, "arrays.right.hand_pose", "NaN"),
    ({**_pose(), "right.transl": np.zeros((3, 3), np.float32)}, {}, "arrays.right.transl", "batch_right is 3"),
    ({**_pose(), "right.betas": np.full((2, 10), 500.0)}, {}, "arrays.right.betas", "above 20"),
    ({"right.global_orient": np.zeros((2, 3), np.float32)}, {}, "arrays.right.hand_pose", "required with"),
    ({}, {}, "arrays:", "no hand given"),  # (neither side sent: not "arrays.right.global_orient")
    (_pose(), {"model": "smpl"}, "params.model", "'open', 'mano'"),
    (_pose(), {"modle": "open"}, "params.modle", "not a parameter"),
])
def test_invalid_requests_are_refused_before_queueing_naming_the_field(client, arrays, params, field, needle):
    with pytest.raises(JobFailed) as info:
        client.run("forward_hands", params, arrays)
    assert info.value.code == ErrorCode.INVALID_PARAMS
    assert info.value.message.startswith(field) and needle in info.value.message, info.value.message


def test_echo_returns_data_and_arrays_and_checks_the_data_type(client):
    arrays = {"right.global_orient": np.arange(6, dtype=np.float32).reshape(2, 3)}
    result = client.run("echo", {"text": "t", "data": {"motion": {"fps": 30}}}, arrays)
    assert result.data == {"text": "t", "motion": {"fps": 30}}
    np.testing.assert_array_equal(result.arrays["right.global_orient"], arrays["right.global_orient"])
    with pytest.raises(JobFailed) as info:
        client.run("echo", {"data": [1, 2]})
    assert info.value.code == ErrorCode.INVALID_PARAMS and info.value.message.startswith("params.data")
    assert "must be a JSON object" in info.value.message


def test_unknown_kind_and_bad_timeout(server, client):
    with pytest.raises(JobFailed) as info:
        client.run("teleport")
    assert info.value.code == ErrorCode.UNKNOWN_KIND and "forward_hands" in info.value.hint
    with pytest.raises(ValueError, match="timeout must be a positive finite number"):  # the client refuses it itself
        client.run("ping", timeout=-1)
    with RawPeer(server.endpoint) as peer:  # and so does the backend
        peer.send(Message(MessageType.SUBMIT, id="t1", job="t1", kind="ping", data={"timeout": -1}))
        reply = peer.recv()
    assert reply.type == "error" and reply.data["code"] == ErrorCode.INVALID_PARAMS
    assert "data.timeout" in reply.data["message"]


def test_a_timeout_too_large_for_a_float_is_invalid_params_not_internal(server):
    # JSON integers have no size limit: 10**400 passed "> 0", then float() raised OverflowError (code internal)
    huge = b"1" + b"0" * 400
    with RawPeer(server.endpoint) as peer:
        peer.send([b'{"v":1,"type":"submit","id":"t2","job":"t2","kind":"ping","data":{"timeout":' + huge + b"}}"])
        reply = peer.recv()
    assert reply.type == "error" and reply.data["code"] == ErrorCode.INVALID_PARAMS, reply.data
    assert reply.data["field"] == "data.timeout" and reply.id == "t2" and reply.job == "t2"
    assert "finite" in reply.data["message"]


def test_oversized_requests_are_refused_and_the_server_stays_up(server, client):
    client.hello()  # learns the server's 1 MiB limit: the client refuses locally
    with pytest.raises(ProtocolError) as info:
        client.submit("echo", arrays={"a": np.zeros(2**20, np.uint8)})
    assert info.value.code == ErrorCode.TOO_LARGE
    header = (b'{"v":1,"type":"submit","id":"big","job":"big","kind":"echo","arrays":['
              b'{"name":"a","dtype":"uint8","shape":[600000]},{"name":"b","dtype":"uint8","shape":[600000]}]}')
    with RawPeer(server.endpoint) as peer:
        peer.send([header, bytes(600_000), bytes(600_000)])
        reply = peer.recv()
        assert reply.type == "error" and reply.data["code"] == "too_large" and reply.id == "big"
    with RawPeer(server.endpoint) as peer:  # one frame over the announced limit: a typed refusal
        peer.send([b'{"v":1,"type":"ping","id":"one-frame"}', bytes(2**20 + 10)])
        reply = peer.recv()
        assert reply.type == "error" and reply.data["code"] == "too_large" and reply.id == "one-frame"
        peer.send([b"{}", bytes(2**20 + 10)])  # whatever the header says
        assert peer.recv().data["code"] == "too_large"
    with RawPeer(server.endpoint) as peer:  # over the socket's hard limit (2x): libzmq drops the connection
        peer.send([b"{}", bytes(2 * 2**20 + 10)])
        with pytest.raises(TimeoutError):
            peer.recv(timeout=1.0)
    end = time.monotonic() + 10
    while len(re.findall(r"connection from 127\.0\.0\.1:\d+ closed\n", server.log())) < 3:  # the raw peers'

        assert time.monotonic() < end, server.log()
        time.sleep(0.05)
    # the hard limit is said once, at start (every client's normal end read "closed (by the client, or by the
    # backend after a frame over its hard limit ...)")
    assert "requests over 1 MiB are refused, and a message part over 2 MiB also closes its connection" in server.log()
    assert "hard limit" not in server.log()
    assert client.run("echo", {"text": "up"}).data["text"] == "up"


def test_a_large_submit_before_the_welcome_waits_for_the_limits_instead_of_losing_the_connection(server):
    with server.client() as client:  # submitted at once: the 1 MiB limit is not known yet
        over = client.submit("echo", arrays={"a": np.zeros(3 * 2**20, np.uint8)})
        under = client.submit("echo", {"text": "fits"}, arrays={"a": np.zeros(2**20 - 4096, np.uint8)})
        outcomes = collect(client, [over, under])
    assert outcomes[over.id][-1].code == ErrorCode.TOO_LARGE and "1.0 MiB" in outcomes[over.id][-1].message
    assert isinstance(outcomes[under.id][-1], Result) and outcomes[under.id][-1].data["text"] == "fits"


def test_duplicate_job_ids_are_refused(server):
    submit = Message(MessageType.SUBMIT, id="s1", job="same", kind="sleep", params={"steps": 40, "step_seconds": 0.05})
    with RawPeer(server.endpoint) as peer:
        peer.send(submit)
        assert peer.recv().type == "accepted"
        peer.send(Message(MessageType.SUBMIT, id="s2", job="same", kind="ping"))
        replies = [peer.recv() for _ in range(2)]
        refusal = next(r for r in replies if r.id == "s2")
        assert refusal.data["code"] == "bad_message" and "already used" in refusal.data["message"]
        peer.send(Message(MessageType.CANCEL, id="c", job="same"))
        while (reply := peer.recv()).type != "cancelled":
            assert reply.type in ("progress", "heartbeat")


@pytest.mark.parametrize("kind, arrays", [("hand_model", {}), ("forward_hands", _pose())])
def test_mano_without_its_files_is_missing_weights_naming_the_setting(client, kind, arrays):
    with pytest.raises(JobFailed) as info:
        client.run(kind, {"model": "mano"}, arrays)
    assert info.value.code == ErrorCode.MISSING_WEIGHTS and info.value.field == "params.model"  # (was "")
    assert "HANDFORGE_MANO_DIR" in info.value.hint and "model_dir" in info.value.hint


def test_progress_is_throttled_except_the_last_update_and_forced_ones():
    """JobContext drops updates closer together than its interval, but never fraction 1 or ``force``
    (a stage's first and last step: the motion jobs' denoising ends at 0.9 when a polish may follow)."""
    from handforge.server.jobs import JobContext

    sent = []
    ctx = JobContext("j", "k", lambda fraction, message, previews: sent.append(message), min_interval_s=60.0)
    ctx.progress(0.1, "first")
    ctx.progress(0.2, "dropped")
    ctx.progress(0.9, "end of a stage", force=True)
    ctx.progress(0.95, "dropped too")
    ctx.progress(1.0, "done")
    assert sent == ["first", "end of a stage", "done"]


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's memory from /proc")
def test_the_backend_frees_a_finished_jobs_arrays():
    """Once a job has ended, neither its record nor the idle worker that ran it keeps its input arrays:
    after a 160 MiB echo the server's memory falls back (before 2026-12-02 the idle worker held its last
    job, 160 MiB here, and a 4 MiB echo loop grew the server by ~50 KB a job through the churn)."""
    with running_server("--max-message-mb", "400", "--cpu-workers", "1", env={"HANDFORGE_MANO_DIR": ""}) as server:
        with server.client() as client:
            client.hello(devices=True)  # the device probe (torch's import) is done
            client.run("ping")
            before = _rss_mib(server.process.pid)
            big = np.ones((40, 1024, 1024), np.float32)  # 160 MiB
            assert client.run("echo", arrays={"big": big}).arrays["big"].shape == big.shape
            client.run("ping")  # the worker has moved on; the result's buffers are sent
            end = time.monotonic() + 10
            while (after := _rss_mib(server.process.pid)) > before + 64 and time.monotonic() < end:
                time.sleep(0.1)
            assert after < before + 64, (before, after)


def test_work_that_cannot_finish_before_its_deadline_fails_as_soon_as_its_pace_says_so(monkeypatch):
    """A motion of 1000 steps × 8 samples held its device for the whole 600 s limit of its kind, and failed then:
    a handler's steady loop now fails as ``timeout`` once its pace shows it cannot finish, saying the pace, judged
    on the pieces after the first (whose warm-up, 2 s, made a job of 0.1 s steps look three times too slow)."""
    from handforge.server import jobs as server_jobs
    from handforge.server.jobs import JobContext, JobError

    clock = [100.0]
    monkeypatch.setattr(server_jobs.time, "monotonic", lambda: clock[0])
    ctx = JobContext("j", "k", lambda *args: None)
    ctx.started, ctx.deadline = 100.0, 160.0  # 60 s to run
    first = 102.0  # the first step ended after a 2 s warm-up; the next ones take 0.5 s
    clock[0] = first + 5.0  # 11 done, 89 to go at 0.5 s: ends at 151.5 s, within the limit
    ctx.check_pace(11, 100, since=first)
    clock[0] = first + 2.0 * 9  # 10 done at 2 s each: 90 to go, ends at 300 s, past 60 + a fifth
    with pytest.raises(JobError) as late:
        ctx.check_pace(10, 100, since=first, what="denoising steps")
    assert late.value.code == "timeout"
    assert late.value.message == "at this pace its 100 denoising steps end about 200 s after it started, past the " \
                                 "60 s it may run (10 done)"
    assert "fewer denoising steps, samples or frames" in late.value.hint
    ctx.check_pace(3, 100, since=first)  # (too few to judge by)
    ctx.check_pace(100, 100, since=first)  # (done)
    ctx.deadline = None
    ctx.check_pace(10, 10**6, since=first)  # (no deadline: nothing to judge against)


@pytest.mark.parametrize("code", ["bad_input", "no_backend", "backend_lost"])
def test_a_job_error_takes_only_the_codes_the_backend_sends_and_names_them(code):
    """JobError("no_backend", ...) from a handler reached the client, which raised BackendUnavailable as if no
    backend ran (the add-on says so); an unknown code was "'bad_input' is not a valid ErrorCode", naming none."""
    from handforge.server.jobs import JobError

    with pytest.raises(ValueError) as refused:
        JobError(code, "it failed", "do this")
    assert str(refused.value) == (f"JobError code {code!r} is none a backend sends; give one of: bad_message, "
                                  "unsupported_version, too_large, unknown_kind, unknown_job, invalid_params, busy, "
                                  "missing_weights, timeout, internal")
    assert JobError("invalid_params", "m").code is ErrorCode.INVALID_PARAMS  # (a name or the ErrorCode)
    assert JobError(ErrorCode.TIMEOUT, "m").code is ErrorCode.TIMEOUT
