"""The demo's first write, its folder's mark, names that file when it fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_failed_first_write_names_the_file(tmp_path):
    """Under a file-size limit (`ulimit -f`, or a full disk) the mark written first failed without a file name:
    "handforge demo: File too large: over this process's file-size limit ..." named nothing in --out, and
    left an empty .handforge-demo behind."""
    out = tmp_path / "demo"
    code = ("import resource, sys\n"
            "from handforge.cli import main\n"
            "import handforge.demo, handforge.commands.demo\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
            f"sys.exit(main(['demo', '--no-blender', '--out', {str(out)!r}]))\n")
    paths = [str(ROOT / "backend"), str(ROOT / "shared"), str(ROOT)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")]),
               PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"handforge demo: {out / '.handforge-demo'}: File too large"), done.stderr
    assert not (out / ".handforge-demo").exists()  # (written whole or not at all)
