"""SIGTERM ends a command as Ctrl-C does: ``kill``, a scheduler's stop or a container's shutdown.

Its default action ends the process on the spot: no ``finally`` runs, so work folders (a corpus's
``.partial``, an export's scratch) stayed behind and the samples already made were not written.
Raised as ``Terminated`` (a ``KeyboardInterrupt``), every clean-up written for Ctrl-C runs for it too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread; a second SIGTERM does not cut
    the unwinding short. A forked child (a data loader's worker) keeps SIGTERM's default: the pool that
    stops it with SIGTERM expects it to end, not to print a traceback."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread takes signals
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


EXIT_STATUS = 128 + signal.SIGTERM  # what a shell reports for a process SIGTERM ended
