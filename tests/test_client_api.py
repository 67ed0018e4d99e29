"""The client library's own contract: the non-blocking calls never block, mistakes are caught before
anything is sent, handles track their job, and the blocking API raises typed errors."""

from __future__ import annotations

import gc
import os
import re
import time
import weakref

import numpy as np
import pytest

from handforge_shared.client import (
    Accepted,
    BackendUnavailable,
    Client,
    Connected,
    Error,
    JobCancelledError,
    JobFailed,
    JobHandle,
    Progress,
    Result,
    anchor_arrays,
    hand_rigs,
    inbetween_arrays,
    motion_clips,
    pose_arrays,
)
from handforge_shared import pose_library
from handforge_shared.poses import HandPose, MotionClip, PoseFormatError, TwoHandPose, side_by_side
from handforge_shared.protocol import ErrorCode, ProtocolError
from tests.support.server import running_server

pytestmark = pytest.mark.timeout(120)
NOWHERE = "tcp://127.0.0.1:9"  # discard port: nothing answers


def test_poll_never_blocks_without_a_backend():
    with Client(NOWHERE, connect_timeout=30) as client:
        handles = [client.submit("sleep", {"steps": 1}) for _ in range(20)]
        worst = 0.0
        for _ in range(50):
            start = time.perf_counter()
            assert client.poll() == []
            worst = max(worst, time.perf_counter() - start)
        assert worst < 1.0  # a blocking call would wait for connect_timeout (30 s); loaded cores take ms, not s
        assert all(h.state == "sent" and not h.done for h in handles)


def test_requests_refused_at_the_send_leave_nothing_behind():
    """With no backend, a ping's request waits in the socket's queue (1000 of them); past that each ping is refused
    at the send, and each left its entry among the client's awaited replies: a script pinging a dead backend
    grew forever."""
    with Client(NOWHERE, connect_timeout=0.01) as client:
        for _ in range(1100):
            with pytest.raises(BackendUnavailable):
                client.ping(timeout=0.001)
        assert len(client._replies) == 0


def test_a_large_job_that_failed_before_any_backend_answered_lets_its_arrays_go():
    """A job too large to send before the backend's welcome waits in the client for it; once failed (no backend)
    it was kept there with its arrays all the same: a script retrying a large job against a backend that is not
    up yet grew by the job's size each time."""
    with Client(NOWHERE, connect_timeout=0.01) as client:
        large = np.ones(2**18)  # 2 MiB: over what any backend takes before its welcome says its limits
        kept = weakref.ref(large)
        handle = client.submit("echo", arrays={"a": large})
        assert handle.wait(30).code == ErrorCode.NO_BACKEND
        del large
        gc.collect()
        assert kept() is None


def test_what_can_never_be_sent_is_refused_at_once():
    with Client(NOWHERE) as client:
        with pytest.raises(ProtocolError, match="int16"):
            client.submit("echo", arrays={"a": np.zeros(3, np.int16)})
        with pytest.raises(ProtocolError) as info:
            client.submit("echo", arrays={f"a{i}": np.zeros(1) for i in range(17)})
        assert info.value.code == ErrorCode.TOO_LARGE
        with pytest.raises(ProtocolError, match="params.source_labels is 70002 bytes of it"):  # (which one: unsaid)
            client.submit("image.transfer", {"prompt": "two hands", "source_labels": "0" * 70_000})
        with pytest.raises(ProtocolError, match="JSON"):
            client.submit("echo", {"text": float("inf")})
        for params, field in (({"num_frames": 20, "fps": float("nan")}, "params.fps"),  # (which one: unsaid)
                              ({"num_frames": 20, "seed": {1, 2}}, "params.seed")):
            with pytest.raises(ProtocolError, match=f"^{field}: ") as info:
                client.submit("motion.generate", params)
            assert info.value.field == field
        assert client.jobs() == []
    for call in (lambda: client.submit("ping"), client.poll, client.ping, lambda: client.run("ping")):
        with pytest.raises(RuntimeError, match=r"closed \(make a new Client"):  # (how to go on: unsaid)
            call()
    with pytest.raises(ValueError, match="tcp://HOST:PORT"):
        Client("localhost:5780")


