"""Where torch work runs: the default device of a process, the dtype of a device, the CPU threads of a
block of work.

torch is imported inside the functions: the server and the add-on-facing commands start without it.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


def default_device() -> str:
    """cuda when this process sees a GPU (a Ray actor with --gpus-per-worker does), else cpu."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str, device: str):
    """The torch dtype called ``name`` ("float32", "float16", "bfloat16"); "auto": float16 on CUDA (half
    the memory, the speed of its tensor cores), float32 on the CPU (whose float16 kernels are slow)."""
    import torch

    if name == "auto":
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch on ``count`` CPU threads inside the block, the previous count restored after it (None or
    0: unchanged). Small batches run faster on one thread (no synchronisation; on a busy 2-core
    machine two threads made the corpus resolver 5× slower), and CPU results that must not depend on
    the machine use a fixed count (torch splits some sums by thread)."""
    import torch

    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def memory_limit() -> int | None:
    """Bytes this process could ever hold on the CPU: RAM and free swap (/proc/meminfo), or the cgroup's
    memory.max where a container sets a lower one; None where it is not known (not Linux). The total, not
    what is free now: free memory leaves out caches the kernel would give back (ZFS's among them)."""
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh if line.strip()}
        limit = info["MemTotal"] + info.get("SwapFree", 0)
    except (OSError, KeyError, ValueError, IndexError):
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:  # cgroup v2; "max" when unlimited
            text = fh.read().strip()
        limit = min(limit, int(text)) if text.isdigit() else limit
    except OSError:
        pass
    return limit


# torch's CPU allocator raises a plain RuntimeError ("DefaultCPUAllocator: can't allocate memory" in torch 2,
# "not enough memory" before); numpy raises MemoryError
_CPU_OUT_OF_MEMORY = ("can't allocate memory", "not enough memory")


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation, on the CPU (torch's or numpy's) or a GPU (torch.cuda's
    OutOfMemoryError, recognised by name: torch need not be imported)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in _CPU_OUT_OF_MEMORY)


__all__ = ["default_device", "memory_limit", "out_of_memory", "torch_dtype", "torch_threads"]
