"""The server's model cache on its own: once per (key, device), LRU under a byte budget, reload when
the checkpoint changes on disk, one load for concurrent requests, and loading as job progress."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from handforge.server.jobs import JobContext
from handforge.server.model_cache import ModelCache, model_bytes, parse_size


def linear_loader(size: int, calls: list):
    def load(device: str) -> torch.nn.Module:
        calls.append(device)
        return torch.nn.Linear(size, size, bias=False).to(device)  # size * size * 4 bytes
    return load


def test_a_model_loads_once_per_key_and_device():
    cache, calls = ModelCache(), []
    a = cache.get("a", linear_loader(4, calls), "cpu")
    assert cache.get("a", linear_loader(4, calls), "cpu") is a
    assert calls == ["cpu"] and cache.loads == 1
    assert cache.get("a", linear_loader(4, calls), "meta") is not a  # another device: its own copy
    assert calls == ["cpu", "meta"] and model_bytes(a) == 64


def test_least_recently_used_models_are_evicted_per_device_under_the_budget():
    cache, calls = ModelCache(budget_bytes=2 * 64 + 10), []
    for key in ("a", "b"):
        cache.get(key, linear_loader(4, calls), "cpu")
    cache.get("a", linear_loader(4, calls), "cpu")       # a is now the most recently used
    cache.get("c", linear_loader(4, calls), "cpu")       # over budget: b goes
    assert cache.cached() == [("a", "cpu"), ("c", "cpu")] and cache.evictions == 1
    cache.get("d", linear_loader(4, calls), "meta")      # other device, own budget: nothing evicted
    assert cache.used("cpu") == 128 and cache.used("meta") == 64 and cache.evictions == 1
    big = cache.get("big", linear_loader(8, calls), "cpu")  # larger than the budget alone: loaded, alone
    assert cache.cached() == [("d", "meta"), ("big", "cpu")] and big.weight.shape == (8, 8)


def test_models_filling_the_budget_exactly_are_all_kept():
    # only loading *past* the budget evicts: two models of 64 and 144 bytes fit a budget of 208 to the byte
    cache, calls = ModelCache(budget_bytes=64 + 144), []
    cache.get("a", linear_loader(4, calls), "cpu")
    cache.get("b", linear_loader(6, calls), "cpu")
    assert cache.cached() == [("a", "cpu"), ("b", "cpu")] and cache.evictions == 0
    assert cache.used("cpu") == cache.budget_bytes == 208
    cache.get("c", linear_loader(1, calls), "cpu")       # 4 bytes past it: the least recently used goes
    assert cache.cached() == [("b", "cpu"), ("c", "cpu")] and cache.evictions == 1


def one_file_checkpoint(tmp_path):
    """A checkpoint folder of one file, ``w.bin`` (rewrite it to change the checkpoint)."""
    weights = tmp_path / "ckpt"
    weights.mkdir()
    (weights / "w.bin").write_bytes(b"1")
    return weights


def test_a_changed_checkpoint_is_loaded_again(tmp_path):
    weights = one_file_checkpoint(tmp_path)
    cache, calls = ModelCache(), []
    first = cache.get("m", linear_loader(2, calls), checkpoint=weights)
    assert cache.get("m", linear_loader(2, calls), checkpoint=weights) is first
    (weights / "w.bin").write_bytes(b"22")
    second = cache.get("m", linear_loader(2, calls), checkpoint=weights)
    assert second is not first and len(calls) == 2 and cache.cached() == [("m", "cpu")]


class Wrapper:
    """What an engine caches on top of cached models (an interaction pipeline on a denoiser and a hand model)."""

    def __init__(self, *parts):
        self.parts = {"first": parts[0], "rest": list(parts[1:])}


def test_an_entry_built_on_a_reloaded_model_is_built_again_on_the_new_one(tmp_path):
    # an interaction pipeline cached on the hand model kept the old one after MANO's files changed, until a restart
    weights = one_file_checkpoint(tmp_path)
    cache, calls = ModelCache(), []
    first = cache.get("hands", linear_loader(2, calls), checkpoint=weights)
    wrapper = cache.get("pipeline", lambda device: Wrapper(first), "cpu")
    assert cache.get("pipeline", lambda device: Wrapper(first), "cpu") is wrapper
    (weights / "w.bin").write_bytes(b"22")
    second = cache.get("hands", linear_loader(2, calls), checkpoint=weights)
    assert cache.cached() == [("hands", "cpu")]  # the pipeline went with the model it holds
    rebuilt = cache.get("pipeline", lambda device: Wrapper(second), "cpu")
    assert rebuilt.parts["first"] is second and cache.get("pipeline", lambda device: None, "cpu") is rebuilt
    # a job that got the old model before its reload builds on it: returned to that job, not kept for the next
    late = cache.get("late", lambda device: Wrapper(torch.nn.Linear(1, 1), first), "cpu")
    assert late.parts["rest"] == [first] and ("late", "cpu") not in cache.cached()


def test_an_evicted_model_is_not_kept_alive_by_an_entry_built_on_it():
    # an interaction pipeline (0 bytes of its own) kept the denoiser the cache had evicted under it: memory past
    # --model-memory by a whole model
    import gc
    import weakref

    net_bytes = 64 * 64 * 4
    cache, calls, nets = ModelCache(budget_bytes=net_bytes + 10), [], []
    for name in ("a", "b"):
        net = cache.get(f"net {name}", linear_loader(64, calls), "cpu")
        cache.get(f"pipeline {name}", lambda device: Wrapper(net), "cpu")
        nets.append(weakref.ref(net))
    del net
    gc.collect()
    assert cache.cached() == [("net b", "cpu"), ("pipeline b", "cpu")] and cache.evictions == 2
    assert nets[0]() is None and nets[1]() is not None  # evicted, and freed with what was built on it
    # a model built on cached ones, over the budget with its own: what it is built on stays (the job needs it)
    big = cache.get("pipeline c", lambda device: {"net": nets[1](), "own": torch.nn.Linear(64, 64)}, "cpu")
    assert big["net"] is nets[1]() and cache.cached() == [("net b", "cpu"), ("pipeline c", "cpu")]


def test_concurrent_requests_for_one_model_load_it_once():
    cache, calls, started = ModelCache(), [], threading.Event()

    def slow(device):
        started.set()
        time.sleep(0.3)
        calls.append(device)
        return torch.nn.Linear(2, 2)

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("slow", slow))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4 and all(m is got[0] for m in got)


def test_a_slots_load_lock_goes_once_its_load_is_done_and_no_one_waits():
    """The cache kept a lock per (key, device) ever loaded, checkpoint paths among the keys: a long-lived server
    loading many checkpoints grew by one lock each, whether they stayed cached or not."""
    cache, calls = ModelCache(budget_bytes=64), []
    for k in range(50):  # (each evicts the one before: only the locks were left)
        cache.get(("checkpoint", f"/runs/{k}/model"), linear_loader(4, calls), "cpu")
    assert len(calls) == 50 and cache._loading == {}

    def failing(device):
        raise OSError("no such checkpoint")

    with pytest.raises(OSError):
        cache.get("broken", failing)
    assert cache._loading == {}  # (a load that failed too)


def test_threads_asking_for_one_model_never_load_it_twice_at_once_while_its_locks_come_and_go():
    """Racing requests, key after key, the first load of each failing: each key's lock is made and removed while
    threads wait for it or arrive at it, and no two loads of one model ever run at once (a lock removed while a
    thread still waited on it let a later request load beside it), nor does a loaded model load again."""
    rounds, workers = 30, 6
    cache, barrier, counted = ModelCache(), threading.Barrier(workers), threading.Lock()
    running, most, attempts = [0] * rounds, [0] * rounds, [0] * rounds
    got: list[list] = [[] for _ in range(rounds)]

    def loader(k):
        def load(device):
            with counted:
                running[k] += 1
                most[k], attempts[k] = max(most[k], running[k]), attempts[k] + 1
                first = attempts[k] == 1
            try:
                time.sleep(0.004)
                if first:
                    raise OSError("the first load fails: the waiting requests load it again")
                return torch.nn.Linear(2, 2)
            finally:
                with counted:
                    running[k] -= 1
        return load

    def ask(worker):
        for k in range(rounds):
            barrier.wait(10)
            time.sleep(0.0015 * worker)  # some arrive while the first load runs, some as it fails, some after
            try:
                got[k].append(cache.get(("m", k), loader(k)))
            except OSError:
                pass

    threads = [threading.Thread(target=ask, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert most == [1] * rounds and attempts == [2] * rounds, (most, attempts)
    assert all(models and all(m is models[0] for m in models) for models in got)
    assert cache._loading == {}


def test_a_job_context_reports_loading_as_progress():
    events = []
    cache = ModelCache()
    ctx = JobContext("j1", "kind", lambda f, m, p: events.append((f, m)), models=cache)
    ctx.model("hands/open", linear_loader(2, []))
    assert events == [(0.0, "loading hands/open")] and ctx.loaded == ["hands/open"]
    again = JobContext("j2", "kind", lambda f, m, p: events.append((f, m)), models=cache)
    again.model("hands/open", linear_loader(2, []))
    assert again.loaded == [] and len(events) == 1
    # a model loaded mid-job (pose transfer's target generator after its background) is said at the bar's place:
    # it was said at 0.0, and the bar went back to the start
    later = JobContext("j3", "kind", lambda f, m, p: events.append((f, m)), models=cache)
    later.progress(0.5, "background: step 2/2", force=True)
    later.model("hands/mano", linear_loader(2, []))
    assert events[-2:] == [(0.5, "background: step 2/2"), (0.5, "loading hands/mano")]


def test_a_job_says_what_it_loads_by_its_label_and_the_log_by_its_key(caplog):
    """The user read the cache's key ("loading hands open", "loading image /a/sd+/b/cn torch.float32"): the
    hands engine's job says "loading the open hand model", and ``ctx.loaded`` records it; the log keeps the key."""
    from handforge.engines.hands.jobs import hand_model

    messages = []
    ctx = JobContext("j1", "hand_model", lambda f, m, p: messages.append(m), models=ModelCache())
    with caplog.at_level("INFO", logger="handforge.server.model_cache"):
        hand_model(ctx, {"model": "open", "sides": ["left"]}, {})
    assert messages[0] == "loading the open hand model" and ctx.loaded == ["the open hand model"]
    assert "loaded the open hand model (hands open) on cpu" in caplog.text
    plain = JobContext("j2", "kind", lambda f, m, p: messages.append(m), models=ModelCache())
    plain.model(("hands", "mano"), linear_loader(2, []))  # no label: the key as text, as before
    assert messages[-1] == "loading hands mano" and plain.loaded == ["hands mano"]


