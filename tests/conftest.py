"""Test configuration shared by every area. Keep area-specific fixtures in ``tests/support/``
modules (imported by the tests that need them) rather than here; only the open hand model, which
every area poses, lives here."""

from __future__ import annotations

import os

import pytest

# Tests never reach a network and never pick up a user's config.
os.environ.setdefault("HANDFORGE_CONFIG", os.path.join(os.path.dirname(__file__), "no-such-config.toml"))


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
