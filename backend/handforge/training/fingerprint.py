"""What a resumed run must train on again, for a dataset read from files (the loop's ``data_statistics``,
compared on resume): another folder of as many items was taken without a word, and the run went on on
other data. The engines whose data is tensors hash those instead (``engines.interaction.train``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable


def files_fingerprint(root: Path, read: Iterable[Path], listed: Iterable[Path]) -> dict[str, object]:
    """A BLAKE2b of the files under ``root`` that say what each item is, read whole (labels, captions,
    annotations), and of the names and sizes of the large ones (images: reading gigabytes at every start
    would cost minutes, and an image made again from other labels is said by its labels). Paths count
    relative to ``root``, so the same data moved elsewhere resumes."""
    digest = hashlib.blake2b(digest_size=16)
    count = 0
    for kind, paths in ((b"read", read), (b"listed", listed)):
        for path in sorted(paths):
            digest.update(kind + b"\0" + path.relative_to(root).as_posix().encode() + b"\0")
            if kind == b"read":
                with path.open("rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(block)
            else:
                digest.update(str(path.stat().st_size).encode())
            digest.update(b"\0")
            count += 1
    return {"files": count, "blake2b": digest.hexdigest()}


__all__ = ["files_fingerprint"]
