"""The add-on where pyzmq cannot be imported: enabling it says what is missing and which zip to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.blender.harness import HERE, run_blender

ROOT = Path(__file__).resolve().parent.parent

# loaded at start-up by the Blender process: pyzmq cannot be imported there, whatever is installed
NO_PYZMQ = '''
import sys
class _NoPyzmq:
    def find_spec(self, name, path=None, target=None):
        if name == "zmq" or name.startswith("zmq."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _NoPyzmq())
'''


def test_a_zip_without_its_wheels_in_a_blender_without_pyzmq_says_which_zip_to_install(tmp_path):
    # before: Blender said "No module named 'zmq'" and no more
    bare = tmp_path / "bare.zip"
    subprocess.run([sys.executable, str(ROOT / "build_addon.py"), "--no-wheels", "--out", str(bare)], check=True,
                   capture_output=True)
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NO_PYZMQ)
    python_path = os.pathsep.join(p for p in (str(tmp_path / "site"), str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    found = run_blender("without_pyzmq_session.py", bare, tmp_path / "blender", env={"PYTHONPATH": python_path})
    installed = found["install"]
    assert not installed["enabled"], installed
    assert "HandForge needs pyzmq in Blender's Python, and it cannot be imported (No module named 'zmq')" in \
        installed["error"], installed
    assert "build_addon.py --no-wheels carries none; install one built by python build_addon.py" in \
        installed["error"], installed
