"""Hand models behind one interface (``base.HandModel``): the open hand and MANO."""

from handforge.hands.base import (  # noqa: F401
    HandLayer,
    HandModel,
    HandModelError,
    HandOutput,
    available_hand_models,
    load_hand_model,
)
