"""Private scratch folders in the system's temporary folder (a Blender renderer's hand-off files, the
export workers' temporary files) that outlive an owner killed outright (SIGKILL, out of memory).

Each folder, ``<tempdir>/handforge-<kind>-XXXXXXXX``, records its owner (``OWNER``: pid, host, pid
namespace and the machine's boot). ``sweep()`` removes the ones that are this user's, were made on this
host, boot and pid namespace and whose owner process is gone, whatever their kind; making a folder sweeps first, and so
does ``handforge export``. A folder without a readable owner (being made, another program's, another
user's) is left alone, and so is one made in another pid namespace: containers sharing a temporary
folder and a host name (a Kubernetes pod's containers, ``docker run --network host``) number their
processes apart, so its pid says nothing here (a live export's folder was removed).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

from handforge_shared.files import SCRATCH_PREFIX as PREFIX  # (file_error tells its files from the user's)

OWNER = "owner.pid"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")  # a machine's boot (Linux)


def scratch_folder(kind: str, remove_at_exit: bool = False) -> Path:
    """A new folder ``<tempdir>/handforge-<kind>-XXXXXXXX`` (0700) owned by this process; ``sweep()`` first.
    ``remove_at_exit``: removed when this process ends normally too (``atexit``), e.g. a benchmark's."""
    sweep()
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{kind}-"))
    (folder / OWNER).write_text(f"{os.getpid()} {socket.gethostname()} {pid_namespace() or 'unknown'}\n")
    if remove_at_exit:
        atexit.register(shutil.rmtree, folder, True)
    return folder


def sweep() -> list[Path]:
    """Remove the scratch folders in the temporary folder whose owner is gone (``_abandoned``); returns them."""
    removed = [folder for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*") if _abandoned(folder)]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _abandoned(folder: Path) -> bool:
    try:
        # another user's is left alone (Windows has no uids, and each user a temporary folder of their own)
        if folder.is_symlink() or (hasattr(os, "getuid") and folder.stat().st_uid != os.getuid()):
            return False
        pid, host, namespace = (folder / OWNER).read_text().split()
        pid = int(pid)
    except (OSError, ValueError):  # not a scratch folder of ours, or its owner has not written its pid yet
        return False
    # another host's or pid namespace's pid (a temporary folder shared by machines or containers) says
    # nothing here; neither does one whose namespace is unknown
    ours = pid_namespace()
    return pid > 0 and host == socket.gethostname() and ours is not None and namespace == ours and not running(pid)


def pid_namespace() -> str | None:
    """This process's pid namespace and the machine's boot ("pid:[4026531836]@<boot id>" on Linux; "-" where
    there are none), None when unknown. The namespace's number alone is the same on every machine (the first
    namespace's): two machines of one host name sharing the folder (cloned VMs on NFS) read as one."""
    if not sys.platform.startswith("linux"):
        return "-"
    try:
        found = f"{os.readlink('/proc/self/ns/pid')}@{BOOT_ID.read_text().strip()}"
    except OSError:  # no /proc
        return None
    return found if not any(c.isspace() for c in found) and not found.endswith("@") else None


def running(pid: int) -> bool:
    """Whether process ``pid`` exists, another user's too (a reused pid only keeps a folder a while
    longer). psutil, not ``os.kill(pid, 0)``: on Windows that call ends the process."""
    import psutil

    return psutil.pid_exists(pid)


__all__ = ["OWNER", "PREFIX", "pid_namespace", "running", "scratch_folder", "sweep"]
