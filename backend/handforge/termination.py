"""SIGTERM ends a command as Ctrl-C does: ``kill``, a scheduler's stop or a container's shutdown.

Its default action ends the process on the spot: no ``finally`` runs, so work folders (a corpus's
``.partial``, an export's scratch) stayed behind and the samples already made were not written.
Raised as ``Terminated`` (a ``KeyboardInterrupt``), every clean-up written for Ctrl-C runs for it too.
A second Ctrl-C while the clean-ups run quits at once (``second_ctrl_c_quits``).

A stop raised by a signal handler can be lost: the handler runs wherever the interpreter checks for
signals, C code that does so included, and C code that then clears the error loses it. NumPy 1.26
does, in ``rng.choice`` of a tuple of strings (99 % of the stops raised there were lost, measured
with a timer signal); an export stopped there rendered on to its last sample and exited 0. So a stop
is raised again, every ``AGAIN_S``, until its unwinding is seen (a ``KeyboardInterrupt`` among the
exceptions being handled) or the block is left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, unwound as Ctrl-C is."""


AGAIN_S = 0.25  # how soon a lost stop is raised again


class _Stop:
    """The handler of ``signum`` within a block: raises ``error`` in the main thread, and again while it goes
    unhandled (lost). Once unwinding, the signal sent again calls ``again`` (None: nothing)."""

    def __init__(self, signum: int, error: type[KeyboardInterrupt], again: Callable[[], None] | None):
        self.signum, self.error, self.again = signum, error, again
        self.owner, self.main = os.getpid(), threading.main_thread().ident
        self.received = False  # the signal came (the stop was raised at least once)
        self.left = False  # the block was left
        self._resent = False  # the next call is the watcher's, not a new signal
        self._done = threading.Event()

    def __call__(self, signum: int, frame) -> None:
        if os.getpid() != self.owner:  # a forked child's: the signal's default
            self.forked()
            return
        resent, self._resent = self._resent, False
        if self.received and (self.left or _unwinding(sys.exc_info()[1])):
            if not resent and self.again is not None:
                self.again()
            return
        if not self.received:
            self.received = True
            threading.Thread(target=self._raise_again_while_lost, daemon=True, name="handforge-stop-again").start()
        raise self.error  # (the first time, or again: the one before was lost)

    def forked(self) -> None:
        if self.signum == signal.SIGTERM:  # a pool that stops it with SIGTERM expects it to end, not a traceback
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            raise KeyboardInterrupt

    def _raise_again_while_lost(self) -> None:
        while not self._done.wait(AGAIN_S):
            if not _unwinding(_handling(self.main)):
                self._resent = True
                signal.pthread_kill(self.main, self.signum)

    def leave(self) -> None:
        self.left = True
        self._done.set()


def _unwinding(exc: BaseException | None) -> bool:
    """Whether ``exc`` (an exception being handled) is a stop's unwinding: a ``KeyboardInterrupt`` in it or in
    its causes and contexts (a clean-up's own error while unwinding, Ray's plain KeyboardInterrupt for ours)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        exc = todo.pop()
        if exc is None or id(exc) in seen:
            continue
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        todo += [exc.__cause__, exc.__context__]
    return False


def _handling(thread: int) -> BaseException | None:
    """The exception the thread ``thread`` is handling, as far as another thread can tell (None: none, or unknown)."""
    current = getattr(sys, "_current_exceptions", dict)().get(thread)
    return current[1] if isinstance(current, tuple) else current  # (3.11: a (type, value, traceback))


_sigterm: list[_Stop] = []  # the blocks' SIGTERM handlers, innermost last


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Within the block, SIGTERM raises ``Terminated`` in the main thread; a second SIGTERM does not cut
    the unwinding short. A forked child (a data loader's worker) keeps SIGTERM's default: the pool that
    stops it with SIGTERM expects it to end, not to print a traceback."""
    if not _handled_here(signal.SIGTERM):
        yield
        return
    stop = _Stop(signal.SIGTERM, Terminated, again=None)
    previous = signal.signal(signal.SIGTERM, stop)
    _sigterm.append(stop)
    try:
        yield
    finally:
        stop.leave()
        _sigterm.remove(stop)
        signal.signal(signal.SIGTERM, previous)


def sigterm_received() -> bool:
    """Whether a SIGTERM came within the innermost ``sigterm_unwinds`` block: it tells a stop by SIGTERM from a
    Ctrl-C where a library raised its own plain KeyboardInterrupt for our ``Terminated`` (Ray's ``ray.get``)."""
    return bool(_sigterm) and _sigterm[-1].received


