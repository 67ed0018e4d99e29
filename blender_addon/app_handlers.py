"""Blender's application handlers (``bpy.app.handlers``) the add-on's modules add on register and remove on
unregister, one way for all: given as (handler list, function) pairs, each added once."""

from __future__ import annotations

import bpy


def add(*pairs: tuple[str, object]) -> None:
    """Add each function to its handler list (``"load_post"``, ``"undo_post"``, ...) unless it is there."""
    for name, fn in pairs:
        handlers = getattr(bpy.app.handlers, name)
        if fn not in handlers:
            handlers.append(fn)


def remove(*pairs: tuple[str, object]) -> None:
    for name, fn in pairs:
        handlers = getattr(bpy.app.handlers, name)
        if fn in handlers:
            handlers.remove(fn)
