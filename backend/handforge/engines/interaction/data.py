"""Training and evaluation pairs: two-hand frames in contact, as (anchor, other) vectors.

Open corpus clips give the frames inside their ``contact_frames`` ranges (the rest of a corpus clip
is hands apart, waving, counting alone); InterHand2.6M sequences give every frame where both
hands are annotated (its interacting captures). Each frame is used twice, once with each hand as
the anchor (the mirrored copy, ``FrameDataset(mirror=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handforge.datasets import ClipStore, FrameDataset, check_clips, open_corpus, open_interhand, reach_problem
from handforge.datasets.representation import mirror_arrays
from handforge.engines.interaction.representation import encode, pair_from_batch
from handforge.hands.wrists import WristJoints

FIELDS = ("global_orient", "hand_pose", "betas", "transl")


@dataclass
class Pairs:
    """Two-hand frames (fields (N, 2, n), hand axis left, right), float32, and the clip each frame
    comes from (N,) (frames of one clip are near copies of each other: an evaluation keeps its
    reference and its ground-truth draw in different clips)."""

    arrays: dict[str, torch.Tensor]
    clips: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.arrays["global_orient"])

    def take(self, index: Any) -> "Pairs":
        return Pairs({k: v[index] for k, v in self.arrays.items()}, None if self.clips is None else self.clips[index])

    def mirrored(self) -> "Pairs":
        return Pairs({k: v for k, v in mirror_arrays({**self.arrays, "present": torch.ones(len(self), 2)}).items()
                      if k in FIELDS}, self.clips)

    def vectors(self, wrists: WristJoints) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor, other) vectors with the left hand as the anchor."""
        return encode(pair_from_batch(self.arrays), wrists)


def interaction_frames(dataset: FrameDataset) -> np.ndarray:
    """Indices (into the unmirrored half of ``dataset``) of frames where the hands interact."""
    keep = np.zeros(len(dataset.clip_ids), dtype=bool)
    for c, info in enumerate(dataset.store.clips):
        rows = np.flatnonzero(dataset.clip_ids == c)
        meta = info.extra.get("corpus")
        if meta is None:  # not a corpus clip (InterHand2.6M): both hands present is the criterion
            keep[rows] = True
            continue
        frames = dataset.firsts[rows]
        for first, last, _ in meta.get("contact_frames", []):
            keep[rows[(frames >= first) & (frames <= last)]] = True
    return np.flatnonzero(keep)


def load_pairs(corpus: str | Path | None = None, split: str = "train", interhand: str | Path | None = None,
               hands_mean: Any = None, stride: int = 1, max_clips: int | None = None, mirror: bool = True,
               cache: str | Path | None = None) -> Pairs:
    """The interaction frames of a corpus folder and/or an InterHand2.6M root, as one ``Pairs``."""
    sources = []
    if corpus is not None:
        source = open_corpus(corpus, split=split, max_clips=max_clips)
        if not len(source):  # the store's "the source (split, max_clips) selected none" named neither
            raise ValueError(f"the {split} split of {corpus} holds no clips (a corpus is split by groups of sequences: "
                             "a few sequences may all land in the other splits): make a larger corpus")
        # encoded on the open hand's wrist joints (train/eval): MANO clips or raw poses were read as open ones, unsaid
        check_clips(source.clips, "open", "--corpus takes open-hand clips with flat poses (`handforge corpus` writes "
                                          "them); give MANO poses as InterHand2.6M annotations with --interhand")
        sources.append(source)
    if interhand is not None:
        sources.append(open_interhand(interhand, split=split, hands_mean=hands_mean, max_clips=max_clips))
    if not sources:
        raise ValueError("give a corpus folder (--corpus) and/or an InterHand2.6M root (--interhand)")
    parts, clips, offset = [], [], 0
    for k, source in enumerate(sources):
        store = ClipStore.build(source, cache=None if cache is None else Path(cache) / f"{split}-{k}.store")
        # a hand at 1e30 m (finite, so a valid clip) stretched the normalisation of every translation, unsaid
        far = reach_problem(store.arrays, store.starts, [f"clip {c.name}" for c in store.clips])
        if far:
            raise ValueError(far)
        frames = FrameDataset(store, stride=stride, both_hands=True)
        rows = interaction_frames(frames)
        starts = store.starts[frames.clip_ids[rows]] + frames.firsts[rows]
        parts.append({f: torch.from_numpy(np.asarray(store.arrays[f][starts], dtype=np.float32)) for f in FIELDS})
        clips.append(torch.from_numpy(frames.clip_ids[rows].astype(np.int64)) + offset)  # unique across sources
        offset += len(store.clips)
    pairs = Pairs({f: torch.cat([p[f] for p in parts]) for f in FIELDS}, torch.cat(clips))
    if not len(pairs):
        skipped = (f"; one frame in {stride} (--stride) may have skipped every contact: lower it"
                   if stride > 1 else "")
        raise ValueError(f"no interaction frames in the {split} split (corpus clips need contact_frames{skipped})"
                         + (": make a larger corpus" if corpus is not None else ""))
    if not mirror:
        return pairs
    return Pairs({f: torch.cat([pairs.arrays[f], pairs.mirrored().arrays[f]]) for f in FIELDS},
                 torch.cat([pairs.clips, pairs.clips]))


__all__ = ["Pairs", "interaction_frames", "load_pairs"]
