"""Every job kind the backend registers, sent hostile parameters and arrays one field at a time through a
live server (tiny weights for every engine): each request is refused at once with a typed error naming
a field, or accepted and ended with a result, a typed error or a cancel; never ``internal``, a traceback
in the server's log, a hang or a dead server. (The message layer itself: tests/test_server_fuzz.py.)

The cases are a fixed-seed sample of every single change ``tests.support.hostile_params`` makes of each
kind's valid request (about 10,000 in all): its ``JobKind.example``, else the one written here in ``BASES``.
To explore: HANDFORGE_FUZZ_CASES=all runs every one of them (an hour or more), a number that many per kind;
HANDFORGE_FUZZ_ONLY=text only those whose description holds the text; HANDFORGE_FUZZ_GRACE=seconds lets
accepted jobs run that long before they are cancelled (to reach deeper into the jobs; by default 5 s, in which
the tiny weights' jobs end, and half a second for the sleeps).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from handforge.engines.checkpoints import save_model
from handforge.render.camera import Camera, look_at
from handforge.server import default_registry
from handforge.server.registry import Registry, Request, discover_engines
from handforge_shared import pose_library
from handforge_shared.client import pose_arrays
from handforge_shared.poses import hand_array_name
from handforge_shared.protocol import Message, MessageType, ProtocolError, encode
from handforge_shared.rotations import axis_angle_to_matrix
from tests.support import tiny_sd
from tests.support.hostile_params import Mutation, mutations
from tests.support.motion_keys import keyed_ends
from tests.support.server import RawPeer, running_server
from tests.support.synthetic_mano import write_synthetic_mano
from tests.support.threads import torch_threads

CASES = os.environ.get("HANDFORGE_FUZZ_CASES", "10")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(0 if CASES == "all" else 600)]
REPO = Path(__file__).resolve().parents[1]
SEED = 20261204
REFUSALS = {"invalid_params", "bad_message", "too_large", "missing_weights"}
SIZE = tiny_sd.IMAGE_SIZE
FRAMES = 6
# how long an accepted job may run before it is cancelled (its cancel is then what is checked): long enough for
# the tiny weights' jobs to end, so what fails after sampling (result packing, labels) is seen too (at 0.5 s the
# motion jobs were all cancelled first); the sleeps, asked for up to days, are cancelled at once
GRACE_S = float(os.environ.get("HANDFORGE_FUZZ_GRACE", "5"))
SLEEP_GRACE_S = float(os.environ.get("HANDFORGE_FUZZ_GRACE", "0.5"))
ENDED_WITHIN_S = 120.0  # after the cancel: longer is a hang


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from handforge.engines.motion.model import MotionDenoiser
    from handforge.engines.motion.representation import FRAME_DIM
    from handforge.engines.transfer.model import TargetGenerator
    from handforge.hands import load_hand_model
    from tests.support.interaction import tiny_denoiser

    root = tmp_path_factory.mktemp("weights")
    with torch_threads(1):
        sd = tiny_sd.build_sd(root / "sd")
        guidance = tiny_sd.build_controlnet(root / "guidance", sd, seed=1)
        tiny_sd.build_controlnet(root / "controlnets" / "control_sd15_depth", sd, seed=2)
        torch.manual_seed(0)
        generator = save_model(TargetGenerator(cross_attention_dim=32, image_size=32, backbone_channels=(8, 16),
                                               feature_dim=16, num_layers=1, num_heads=2), root / "target_generator")
        motion = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64,
                                           data_mean=[0.0] * FRAME_DIM, data_std=[1.0] * FRAME_DIM), root / "motion")
        interaction = save_model(tiny_denoiser(load_hand_model("open"), steps=0), root / "interaction")
    env = {"HANDFORGE_SD_MODEL": str(sd), "HANDFORGE_IMAGE_GUIDANCE": str(guidance),
           "HANDFORGE_CONTROLNETS": str(root / "controlnets"), "HANDFORGE_TRANSFER_TARGET_GENERATOR": str(generator),
           "HANDFORGE_MOTION_CHECKPOINT": str(motion), "HANDFORGE_INTERACTION_CHECKPOINT": str(interaction),
           "HANDFORGE_MANO_DIR": str(write_synthetic_mano(root / "mano")),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def welcome(server):
    with server.client() as client:
        return client.hello()


# ------------------------------------------------------------------------------ a valid request per kind
def _camera() -> dict[str, np.ndarray]:
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    K = np.array([[150.0, 0, SIZE / 2], [0, 150.0, SIZE / 2], [0, 0, 1]])
    return {"camera.K": K, "camera.R": R, "camera.t": t}


def _image(out: Path):
    return ({"prompt": "a man holding two hands", "width": SIZE, "height": SIZE, "steps": 1},
            {**_camera(), **pose_arrays({"right": pose_library.get("fist", side="right")})})


def _transfer(out: Path):
    source = np.random.default_rng(0).integers(0, 256, (32, 24, 3), dtype=np.uint8)
    camera = Camera(*(_camera()[k] for k in ("camera.K", "camera.R", "camera.t")), 24, 32).to_dict()
    # the source's pose as a HandForge image's labels: the JSON in this string is fuzzed too
    labels = {"hands": {"left": {"params_world": pose_library.get("fist", side="left").to_dict()}}, "camera": camera,
              "hand_model": "open"}
    return ({"width": SIZE, "height": SIZE, "steps": 1, "source_labels": json.dumps(labels)},
            {**_camera(), "source.image": source, **pose_arrays({"right": pose_library.get("point", side="right")})})


def _export(out: Path):
    rng = np.random.default_rng(0)
    arrays = {}
    for side, x in (("left", -0.09), ("right", 0.09)):
        arrays[hand_array_name(side, "global_orient")] = rng.normal(0, 0.3, (2, 3)).astype(np.float32)
        arrays[hand_array_name(side, "hand_pose")] = rng.normal(0, 0.2, (2, 45)).astype(np.float32)
        arrays[hand_array_name(side, "transl")] = np.tile([x, 0.0, 0.0], (2, 1)).astype(np.float32)
        matrix = np.eye(4)
        matrix[:3, :3] = axis_angle_to_matrix(np.array([0.3, -0.2, 0.5]))
        arrays[hand_array_name(side, "matrix_world")] = np.tile(matrix, (2, 1, 1))
    cameras = np.tile(np.eye(4), (1, 2, 1, 1))
    cameras[..., 2, 3] = 0.5
    arrays.update({"camera.matrix_world": cameras, "camera.lens": np.full((1, 2), 35.0),
                   "camera.sensor": np.tile([36.0, 24.0], (1, 2, 1)), "camera.shift": np.zeros((1, 2, 2)),
                   "frames": np.array([1, 3])})
    return {"out": str(out / "renders"), "width": 32, "height": 24, "engine": "none",
            "cameras": [{"name": "A", "sensor_fit": "AUTO"}]}, arrays


def _trajectory(out: Path):
    keys = keyed_ends(FRAMES)
    return {"steps": 2}, {k: v for k, v in keys.items() if k.endswith((".transl", ".global_orient", ".betas"))}


def _anchor() -> dict[str, np.ndarray]:
    pose = pose_library.get("pinch", side="left")
    return {f"anchor.{f}": np.asarray(getattr(pose, f), np.float32)
            for f in ("global_orient", "hand_pose", "betas", "transl")}


BASES = {
    "ping": lambda out: ({}, {}),
    "echo": lambda out: ({"text": "hi", "data": {"a": [1, 2]}}, {"a": np.arange(3, dtype=np.float32)}),
    "sleep": lambda out: ({"steps": 2, "step_seconds": 0.01}, {}),
    "sleep.gpu": lambda out: ({"steps": 2, "step_seconds": 0.01}, {}),
    "hand_model": lambda out: ({"model": "open", "sides": ["left", "right"]}, {"betas": np.zeros(10, np.float32)}),
    "forward_hands": lambda out: ({"model": "mano"}, pose_arrays({"right": pose_library.get("fist", side="right"),
                                                                  "left": pose_library.get("flat", side="left")})),
    "export_renders": _export,
    "image.generate": _image,
    "image.transfer": _transfer,
    "interaction.sample": lambda out: ({"anchor_side": "left", "count": 2, "steps": 2, "guidance_steps": 1,
                                        "redraws": 0}, _anchor()),
    "motion.inbetween": lambda out: ({"steps": 2}, keyed_ends(FRAMES)),
    "motion.trajectory": _trajectory,
    "motion.generate": lambda out: ({"num_frames": FRAMES, "steps": 2}, {"right.betas": np.zeros(10, np.float32)}),
}


FRESH_FOLDER = {"export_renders": "out"}  # kind -> its parameter naming a folder it writes


def valid_requests(registry: Registry) -> dict[str, Callable[[Path], Request]]:
    """Each kind's valid request, given a scratch folder: the kind's own ``example``, else its entry in ``BASES``
    (a new engine's kinds were refused here until this file had a request for each of them)."""
    own = {kind.name: (lambda out, example=kind.example: example()) for kind in registry.kinds() if kind.example}
    return {**BASES, **own}


REQUESTS = valid_requests(default_registry())


def test_every_registered_kind_is_fuzzed(welcome):
    assert set(welcome["kinds"]) == set(REQUESTS), "give each job kind an example= (JobKind) or a request in BASES"
    assert all(engine["available"] for engine in welcome["engines"].values()), welcome["engines"]


# ------------------------------------------------------------------------------ sending and judging
_ids = itertools.count(1)


def _frames(kind: str, job: str, mutation: Mutation) -> list:
    message = Message(MessageType.SUBMIT, id=f"s{job}", job=job, kind=kind, params=mutation.params,
                      arrays=mutation.arrays)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20_000))  # (params nested 5000 deep: the server decides what to make of them)
    try:
        return encode(message)
    finally:
        sys.setrecursionlimit(limit)


