"""Windows imitated on Linux: ``sys.platform`` patched, and ``os.replace`` refusing as Windows does while
another process (an antivirus, the search indexer, a reader) holds the file a moment."""

from __future__ import annotations

import os
import sys
import time

_RENAME = os.replace  # the real one, whatever a test has patched since


def held_replace(monkeypatch, platform: str, refusals: int | None, each: bool = False) -> tuple[list, list]:
    """``os.replace`` raises PermissionError (WinError 5) ``refusals`` times, then renames (``None``: always
    refuses; ``each``: ``refusals`` times for every source path); ``time.sleep`` only records its delays. Returns
    the lists of tries (sources) and of sleeps."""
    tries, slept = [], []

    def held(src, dst):
        tries.append(str(src))
        refused = tries.count(str(src)) if each else len(tries)
        if refusals is None or refused <= refusals:
            raise PermissionError(13, "Access is denied", str(src), None, 5)
        return _RENAME(src, dst)

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(os, "replace", held)
    monkeypatch.setattr(time, "sleep", slept.append)
    return tries, slept
