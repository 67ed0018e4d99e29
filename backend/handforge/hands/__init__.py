"""Hand models behind one interface (``base.HandModel``): the open hand and MANO.

Names are resolved on first use (PEP 562), so importing ``handforge.hands.settings`` or
``handforge.hands.registry`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from handforge.hands.base import HandLayer, HandModel, HandOutput
    from handforge.hands.errors import HandModelError
    from handforge.hands.registry import available_hand_models, load_hand_model
    from handforge.hands.wrists import WristJoints

_HOMES = {"HandLayer": "base", "HandModel": "base", "HandModelError": "errors", "HandOutput": "base",
          "WristJoints": "wrists", "available_hand_models": "registry", "load_hand_model": "registry"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)


__all__ = sorted(_HOMES)