def _next(peer: RawPeer, job: str, timeout: float) -> Message:
    """The next message about ``job`` (heartbeats and progress of it included)."""
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"nothing about job {job} within {timeout:g} s")
        reply = peer.recv(timeout=left)
        # (a header the server cannot parse is answered without its id or job: one request is out at a time)
        if reply.job == job or reply.id == f"s{job}" or (reply.type == MessageType.ERROR and reply.job is None):
            return reply


def run_case(server, peer: RawPeer, kind: str, mutation: Mutation, grace: float = GRACE_S) -> str:
    """Submit one hostile request and return what became of it; raise AssertionError for what must not be."""
    job = f"j{next(_ids)}"
    if kind in FRESH_FOLDER and mutation.where != f"params.{FRESH_FOLDER[kind]}":
        # each request its own folder: one already holding another request's export refuses every later one
        name = FRESH_FOLDER[kind]
        mutation = replace(mutation, params={**mutation.params, name: f"{mutation.params[name]}-{job}"})
    try:
        frames = _frames(kind, job, mutation)
    except ProtocolError:  # the client library itself refuses to send it: nothing for the server to judge
        return "unsendable"
    logged = len(server.log())
    peer.send(frames)
    reply = _next(peer, job, 60)
    if reply.type == MessageType.ERROR:
        data = reply.data
        assert data["code"] in REFUSALS, f"refused as {data['code']}: {data['message']}"
        said = data["message"] + " " + data.get("hint", "")
        if data["code"] == "invalid_params":
            named = data.get("field") or data["message"].split(":")[0]
            assert named.startswith(("params", "arrays")), f"the refusal names no field: {said}"
        outcome = f"refused {data['code']}"
    else:
        assert reply.type == MessageType.ACCEPTED, reply
        end = time.monotonic() + grace
        outcome = None
        while outcome is None:
            try:
                event = _next(peer, job, max(0.01, end - time.monotonic()))
            except TimeoutError:
                break
            if event.type in (MessageType.RESULT, MessageType.CANCELLED):
                outcome = str(event.type)
            elif event.type == MessageType.ERROR:
                outcome = f"failed {event.data['code']}: {event.data['message']}"
        if outcome is None:
            peer.send(Message(MessageType.CANCEL, id=f"c{job}", job=job))
            end = time.monotonic() + ENDED_WITHIN_S
            while outcome is None:
                event = _next(peer, job, end - time.monotonic())
                if event.type in (MessageType.RESULT, MessageType.CANCELLED):
                    outcome = str(event.type)
                elif event.type == MessageType.ERROR and event.id != f"c{job}":  # (an unknown_job: it had ended)
                    outcome = f"failed {event.data['code']}: {event.data['message']}"
        assert not outcome.startswith("failed internal"), outcome
    log = server.log()[logged:]
    assert "Traceback" not in log and "unexpected failure" not in log, log[-3000:]
    assert server.alive
    return outcome


