"""Cancel points inside a denoising step: a job's ``check_cancelled`` run before each ResNet block and attention of
the networks it runs, so that a cancel, a timeout or the backend stopping ends the job within a block, not only
between steps. One step at 2048² on a CPU took 4½ minutes: a cancel waited for its end, and the worker it held let
the jobs queued behind it time out."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

# diffusers' building blocks of the UNet and ControlNets (SD 1.x, SDXL): a few dozen a network, so the checks cost
# nothing beside the blocks' own work; the networks' other modules are too many and too small to hook
CANCEL_POINT_CLASSES = frozenset({"ResnetBlock2D", "Attention"})


@contextlib.contextmanager
def cancel_points(check: Callable[[], None], *models) -> Iterator[None]:
    """Within the block, ``check()`` runs before each of ``models``' ResNet blocks and attentions (None models are
    passed over); whatever it raises ends the forward pass there. The hooks go with the block."""
    handles = []
    try:
        for model in models:
            if model is None:
                continue
            for module in model.modules():
                if type(module).__name__ in CANCEL_POINT_CLASSES:
                    handles.append(module.register_forward_pre_hook(lambda _module, _args: check()))
        yield
    finally:
        for handle in handles:
            handle.remove()


__all__ = ["CANCEL_POINT_CLASSES", "cancel_points"]