def test_a_scripts_wrong_arguments_are_said_in_its_terms():
    """Before: params as a list was 'cannot convert dictionary update sequence element #0', a timeout of inf or
    NaN 'the submit header is not plain JSON', a timeout of '5' (of poll(), also None) a TypeError from time
    arithmetic, arrays as a list 'array name 0.0 is not allowed', Client(5780) an AttributeError; a timeout of -5 was
    failed by the client at once as 'never answered by the backend ... check that it runs' (0 was the backend's
    refusal)."""
    with Client(NOWHERE) as client:
        for call, error, said in (
                (lambda: client.submit("echo", [1, 2]), TypeError, "params must be a dict (or None), got list"),
                (lambda: client.submit("echo", arrays=[np.zeros(2)]), TypeError, "arrays must be a dict"),
                (lambda: client.submit(None), TypeError, "kind must be a job kind's name"),
                (lambda: client.submit("echo", timeout=float("inf")), ValueError, "timeout must be a positive finite"),
                (lambda: client.submit("echo", timeout=float("nan")), ValueError, "timeout must be a positive finite"),
                (lambda: client.submit("echo", timeout="5"), ValueError, "timeout must be a positive finite number"),
                (lambda: client.submit("echo", timeout=-5), ValueError, "timeout must be a positive finite number"),
                (lambda: client.submit("echo", timeout=0), ValueError, "timeout must be a positive finite number"),
                (lambda: client.poll(None), ValueError, "timeout must be a finite number"),  # (a TypeError from
                (lambda: client.poll("0.1"), ValueError, "timeout must be a finite number"),  # time arithmetic)
                (lambda: Client(5780), TypeError, "endpoint must be an address such as")):
            with pytest.raises(error, match=re.escape(said)):
                call()
        assert client.jobs() == []
        for call, said in ((lambda: client.cancel(None), "cancel takes a JobHandle or a job id (str), got NoneType"),
                           (lambda: client.run("echo", on_progress=5), "on_progress must be a function taking a "
                                                                       "Progress, got int")):
            with pytest.raises(TypeError, match=re.escape(said)):  # (None did nothing; 5 failed once the job ran)
                call()
        with pytest.raises(ProtocolError) as dtype:  # (the field was left empty)
            client.submit("echo", arrays={"x": np.zeros(2, np.int16)})
        assert dtype.value.field == "arrays.x"
        # a Fraction of a second is a number of seconds (it passed the check, then failed the header as no JSON value)
        from fractions import Fraction

        handle = client.submit("echo", timeout=Fraction(1, 5))
        assert handle.kind == "echo"
        handle.cancel()
    assert client.connected is False  # (it stayed True once closed)


@pytest.mark.timeout(30)
def test_a_wait_that_is_no_finite_number_is_refused_not_waited_forever():
    """Before: a NaN connect_timeout, lost_after or ping/hello timeout compares false with every time, so a
    call to a dead (or stuck) backend never returned; a timeout of 10**400 was an OverflowError."""
    for make, said in ((lambda: Client(NOWHERE, connect_timeout=float("nan")), "connect_timeout must be a positive "
                        "finite number of seconds, got nan"),
                       (lambda: Client(NOWHERE, connect_timeout="5"), "connect_timeout must be a positive finite"),
                       (lambda: Client(NOWHERE, lost_after=float("nan")), "lost_after must be a positive finite")):
        with pytest.raises(ValueError, match=re.escape(said)):
            make()
    with Client(NOWHERE, connect_timeout=1) as client:
        for call, said in ((lambda: client.ping(timeout=float("nan")), "timeout must be a positive finite number"),
                           (lambda: client.hello(timeout=float("nan")), "timeout must be a positive finite number"),
                           # (they were said not answered within -1 s, the backend "overloaded or stuck")
                           (lambda: client.ping(timeout=-1), "timeout must be a positive finite number"),
                           (lambda: client.hello(timeout=0), "timeout must be a positive finite number"),
                           (lambda: client.submit("echo", timeout=10**400), "timeout must be a positive finite number")):
            with pytest.raises(ValueError, match=re.escape(said)):
                call()
        handle = client.submit("echo")
        for timeout in (float("nan"), 10**400):  # (nan waited until the job ended, 10**400 was an OverflowError)
            with pytest.raises(ValueError, match="timeout must be a finite number of seconds"):
                handle.wait(timeout)


def test_numpy_numbers_in_params_are_the_json_numbers_they_are(client):
    """Before: np.float32(0.5) or np.int64(3) (what numpy code hands over) was 'not JSON serializable'."""
    sent = {"f": np.float32(0.5), "i": np.int64(3), "b": np.bool_(True), "nested": [np.float64(1.25)]}
    echoed = client.run("echo", {"data": sent}, timeout=30).data
    assert {k: echoed[k] for k in sent} == {"f": 0.5, "i": 3, "b": True, "nested": [1.25]}, echoed
    with pytest.raises(ProtocolError, match="JSON"):  # a NaN stays refused, whatever its type
        client.submit("echo", {"f": np.float32("nan")})
    with pytest.raises(ProtocolError, match="not JSON serializable"):  # and arrays go as arrays
        client.submit("echo", {"a": np.zeros(3)})