def _cases(kind: str, schema: dict, params: dict, arrays: dict) -> list[Mutation]:
    every = mutations(schema, params, arrays)
    if kind.startswith("sleep"):  # a diagnostics sleep asked to fail at a step it reaches fails as internal: its use
        every = [m for m in every if not (type(m.params.get("fail_at")) is int and m.params["fail_at"] <= 2)]
    if os.environ.get("HANDFORGE_FUZZ_ONLY"):  # e.g. "source_labels": the cases whose description holds it
        every = [m for m in every if os.environ["HANDFORGE_FUZZ_ONLY"] in str(m)]
    if CASES == "all":
        return every
    return random.Random(f"{SEED} {kind}").sample(every, min(len(every), int(CASES)))


def _batched_labels(out: Path) -> Mutation:
    params, arrays = _transfer(out)
    labels = json.loads(params["source_labels"])
    pose = labels["hands"]["left"]["params_world"]
    labels["hands"]["left"]["params_world"] = {name: [values, values] for name, values in pose.items()}
    arrays = {k: v for k, v in arrays.items() if not k.startswith("right.")}
    return Mutation("params.source_labels", "hands.left.params_world a batch of two poses (engine ihpt)",
                    {**params, "engine": "ihpt", "source_labels": json.dumps(labels)},
                    {**arrays, **pose_arrays({"left": pose_library.get("fist", side="left")})})


