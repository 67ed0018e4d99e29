"""What later engines rely on: registering their own kinds and engines, progress previews, typed
errors from handlers, weights checked before queueing, and engine discovery that survives a broken
engine. The server runs in-process on a thread here, on real loopback sockets."""

from __future__ import annotations

import sys
import textwrap
import threading
import time

import numpy as np
import pytest

from handforge import config
from handforge.server import ArraySpec, Engine, Integer, JobError, JobKind, JobResult, Registry, Schema, invalid
from handforge.server import builtin_jobs
from handforge.server.app import Server, ServerConfig
from handforge.server.registry import discover_engines
from handforge_shared.client import Client, JobFailed, Progress, Result
from handforge_shared.protocol import ErrorCode

pytestmark = pytest.mark.timeout(120)
WEIGHTS = config.register(config.Setting(key="paint.weights", env="HANDFORGE_TEST_PAINT_WEIGHTS",
                                         help="weights of the test painter"))


def paint(ctx, params, arrays):
    image = np.zeros((8, 8, 3), np.uint8)
    for step in range(params["steps"]):
        image[step % 8] = 255
        ctx.progress((step + 1) / params["steps"], f"step {step + 1}", preview=image)  # the buffer is reused
    return JobResult({"steps": params["steps"], "device": ctx.device}, {"image": image})


def truncated_checkpoint(ctx, params, arrays):
    raise JobError(ErrorCode.MISSING_WEIGHTS, "the checkpoint is truncated", "download it again")


def exits(ctx, params, arrays):
    raise SystemExit(2)  # e.g. a library's argparse given the server's own argv


WARM_UPS: list[str] = []  # the thread each warm-up ran on


def _warm_up() -> None:
    time.sleep(0.2)  # slow enough that an early hello would overtake it
    WARM_UPS.append(threading.current_thread().name)


def _broken_capabilities() -> dict:
    raise RuntimeError("this engine's capabilities hook is broken")