def test_pose_arrays_builds_forward_hands_inputs():
    pose = HandPose(global_orient=np.zeros((2, 3)), hand_pose=np.zeros((2, 45)), betas=np.zeros((2, 10)),
                    transl=np.zeros((2, 3)))
    arrays = pose_arrays({"left": pose})
    assert {k: v.shape for k, v in arrays.items()} == {"left.global_orient": (2, 3), "left.hand_pose": (2, 45),
                                                       "left.betas": (2, 10), "left.transl": (2, 3)}
    assert all(v.dtype == np.float32 for v in arrays.values())
    for wrong in ("fist", {"global_orient": np.zeros(3), "hand_pose": np.zeros(45)}):  # (an AttributeError)
        with pytest.raises(TypeError, match=r"pose_arrays takes \{side: HandPose\}; 'right' is a (str|dict): make "):
            pose_arrays({"right": wrong})
    # a TwoHandPose, or a clip (its frames the batch), as their hands (a TwoHandPose was "has no attribute 'items'")
    two = side_by_side(pose_library.get("fist"))
    assert {k: v.tolist() for k, v in pose_arrays(two).items()} == {k: v.tolist() for k, v in pose_arrays(two.hands).items()}
    with pytest.raises(TypeError, match=r"pose_arrays takes \{side: HandPose\}, a TwoHandPose or a MotionClip, got int"):
        pose_arrays(3)


def test_inbetween_arrays_key_every_part_of_the_hands_each_key_holds_at_its_frame():
    """A script's in-between had to build the arrays and the (T, 17) key mask by hand (README showed none)."""
    fist, point = pose_library.get("fist", side="left"), pose_library.get("point")
    keys = {0: side_by_side(pose_library.get("flat")), 7: TwoHandPose(left=fist), 9: side_by_side(point)}
    arrays = inbetween_arrays(keys, 12)
    assert {k: v.shape for k, v in arrays.items() if k.startswith("left.")} == {
        "left.global_orient": (12, 3), "left.hand_pose": (12, 45), "left.transl": (12, 3), "left.betas": (10,),
        "left.mask": (12, 17)}
    assert arrays["left.mask"].dtype == np.uint8 and arrays["left.hand_pose"].dtype == np.float32
    assert arrays["left.mask"].any(1).nonzero()[0].tolist() == [0, 7, 9] and arrays["left.mask"][[0, 7, 9]].all()
    assert arrays["right.mask"].any(1).nonzero()[0].tolist() == [0, 9]  # the key at 7 holds no right hand
    np.testing.assert_array_equal(arrays["left.hand_pose"][7], fist.hand_pose.astype(np.float32))
    np.testing.assert_array_equal(arrays["right.transl"][9], side_by_side(point).right.transl.astype(np.float32))
    assert not arrays["right.hand_pose"][1:9].any()  # unkeyed frames: zeros, the mask says so
    assert set(inbetween_arrays({3: TwoHandPose(right=point)}, 5)) == {f"right.{f}" for f in (
        "global_orient", "hand_pose", "transl", "betas", "mask")}  # a hand no key holds is not sent
    with pytest.raises(ValueError, match=r"key frame 12 is not one of the frames 0 to 11"):
        inbetween_arrays({12: keys[0]}, 12)
    with pytest.raises(ValueError, match=r"num_frames must be a whole number from 2 to 512, got 1\b"):
        inbetween_arrays({0: keys[0]}, 1)
    with pytest.raises(TypeError, match=r"the key at frame 0 must be one TwoHandPose .*got HandPose"):
        inbetween_arrays({0: point}, 4)
    other = TwoHandPose(right=point.replace(betas=np.full(10, 0.5)))
    with pytest.raises(ValueError, match=r"the right hand's shape \(betas\) at frame 3 differs from its first key's "
                                         r"\(frame 0\)"):
        inbetween_arrays({0: keys[0], 3: other}, 4)


