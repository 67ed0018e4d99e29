"""One torch thread for modules of tiny tensors: on a busy 2-core machine a second thread only
waits (3 s a training step instead of 0.1 s here)."""

from __future__ import annotations

import pytest

from handforge.runtime import torch_threads

__all__ = ["one_thread", "torch_threads"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Import into a test module to run it on one thread; module scope, so it comes before the
    module fixtures that train."""
    with torch_threads(1):
        yield