def test_a_cancel_during_a_load_stops_the_job_as_it_returns_and_keeps_the_model():
    """The cancel was seen at the job's next progress, after work that followed the load."""
    from handforge.server.jobs import JobCancelled

    cache, calls = ModelCache(), []
    ctx = JobContext("j1", "kind", lambda f, m, p: None, models=cache)
    load = linear_loader(2, calls)
    with pytest.raises(JobCancelled, match="cancelled by the client"):
        ctx.model("hands/open", lambda device: (ctx.request_stop("cancelled by the client"), load(device))[1])
    assert cache.cached() == [("hands/open", "cpu")]  # loaded whole: the next job's
    again = JobContext("j2", "kind", lambda f, m, p: None, models=cache)
    assert isinstance(again.model("hands/open", load), torch.nn.Linear) and calls == ["cpu"]


def test_sizes_parse_with_units_and_bad_ones_say_the_accepted_forms():
    assert parse_size("8GiB") == 8 * 2**30 and parse_size("512MB") == 512_000_000
    assert parse_size("300") == 300 and parse_size("1.5 KiB") == 1536
    for bad in ("lots", "-1GB", "8 GiBs", ""):
        with pytest.raises(ValueError, match="e.g. 8GiB"):
            parse_size(bad)
    assert parse_size("0") == 0  # (a budget of 0 keeps only the model in use)
    with pytest.raises(ValueError, match=r"^'-1GB' is a negative size: give 0 or more, e.g. 8GiB or 512MB$"):
        parse_size("-1GB")
    with pytest.raises(ValueError, match="at least 0"):
        ModelCache(-1)


