"""Whether MANO can be loaded here, answered without importing torch or smplx.

The server's ``welcome`` reports it; importing smplx (and with it torch) would make the first
``welcome`` wait seconds. A broken smplx install therefore shows when MANO is first loaded.
"""

from __future__ import annotations

import contextlib
import importlib.util
from pathlib import Path

from handforge import config
from handforge.hands.errors import HandModelError
from handforge.hands.mano_files import MANOFileError, load_mano_dir
from handforge.hands.settings import MANO_DIR
from handforge_shared.skeleton import SIDES

SMPLX_MISSING = ("the MANO hand model needs the smplx package (non-commercial research licence, opt-in): "
                 "install it with `pip install 'handforge[mano]'`")
_REASONS: dict[tuple, str] = {}


def _smplx_installed() -> bool:
    try:
        return importlib.util.find_spec("smplx") is not None
    except (ImportError, ValueError):  # a half-imported or blocked module
        return False


def unavailable_reason() -> str:
    """'' when MANO can be loaded here; otherwise why not and which setting to fill."""
    try:
        if not _smplx_installed():
            raise HandModelError(f"{SMPLX_MISSING} (No module named 'smplx')")
        folder, _ = config.get(MANO_DIR.key)
        if folder is None:
            load_mano_dir(None)  # raises the "not configured" error with today's config path
        key = _files_key(folder)
        if key not in _REASONS:
            try:
                load_mano_dir(None)  # resolved from the setting again: errors name where the folder came from
                _REASONS[key] = ""
            except MANOFileError as exc:
                _REASONS[key] = str(exc)
        return _REASONS[key]
    except (HandModelError, config.ConfigError) as exc:
        return str(exc)


def _files_key(folder: Path) -> tuple:
    """Identifies the MANO files' current state, so checks are redone only when they change."""
    stats = []
    for sub in ("", "mano"):
        for side in SIDES:
            for ext in ("npz", "pkl"):
                path = Path(folder).expanduser() / sub / f"MANO_{side.upper()}.{ext}"
                with contextlib.suppress(OSError):
                    st = path.stat()
                    stats.append((str(path), st.st_mtime_ns, st.st_size))
    return (str(folder), tuple(stats))


__all__ = ["SMPLX_MISSING", "unavailable_reason"]
