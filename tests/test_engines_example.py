"""The example engine (tests/engines/example) end to end: a TinyNet checkpoint is saved, loaded,
served through the server's model cache by a job, and its result reaches a real client.

The server runs in a subprocess with ``--engine-package tests.engines`` and a model memory budget
that holds one TinyNet but not two."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
import torch

from handforge.engines.checkpoints import CheckpointError, load_model, save_model
from handforge_shared.client import JobFailed
from tests.engines.example.model import TinyNet
from tests.support.server import running_server

REPO = Path(__file__).resolve().parents[1]
X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)


def tiny(seed: int) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet(width=16)  # 115 float32 parameters: 460 bytes


def expected(net: TinyNet) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(X)).numpy()


def test_checkpoints_round_trip_and_wrong_folders_are_named(tmp_path):
    net = tiny(0)
    folder = save_model(net, tmp_path / "a")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    again = load_model(TinyNet, folder)
    assert not again.training and np.array_equal(expected(again), expected(net))
    save_model(tiny(1), folder)  # replaced in one rename: nothing else is left beside it
    assert not np.array_equal(expected(load_model(TinyNet, folder)), expected(net))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    with pytest.raises(CheckpointError, match=str(tmp_path / "missing")):
        load_model(TinyNet, tmp_path / "missing")

    class OtherNet(TinyNet):
        pass

    with pytest.raises(CheckpointError, match=rf"{folder} holds a checkpoint of another model \(TinyNet, not OtherNet\)"):
        load_model(OtherNet, folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(TinyNet, tmp_path / "empty")
    # a weights file missing a tensor: a NotImplementedError traceback before 2026-12-02
    tensors = load_file(folder / "diffusion_pytorch_model.safetensors")
    partial = save_model(tiny(0), tmp_path / "partial")
    save_file({k: v for k, v in tensors.items() if k != sorted(tensors)[0]},
              partial / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=f"lacks 1 of its weights \\(e.g. {sorted(tensors)[0]}\\)"):
        load_model(TinyNet, partial)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "width": "big"}))  # a hand-edited config
    with pytest.raises(CheckpointError, match="cannot load the TinyNet checkpoint"):
        load_model(TinyNet, folder)


@pytest.fixture
def served(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    for name, seed in (("a", 0), ("b", 1)):
        save_model(tiny(seed), checkpoints / name)
    env = {"HANDFORGE_EXAMPLE_CHECKPOINTS": str(checkpoints),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--engine-package", "tests.engines", "--model-memory", "700B", "--devices", "cpu",
                        env=env) as server:
        yield server, checkpoints


def run(client, name: str):
    """The job's result and the "loading ..." progress messages the client saw."""
    messages = []
    result = client.run("example.apply", {"name": name}, {"x": X}, timeout=60,
                        on_progress=lambda event: messages.append(event.message))
    return result, [m for m in messages if m.startswith("loading")]


def test_jobs_share_the_cache_evict_under_the_budget_and_reload_changed_checkpoints(served):
    server, checkpoints = served
    with server.client() as client:
        assert client.hello()["engines"]["example"]["available"]
        first, loading = run(client, "a")
        assert np.allclose(first.arrays["y"], expected(tiny(0)), atol=1e-6)
        # said by the engine's label, not the cache's key (the class and the checkpoint's full path)
        assert first.data["loaded"] == ["the example model a"] and loading == ["loading the example model a"]
        second, loading = run(client, "a")           # from the cache
        assert second.data["loaded"] == [] and loading == []
        assert np.array_equal(second.arrays["y"], first.arrays["y"])
        other, _ = run(client, "b")                  # a and b do not fit together: a is evicted
        assert other.data["loaded"] == ["the example model b"]
        assert np.allclose(other.arrays["y"], expected(tiny(1)), atol=1e-6)
        again, _ = run(client, "a")
        assert again.data["loaded"] == ["the example model a"]

        save_model(tiny(2), checkpoints / "a")       # a new checkpoint on disk: loaded again
        changed, loading = run(client, "a")
        assert changed.data["loaded"] and loading
        assert np.allclose(changed.arrays["y"], expected(tiny(2)), atol=1e-6)

        with pytest.raises(JobFailed, match="not a checkpoint name"):
            client.run("example.apply", {"name": "../a"}, {"x": X})
    assert f"evicted the example model a (TinyNet {checkpoints / 'a'})" in server.log()  # the log: label and key