def test_anchor_arrays_are_one_hand_unbatched():
    fist = pose_library.get("fist", side="left")
    arrays = anchor_arrays(fist)
    assert {k: v.shape for k, v in arrays.items()} == {"anchor.global_orient": (3,), "anchor.hand_pose": (45,),
                                                       "anchor.betas": (10,), "anchor.transl": (3,)}
    batch = HandPose(global_orient=np.zeros((2, 3)), hand_pose=np.zeros((2, 45)), betas=np.zeros((2, 10)),
                     transl=np.zeros((2, 3)))
    with pytest.raises(TypeError, match=r"anchor_arrays takes one HandPose \(not batched\).*a batch of shape \(2,\)"):
        anchor_arrays(batch)


@pytest.fixture(scope="module")
def client():
    with running_server("--heartbeat", "0.25") as server, server.client() as c:
        yield c


def test_motion_clips_gives_each_sample_of_a_motion_result_as_a_clip(client):
    """A result of 2 samples: the README's MotionClip.from_arrays refused it ("unexpected arrays ['samples.left',
    ...]"), and turning sample k into a clip was the script's own slicing."""
    flat, point = (side_by_side(pose_library.get(name)) for name in ("flat", "point"))
    result = client.run("motion.inbetween", {"hand_model": "open", "num_samples": 2, "steps": 2, "seed": 0},
                        inbetween_arrays({0: flat, 9: point}, 10))
    clips = motion_clips(result)
    assert [c.num_frames for c in clips] == [10, 10] and all(c.hand_model == "open" for c in clips)
    for side in ("left", "right"):
        for k, clip in enumerate(clips):  # each sample's values, as the result packs them
            packed = result.arrays[f"samples.{side}"][k]
            np.testing.assert_allclose(clip.hands[side].hand_pose, packed[:, 3:48], atol=1e-6)
            np.testing.assert_allclose(clip.hands[side].transl, packed[:, 48:51], atol=1e-6)
            np.testing.assert_allclose(clip.hands[side].hand_pose[[0, 9]],  # the keys, kept by each
                                       np.stack([flat.hands[side].hand_pose, point.hands[side].hand_pose]), atol=1e-5)
        assert not np.allclose(clips[0].hands[side].hand_pose[1:9], clips[1].hands[side].hand_pose[1:9])
    with pytest.raises(PoseFormatError, match=r"a motion job's result of several samples; "
                                              r"handforge_shared.client.motion_clips\(result\) reads each"):
        MotionClip.from_arrays(result.data["motion"], result.arrays)
    with pytest.raises(PoseFormatError, match=r"motion_clips takes the Result of a motion job"):
        motion_clips(client.run("ping"))