def _quit_at_once() -> None:
    os.write(2, b"interrupted again: quitting without finishing the clean-up (running the command again "
                b"clears what it left)\n")
    os._exit(130)


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
    stop = _Stop(signal.SIGINT, KeyboardInterrupt, again=_quit_at_once)
    previous = signal.signal(signal.SIGINT, stop)
    try:
        yield
    finally:
        stop.leave()
        if not stop.received:  # not interrupted: as it was
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def handlers_kept() -> Iterator[None]:
    """The block's SIGTERM and SIGINT handlers put back as they were when it ends, in the kernel too, for a library
    call that sets its own (``ray.init``) or resets the kernel's behind Python's back (``ray.shutdown`` left SIGTERM at
    its default while ``signal.getsignal`` still named the command's). Off the main thread: nothing to keep."""
    main = threading.current_thread() is threading.main_thread()
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)} if main else {}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:  # (None: one set outside Python, left as it is)
                signal.signal(signum, handler)  # (Python's own again in the kernel, whatever was left there)


@contextlib.contextmanager
def ctrl_c_deferred(said: str) -> Iterator[None]:
    """A Ctrl-C within the block (a library's start-up that must not be cut midway) prints ``said`` and is raised
    when the block ends, as a ``KeyboardInterrupt``, whatever the block raised meanwhile (its failure follows from
    the Ctrl-C: a terminal's reaches the library's own processes too); a second Ctrl-C is raised at once. Off the
    main thread, or with SIGINT not Python's (ignored), nothing changes."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    asked = threading.Event()

    def later(signum: int, frame) -> None:
        if asked.is_set():  # asked twice: now
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        asked.set()
        print(said, file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, later)
    try:
        yield
    except Exception:
        if not asked.is_set():
            raise
    finally:
        if signal.getsignal(signal.SIGINT) is later:
            signal.signal(signal.SIGINT, previous)
    if asked.is_set():
        raise KeyboardInterrupt


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


class SafePoints:
    """``stops_at_safe_points``'s handle: ``asked`` whether a stop came; ``stop()`` raises it where one came, through
    the handler the block found (the command's: ``second_ctrl_c_quits`` then knows of it, and a Ctrl-C during the
    clean-ups quits at once; Python's raises ``KeyboardInterrupt``), with that handler back in place."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Callable] = {}

    @property
    def asked(self) -> bool:
        return self.signum is not None

    def stop(self) -> None:
        if self.signum is None:
            return
        self._restore()
        handler = self._previous.get(self.signum)
        if handler is not None:
            handler(self.signum, None)  # (raises: a stop)
        raise Terminated if self.signum == signal.SIGTERM else KeyboardInterrupt

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def stops_at_safe_points(said: str, enabled: bool = True) -> Iterator[SafePoints]:
    """Within the block, Ctrl-C or SIGTERM writes ``said`` and is only noted, for the block to stop at its next safe
    point (``SafePoints.asked``, then ``stop()``; a training run: at the end of its step, once it saved a
    checkpoint there). The same signal again is a stop at once, as before. Off the main thread, or not ``enabled``
    (several processes that must stop together), nothing changes: a stop is raised where it comes; a signal whose
    handler is not Python's (SIGTERM's default outside a command's ``sigterm_unwinds``) keeps it. In a forked child
    (a data loader's worker) Ctrl-C is ignored, the main process deciding (a worker killed by it failed the step
    under way), and SIGTERM keeps its default."""
    points = SafePoints()
    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)} if main else {}
    previous = {signum: handler for signum, handler in previous.items() if callable(handler)}  # (a default: kept)
    if not enabled or not previous:
        yield points
        return
    points._previous = previous
    owner = os.getpid()
    line = (said + "\n").encode()

    def noted(signum: int, frame) -> None:
        if os.getpid() != owner:  # a forked child's
            if signum == signal.SIGINT:
                signal.signal(signum, signal.SIG_IGN)
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if points.signum is not None:  # again: at once, as the handler found would
            points.signum = signum
            points.stop()
        points.signum = signum
        os.write(2, line)  # (not print: a signal handler's write into a stream being written, tqdm's, can fail)

    for signum in previous:
        signal.signal(signum, noted)
    try:
        yield points
    finally:
        for signum, handler in previous.items():
            if signal.getsignal(signum) is noted:
                signal.signal(signum, handler)
