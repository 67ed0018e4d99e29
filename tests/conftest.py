"""Test configuration shared by every area. Keep area-specific fixtures in ``tests/support/``
modules (imported by the tests that need them) rather than here; only the open hand model, which
every area poses, lives here."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest


def _empty_config() -> str:
    """An empty config file of this run's own (removed at its exit): every setting at its default. (A path to no
    file would do the same, but a server warns of one, as of a mistyped HANDFORGE_CONFIG.)"""
    folder = tempfile.mkdtemp(prefix="test-config-of-handforge-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "config.toml")
    open(path, "w").close()
    return path


# Tests never reach a network and never pick up a user's config.
if "HANDFORGE_CONFIG" not in os.environ:
    os.environ["HANDFORGE_CONFIG"] = _empty_config()


@pytest.fixture(autouse=True)
def _torch_threads_kept():
    """A command run in this process may set torch's thread count for its own run (eval interaction sets one):
    put back after each test, or a later test comparing a model trained here with one trained in a subprocess
    saw other float sums (a full run failed that way, the test alone passed)."""
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is not None and before is not None and torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def model():
    """The open hand model (float32, CPU). A module that needs another model defines its own ``model``."""
    from handforge.hands import load_hand_model

    return load_hand_model("open")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)