def test_an_interrupted_run_cancels_its_job(client):
    """Before: a script's Ctrl-C (or an on_progress that raised) left the job running in the backend, its
    worker held to the end, its events piling up in the client."""
    def interrupt(progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.run("sleep", {"steps": 200, "step_seconds": 0.05}, on_progress=interrupt)
    [handle] = client.jobs()
    deadline = time.monotonic() + 5  # 10 s if it ran on
    while not handle.done and time.monotonic() < deadline:
        client.poll(0.05)
    assert handle.done and handle.outcome.reason == "cancelled", handle.outcome


def test_a_handle_follows_its_job(client):
    handle = client.submit("sleep", {"steps": 3, "step_seconds": 0.05})
    assert isinstance(handle, JobHandle) and handle.state == "sent" and client.jobs() == [handle]
    states = set()
    while not handle.done:
        for event in client.poll(0.02):
            if isinstance(event, Accepted):
                assert event.position == 0
            states.add(handle.state)
    assert "running" in states and handle.state == "done"
    assert handle.fraction == 1.0 and handle.message == "step 3/3"
    assert isinstance(handle.outcome, Result) and client.jobs() == []
    assert handle.wait(0) is handle.outcome


def test_run_reports_progress_and_returns_read_only_arrays(client):
    seen = []
    result = client.run("echo", {"text": "x"}, {"a": np.arange(6.0).reshape(2, 3)}, on_progress=seen.append)
    assert isinstance(result, Result) and not result.arrays["a"].flags.writeable
    np.testing.assert_array_equal(result.arrays["a"], np.arange(6.0).reshape(2, 3))
    progress = []
    client.run("sleep", {"steps": 2, "step_seconds": 0.02}, on_progress=progress.append)
    assert [p.fraction for p in progress] == [0.5, 1.0] and all(isinstance(p, Progress) for p in progress)


def test_run_raises_when_its_job_is_cancelled(client):
    with pytest.raises(JobCancelledError) as info:  # e.g. a `blender -b` script aborting from its progress callback
        client.run("sleep", {"steps": 100, "step_seconds": 0.05}, on_progress=lambda p: client.cancel(p.job))
    assert info.value.code == "cancelled"
    handle = client.submit("sleep", {"steps": 100, "step_seconds": 0.05})
    handle.cancel()
    assert handle.wait(10).reason == "cancelled"


def test_closing_a_client_ends_its_jobs_cancelled(client):
    """Every job ends with one outcome, the ones a closed client still waited for too: ``Cancelled``
    (reason "closed"), at once; waiting on or cancelling them afterwards returns, never a socket error."""
    with Client(client.endpoint) as other:
        handle = other.submit("sleep", {"steps": 100, "step_seconds": 0.05})
        handle.wait(0.3)
    assert handle.done and handle.outcome.reason == "closed" and other.jobs() == []
    started = time.monotonic()
    assert handle.wait(5).reason == "closed" and time.monotonic() - started < 0.1
    handle.cancel()
    with pytest.raises(RuntimeError, match="closed"):
        other.submit("ping")


def test_a_list_given_for_an_array_is_said_as_the_list_it_was_with_what_to_send(client):
    """A list of Python ints goes as an int64 array: it was refused as "has dtype int64; send float32 or float64",
    no word of the list the script wrote, the shape taken, or how to send it; put in params, "not a parameter"."""
    with pytest.raises(JobFailed) as refused:
        client.run("hand_model", {"sides": ["left"]}, {"betas": [0] * 10}, timeout=30)
    assert refused.value.field == "arrays.betas"
    assert refused.value.message == ("arrays.betas: has dtype int64; send float32 or float64 of shape (10,) (it was "
                                     "given as a list of 10 ints, which numpy sends as int64 of shape (10,))")
    assert refused.value.hint == "send a numpy array: arrays={'betas': numpy.asarray(values, dtype=numpy.float32)}"
    with pytest.raises(JobFailed) as refused:
        client.run("forward_hands", arrays={"right.global_orient": [[0, 0, 0]], "right.hand_pose": [[0] * 45]},
                   timeout=30)
    assert "given as a list of 1×3 ints, which numpy sends as int64 of shape (1, 3)" in refused.value.message
    assert "send float32 or float64 of shape (batch_right, 3)" in refused.value.message
    with pytest.raises(JobFailed) as refused:
        client.run("hand_model", {"sides": ["left"], "betas": [0] * 10}, timeout=30)
    assert refused.value.message == ("params.betas: is an array of this job kind, not a parameter: send it in arrays, "
                                     "float32 or float64 of shape (10,)"), refused.value.message
    assert "numpy.asarray(values, dtype=numpy.float32)" in refused.value.hint
    # floats in a list are the float64 array the job takes; a numpy array of ints is said as the array it is
    assert client.run("hand_model", {"sides": ["left"]}, {"betas": [0.0] * 10}, timeout=30).data["rigs"]["left"]
    with pytest.raises(JobFailed) as refused:
        client.run("hand_model", {"sides": ["left"]}, {"betas": np.zeros(10, np.int64)}, timeout=30)
    assert "given as" not in refused.value.message and "has dtype int64" in refused.value.message


def test_hand_rigs_of_another_jobs_result_says_what_it_takes(client):
    """Before: hand_rigs of a forward_hands result (the README's next line) was KeyError: 'rigs'."""
    result = client.run("forward_hands", arrays=pose_arrays({"right": pose_library.get("fist", side="right")}))
    with pytest.raises(ValueError, match=r"hand_rigs takes the Result of a hand_model job .* a Result without rigs "
                                         r"\(its data: .*sides\)"):
        hand_rigs(result)
    assert hand_rigs(client.run("hand_model", {"sides": ["left"]}))["left"].num_vertices > 0


def test_clients_dropped_without_close_let_their_sockets_go(client):
    """A script that makes a Client per loop (or notebook cell) and never closes it: each dropped client kept four
    file descriptors and three ZeroMQ sockets, and the 342nd Client() raised ZMQError: Too many open files."""
    def open_files() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_files()
    for _ in range(40):
        dropped = Client(client.endpoint)
        dropped.run("ping")
    del dropped
    gc.collect()
    deadline = time.monotonic() + 30  # (libzmq closes sockets on its own thread)
    while open_files() > before + 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_files() <= before + 10


def test_ping_and_hello(client):
    assert 0 < client.ping() < 1.0
    caps = client.hello()
    assert caps["server"]["heartbeat_s"] == 0.25 and client.capabilities == caps


def test_events_never_polled_stay_bounded_and_the_newest_are_kept(client, caplog):
    """A script that submits and waits, never polling, kept every job's events (1,658 after 400 jobs, results'
    arrays included): beyond MAX_PENDING the oldest of ended jobs go, their outcomes still on their handles."""
    from handforge_shared import client as client_module

    client.poll()
    handles = []
    for _ in range(client_module.MAX_PENDING):  # at least an accepted and a result each: twice the bound
        handle = client.submit("echo", arrays={"x": np.zeros(4, np.float32)})
        assert isinstance(handle.wait(30), Result)
        handles.append(handle)
    in_flight = client.submit("sleep", {"steps": 50})
    client.ping()
    assert len(client._pending) <= client_module.MAX_PENDING + 2
    assert all(isinstance(h.outcome, Result) for h in handles)
    events = client.poll()
    assert any(isinstance(e, Result) and e.job == handles[-1].id for e in events)  # the newest kept
    assert not any(e.job == handles[0].id for e in events)                         # the oldest dropped
    assert any(e.job == in_flight.id for e in events)                              # a job in flight's kept
    assert "events were not taken with poll()" in caplog.text
    in_flight.cancel()
    in_flight.wait(30)


def test_poll_hands_over_every_event_that_arrived_however_many(client, monkeypatch):
    """The bound is for scripts that never poll: poll's own first read cut a burst of more than MAX_PENDING events
    (700 pings submitted, then polled: 134 jobs' outcomes never came) (the fuzzing of 2026-12-07)."""
    import time

    from handforge_shared import client as client_module

    client.poll()
    monkeypatch.setattr(client_module, "MAX_PENDING", 10)
    handles = [client.submit("ping") for _ in range(6)]  # accepted and result each: 12 events, above the bound
    time.sleep(2.0)  # (all arrived, unread)
    events = client.poll()
    ended = {e.job for e in events if isinstance(e, Result)}
    assert ended == {h.id for h in handles}, (len(events), ended)
    for handle in handles:  # each job's every event: its acceptance too (the oldest of ended jobs were dropped)
        assert [type(e).__name__ for e in events if e.job == handle.id] == ["Accepted", "Result"], events


def test_results_waited_for_and_never_polled_stay_bounded_in_bytes(client):
    """The bound above counted events: a script waiting on one 4,096-hand forward_hands job after another (80 MB of
    vertices each), never polling, kept every result until 1,024 events (about 60 such jobs, 5 GB). Beyond
    MAX_PENDING_BYTES of arrays the oldest of ended jobs go too, the newest kept, the outcomes on their handles."""
    from handforge_shared import client as client_module

    client.poll()
    size = 40 * 2**20
    handles = []
    for _ in range(client_module.MAX_PENDING_BYTES // size + 3):
        handle = client.submit("echo", arrays={"x": np.zeros(size, np.uint8)})
        assert isinstance(handle.wait(60), Result)
        handles.append(handle)
    client.ping()
    queued = [e for e in client._pending if isinstance(e, Result)]
    assert sum(e.arrays["x"].nbytes for e in queued) <= client_module.MAX_PENDING_BYTES
    assert queued[-1].job == handles[-1].id and queued[0].job != handles[0].id  # the newest kept, the oldest gone
    assert all(h.outcome.arrays["x"].nbytes == size for h in handles[-2:])


def test_hello_answers_its_caller_without_queueing_an_event(client):
    """``Connected`` comes at start-up and after a reconnect: each hello() answer was one too, holding the whole
    capabilities (about 100 KB), queued for a poll() that a script calling only run() and hello() never makes, so
    its memory grew with every hello() of a long session."""
    client.hello()
    client.ping()  # the re-welcome after the backend's device probe, if any, has arrived by now
    client.poll()
    for _ in range(20):
        caps = client.hello()
        client.run("ping")
    assert client.capabilities == caps
    assert not any(isinstance(e, Connected) for e in client.poll())


def test_an_answer_already_queued_is_not_declared_late():
    """The job's own deadline has passed, but the backend's accepted, progress and result messages are
    all waiting in the socket: the client reads one message per poll, and before failing the job for
    its deadline it reads what is queued, so the job ends with its result, not a timeout."""
    import threading

    import zmq

    from handforge_shared.frames import recv_frames, send_frames
    from handforge_shared.protocol import CLIENT_TYPES, Message, MessageType, decode, encode

    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    submitted = threading.Event()

    def backend():  # a bare backend that answers the first submit late, three messages at once
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while poller.poll(10_000):
            identity, *frames = recv_frames(router)
            message = decode(frames, accept=CLIENT_TYPES)
            if message.type != MessageType.SUBMIT:
                continue  # the client's hello on connecting
            submitted.set()
            time.sleep(2.3)  # the job's deadline: its 0.05 s timeout + the client's 2 s grace
            for reply in (Message(MessageType.ACCEPTED, id="a", job=message.job, data={"position": 0}),
                          Message(MessageType.PROGRESS, id="p", job=message.job, data={"fraction": 0.5, "message": ""}),
                          Message(MessageType.RESULT, id="r", job=message.job, data={"late": False})):
                send_frames(router, [identity.bytes, *encode(reply)])
            return

    thread = threading.Thread(target=backend, daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}") as client:
            handle = client.submit("echo", timeout=0.05)
            assert submitted.wait(10)
            thread.join(10)  # all three messages are on their way before the client looks
            time.sleep(0.2)
            outcome = handle.wait(5)
        assert isinstance(outcome, Result) and outcome.data == {"late": False}, outcome
    finally:
        router.close()


def test_a_field_of_the_wrong_type_from_a_backend_is_ignored_not_raised_out_of_poll():
    # before: "position": "x" in an accepted message raised ValueError out of Client.poll()
    import zmq

    from handforge_shared.protocol import Message, MessageType, decode, encode

    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def receive() -> tuple[bytes, Message]:
        assert router.poll(10_000), "the client sent nothing"
        identity, *frames = router.recv_multipart()
        return identity, decode(frames)

    try:
        with Client(f"tcp://127.0.0.1:{port}", connect_timeout=10) as client:
            handle = client.submit("ping")
            seen = []
            while MessageType.SUBMIT not in seen and len(seen) < 5:  # hellos, then the held submit once welcomed
                identity, message = receive()
                seen.append(message.type)
                reply = (Message(MessageType.WELCOME, id=message.id, data={"server": {"instance": "fake"}})
                         if message.type == MessageType.HELLO else
                         Message(MessageType.ACCEPTED, id="a1", job=message.job, data={"position": "x"}))
                router.send_multipart([identity, *encode(reply)])
                for _ in range(20):
                    client.poll(0.05)  # nothing raised
            assert seen[-1] == MessageType.SUBMIT, seen
            router.send_multipart([identity, *encode(Message(MessageType.RESULT, id="r1", job=handle.id,
                                                             data={"pong": True}))])
            assert isinstance(handle.wait(5), Result)
    finally:
        router.close(linger=0)


@pytest.mark.parametrize("reply", ["welcome server", "welcome limits", "heartbeat jobs"])
def test_an_object_or_list_of_the_wrong_shape_from_a_backend_is_ignored_not_raised_out_of_poll(reply):
    # before: "server": "x" or "limits": [1] in a welcome raised AttributeError, and "jobs": [[1]] in a
    # heartbeat TypeError (unhashable), out of Client.poll()
    import zmq

    from handforge_shared.protocol import Message, MessageType, decode, encode

    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def receive(client) -> tuple[bytes, Message]:
        for _ in range(200):  # (the client says hello once its poll sees the connection)
            client.poll(0.05)
            if router.poll(0):
                identity, *frames = router.recv_multipart()
                return identity, decode(frames)
        raise AssertionError("the client sent nothing")

    try:
        with Client(f"tcp://127.0.0.1:{port}", connect_timeout=10) as client:
            identity, hello = receive(client)
            data = {"welcome server": {"server": "x"}, "welcome limits": {"limits": [1]}}.get(reply, {})
            router.send_multipart([identity, *encode(Message(MessageType.WELCOME, id=hello.id, data=data))])
            handle = client.submit("ping")
            identity, submit = receive(client)
            assert submit.type == MessageType.SUBMIT
            for answer in (Message(MessageType.ACCEPTED, id="a1", job=handle.id, data={"position": 0}),
                           Message(MessageType.HEARTBEAT, id="h1", data={"jobs": [[1], handle.id]})):
                router.send_multipart([identity, *encode(answer)])
            for _ in range(10):
                client.poll(0.05)  # nothing raised
            router.send_multipart([identity, *encode(Message(MessageType.RESULT, id="r1", job=handle.id,
                                                             data={"pong": True}))])
            assert isinstance(handle.wait(5), Result)
    finally:
        router.close(linger=0)


def test_out_of_range_and_unbatched_arrays_are_refused_with_what_the_array_is(client):
    """A researcher's wrist at 1000 (millimetres, in metres), a rotation of 20 rad and one pose unbatched were refused
    with an empty hint and a bound of 12.566370614359172: now the hint is the array's own description (its units),
    the bound a multiple of π is named so, and the unbatched one is told the axis to add."""
    fist = pose_library.get("fist")
    cases = {"mm": ({**pose_arrays({"right": fist}), "right.transl": np.full((1, 3), 1000.0, np.float32)},
                    "arrays.right.transl: has values above 100.0 (largest", "wrist translation in metres"),
             "rad": ({**pose_arrays({"right": fist}), "right.global_orient": np.full((1, 3), 20.0, np.float32)},
                     "has values above 12.566370614359172 (4π)", "axis-angle (radians)"),
             "one": ({**pose_arrays({"right": fist}), "right.hand_pose": fist.hand_pose.astype(np.float32)},
                     "must have shape (batch_right, 45), got (45,)", "one along batch_right is shape (1, 45): add "
                                                                     "the leading axis (array[None])")}
    for name, (arrays, says, hint) in cases.items():
        with pytest.raises(JobFailed) as info:
            client.run("forward_hands", {"model": "open"}, arrays)
        assert says in info.value.message and hint in info.value.hint, (name, info.value.message, info.value.hint)
    # a motion's per-frame array given one frame's values: not told to add an axis (one frame is refused too)
    keys = inbetween_arrays({0: side_by_side(fist), 9: side_by_side(fist)}, 10)
    with pytest.raises(JobFailed) as info:
        client.run("motion.inbetween", {"hand_model": "open"}, {**keys, "right.transl": keys["right.transl"][0]})
    assert "got (3,)" in info.value.message and "leading axis" not in info.value.hint, vars(info.value)


def test_a_refusal_carries_the_field_it_names(client):
    # before: the wire's error.data.field (PROTOCOL.md) was dropped by the client: a client could not point at the
    # bad input without parsing the message
    from handforge_shared.client import Error, JobFailed

    with pytest.raises(JobFailed) as info:
        client.run("sleep", {"steps": -1})
    assert info.value.code == "invalid_params" and info.value.field == "params.steps", vars(info.value)
    outcome = client.submit("sleep", {"steps": -1}).wait(timeout=30)
    assert isinstance(outcome, Error) and outcome.field == "params.steps", outcome


def test_a_backend_of_another_protocol_version_fails_the_hello_and_the_job_it_answers_at_once():
    # before: the welcome and accepted of a v2 backend were logged as malformed and dropped, and hello() waited its
    # whole timeout (60 s) to say "did not answer", and a job its timeout: what to upgrade came as a stray event
    import json
    import threading

    import zmq

    from handforge_shared.protocol import MessageType, decode

    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def backend_of_v2() -> None:  # answers each hello and submit as a v2 backend would
        while not stop.is_set():
            if not router.poll(50):
                continue
            identity, *frames = router.recv_multipart()
            message = decode(frames)
            if message.type in (MessageType.HELLO, MessageType.SUBMIT):
                reply = {"v": 2, "type": "welcome" if message.type == MessageType.HELLO else "accepted",
                         "id": message.id, "data": {"position": 0}, **({"job": message.job} if message.job else {})}
                router.send_multipart([identity, json.dumps(reply).encode()])

    thread = threading.Thread(target=backend_of_v2, daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", connect_timeout=10) as client:
            started = time.monotonic()
            held = client.submit("echo", arrays={"a": np.zeros(2**21, np.uint8)})  # held for the welcome's limits
            outcome = held.wait(30)
            assert isinstance(outcome, Error) and outcome.code == ErrorCode.UNSUPPORTED_VERSION, outcome
            with pytest.raises(JobFailed) as info:
                client.hello(timeout=30)
            assert info.value.code == ErrorCode.UNSUPPORTED_VERSION and "upgrade the client" in info.value.hint
            handle = client.submit("ping")
            outcome = handle.wait(30)
            assert isinstance(outcome, Error) and outcome.code == ErrorCode.UNSUPPORTED_VERSION, outcome
            assert "upgrade the client" in outcome.hint
            assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join(5)
        router.close(linger=0)


@pytest.mark.parametrize("answer", [b"HTTP/1.0 400 Bad Request\r\n\r\n", b""])
def test_a_program_that_is_no_backend_is_not_said_to_want_keys(answer):
    """An HTTP server (or a listener that says nothing) on the port was reported as a CurveZMQ key problem to a
    client that gave no keys (the fuzzing of 2026-12-07)."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(1024)
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", connect_timeout=2) as client:
            with pytest.raises(BackendUnavailable) as info:
                client.ping()
    finally:
        stop.set()
        thread.join(5)
        listener.close()
    assert info.value.code == "auth_failed" and "not a HandForge backend" in info.value.hint, info.value
    assert "another program on that port" in info.value.hint
