"""One mechanism for every backend job: ``JobOperator``.

A subclass says what to send (``job_request``) and what to do with the result (``job_apply``).
Invoked from the UI, the operator submits the job and stays modal: a window timer polls the client
(never blocking), progress goes to the status bar and the panel, Esc cancels the job started last from
that window (Esc again the one before it) and the panel's Cancel button the job beside it, and the
outcome ends the operator — the result applied (one undo step), or the error reported with its fix.
Run from a script or under ``blender -b`` (``execute``), the same operator waits in a loop instead;
Ctrl-C cancels the job. bpy is only touched here, on the main thread.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import bpy
import numpy as np
from bpy.app.handlers import persistent

from . import app_handlers, connection, hands, job_previews
from .errors import USER_ERRORS, report_error
from handforge_shared.client import Cancelled, Error, JobFailed, JobHandle, Result
from handforge_shared.protocol import ProtocolError

POLL_S = 0.1
CANCEL_WAIT_S = 10.0
LOST_EXIT_GRACE_S = 1.0  # a lost connection: how long to wait for the local backend's exit status


class Noted(str):
    """A job's message that says what did not happen as asked (keys left out, a setting ignored): a warning."""


@dataclass
class RunningJob:
    operator: str
    label: str
    handle: JobHandle
    started: float = field(default_factory=time.monotonic)
    cancel_requested: float | None = None
    timer: Any = None  # the modal's window timer, removed by ``shutdown`` if the operator never ends
    scene: int = 0     # the session_uid of the scene the request was made from (another file: other uids)
    group: str = ""    # the operator's ``one_at_a_time``
    undone: str = ""   # "undo" or "redo" when the artist pressed Ctrl-Z / Ctrl-Shift-Z while it ran
    request: tuple = ()  # (kind, params, arrays) sent, kept for ``made_from_scene`` jobs: read again after an undo
    window: Any = None  # the window whose modal handler and timer it has (None: run blocking, no modal)


RUNNING: dict[str, RunningJob] = {}


def by_uid(collection, uid: int):
    """The ID of session id ``uid`` in ``collection`` (``bpy.data.objects``, ``.scenes``, ``.images``, a scene's
    objects) now, or None where it is gone: a request remembers the IDs it was made from by their session ids,
    which survive renames (a name may have gone to another ID meanwhile)."""
    return next((item for item in collection if item.session_uid == uid), None)


def shutdown() -> None:
    """On unregister: forget every running job and its timer. Disabling the add-on frees a modal job
    operator without ending it; the job stayed listed, its button greyed and Cancel had no effect
    until Blender restarted. (Closing the client ends the jobs on the backend.)"""
    wm = getattr(bpy.context, "window_manager", None)
    for job in RUNNING.values():
        if job.timer is not None and wm is not None:
            with contextlib.suppress(Exception):  # its window may be gone
                wm.event_timer_remove(job.timer)
    RUNNING.clear()
    job_previews.clear()


@persistent  # (kept when another file is opened: jobs of any file are marked)
def _on_undo(*_args) -> None:
    """Memfile undo puts back the scene of an earlier step: what a running job's request read (keys, a
    pose) may be gone or different now, under the same rigs (their session_uid survives). Every undo
    marks the jobs; when one ends, its request is read again (``JobOperator._made_from_now``)."""
    for job in RUNNING.values():
        job.undone = job.undone or "undo"


@persistent
def _on_redo(*_args) -> None:
    for job in RUNNING.values():
        job.undone = job.undone or "redo"


_HANDLERS = (("undo_post", _on_undo), ("redo_post", _on_redo))


def register() -> None:
    app_handlers.add(*_HANDLERS)


def unregister() -> None:
    app_handlers.remove(*_HANDLERS)


def running(operator: str | None = None) -> list[RunningJob]:
    return [j for j in RUNNING.values() if operator is None or j.operator == operator]


def cancel(job_id: str = "") -> tuple[int, int]:
    """Ask the backend to cancel a job (or every job); returns how many were asked now and how many
    had been asked before (still running: a second Cancel sends nothing)."""
    jobs = [j for j in RUNNING.values() if not job_id or j.handle.id == job_id]
    asked = [j for j in jobs if j.cancel_requested is None]
    for job in asked:
        job.cancel_requested = time.monotonic()
        job.handle.cancel()
    return len(asked), len(jobs) - len(asked)


