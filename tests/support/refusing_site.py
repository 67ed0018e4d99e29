"""A file system that refuses the samples' folders, in every process of a run (the spawned export workers
and the backend included): as for a user who cannot write ``samples/`` (root, who runs the suite, always
can). Each refusal is counted, one line each, in ``refused.log`` beside the ``site`` folder."""

from __future__ import annotations

import os
from pathlib import Path

# loaded at start-up by each Python process whose PYTHONPATH holds its folder
SITECUSTOMIZE = r'''
import errno, os
_mkdir = os.mkdir
def mkdir(path, *args, **kwargs):
    if ".partial-" in os.fspath(path):
        with open(os.environ["REFUSED_LOG"], "a") as log:
            log.write("refused\n")
        raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
    return _mkdir(path, *args, **kwargs)
os.mkdir = mkdir
'''


def refusing_env(folder: Path) -> dict[str, str]:
    """The environment variables (PYTHONPATH, REFUSED_LOG) that make a process started with them refuse."""
    (folder / "site").mkdir(parents=True)
    (folder / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {"REFUSED_LOG": str(folder / "refused.log"),
            "PYTHONPATH": os.pathsep.join([str(folder / "site"), os.environ.get("PYTHONPATH", "")])}


def refusals(folder: Path) -> int:
    log = folder / "refused.log"
    return len(log.read_text().splitlines()) if log.exists() else 0