# what the fuzzer found, always run: (kind, the request made of the kind's valid one)
FOUND = [
    # the Gaussian kernel of a σ below float32's range was 0/0: the motion NaN, an internal error
    ("motion.inbetween",
     lambda out: Mutation("params.smoothing", "5e-324", {"steps": 2, "smoothing": 5e-324}, keyed_ends(FRAMES))),
    # a batch of poses per hand in the source's labels failed inside the ihpt engine as internal
    ("image.transfer", _batched_labels),
]


@pytest.mark.parametrize("kind, case", FOUND, ids=[kind for kind, _ in FOUND])
def test_what_the_fuzzer_found(server, kind, case, tmp_path):
    with RawPeer(server.endpoint) as peer:
        outcome = run_case(server, peer, kind, case(tmp_path), grace=ENDED_WITHIN_S)
    assert outcome in ("result", "refused invalid_params")


@pytest.mark.parametrize("kind", sorted(REQUESTS))
def test_hostile_params_get_a_typed_answer(server, welcome, kind, tmp_path):
    fuzz_kind(server, welcome, kind, REQUESTS[kind](tmp_path))


def fuzz_kind(server, welcome: dict, kind: str, request: Request) -> None:
    """The valid ``request`` of ``kind`` ends with a result, and each of its sampled hostile variants gets a typed
    answer from ``server``, which stays up."""
    params, arrays = request
    cases = _cases(kind, welcome["kinds"][kind], params, arrays)
    failures, outcomes = [], {}
    with RawPeer(server.endpoint) as peer:
        assert run_case(server, peer, kind, Mutation("(none)", "the valid request", params, arrays),
                        grace=ENDED_WITHIN_S) == "result"
        for mutation in cases:
            try:
                outcome = run_case(server, peer, kind, mutation,
                                   grace=SLEEP_GRACE_S if kind.startswith("sleep") else GRACE_S)
            except (AssertionError, TimeoutError) as exc:
                failures.append(f"{kind} {mutation}: {type(exc).__name__}: {str(exc)[:1500]}")
                print(failures[-1], flush=True)
                if not server.alive:
                    break
                continue
            outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
    print(f"{kind}: {len(cases)} cases: {outcomes}")
    assert not failures, "\n".join(failures)
    with server.client() as client:
        assert client.run("ping").data["pong"]


def test_a_new_engines_kind_is_fuzzed_from_its_own_example(tmp_path, monkeypatch):
    """README's "Adding an engine" keeps an engine in its folder, yet a new engine's kind failed
    test_every_registered_kind_is_fuzzed until this file had a request for it; its JobKind's example now is one."""
    root = tmp_path / "fuzz_own_engines"
    (root / "tiny").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "tiny" / "__init__.py").write_text("")
    (root / "tiny" / "jobs.py").write_text(textwrap.dedent("""
        import numpy as np
        from handforge.server import ArraySpec, Engine, Integer, JobKind, JobResult, Schema

        def scale(ctx, params, arrays):
            ctx.check_cancelled()
            return JobResult({}, {"y": arrays["x"] * params["factor"]})

        def register_jobs(registry):
            registry.add_engine(Engine("tiny"))
            registry.add_kind(JobKind(
                "tiny.scale", scale, engine="tiny",
                schema=Schema(params={"factor": Integer(default=2, min=1, max=10)},
                              arrays={"x": ArraySpec(shape=("n", 3))}, dims={"n": (1, 64)}),
                example=lambda: ({"factor": 3}, {"x": np.ones((4, 3), np.float32)})))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    try:
        discover_engines(registry, package="fuzz_own_engines")
    finally:
        for module in [m for m in sys.modules if m.startswith("fuzz_own_engines")]:
            monkeypatch.delitem(sys.modules, module)
    requests = valid_requests(registry)
    assert "tiny.scale" in requests
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--engine-package", "fuzz_own_engines", "--devices", "cpu", env=env) as own:
        with own.client() as client:
            welcome = client.hello()
        fuzz_kind(own, welcome, "tiny.scale", requests["tiny.scale"](tmp_path))