def test_pipelines_and_dicts_of_models_count_their_modules_bytes(tmp_path):
    # a diffusers pipeline has no parameters() of its own: counted as 0 it was never evicted
    from diffusers import StableDiffusionPipeline

    from tests.support.tiny_sd import build_sd

    pipe = StableDiffusionPipeline.from_pretrained(build_sd(tmp_path / "sd"), safety_checker=None,
                                                   requires_safety_checker=False)
    parts = [pipe.unet, pipe.vae, pipe.text_encoder]
    expected = sum(model_bytes(m) for m in parts)
    assert expected > 0 and model_bytes(pipe) == expected
    assert model_bytes({"unet": pipe.unet, "vae": pipe.vae, "scheduler": pipe.scheduler}) == \
        model_bytes(pipe.unet) + model_bytes(pipe.vae)
    assert model_bytes((pipe.unet, pipe.unet)) == model_bytes(pipe.unet)  # shared: once
    cache = ModelCache(budget_bytes=expected + 1)
    cache.get("first", lambda device: pipe, "cpu")
    cache.get("second", lambda device: {"unet": pipe.unet, "copy": torch.nn.Linear(64, 64)}, "cpu")
    assert cache.cached() == [("second", "cpu")] and cache.evictions == 1


def test_loading_is_reported_with_a_readable_name():
    from handforge.server.model_cache import _name

    key = ("image", "/models/sd", ("/models/a", "/models/b"), "torch.float32", False, ((("config.json", 12, 3),),))
    assert _name(key) == "image /models/sd /models/a+/models/b torch.float32"
    assert _name("TargetGenerator /runs/x") == "TargetGenerator /runs/x"
