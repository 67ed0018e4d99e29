"""Errors the user can fix, and the one place operators turn them into reports."""

from __future__ import annotations

import functools
import traceback

from .hands import NoHandsError
from .rig import RigBuildError
from .shared.poses import PoseFormatError

# Problems with the user's input or scene: reported as they are, with how to fix them.
USER_ERRORS: tuple[type[BaseException], ...] = (NoHandsError, RigBuildError, PoseFormatError, ValueError,
                                                FileNotFoundError, PermissionError)


def reports_errors(execute):
    """Wrap an operator's ``execute``: a user error becomes ``self.report`` + CANCELLED, anything
    else is reported with its type (and printed with a traceback) instead of a bare Python error."""

    @functools.wraps(execute)
    def wrapper(self, context):
        try:
            return execute(self, context)
        except USER_ERRORS as exc:
            self.report({"ERROR"}, str(exc))
        except Exception as exc:  # noqa: BLE001 - the user gets a message, the console the traceback
            traceback.print_exc()
            self.report({"ERROR"}, f"HandForge failed ({type(exc).__name__}: {exc}); see the system console")
        return {"CANCELLED"}

    return wrapper