class _CudaTensor:
    """What numpy makes of a torch tensor still on the GPU."""

    def __array__(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor first.")


class _UnencodableDict(dict):
    """A data value no check before the send foresees (its JSON encoding raises RuntimeError)."""

    def items(self):
        raise RuntimeError("changed while it was being encoded")


_UNCONVERTIBLE = {  # results whose send raised out of the socket loop (or was dropped by the client as malformed)
    "ragged": lambda: JobResult({}, {"keys": [[1, 2], [3]]}),
    "cuda": lambda: JobResult({}, {"vertices": _CudaTensor()}),
    "data": lambda: JobResult(["not", "a", "dict"]),
    "late": lambda: JobResult({"rigs": _UnencodableDict(a=1)}),
}


def _registry() -> Registry:
    registry = Registry()
    registry.add_engine(Engine("paint", "a test painter", warm_up=_warm_up,
                               capabilities=lambda: {"brushes": ["round", "flat"], "kinds": "not yours"}))
    registry.add_engine(Engine("gated", "needs weights", settings=(WEIGHTS.key,), capabilities=_broken_capabilities))

    def check(params, arrays):
        if params["steps"] % 2:
            raise invalid("params.steps", "must be even")

    registry.add_kind(JobKind("paint", paint, Schema(params={"steps": Integer(default=4, min=1, max=64)}),
                              device="gpu", engine="paint", check=check))
    registry.add_kind(JobKind("gated", paint, Schema(params={"steps": Integer(default=2)}), engine="gated"))
    registry.add_kind(JobKind("late_failure", truncated_checkpoint, engine="paint"))
    registry.add_kind(JobKind("unsendable", lambda ctx, p, a: JobResult({}, {"x": np.zeros(3, np.int16)}),
                              engine="paint"))
    for name, result in _UNCONVERTIBLE.items():
        registry.add_kind(JobKind(f"unconvertible.{name}", lambda ctx, p, a, result=result: result(), engine="paint"))
    registry.add_kind(JobKind("exits", exits, device="gpu", timeout=5, engine="paint"))
    registry.add_kind(JobKind("buggy_check", paint, check=lambda params, arrays: {}["a bug"], engine="paint"))
    registry.add_kind(JobKind("keys", lambda ctx, p, a: JobResult({"frames": int(a["keys"].shape[0])}),
                              Schema(arrays={"keys": ArraySpec(shape=("frames", 2, 61))}, dims={"frames": (2, 600)}),
                              engine="paint"))
    return registry


@pytest.fixture(scope="module")
def client():
    server = Server(ServerConfig(port=0, heartbeat_s=0.25, progress_interval_s=0.0), registry=_registry())
    endpoint = server.bind()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    with Client(endpoint) as c:
        yield c
    server.stop()
    thread.join(10)
    assert not thread.is_alive()


def test_engines_add_welcome_fields_and_are_warmed_up_once_on_a_thread_before_hello(client):
    welcome = client.hello()
    assert WARM_UPS and WARM_UPS[0] != threading.current_thread().name, "warm-up did not run before hello"
    assert welcome["brushes"] == ["round", "flat"]
    assert "paint" in welcome["kinds"]  # an engine cannot overwrite the server's own fields
    assert welcome["engines"]["gated"]["available"] is False  # a broken hook does not break hello
    client.hello()
    assert len(WARM_UPS) == 1


def test_progress_carries_previews_copied_at_each_step(client):
    progress = []
    result = client.run("paint", {"steps": 4}, on_progress=progress.append)
    assert [p.fraction for p in progress] == [0.25, 0.5, 0.75, 1.0]
    for step, event in enumerate(progress):
        assert isinstance(event, Progress) and event.preview["preview"].shape == (8, 8, 3)
        assert event.preview["preview"].dtype == np.uint8
        assert (event.preview["preview"][:, 0, 0] == 255).sum() == step + 1  # that step's image, not the last
    assert result.arrays["image"].shape == (8, 8, 3) and result.data["device"] == "cpu"


def test_cross_field_checks_run_before_queueing(client):
    with pytest.raises(JobFailed) as info:
        client.run("paint", {"steps": 3})
    assert info.value.code == ErrorCode.INVALID_PARAMS and "params.steps: must be even" in info.value.message


def test_an_engine_without_weights_is_refused_before_queueing(client, monkeypatch):
    monkeypatch.delenv(WEIGHTS.env, raising=False)
    with pytest.raises(JobFailed) as info:
        client.run("gated")
    assert info.value.code == ErrorCode.MISSING_WEIGHTS and "paint.weights is not set" in info.value.message
    assert "HANDFORGE_TEST_PAINT_WEIGHTS=<value>" in info.value.hint
    assert "\n" not in info.value.hint  # (one line, as the client and Blender's status line show it)
    engines = client.hello()["engines"]
    assert engines["gated"]["available"] is False and engines["paint"]["available"] is True


def test_a_bad_request_to_an_engine_without_weights_is_told_what_is_wrong_with_it_first(client, monkeypatch):
    # before: "paint.weights is not set" hid the request's own faults: a user fixed them one refusal at a time
    monkeypatch.delenv(WEIGHTS.env, raising=False)
    with pytest.raises(JobFailed) as info:
        client.run("gated", {"steps": "many"})
    assert info.value.code == ErrorCode.INVALID_PARAMS and "params.steps" in info.value.message


def test_typed_errors_from_handlers_and_unsendable_results(client):
    with pytest.raises(JobFailed) as info:
        client.run("late_failure")
    assert (info.value.code, info.value.message, info.value.hint) == (
        "missing_weights", "the checkpoint is truncated", "download it again")
    with pytest.raises(JobFailed) as info:
        client.run("unsendable")
    assert info.value.code == ErrorCode.INTERNAL and "int16" in info.value.message
    assert client.run("keys", arrays={"keys": np.zeros((24, 2, 61), np.float32)}).data["frames"] == 24


@pytest.mark.parametrize("name, needle", [("ragged", "arrays.keys is no array numpy can convert (ValueError"),
                                          ("cuda", "arrays.vertices is no array numpy can convert (TypeError: can't "
                                                   "convert cuda:0"),
                                          ("data", "its data is a list, not a dict"),
                                          ("late", "RuntimeError: changed while it was being encoded")])
def test_a_result_that_cannot_be_sent_fails_its_job_and_the_backend_carries_on(client, name, needle):
    """A ragged list or a CUDA tensor among a result's arrays raised out of the socket loop: the backend exited,
    cancelling every client's jobs; a data that is no dict reached the client, which dropped it as malformed."""
    other = client.submit("paint", {"steps": 2})
    with pytest.raises(JobFailed) as info:
        client.run(f"unconvertible.{name}", timeout=10)
    assert info.value.code == ErrorCode.INTERNAL and f"the result of unconvertible.{name} cannot be sent" in \
        info.value.message and needle in info.value.message, info.value.message
    assert isinstance(other.wait(10), Result) and client.run("paint", {"steps": 2}).data["steps"] == 2


def test_a_handler_that_exits_fails_its_job_and_its_worker_takes_the_next(client):
    """SystemExit is no Exception: it ended the worker thread silently, the job was reported as a timeout, and the
    GPU-class lane had lost its only worker (every later job waited until its own timeout)."""
    with pytest.raises(JobFailed) as info:
        client.run("exits", timeout=10)
    assert info.value.code == ErrorCode.INTERNAL and "raised SystemExit(2)" in info.value.message, info.value.message
    assert client.run("paint", {"steps": 2}, timeout=10).data["steps"] == 2  # the same lane: its worker lives


def test_a_bug_in_a_kinds_check_is_an_internal_error_for_that_job_and_the_backend_carries_on(client):
    """The reply names the submit (its job), so the client ends that job at once instead of waiting for
    an answer that never comes and calling the backend lost."""
    started = time.monotonic()
    with pytest.raises(JobFailed) as info:
        client.run("buggy_check", timeout=30)
    assert info.value.code == ErrorCode.INTERNAL and "submit" in info.value.message
    assert time.monotonic() - started < 5
    assert client.run("paint", {"steps": 2}).data["steps"] == 2


def test_engine_discovery_registers_good_engines_and_reports_broken_ones(tmp_path, monkeypatch):
    root = tmp_path / "fake_engines"
    for name, body in {"good": """
        from handforge.server import Engine, JobKind, JobResult
        def register_jobs(registry):
            registry.add_engine(Engine("good"))
            registry.add_kind(JobKind("good.run", lambda ctx, p, a: JobResult(), engine="good"))
        """, "broken": "import no_such_module_anywhere\n"}.items():
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "jobs.py").write_text(textwrap.dedent(body))
    (root / "__init__.py").write_text("")
    # a folder without __init__.py is no package: it was skipped unsaid (no engine, no word in welcome or doctor)
    (root / "loose").mkdir()
    (root / "loose" / "jobs.py").write_text("def register_jobs(registry):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    discover_engines(registry, package="fake_engines")
    assert [k.name for k in registry.kinds()] == ["good.run"]
    status = registry.engine("broken").status()
    assert not status.available and "no_such_module_anywhere" in status.reason
    status = registry.engine("loose").status()
    assert not status.available and f"{root / 'loose'} has no __init__.py" in status.reason, status
    assert "add an empty __init__.py" in status.hint
    for module in [m for m in sys.modules if m.startswith("fake_engines")]:
        monkeypatch.delitem(sys.modules, module)


def test_an_outside_engine_of_a_loaded_engines_name_is_not_loaded_and_the_loaded_one_keeps_working(tmp_path,
                                                                                                    monkeypatch):
    """`--engine-package mine` with an engine folder named as one of the backend's: the clash ("engine 'motion' is
    registered twice") replaced the backend's working engine with a failed one, and named neither package."""
    from handforge.server.builtin_jobs import default_registry

    (tmp_path / "mine" / "motion").mkdir(parents=True)
    (tmp_path / "mine" / "__init__.py").write_text("")
    (tmp_path / "mine" / "motion" / "__init__.py").write_text("")
    (tmp_path / "mine" / "motion" / "jobs.py").write_text(textwrap.dedent("""
        from handforge.server import Engine
        def register_jobs(registry):
            registry.add_engine(Engine("motion"))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = default_registry()
    kept = registry.engine("motion")
    discover_engines(registry, package="mine")
    assert registry.engine("motion") is kept and "motion.inbetween" in {k.name for k in registry.kinds()}
    status = registry.engine("motion (mine)").status()
    assert not status.available and status.reason == ("mine.motion is not loaded: engine 'motion' of "
                                                      "handforge.engines has its name"), status
    assert status.hint == "rename the folder mine.motion (an engine's name is its folder's)"
    for module in [m for m in sys.modules if m.startswith("mine")]:
        monkeypatch.delitem(sys.modules, module)


def test_an_engine_packages_settings_py_is_declared_as_a_built_in_engines_is(tmp_path, monkeypatch):
    """The README puts an engine's config keys in its settings.py; in an --engine-package that file was
    never imported, so an engine naming its key could not run ("names an undeclared setting")."""
    root = tmp_path / "outside_engines"
    (root / "own").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "own" / "__init__.py").write_text("")
    (root / "own" / "settings.py").write_text(textwrap.dedent("""
        from handforge import config
        config.register(config.Setting(key="own.weights", env="HANDFORGE_TEST_OWN_WEIGHTS", help="weights"))
        """))
    (root / "own" / "jobs.py").write_text(textwrap.dedent("""
        from handforge.server import Engine
        def register_jobs(registry):
            registry.add_engine(Engine("own", settings=("own.weights",)))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("HANDFORGE_TEST_OWN_WEIGHTS", str(tmp_path))
    registry = Registry()
    try:
        discover_engines(registry, package="outside_engines")
        assert registry.engine("own").status().available, registry.engine("own").status().reason
        assert "own.weights" in [s.key for s in config.settings()]
    finally:
        for module in [m for m in sys.modules if m.startswith("outside_engines")]:
            monkeypatch.delitem(sys.modules, module)
        config._SETTINGS.pop("own.weights", None)


def test_an_engines_kind_without_engine_is_refused_not_filed_under_builtin(tmp_path, monkeypatch):
    """JobKind's engine= left out (its default, "builtin") filed an engine's kind under builtin: doctor listed it there
    and the engine as "no job kinds", and the kind ran whatever the engine's settings said."""
    root = tmp_path / "unfiled_engines"
    (root / "wave").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "wave" / "__init__.py").write_text("")
    (root / "wave" / "jobs.py").write_text(textwrap.dedent("""
        from handforge.server import Engine, JobKind, JobResult
        def register_jobs(registry):
            registry.add_engine(Engine("wave"))
            registry.add_kind(JobKind("wave.sample", lambda ctx, p, a: JobResult()))  # engine="wave" forgotten
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    builtin_jobs.register_jobs(registry)  # (as the server's registry: builtin is there, so the kind was taken)
    try:
        discover_engines(registry, package="unfiled_engines")
    finally:
        for module in [m for m in sys.modules if m.startswith("unfiled_engines")]:
            monkeypatch.delitem(sys.modules, module)
    assert [k.name for k in registry.kinds()] == ["ping", "echo", "sleep", "sleep.gpu"]
    status = registry.engine("wave").status()
    assert not status.available
    assert status.reason == ("failed to load: unfiled_engines.wave.jobs registers wave.sample without its engine: "
                             "give JobKind(..., engine='wave')"), status


def test_every_job_kind_bounds_a_hands_pose_arrays_alike():
    """Each engine wrote its own bounds: interaction's anchor.transl stopped at 10 m where every other job
    takes 100 m (and motion kept its own copies of the numbers)."""
    from handforge.engines.hands.jobs import POSE_LIMITS
    from handforge.engines.interaction.jobs import ANCHOR_ROOM
    from handforge.server.builtin_jobs import default_registry

    seen = set()
    for kind in default_registry().kinds():
        for name, spec in kind.schema.arrays.items():
            field_name = name.rsplit(".", 1)[-1]
            if field_name in POSE_LIMITS:
                seen.add(kind.name)
                # (interaction's anchor 1 m inside: the hand it places by the anchor must fit the others' bound)
                limit = POSE_LIMITS[field_name] - (ANCHOR_ROOM if name == "anchor.transl" else 0)
                assert (spec.min, spec.max) == (-limit, limit), (kind.name, name)
    assert {"interaction.sample", "motion.inbetween", "export_renders", "forward_hands", "image.generate",
            "image.transfer"} <= seen, seen


def test_a_composite_engine_says_a_reason_all_its_parts_share_once(monkeypatch, tmp_path):
    """With image.sd_model unset every part of the transfer engine (reference's controlnet and attentionhand,
    ihpt) gave the same reason: the add-on's Transfer panel said it three times over (23 lines)."""
    from handforge.engines.image.settings import SD_MODEL
    from handforge.engines.transfer import jobs as transfer_jobs
    from handforge.server.registry import parts_reason, unset_reason

    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    for variable in ("HANDFORGE_SD_MODEL", "HANDFORGE_IMAGE_GUIDANCE", "HANDFORGE_CONTROLNETS"):
        monkeypatch.delenv(variable, raising=False)
    reason, _ = transfer_jobs._availability()
    assert reason == unset_reason(SD_MODEL.key, SD_MODEL.help), reason
    assert parts_reason({"a": "x", "b": "y"}) == "a: x; b: y"
