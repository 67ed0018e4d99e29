"""Blender session that crashes: the add-on starts its local backend, then Blender dies at once (SIGKILL,
no exit handlers), as in a crash; the test checks that the backend stops by itself."""

from __future__ import annotations

import importlib
import os
import signal

from session import ADDON_MODULE, Session

s = Session()
s.install()
s.start_backend()
backend = importlib.import_module(f"{ADDON_MODULE}.connection").BACKEND
(s.work / "backend.pid").write_text(str(backend.process.pid))
os.kill(os.getpid(), signal.SIGKILL)
