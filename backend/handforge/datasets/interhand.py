"""InterHand2.6M MANO sequences as clips of the dataset representation.

The dataset (Moon et al., ECCV 2020, https://mks0601.github.io/InterHand2.6M/; CC BY-NC 4.0, never
shipped) keeps one annotation folder per split, as its release lays them out::

    ROOT/annotations/{train,val,test}/InterHand2.6M_{split}_MANO_NeuralAnnot.json

Each capture becomes one clip (``handforge_shared.interhand.capture_clips``: annotated frames in
order, presence masks, ``extra["frame_indices"]``); its split is the folder it came from ("val" is
called "validation" here, like the corpus), its group the capture id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from handforge.datasets.corpus import select_clips
from handforge.datasets.representation import ClipInfo, ClipList, DatasetError
from handforge_shared import interhand
from handforge_shared.poses import PoseFormatError
from handforge_shared.skeleton import Side

INTERHAND_SOURCE = "InterHand2.6M"
SPLIT_FOLDERS = {"train": "train", "validation": "val", "test": "test"}  # our split → the release's folder


def annotation_file(root: str | os.PathLike, split: str) -> Path:
    """The MANO annotation file of a split under an InterHand2.6M root (or its ``annotations`` folder)."""
    if split not in SPLIT_FOLDERS:
        raise DatasetError(f"unknown split {split!r}: use {', '.join(SPLIT_FOLDERS)}")
    root = Path(root).expanduser()
    folder = SPLIT_FOLDERS[split]
    name = f"InterHand2.6M_{folder}_MANO_NeuralAnnot.json"
    for base in (root / "annotations", root):
        if (base / folder / name).is_file():
            return base / folder / name
    raise DatasetError(f"{root}: no {folder}/{name} under it or under its annotations folder; give the "
                       "InterHand2.6M root that holds annotations/{train,val,test}")


def interhand_clips(source: str | os.PathLike | Mapping[str, Any], split: str, fps: float = 30.0,
                    hands_mean: Mapping[Side, Any] | None = None) -> ClipList:
    """One split's captures as clips; ``source`` is an annotation file or its parsed JSON.

    Hand poses stay mean-relative (``ClipInfo.pose_convention``) unless ``hands_mean`` is given
    (``ManoModel.hands_mean_arrays()``): see ``handforge_shared.interhand``.
    """
    if split not in SPLIT_FOLDERS:
        raise DatasetError(f"unknown split {split!r}: use {', '.join(SPLIT_FOLDERS)}")
    try:
        clips = interhand.capture_clips(source, fps=fps, hands_mean=hands_mean)
    except PoseFormatError as exc:
        raise DatasetError(str(exc)) from None
    infos = tuple(ClipInfo(source=INTERHAND_SOURCE, name=capture, split=split, fps=clip.fps,
                           num_frames=clip.num_frames, hand_model=clip.hand_model, group=capture,
                           pose_convention=clip.extra["pose_convention"], extra=dict(clip.extra))
                  for capture, clip in clips.items())
    return ClipList(clips=infos, motions=tuple(clips.values()))


def open_interhand(root: str | os.PathLike, split: str | Sequence[str] | None = None, fps: float = 30.0,
                   hands_mean: Mapping[Side, Any] | None = None, max_clips: int | None = None) -> ClipList:
    """The captures of an InterHand2.6M root: one split, several, or (None) every split present."""
    wanted = list(SPLIT_FOLDERS) if split is None else [split] if isinstance(split, str) else list(split)
    files = {}
    for s in wanted:
        try:
            files[s] = annotation_file(root, s)
        except DatasetError:
            if split is not None:
                raise
    if not files:
        raise DatasetError(f"{root}: no InterHand2.6M MANO annotations (annotations/{{train,val,test}}/"
                           "InterHand2.6M_*_MANO_NeuralAnnot.json)")
    parts = [interhand_clips(path, s, fps, hands_mean) for s, path in files.items()]
    infos = tuple(c for p in parts for c in p.clips)
    motions = tuple(m for p in parts for m in p.motions)
    keep = select_clips(infos, None, max_clips)
    return ClipList(clips=tuple(infos[i] for i in keep), motions=tuple(motions[i] for i in keep))
