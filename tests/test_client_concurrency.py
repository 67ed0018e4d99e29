"""Several clients at once: 8 clients x 50 jobs, each client on its own thread; every job is answered
exactly once, with its own data."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from handforge_shared.client import TERMINAL_EVENTS, Result
from tests.support.server import running_server

pytestmark = pytest.mark.timeout(180)
CLIENTS, JOBS = 8, 50


def _one_client(server, index: int, report: dict) -> None:
    with server.client() as client:
        expected, terminal = {}, Counter()
        for j in range(JOBS):
            tag = np.full((16, 3), index * 1000 + j, np.float32)
            if j % 10 == 9:  # some jobs with progress, through the GPU-class lane
                handle = client.submit("sleep.gpu", {"steps": 2, "step_seconds": 0.001})
                expected[handle.id] = None
            else:
                handle = client.submit("echo", {"text": f"{index}/{j}"}, {"tag": tag})
                expected[handle.id] = (f"{index}/{j}", tag)
        end = time.monotonic() + 120
        outcomes = {}
        while len(outcomes) < JOBS and time.monotonic() < end:
            for event in client.poll(0.05):
                if isinstance(event, TERMINAL_EVENTS):
                    terminal[event.job] += 1
                    outcomes[event.job] = event
        for _ in range(5):  # anything arriving late would be a duplicate
            for event in client.poll(0.05):
                if isinstance(event, TERMINAL_EVENTS):
                    terminal[event.job] += 1
        report[index] = (expected, outcomes, terminal)


def test_eight_clients_fifty_jobs_each_every_job_answered_exactly_once():
    with running_server("--heartbeat", "0.5", "--max-queue", str(CLIENTS * JOBS)) as server:
        report: dict = {}
        threads = [threading.Thread(target=_one_client, args=(server, i, report)) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(150)
        assert len(report) == CLIENTS
        for index, (expected, outcomes, terminal) in report.items():
            assert set(outcomes) == set(expected), f"client {index}: missing {set(expected) - set(outcomes)}"
            assert set(terminal.values()) == {1}, f"client {index}: {terminal.most_common(3)}"
            for job, want in expected.items():
                got = outcomes[job]
                assert isinstance(got, Result), got
                if want is not None:
                    assert got.data["text"] == want[0]
                    np.testing.assert_array_equal(got.arrays["tag"], want[1])
        log = server.log()
        assert log.count(" accepted, ") == CLIENTS * JOBS
        assert log.count(" -> result after ") == CLIENTS * JOBS


def test_a_client_used_by_a_second_thread_while_the_first_is_in_a_call_is_refused_and_its_job_unharmed():
    """A script that shares one Client between threads: two threads on one ZeroMQ socket interleaved their
    frames ("the header describes 1 arrays but 3 binary frames follow it"), and jobs were reported lost ("the
    backend has no record of job ...") while the backend ran fine. The second thread is told at once instead; a
    client handed to another thread once the first is done with it works there."""
    with running_server() as server, server.client() as client:
        in_run, checked, outcome = threading.Event(), threading.Event(), []

        def first_thread():
            def hold(progress):  # (run() is still waiting for its job while this runs)
                in_run.set()
                checked.wait(30)
            outcome.append(client.run("sleep", {"steps": 2, "step_seconds": 0.01}, on_progress=hold))

        thread = threading.Thread(target=first_thread)
        thread.start()
        try:
            assert in_run.wait(30)
            for call in (lambda: client.submit("echo", {"text": "x"}), lambda: client.run("ping"), client.poll,
                         client.ping, client.hello, lambda: client.cancel("any"), client.close):
                with pytest.raises(RuntimeError, match="another thread.*one Client per thread"):
                    call()
        finally:
            checked.set()
            thread.join(30)
        assert isinstance(outcome[0], Result) and outcome[0].data["steps"] == 2
        assert client.run("echo", {"text": "handed over"}).data["text"] == "handed over"


def test_cancelling_many_jobs_that_had_just_finished_ends_each_with_one_outcome():
    """Cancels of jobs the backend had just finished are answered unknown_job; beyond the 256 cancels the client
    remembers, those answers came as a second outcome of jobs that had one (Result, then Error unknown_job)."""
    jobs = 300
    with running_server("--max-queue", str(jobs)) as server, server.client() as client:
        client.hello()
        handles = [client.submit("echo", {"text": str(i)}) for i in range(jobs)]
        deadline = time.monotonic() + 60
        while server.log().count(" -> result after ") < jobs:  # every job finished, none of it read yet
            assert time.monotonic() < deadline, "the backend did not finish the jobs"
            time.sleep(0.05)
        for handle in handles:
            handle.cancel()
        outcomes: Counter = Counter()
        while not all(h.done for h in handles):
            outcomes.update(e.job for e in client.poll(0.05) if isinstance(e, TERMINAL_EVENTS))
        client.ping()  # answered after every cancel sent before it
        outcomes.update(e.job for e in client.poll() if isinstance(e, TERMINAL_EVENTS))
        assert all(isinstance(h.outcome, Result) for h in handles)
        assert outcomes == Counter({h.id: 1 for h in handles})
