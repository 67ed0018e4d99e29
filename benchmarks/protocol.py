"""Round-trip latency and array throughput of the HandForge server + client, against bare pyzmq.

Both servers run as separate processes on loopback for the whole run, and the figures are taken
in blocks in which baseline and HandForge calls alternate one by one (b, h, b, h, ...; the side that
goes first alternates between blocks), so that both see the same machine state: a loopback round
trip stays 30-80 % slower for a few hundred milliseconds after a 4 MiB transfer, which charged
whichever side happened to be timed first after the echo row. Each ratio is the ratio of the two
sides' medians within a block; the min and median over blocks are printed.

- baseline: a bare DEALER/ROUTER exchange that JSON-decodes the request header and JSON-encodes a
  reply header on each side (the floor of any JSON-header protocol), echoing array frames back;
- HandForge: `handforge serve` with our client: a `ping` message (answered by the socket loop), a
  `ping` job (submit -> accepted -> worker -> result), and an `echo` job carrying a 512x512x4
  float32 array (4 MiB) both ways, as a rendered image or depth map would travel.

    python benchmarks/protocol.py [--blocks 10] [--pings 300] [--echoes 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import zmq

from handforge_shared.client import Client
from handforge.scratch import scratch_folder

BASELINE_SERVER = r"""
import json, zmq
ctx = zmq.Context()
router = ctx.socket(zmq.ROUTER)
port = router.bind_to_random_port("tcp://127.0.0.1")
print(port, flush=True)
while True:
    identity, header, *arrays = router.recv_multipart(copy=False)
    request = json.loads(header.bytes)
    reply = json.dumps({"v": 1, "type": "pong", "id": request["id"]}).encode()
    router.send_multipart([identity, reply, *arrays], copy=False)
"""


class Baseline:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", BASELINE_SERVER], stdout=subprocess.PIPE, text=True)
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(f"tcp://127.0.0.1:{int(self.proc.stdout.readline())}")
        self.ids = iter(range(10**9))

    def ping(self) -> None:
        import json

        self.sock.send(json.dumps({"v": 1, "type": "ping", "id": str(next(self.ids))}).encode())
        json.loads(self.sock.recv())

    def echo(self, image: np.ndarray) -> None:
        import json

        self.sock.send_multipart([json.dumps({"v": 1, "type": "submit", "id": str(next(self.ids))}).encode(), image],
                                 copy=False)
        header, data = self.sock.recv_multipart(copy=False)
        json.loads(header.bytes)
        np.frombuffer(data.buffer, np.float32).reshape(image.shape)  # the same view the client makes

    def close(self) -> None:
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


class HandForge:
    def __init__(self) -> None:
        workdir = scratch_folder("bench", remove_at_exit=True)
        endpoint_file = workdir / "endpoint"
        with (workdir / "serve.log").open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "handforge", "serve", "--port", "0", "--endpoint-file",
                                          str(endpoint_file)], stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        while not endpoint_file.exists():
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited: {(workdir / 'serve.log').read_text()}")
            time.sleep(0.05)
        self.client = Client(endpoint_file.read_text().strip())
        self.client.hello(timeout=120)  # the device probe is done: the server is fully up

    def ping(self) -> None:
        self.client.ping()

    def job(self) -> None:
        self.client.run("ping")

    def echo(self, image: np.ndarray) -> None:
        assert self.client.run("echo", arrays={"image": image}).arrays["image"].shape == image.shape

    def close(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(15)


def _alternating_medians_ms(first, second, repeats: int) -> tuple[float, float]:
    """Median time of ``first`` and of ``second`` over ``repeats`` calls each, made alternately."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for side, call in enumerate((first, second)):
            start = time.perf_counter()
            call()
            times[side].append(time.perf_counter() - start)
    return statistics.median(times[0]) * 1000, statistics.median(times[1]) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10, help="blocks of alternating calls (the first side alternates)")
    parser.add_argument("--pings", type=int, default=300, help="round trips per block for the latency figures")
    parser.add_argument("--echoes", type=int, default=10, help="4 MiB echoes per block")
    args = parser.parse_args(argv)
    image = np.random.default_rng(0).random((512, 512, 4), dtype=np.float32)
    base, ours = Baseline(), HandForge()
    rows: dict[str, list[tuple[float, float]]] = {"ping message": [], "ping job": [], "echo 4 MiB job": []}
    try:
        for call in (base.ping, ours.ping, ours.job):  # warm-up
            for _ in range(50):
                call()
        for _ in range(3):
            base.echo(image), ours.echo(image)
        for block in range(args.blocks):
            first_base = block % 2 == 0
            for name, b, o, n in (("ping message", base.ping, ours.ping, args.pings),
                                  ("ping job", base.ping, ours.job, args.pings // 4),
                                  ("echo 4 MiB job", lambda: base.echo(image), lambda: ours.echo(image), args.echoes)):
                if first_base:
                    tb, to = _alternating_medians_ms(b, o, n)
                else:
                    to, tb = _alternating_medians_ms(o, b, n)
                rows[name].append((tb, to))
    finally:
        base.close()
        ours.close()

    print(f"loopback, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}, pyzmq {zmq.__version__} / "
          f"libzmq {zmq.zmq_version()}; {args.blocks} blocks of alternating calls, medians per block")
    print("baseline: bare DEALER/ROUTER, one JSON header decoded and encoded per side (arrays echoed as frames)")
    print(f"{'round trip':16s} {'baseline ms':>18s} {'HandForge ms':>18s} {'ratio (per block)':>20s}")
    print(f"{'':16s} {'min':>8s} {'median':>9s} {'min':>8s} {'median':>9s} {'min':>9s} {'median':>10s}")
    for name, pairs in rows.items():
        tb, to = [p[0] for p in pairs], [p[1] for p in pairs]
        ratios = [o / b for b, o in pairs]
        print(f"{name:16s} {min(tb):8.3f} {statistics.median(tb):9.3f} {min(to):8.3f} {statistics.median(to):9.3f} "
              f"{min(ratios):8.2f}x {statistics.median(ratios):9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
