"""Every frame of a clip source in one contiguous set of arrays, in memory or memory-mapped.

``ClipStore.build(source)`` reads each clip once into arrays of the dataset representation:
``<field>`` (N, 2, D) float32 and ``present`` (N, 2) bool over all N frames, clip i at rows
``starts[i]:starts[i + 1]``. With ``cache=FOLDER`` the arrays are written there as ``.npy`` files
and read back memory-mapped: memory stays bounded (the OS pages in what is read; DataLoader
workers share the pages), a store pickles as its folder name, and the next run reuses the folder
while the source is unchanged (same clip files, sizes and modification times).
The full corpus (3.7 M frames) takes 1.8 GB either way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from handforge.datasets.representation import DTYPE, FIELDS, HAND_AXIS, ClipInfo, ClipSource, DatasetError, \
    clip_arrays
from handforge_shared.files import existing_ancestor, file_kind, parse_json, replace_held

ARRAYS = (*FIELDS, "present")
CACHE_FORMAT = "handforge.clip-store"
CACHE_VERSION = 1


class ClipStore:
    """Contiguous frames of many clips; ``clip(i)`` and ``frames(i, start, stop)`` return views."""

    def __init__(self, clips: tuple[ClipInfo, ...], arrays: dict[str, np.ndarray], cache: Path | None = None):
        self.clips = clips
        self.arrays = arrays
        self.cache = cache
        self.starts = np.concatenate([[0], np.cumsum([c.num_frames for c in clips])]).astype(np.int64)
        if len(arrays["present"]) != self.starts[-1]:
            raise DatasetError(f"{cache or 'clip store'}: holds {len(arrays['present'])} frames but its clips "
                               f"add up to {self.starts[-1]}; delete the cache folder to rebuild it")

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def num_frames(self) -> int:
        return int(self.starts[-1])

    def frames(self, clip: int, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """Frames ``start:stop`` of clip ``clip`` as views (read-only when memory-mapped)."""
        first, end = int(self.starts[clip]), int(self.starts[clip + 1])
        stop = end - first if stop is None else stop
        if not 0 <= start <= stop <= end - first:
            raise IndexError(f"frames {start}:{stop} outside clip {clip} of {end - first} frames")
        return {k: a[first + start:first + stop] for k, a in self.arrays.items()}

    # ------------------------------------------------------------------ building and caching
    @classmethod
    def build(cls, source: ClipSource, cache: str | os.PathLike | None = None, progress: bool = False) -> "ClipStore":
        """Read every clip of ``source`` once; with ``cache``, into (or from) memory-mapped files."""
        clips = tuple(source.clips)
        if not clips:
            raise DatasetError("no clips to read: the source (split, max_clips) selected none")
        if cache is None:
            arrays = _empty(sum(c.num_frames for c in clips), lambda name, shape, dtype: np.zeros(shape, dtype))
            _fill(arrays, source, clips, progress)
            return cls(clips, arrays)
        cache = Path(cache).expanduser()
        blocked = existing_ancestor(cache)  # (a file there raised NotADirectoryError from iterdir or mkdir)
        if not blocked.is_dir():
            kind = "a file" if blocked.is_file() else file_kind(blocked)
            raise DatasetError(f"{blocked} is {kind}: give a folder for the cache (new, empty or a cache)")
        fingerprint = _fingerprint(source, clips)
        if cache.exists() and any(cache.iterdir()):
            # Only a folder this class wrote is ever replaced.
            if _read_manifest(cache).get("fingerprint") == fingerprint:
                return cls.open(cache)
        work = cache.parent / f".{cache.name}.partial-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            arrays = _empty(sum(c.num_frames for c in clips), lambda name, shape, dtype: np.lib.format.open_memmap(
                work / f"{name}.npy", mode="w+", dtype=dtype, shape=shape))
            _fill(arrays, source, clips, progress)
            for a in arrays.values():
                a.flush()
            del arrays
            (work / "clips.json").write_text(json.dumps({
                "format": CACHE_FORMAT, "version": CACHE_VERSION, "fingerprint": fingerprint,
                "hand_axis": list(HAND_AXIS), "clips": [c.to_dict() for c in clips]}))
            shutil.rmtree(cache, ignore_errors=True)
            replace_held(work, cache)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return cls.open(cache)

    @classmethod
    def open(cls, cache: str | os.PathLike) -> "ClipStore":
        """A store written by ``build(..., cache=...)``, memory-mapped read-only."""
        cache = Path(cache).expanduser()
        manifest = _read_manifest(cache)
        try:
            clips = tuple(ClipInfo(**c) for c in manifest["clips"])
            arrays = {name: np.load(cache / f"{name}.npy", mmap_mode="r", allow_pickle=False) for name in ARRAYS}
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise DatasetError(f"{cache}: a damaged clip-store cache ({type(exc).__name__}: {exc}); delete the "
                               "folder and build it again") from None
        return cls(clips, arrays, cache)

    def __getstate__(self) -> dict[str, Any]:
        # A memory-mapped store travels to DataLoader workers as its folder name, not its frames.
        return {"cache": self.cache} if self.cache is not None else dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "arrays" in state:
            self.__dict__.update(state)
        else:
            self.__dict__.update(ClipStore.open(state["cache"]).__dict__)


def _empty(frames: int, make: Any) -> dict[str, np.ndarray]:
    hands = len(HAND_AXIS)
    arrays = {name: make(name, (frames, hands, size), DTYPE) for name, size in FIELDS.items()}
    arrays["present"] = make("present", (frames, hands), np.bool_)
    return arrays


def _fill(arrays: dict[str, np.ndarray], source: ClipSource, clips: tuple[ClipInfo, ...], progress: bool) -> None:
    from tqdm import tqdm

    row = 0
    for i in tqdm(range(len(clips)), desc="frames", unit="clip", disable=not progress):
        clip_data = clip_arrays(source.load(i))
        n = clips[i].num_frames
        for name, values in clip_data.items():
            arrays[name][row:row + n] = values
        row += n


def _fingerprint(source: ClipSource, clips: tuple[ClipInfo, ...]) -> str:
    """What the cache was built from: the clips' infos and their files' sizes and times, or, for clips
    held in memory (InterHand2.6M's, made flat with a hands_mean), their values themselves."""
    digest = hashlib.sha256(json.dumps([c.to_dict() for c in clips], sort_keys=True).encode())
    for path in getattr(source, "paths", ()):
        stat = Path(path).stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for motion in getattr(source, "motions", ()):  # no file to stat: another hands_mean or JSON gives other values
        for name, values in sorted(clip_arrays(motion).items()):
            digest.update(name.encode() + np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def _read_manifest(cache: Path) -> dict[str, Any]:
    path = cache / "clips.json"
    try:
        manifest = parse_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file, so {cache} is not a clip-store cache; give an empty or new "
                           "folder to ClipStore.build(source, cache=...)") from None
    except (OSError, ValueError) as exc:  # (not UTF-8, not JSON, nested too deeply, a number of 5,000 digits)
        raise DatasetError(f"{path}: not readable JSON ({exc}); delete {cache} and build it again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != CACHE_FORMAT \
            or manifest.get("version") != CACHE_VERSION:
        raise DatasetError(f"{cache} is not a clip-store cache of this HandForge version; delete it to rebuild")
    return manifest