@contextlib.contextmanager
def ctrl_c_pressed():
    """While a blocking job waits, Ctrl-C (SIGINT) sets the event it yields instead of raising.

    A ``KeyboardInterrupt`` can surface inside a Blender callback (a property update), which prints
    and swallows it, and the job would run on; an event is read by the wait loop whatever runs when
    the signal lands. Off the main thread signals cannot be caught: the event then never fires.
    """
    pressed = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.set())
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def _same_request(sent: tuple, now: tuple) -> bool:
    """Whether two (kind, params, arrays) requests are the same, array for array (NaN equal to NaN)."""
    (kind, params, arrays), (kind_now, params_now, arrays_now) = sent, now
    if kind != kind_now or params != params_now or arrays.keys() != arrays_now.keys():
        return False
    for name, value in arrays.items():
        a, b = np.asarray(value), np.asarray(arrays_now[name])
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            return False
    return True


def _lost_why(job: RunningJob) -> str:
    """Why a running job's connection is gone: what closed it (Stop Backend, a Connect elsewhere), or the local
    backend's exit (code and last lines)."""
    return (connection.closed_why(job.handle.client) or connection.BACKEND.problem
            or "the connection to the backend was closed before the job ended")


def _sync_panel() -> None:
    props = bpy.context.window_manager.handforge
    props.jobs.clear()
    for job in RUNNING.values():
        item = props.jobs.add()
        item.job_id, item.label = job.handle.id, job.label
        item.fraction, item.message = job.handle.fraction, job.handle.message or job.handle.state


def _redraw_panels(context) -> None:
    """A new preview is drawn at once (the sidebar redraws by itself only on its own events)."""
    for area in context.screen.areas if context.screen is not None else ():
        if area.type == "VIEW_3D":
            area.tag_redraw()


def escape_target(window: Any = None) -> RunningJob | None:
    """The job Esc pressed in ``window`` cancels now: the one started last there of those neither cancelling nor
    ended (Blender gives a window's events to its own modal handlers only)."""
    # (==, not is: bpy gives each access to a window a Python object of its own; == compares the windows)
    waiting = [job for job in RUNNING.values()
               if job.window == window and job.cancel_requested is None and not job.handle.done]
    return waiting[-1] if waiting else None


def status_job(window: Any = None) -> RunningJob | None:
    """The job the status bar of ``window`` shows: the one Esc cancels there, else (every job there cancelling)
    the one started last there. Several jobs' modals each set the bar at their ticks: it showed whichever ticked
    last, with "Esc to cancel" for a job Esc would not reach."""
    there = [job for job in RUNNING.values() if job.window == window]
    return escape_target(window) or (there[-1] if there else None)


def _status_text(job: RunningJob) -> str:
    h = job.handle
    state = f"{h.fraction:.0%} {h.message}".strip() if h.state == "running" else h.state
    if job.cancel_requested is not None:
        return f"HandForge: {job.label} — {state} — cancelling"
    return f"HandForge: {job.label} — {state} — Esc to cancel"


def copy_options(op, settings, options: type) -> None:
    """Give a panel's job button (``op``) the panel's ``settings`` for every option the ``options`` mixin
    declares: a feature declares its request options once, in a mixin shared by its settings property
    group and its operator (Blender reads property annotations from mixin classes)."""
    for name in options.__annotations__:
        setattr(op, name, getattr(settings, name))


