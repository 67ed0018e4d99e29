"""handforge.runtime: the threads a block of torch work runs on, restored after it."""

import pytest
import torch

from handforge.runtime import default_device, torch_threads


def test_torch_threads_sets_the_count_inside_and_restores_it_after_an_error():
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with pytest.raises(RuntimeError):
        with torch_threads(wanted):
            assert torch.get_num_threads() == wanted
            raise RuntimeError("inside")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("count", [None, 0])
def test_torch_threads_without_a_count_changes_nothing(count):
    before = torch.get_num_threads()
    with torch_threads(count):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_default_device_follows_what_torch_sees():
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_torch_dtype_auto_is_half_on_cuda_and_float32_on_the_cpu():
    from handforge.runtime import torch_dtype

    assert torch_dtype("auto", "cuda:1") is torch.float16
    assert torch_dtype("auto", "cpu") is torch.float32
    assert torch_dtype("bfloat16", "cpu") is torch.bfloat16
