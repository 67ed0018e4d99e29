"""What a resumed run must train on again, for a dataset read from files (the loop's ``data_statistics``,
compared on resume): another folder of as many items was taken without a word, and the run went on on
other data. The engines whose data is tensors hash those instead (``engines.interaction.train``). And the
frozen weights a run trains against (``weights_fingerprint``: SD's, for the guidance and pose-transfer modules)."""

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


READ_WHOLE_BELOW = 1 << 20  # bytes: configs, a tokenizer's vocabulary
SAMPLED_BLOCKS = 16  # blocks of a larger file (weights) read, spread over it
SAMPLED_BLOCK = 1 << 16


def weights_fingerprint(path: Path, patterns: Iterable[str]) -> str:
    """What frozen weights a run trained against are, for a resume to compare ("7 files, blake2b …"): the files of
    the folder ``path`` its loader reads (``patterns``, globs under it: a README, an unused .ckpt or safety checker
    deleted meanwhile changes nothing), or the one file ``path``, by their names relative to it (not the single
    file's own name) and their sizes; files under 1 MB (configs, a tokenizer) read whole, larger ones (the weights:
    gigabytes, read at every start in seconds) at 16 blocks spread over each. Weights replaced in place by others
    (another model, a fine-tune, even of the same shapes) differ in every block, and were trained against unsaid
    (only the folder's path was recorded); the same weights copied elsewhere are the same, and resume. A folder
    linked in (``unet -> ../other/unet``) is read through its link."""
    path = Path(path)
    if path.is_file():
        files = {"": path}
    else:
        files = {f.relative_to(path).as_posix(): f for pattern in patterns for f in path.glob(pattern) if f.is_file()}
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(files):
        size = files[name].stat().st_size
        digest.update(f"{name}\0{size}\0".encode())
        with files[name].open("rb") as fh:
            if size < READ_WHOLE_BELOW:
                digest.update(fh.read())
                continue
            for k in range(SAMPLED_BLOCKS):  # the first block and the last among them
                fh.seek((size - SAMPLED_BLOCK) * k // (SAMPLED_BLOCKS - 1))
                digest.update(fh.read(SAMPLED_BLOCK))
    return f"{len(files)} file{'' if len(files) == 1 else 's'}, blake2b {digest.hexdigest()}"


__all__ = ["files_fingerprint", "weights_fingerprint"]
