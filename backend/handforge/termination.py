"""SIGTERM ends a command as Ctrl-C does: ``kill``, a scheduler's stop or a container's shutdown.

Its default action ends the process on the spot: no ``finally`` runs, so work folders (a corpus's
``.partial``, an export's scratch) stayed behind and the samples already made were not written.
Raised as ``Terminated`` (a ``KeyboardInterrupt``), every clean-up written for Ctrl-C runs for it too.
A second Ctrl-C while the clean-ups run quits at once (``second_ctrl_c_quits``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread; a second SIGTERM does not cut
    the unwinding short. A forked child (a data loader's worker) keeps SIGTERM's default: the pool that
    stops it with SIGTERM expects it to end, not to print a traceback."""
    if not _handled_here(signal.SIGTERM):
        yield
        return
    owner = os.getpid()

    def stop(signum, frame):
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def second_ctrl_c_quits() -> Iterator[None]:
    """Within the block, Ctrl-C raises ``KeyboardInterrupt`` as ever (the clean-ups run); pressed again while
    they do, or later while the interpreter exits, it quits at once with status 130 and one line. It was a
    second ``KeyboardInterrupt`` in the middle of a clean-up: "Exception ignored in atexit callback" with a
    traceback, and the process killed by the signal (status -2). What a clean-up leaves undone, the next run
    of the command clears (an export's half-written samples, a corpus's partial folder). After an interrupt
    the handler stays (the interpreter's exit comes after the block); a forked child keeps the default."""
    if not _handled_here(signal.SIGINT):
        yield
        return
    owner = os.getpid()

    def again(signum, frame):
        if os.getpid() != owner:
            raise KeyboardInterrupt
        os.write(2, b"interrupted again: quitting without finishing the clean-up (running the command again "
                    b"clears what it left)\n")
        os._exit(130)

    def first(signum, frame):
        if os.getpid() == owner:
            signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is first:  # not interrupted: as it was
            signal.signal(signal.SIGINT, previous)


def die_with_parent(parent: int) -> bool:
    """Linux: the kernel kills this process (SIGKILL) when the thread of ``parent`` that started it ends, so that
    nothing outlives a parent killed outright (an export worker the driver kills: its Blender, rendering on, wrote
    into the scratch folder removed meanwhile and made it again). False when ``parent`` is gone already."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return os.getppid() == parent  # (it died before the line above took effect)


def _handled_here(signum: int) -> bool:
    """Whether a handler of ``signum`` may be installed here: only the main thread takes signals, and one the
    process started ignoring (a command a script runs in the background) stays ignored."""
    return threading.current_thread() is threading.main_thread() and signal.getsignal(signum) is not signal.SIG_IGN


EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended
