"""Deterministic JSON (``dumps``: equal labels are equal bytes), and aggregate files written item by
item as the samples are read (``streamed_json``): all of a 100,000-sample dataset's labels took gigabytes.
"""

from __future__ import annotations

import array
import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator

from handforge_shared.files import TEMPORARY_SUFFIX, atomic_file, errors_named


def dumps(data: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Deterministic JSON (sorted keys) so equal labels are equal bytes; ``default`` as ``json.dumps``'s."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False, default=default)


class _Items:
    """The items of a JSON array or object in a ``streamed_json`` file, written one at a time into an
    unnamed temporary file (``file``: open inside the ``streamed_json`` block)."""

    brackets = ""

    def __init__(self) -> None:
        self.file: IO[str] | None = None
        self.empty = True

    def _write(self, text: str) -> None:
        self.file.write(text if self.empty else "," + text)
        self.empty = False

    def copy_to(self, fh: IO[str]) -> None:
        self.file.seek(0)
        fh.write(self.brackets[0])
        shutil.copyfileobj(self.file, fh)
        fh.write(self.brackets[1])


class JsonArray(_Items):
    """Its items in the order they are appended."""

    brackets = "[]"

    def append(self, value: Any) -> None:
        self._write(dumps(value))

    def extend(self, values: Iterable[Any]) -> None:
        for value in values:
            self.append(value)


class KeyedJsonObject(_Items):
    """A JSON object whose keys may come in any order (not twice): each item is written as it comes and
    the file gets them in the order ``dumps`` sorts keys into, read back from where each was written. Memory
    keeps each key and where its item ends (8 bytes), not the items: the InterHand2.6M-style files are keyed
    by the sample index as text ("10" before "2") and filled in the one pass over the samples in index order."""

    brackets = "{}"

    def __init__(self) -> None:
        super().__init__()
        self.keys: list[str] = []
        self.ends = array.array("q")  # each item's end in the file (items are written back to back)

    def put(self, key: str, value: Any) -> None:
        text = dumps(key) + ":" + dumps(value)
        self.file.write(text)
        self.keys.append(key)
        self.ends.append((self.ends[-1] if self.ends else 0) + len(text))

    def copy_to(self, fh: IO[str]) -> None:
        order = sorted(range(len(self.keys)), key=self.keys.__getitem__)
        self.file.flush()
        items = self.file.buffer  # read as bytes: dumps writes ASCII (it escapes the rest), a character a byte
        fh.write(self.brackets[0])
        for place, k in enumerate(order):
            if place and self.keys[k] == self.keys[order[place - 1]]:
                raise ValueError(f"key {self.keys[k]!r} put twice in a streamed object")
            start = self.ends[k - 1] if k else 0
            items.seek(start)
            fh.write(("," if place else "") + items.read(self.ends[k] - start).decode("ascii"))
        fh.write(self.brackets[1])


_HOLE = "\0streamed items\0"  # in no template: where a JsonArray's or KeyedJsonObject's items go


@contextlib.contextmanager
def streamed_json(path: Path, template: dict[str, Any]) -> Iterator[None]:
    """``path`` as ``dumps(template)`` would write it, where the template's ``JsonArray`` and
    ``KeyedJsonObject`` values are filled inside the block, each into an unnamed temporary file beside
    ``path`` (memory stays the same however many items they get). Whole or not at all: the file is
    assembled in ``atomic_file``'s temporary file and renamed into place when the block ends without
    an error."""
    holes: list[_Items] = []

    def hole(value: Any) -> str:  # json.dumps calls it in the order it writes, keys sorted
        if not isinstance(value, _Items):
            raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
        holes.append(value)
        return _HOLE

    frame = dumps(template, default=hole).split(dumps(_HOLE))
    path.parent.mkdir(parents=True, exist_ok=True)
    # (around the block too: the temporary files' writes are buffered, and fail at a later write or as they close)
    with errors_named(path), contextlib.ExitStack() as stack:
        for items in holes:
            items.file = stack.enter_context(tempfile.TemporaryFile(
                "w+", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX))
        yield
        with atomic_file(path) as fh:
            fh.write(frame[0])
            for items, text in zip(holes, frame[1:]):
                items.copy_to(fh)
                fh.write(text)
