"""torch datasets over a ``ClipStore``: single frames (interaction, features) and fixed-length
windows (motion, features). Samples are dicts of tensors in the package's representation.

Both are map-style, picklable, and compute their index once (numpy, a few bytes per sample), so
DataLoader workers start fast. ``mirror=True`` doubles the dataset: sample ``i + len/2`` is the
mirror image of sample ``i`` (``mirror_arrays``), a deterministic left↔right augmentation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from handforge.datasets.representation import ClipInfo, DatasetError, mirror_arrays
from handforge.datasets.store import ClipStore


class _StoreDataset(Dataset):
    def __init__(self, store: ClipStore, clip_ids: np.ndarray, firsts: np.ndarray, mirror: bool):
        if not len(clip_ids):
            raise DatasetError(self._empty_message(store))
        self.store = store
        self.clip_ids = clip_ids.astype(np.int64)
        self.firsts = firsts.astype(np.int64)  # first frame of each sample within its clip
        self.mirror = bool(mirror)

    def _empty_message(self, store: ClipStore) -> str:
        return f"no samples: the {len(store)} clips hold none with these settings"

    def __len__(self) -> int:
        return len(self.clip_ids) * (2 if self.mirror else 1)

    def info(self, index: int) -> ClipInfo:
        """The ``ClipInfo`` of sample ``index``'s clip."""
        return self.store.clips[int(self.clip_ids[index % len(self.clip_ids)])]

    def _sample(self, index: int, length: int | None) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"sample {index} of {len(self)}")
        index %= len(self)
        base, mirrored = index % len(self.clip_ids), index >= len(self.clip_ids)
        clip, first = int(self.clip_ids[base]), int(self.firsts[base])
        views = self.store.frames(clip, first, first + (length or 1))
        arrays = {k: np.array(v[0] if length is None else v) for k, v in views.items()}  # own, writable copies
        if mirrored:
            arrays = mirror_arrays(arrays)
        sample = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        sample.update(clip=torch.tensor(clip), frame=torch.tensor(first), mirrored=torch.tensor(mirrored))
        return sample


class FrameDataset(_StoreDataset):
    """Single two-hand frames: ``global_orient`` (2, 3), ``hand_pose`` (2, 45), ``betas`` (2, 10),
    ``transl`` (2, 3) float32, ``present`` (2,) bool, ``clip`` / ``frame`` (where it came from),
    ``mirrored``. Every ``stride``-th frame of each clip; ``both_hands`` keeps only frames where both
    hands are present (what a two-hand interaction model learns from)."""

    def __init__(self, store: ClipStore, stride: int = 1, both_hands: bool = False, mirror: bool = False):
        if not isinstance(stride, int) or stride < 1:
            raise DatasetError(f"stride must be a positive integer, got {stride!r}")
        clip_ids, firsts = [], []
        present = store.arrays["present"]
        for c in range(len(store)):
            frames = np.arange(0, store.clips[c].num_frames, stride)
            if both_hands:
                frames = frames[present[store.starts[c] + frames].all(axis=1)]
            clip_ids.append(np.full(len(frames), c))
            firsts.append(frames)
        self.stride, self.both_hands = stride, both_hands
        super().__init__(store, np.concatenate(clip_ids), np.concatenate(firsts), mirror)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._sample(index, None)


class WindowDataset(_StoreDataset):
    """Windows of ``length`` consecutive frames: every field gains a leading time axis
    (``hand_pose`` (T, 2, 45), ``present`` (T, 2)); ``frame`` is the window's first frame.

    Windows start every ``stride`` frames and lie wholly inside one clip; clips shorter than
    ``length`` give none. ``length=None`` gives one window per clip of its whole length (batch
    those with ``batch_size=1`` or a padding collate, since lengths differ)."""

    def __init__(self, store: ClipStore, length: int | None, stride: int | None = None, mirror: bool = False):
        if length is not None and (not isinstance(length, int) or length < 1):
            raise DatasetError(f"length must be a positive integer or None, got {length!r}")
        stride = (length or 1) if stride is None else stride  # (0 is no default: refused below)
        if not isinstance(stride, int) or stride < 1:
            raise DatasetError(f"stride must be a positive integer, got {stride!r}")
        clip_ids, firsts = [], []
        for c, info in enumerate(store.clips):
            starts = [0] if length is None else np.arange(0, info.num_frames - length + 1, stride)
            clip_ids.append(np.full(len(starts), c))
            firsts.append(np.asarray(starts, dtype=np.int64))
        self.length, self.stride = length, stride
        super().__init__(store, np.concatenate(clip_ids), np.concatenate(firsts), mirror)

    def _empty_message(self, store: ClipStore) -> str:
        longest = max((c.num_frames for c in store.clips), default=0)
        return f"no windows: none of the {len(store)} clips is {self.length} frames long (the longest has {longest})"

    def __getitem__(self, index: int) -> dict[str, Any]:
        base = index % len(self)
        length = self.length or self.store.clips[int(self.clip_ids[base % len(self.clip_ids)])].num_frames
        return self._sample(index, length)
