"""Run Python code in a child process under an address-space cap, so that a test of hostile input
cannot take the machine's memory down with it, and a crash (segfault, MemoryError traceback) is a
failed test rather than a dead test run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# numpy, scipy and the interpreter map a few hundred MB of address space before any test code runs.
DEFAULT_CAP_BYTES = 1536 << 20

_PRELUDE = """
import resource
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
"""


def run_capped(code: str, *, cap_bytes: int = DEFAULT_CAP_BYTES, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_fresh(_PRELUDE.format(cap=cap_bytes) + textwrap.dedent(code), timeout=timeout,
                     OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def run_fresh(code: str, *, timeout: float = 300, **environment: str | None) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter (nothing imported yet), the repository importable; ``environment``'s
    variables set on top of this one's (None: removed)."""
    path = os.pathsep.join([str(ROOT / "backend"), str(ROOT / "shared"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, **environment}
    env = {name: value for name, value in env.items() if value is not None}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
