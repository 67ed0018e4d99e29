"""The hand models' one error type, importable without torch (availability checks run at server start)."""


class HandModelError(RuntimeError):
    """A hand model cannot be loaded or used; the message says what to do."""


__all__ = ["HandModelError"]
