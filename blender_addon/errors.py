"""Errors the user can fix, and the one place operators turn them into reports."""

from __future__ import annotations

import functools
import traceback

from .connection import BackendError
from .hands import NoHandsError
from .rig import RigBuildError
from handforge_shared.files import file_error
from handforge_shared.poses import PoseFormatError

# Problems with the user's input or scene: reported as they are, with how to fix them.
USER_ERRORS: tuple[type[BaseException], ...] = (NoHandsError, RigBuildError, PoseFormatError, BackendError, ValueError,
                                                FileNotFoundError, PermissionError)


def report_error(operator, exc: BaseException) -> None:
    """``exc`` as the operator's error report: a user error as it is, anything else with its type (its
    traceback printed to the system console) instead of a bare Python traceback in the report."""
    if isinstance(exc, OSError) and exc.errno is not None:  # the artist's files (a folder refusing the file)
        operator.report({"ERROR"}, file_error(exc, "choose another file or folder"))
        return
    if isinstance(exc, USER_ERRORS):
        operator.report({"ERROR"}, str(exc))
        return
    traceback.print_exception(exc)
    operator.report({"ERROR"}, f"HandForge failed ({type(exc).__name__}: {exc}); see the system console")


def reports_errors(method):
    """Wrap an operator's ``execute`` or ``invoke``: a user error becomes ``self.report`` + CANCELLED,
    anything else is reported with its type (and printed with a traceback) instead of a bare
    Python error. (Blender checks the argument count, so the wrapper keeps it.)"""

    def run(self, *args):
        try:
            return method(self, *args)
        except Exception as exc:  # noqa: BLE001 - the user gets a message, the console the traceback
            report_error(self, exc)
        return {"CANCELLED"}

    if method.__code__.co_argcount == 3:  # invoke(self, context, event)
        @functools.wraps(method)
        def invoke(self, context, event):
            return run(self, context, event)

        return invoke

    @functools.wraps(method)
    def execute(self, context):
        return run(self, context)

    return execute