class JobOperator:
    """Mixin for operators that run one backend job (combine with ``bpy.types.Operator``)."""

    bl_options = {"REGISTER", "UNDO"}
    job_kind = ""  # the kind, when it does not depend on the operator's properties
    # True for jobs that take seconds: a button (which calls execute) then runs them modally, with
    # progress and Esc, as invoke does; scripts and ``blender -b`` still wait for them.
    modal_from_ui = False
    # buttons of one group (e.g. "motion": they all write GENERATED keys on the hands) run one at a time:
    # a second one's result would replace the first's keys where their frames overlap, unsaid
    one_at_a_time = ""
    # False for a job whose result goes into no scene (a dataset written by the backend) or that finds the
    # scene it was made from itself (images): another scene shown when it ends does not keep it from being used
    scene_bound = True
    # True for a job whose result is written onto what its request read from the scene (keys, a pose): after
    # an undo or redo while it ran, ``job_request`` reads it again, and a result made from what is no longer
    # there is refused (keys around a key no longer there, candidates for a pose no longer shown); False for
    # one that adds something new that stands alone (hands, images carrying the pose they were made from)
    made_from_scene = False
    # True for a job whose result poses or keys the hands: greyed while one is in Edit Mode
    # (``hands.in_edit_mode``: the change could not be undone there), or any object is, for one with an undo step
    changes_hands = False
    # said after "cancelled" when stopping loses nothing done so far (e.g. an export that a rerun resumes)
    cancelled_hint = ""

    # ---------------------------------------------------------------- what subclasses define
    def job_prepare(self, context) -> None:
        """Set the scene up for reading the request, once, as the job starts (e.g. a preview taken off): called
        before ``job_request``, but not when the request is read again after an Undo or Redo, where what it did
        would go over what the artist did since. ``job_not_applied`` undoes it. Nothing by default."""

    def job_request(self, context) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(kind, params, arrays) to submit; raise a user error if the scene is not ready. Called again when
        the job ends after an Undo or Redo (``made_from_scene``): it must read the scene the same way twice and
        leave it as it found it (what it sets on the operator is set again to the same values; a change to the
        scene made for the first reading belongs in ``job_prepare``)."""
        raise NotImplementedError

    def job_apply(self, context, result: Result) -> str:
        """Put the result into the scene; returns a short message for the user, a ``Noted`` one when it says what
        did not happen as asked (reported as a warning, as a result with the backend's ``data["warning"]`` is)."""
        raise NotImplementedError

    def job_not_applied(self, context) -> None:
        """The job ended without its result in the scene (refused, cancelled, failed): undo what
        ``job_request`` set aside for it. Nothing by default."""

    # ---------------------------------------------------------------- availability
    @classmethod
    def poll(cls, context):
        why = connection.unavailable()  # a local backend that has exited is noticed here, at once
        if why:
            cls.poll_message_set(why)
            return False
        if running(cls.bl_idname):
            cls.poll_message_set("This job is running: wait for it or cancel it")
            return False
        busy = [j for j in RUNNING.values() if cls.one_at_a_time and j.group == cls.one_at_a_time]
        if busy:
            cls.poll_message_set(f"{busy[0].label} is running on the hands: wait for it or cancel it")
            return False
        if cls.job_kind:
            ok, why = connection.kind_status(cls.job_kind)
            if not ok:
                cls.poll_message_set(why)
                return False
        if not cls.changes_hands:
            return True
        # one with an undo step waits for any object's Edit Mode too (``hands.other_in_edit_mode``); a preview does not
        return (hands.poll_nothing_in_edit_mode if "UNDO" in cls.bl_options else hands.poll_not_in_edit_mode)(cls, context)

    # ---------------------------------------------------------------- running
    def _start(self, context) -> RunningJob | None:
        try:
            self.job_prepare(context)
            kind, params, arrays = self.job_request(context)
            ok, why = connection.kind_status(kind)
            if not ok and connection.BACKEND.capabilities is not None:
                raise ValueError(f"cannot run {kind}: {why}")
            handle = connection.require_client().submit(kind, params, arrays)
        except (*USER_ERRORS, JobFailed, ProtocolError) as exc:
            self.report({"ERROR"}, str(exc))
            self.job_not_applied(context)
            return None
        except Exception as exc:  # noqa: BLE001 - e.g. an unreadable input file: a message, not a traceback
            report_error(self, exc)
            self.job_not_applied(context)
            return None
        # the class's id, as ``poll`` sees it: an instance's ``bl_idname`` is Blender's HANDFORGE_OT_… form
        job = RunningJob(type(self).bl_idname, self.bl_label, handle, scene=context.scene.session_uid,
                         group=self.one_at_a_time, request=(kind, params, arrays) if self.made_from_scene else ())
        RUNNING[handle.id] = job
        _sync_panel()
        return job

    def invoke(self, context, event):
        if bpy.app.background or context.window is None:
            return self.execute(context)
        self._job = self._start(context)
        if self._job is None:
            return {"CANCELLED"}
        wm = context.window_manager
        self._job.window = context.window
        self._timer = self._job.timer = wm.event_timer_add(POLL_S, window=context.window)
        wm.modal_handler_add(self)
        context.workspace.status_text_set(_status_text(self._job))
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        try:
            return self._tick(context, event)
        except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in the console
            # (left to Blender, the modal ended and the job stayed listed as running, its button greyed and its
            # timer ticking, until Blender restarted)
            try:
                report_error(self, exc)
            finally:
                self.cancel(context)
                with contextlib.suppress(Exception):  # what job_request set aside (unless that is what failed)
                    self.job_not_applied(context)
            return {"CANCELLED"}

    def _tick(self, context, event):
        job = self._job
        if event.type == "ESC" and event.value == "PRESS" and job.cancel_requested is None and not job.handle.done:
            # one Esc, one job: Blender hands a window's events to its newest modal handler first
            # (wm_handler_operator_insert adds them at the head), so the job started last from this window is
            # cancelled and the Esc goes no further (passed on, it had cancelled every job running); a job already
            # cancelling, or ended and waiting for its tick to apply the result, passes it on to the one before it
            cancel(job.handle.id)
            return {"RUNNING_MODAL"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        connection.pump()
        if not job.handle.done and connection.BACKEND.client is None:  # the local backend exited
            return self._end(context, job, failure=_lost_why(job))
        if not job.handle.done and job.cancel_requested and time.monotonic() - job.cancel_requested > CANCEL_WAIT_S:
            return self._end(context, job, note="the backend did not confirm the cancel in time")
        if not job.handle.done:
            if status_job(job.window) is job:
                context.workspace.status_text_set(_status_text(job))
            _sync_panel()
            if job_previews.show(job.handle.id, job.handle.preview):
                _redraw_panels(context)
            return {"PASS_THROUGH"}
        return self._end(context, job)

    def cancel(self, context):
        """Blender ends the modal itself (another file opened), or a tick failed: the job is cancelled on the
        backend and forgotten; it stayed listed as running, its button greyed, until Blender restarted."""
        job = getattr(self, "_job", None)
        if job is None:  # no job started (e.g. Export's folder browser cancelled)
            return
        cancel(job.handle.id)  # (the module's cancel)
        RUNNING.pop(job.handle.id, None)
        job_previews.drop(job.handle.id)  # (no tick ends it now: its preview stayed for the rest of the session)
        with contextlib.suppress(Exception):  # its window may be gone
            context.window_manager.event_timer_remove(self._timer)
        with contextlib.suppress(Exception):  # (a job still running there shows itself again at its next tick)
            context.workspace.status_text_set(None)
        _sync_panel()

    def execute(self, context):
        """Blocking: for scripts and ``blender -b`` (Ctrl-C cancels); modal from the UI when ``modal_from_ui``."""
        if self.modal_from_ui and not bpy.app.background and context.window is not None:
            return self.invoke(context, None)
        job = self._start(context)
        if job is None:
            return {"CANCELLED"}
        shown = -1.0
        with ctrl_c_pressed() as pressed:
            while not job.handle.done and not pressed.is_set():
                connection.pump(POLL_S)
                if connection.BACKEND.client is None:  # the local backend exited: no answer will come
                    return self._end(context, job, failure=_lost_why(job))
                job_previews.show(job.handle.id, job.handle.preview)  # (a script may draw the UI meanwhile)
                if job.handle.fraction - shown >= 0.1:
                    shown = job.handle.fraction
                    print(_status_text(job).replace(" — Esc to cancel", ""), flush=True)
        if pressed.is_set() and not job.handle.done:
            cancel(job.handle.id)
            deadline = time.monotonic() + CANCEL_WAIT_S
            while not job.handle.done and time.monotonic() < deadline:
                connection.pump(POLL_S)
            # an error, not a warning: a script's bpy.ops call raises, so Ctrl-C stops a batch, not just this
            # job (the next job of its loop started, and one press per job was needed)
            return self._end(context, job, note="" if job.handle.done else
                             "the backend did not confirm the cancel in time", interrupted=True)
        return self._end(context, job)

    def _made_from_now(self, context, job: RunningJob) -> str:
        """After an undo or redo: why the result cannot be applied ('' when the request read from the scene now
        is the one that was sent: an undo of something else, a camera moved, leaves the result good)."""
        if not self.made_from_scene:
            return ""
        what = f"an {job.undone.capitalize()}" if job.undone == "undo" else f"a {job.undone.capitalize()}"
        try:
            now = self.job_request(context)
        except USER_ERRORS as exc:  # e.g. the keys gone, or a hand in Edit Mode now: say what the read found
            return f"after {what} while it ran, its request could not be read again ({exc})"
        except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in the console
            traceback.print_exception(exc)
            return (f"after {what} while it ran, its request could not be read again ({type(exc).__name__}: "
                    f"{exc}; see the system console)")
        if _same_request(job.request, now):
            return ""
        return f"the scene changed while it ran ({what} changed the keys or poses it was made from)"

    def _end(self, context, job: RunningJob, note: str = "", failure: str = "", interrupted: bool = False):
        RUNNING.pop(job.handle.id, None)
        job_previews.drop(job.handle.id)
        timer = getattr(self, "_timer", None)
        if timer is not None:
            context.window_manager.event_timer_remove(timer)
            self._timer = None
        if context.workspace is not None:
            context.workspace.status_text_set(None)
        _sync_panel()
        outcome = job.handle.outcome
        if isinstance(outcome, Cancelled) and outcome.reason == "closed" and not failure:
            failure = _lost_why(job)  # the connection was closed under the job (Stop Backend, Connect)
        if isinstance(outcome, Error) and not failure:  # was the connection lost because the local backend exited?
            failure = connection.check_local(grace=LOST_EXIT_GRACE_S if outcome.code == "backend_lost" else 0.0)
        if not failure and isinstance(outcome, Result) and self.scene_bound and context.scene.session_uid != job.scene:
            # made from another scene's (or file's) rigs and keys: it would land on whatever is here now
            failure = ("the scene changed while it ran (another scene or file is open now), so its result was not "
                       "applied: run it again from this scene")
        if not failure and isinstance(outcome, Result) and job.undone:
            changed = self._made_from_now(context, job)
            if changed:
                failure = f"{changed}, so its result was not applied: run it again on the scene as it is now"
        if not failure and isinstance(outcome, Result):
            try:
                text = self.job_apply(context, outcome)
                # a fallback or what did not happen as asked (the backend's warning, or the operator's own notes)
                # in the status bar's warning colour: an INFO line read as a plain success
                noted = isinstance(text, Noted) or bool(outcome.data.get("warning"))
                self.report({"WARNING"} if noted else {"INFO"}, text)
            except USER_ERRORS as exc:
                self.report({"ERROR"}, f"{job.label}: the result could not be used: {exc}")
                self.job_not_applied(context)
                return {"CANCELLED"}
            except Exception as exc:  # noqa: BLE001 - a bug: one line here, the traceback in the console
                report_error(self, exc)
                self.job_not_applied(context)
                return {"CANCELLED"}
            return {"FINISHED"}
        self.job_not_applied(context)
        # (only once the backend confirmed: a job it may still be running holds its folder, a rerun is refused)
        hint = f"; {self.cancelled_hint}" if self.cancelled_hint and isinstance(outcome, Cancelled) else ""
        if failure:
            self.report({"ERROR"}, f"{job.label} failed: {failure}")
        elif interrupted and (isinstance(outcome, Cancelled) or note):
            self.report({"ERROR"}, f"{job.label} cancelled: Ctrl-C" + (f" ({note})" if note else "") + hint)
        elif isinstance(outcome, Cancelled) or note:
            self.report({"WARNING"}, f"{job.label} cancelled" + (f" ({note})" if note else "") + hint)
        elif isinstance(outcome, Error):
            self.report({"ERROR"}, f"{job.label} failed [{outcome.code}]: {outcome}")
        return {"CANCELLED"}
