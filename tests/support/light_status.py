"""Engine statuses read in a fresh interpreter, checked light: the server reports them from its first
welcome on, so reading them must import neither torch nor diffusers (seconds of start-up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def light_statuses(setup: str, statuses: str, env: dict[str, str]) -> Any:
    """Run ``setup`` (statements) in a fresh interpreter with ``env`` added, and return the JSON value of the
    expression ``statuses``; fails if torch or diffusers got imported on the way."""
    code = (f"import json, sys\n{setup}\nprint(json.dumps([{statuses}, "
            "[m for m in ('torch', 'diffusers') if m in sys.modules]]))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100,
                          env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    value, heavy = json.loads(done.stdout)
    assert heavy == [], f"reading the statuses imported {heavy}"
    return value
