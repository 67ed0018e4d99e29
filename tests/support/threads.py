"""One torch thread for modules of tiny tensors: on a busy 2-core machine a second thread only
waits (3 s a training step instead of 0.1 s here)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch


@contextmanager
def torch_threads(count: int = 1):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Import into a test module to run it on one thread; module scope, so it comes before the
    module fixtures that train."""
    with torch_threads(1):
        yield
