"""Round-trip latency and array throughput of the HandForge server + client, against bare pyzmq.

Both servers run as separate processes on loopback, measured in the same run:
- baseline: a pyzmq REP socket echoing every multipart message back (no header, no checks);
- HandForge: `handforge serve` with our client: a `ping` message (answered by the socket loop),
  a `ping` job (submit -> accepted -> worker -> result), and an `echo` job carrying a 512x512x4
  float32 array (4 MiB) both ways, as a rendered image or depth map would travel.

    python benchmarks/protocol.py [--repeats 2000] [--echo-repeats 60]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from handforge_shared.client import Client

BASELINE_SERVER = r"""
import sys, zmq
ctx = zmq.Context()
rep = ctx.socket(zmq.REP)
port = rep.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    frames = rep.recv_multipart(copy=False)
    rep.send_multipart(frames, copy=False)
"""


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean())}


def _timed(call, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        call()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def bench_baseline(repeats: int, echo_repeats: int, image: np.ndarray) -> dict[str, list[float]]:
    proc = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        sock = zmq.Context.instance().socket(zmq.REQ)
        sock.linger = 0
        sock.connect(f"tcp://127.0.0.1:{port}")
        small = b'{"v":1,"type":"ping","id":"1"}'

        def ping():
            sock.send(small)
            sock.recv()

        def echo():
            sock.send_multipart([small, image], copy=False)
            frames = sock.recv_multipart(copy=False)
            np.frombuffer(frames[1].buffer, np.float32)  # same view the client makes

        return {"ping": _timed(ping, repeats, 100), "echo": _timed(echo, echo_repeats, 5)}
    finally:
        proc.kill()
        proc.wait()


def bench_handforge(repeats: int, echo_repeats: int, image: np.ndarray) -> dict[str, list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix="handforge-bench-"))
    endpoint_file = workdir / "endpoint"
    with (workdir / "serve.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "handforge", "serve", "--port", "0", "--endpoint-file",
                                 str(endpoint_file)], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        while not endpoint_file.exists():
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {(workdir / 'serve.log').read_text()}")
            time.sleep(0.05)
        with Client(endpoint_file.read_text().strip()) as client:
            client.hello(timeout=120)  # the device probe is done: the server is fully up
            out = {"ping": _timed(client.ping, repeats, 100),
                   "job": _timed(lambda: client.run("ping"), repeats // 4, 50)}

            def echo():
                result = client.run("echo", arrays={"image": image})
                assert result.arrays["image"].shape == image.shape

            out["echo"] = _timed(echo, echo_repeats, 5)
            return out
    finally:
        proc.terminate()
        proc.wait(15)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000, help="round trips for the latency figures")
    parser.add_argument("--echo-repeats", type=int, default=60, help="round trips of the 4 MiB echo")
    args = parser.parse_args(argv)
    image = np.random.default_rng(0).random((512, 512, 4), dtype=np.float32)
    mib = image.nbytes / 2**20

    base = bench_baseline(args.repeats, args.echo_repeats, image)
    ours = bench_handforge(args.repeats, args.echo_repeats, image)

    print(f"loopback, {os.cpu_count()} CPU cores, pyzmq {zmq.__version__} / libzmq {zmq.zmq_version()}")
    print(f"{'round trip':34s} {'p50 ms':>8s} {'p99 ms':>8s}   {'p50 vs bare REQ/REP':>20s}")
    b = _stats(base["ping"])
    rows = [("bare pyzmq REQ/REP, small message", base["ping"]), ("HandForge ping message", ours["ping"]),
            ("HandForge ping job (submit..result)", ours["job"])]
    for label, seconds in rows:
        s = _stats(seconds)
        print(f"{label:34s} {s['p50']:8.3f} {s['p99']:8.3f}   {s['p50'] / b['p50']:19.2f}x")
    print()
    print(f"echo of a 512x512x4 float32 array ({mib:.0f} MiB each way)")
    be, oe = _stats(base["echo"]), _stats(ours["echo"])
    for label, s in (("bare pyzmq REQ/REP", be), ("HandForge echo job", oe)):
        throughput = 2 * mib / (s["p50"] / 1000)
        print(f"{label:34s} p50 {s['p50']:7.2f} ms  p99 {s['p99']:7.2f} ms  {throughput:7.0f} MiB/s (both ways)")
    print(f"{'ratio HandForge / bare (p50 time)':34s} {oe['p50'] / be['p50']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
