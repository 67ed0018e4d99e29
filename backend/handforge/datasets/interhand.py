"""InterHand2.6M MANO sequences as clips of the dataset representation.

The dataset (Moon et al., ECCV 2020, https://mks0601.github.io/InterHand2.6M/; CC BY-NC 4.0, never
shipped) keeps one annotation folder per split, as its release lays them out::

    ROOT/annotations/{train,val,test}/InterHand2.6M_{split}_MANO_NeuralAnnot.json

Each capture is read as one clip (``interhand_files.capture_clips``: annotated frames in order,
presence masks, ``extra["frame_indices"]``) and cut where its frame indices jump by more than the
capture's annotation step: a capture holds many recorded sequences one after another, and a motion
window must not span two of them. The pieces are named ``<capture>/<k>`` (a capture without jumps
keeps its id); their split is the folder they came from ("val" is called "validation" here, like the
corpus), their group the capture id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from handforge.datasets import interhand_files as interhand
from handforge.datasets.corpus import select_clips
from handforge.datasets.representation import ClipInfo, ClipList, DatasetError
from handforge_shared.poses import MotionClip, PoseFormatError
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
    (``ManoModel.hands_mean_arrays()``): see ``interhand_files``.
    """
    if split not in SPLIT_FOLDERS:
        raise DatasetError(f"unknown split {split!r}: use {', '.join(SPLIT_FOLDERS)}")
    try:
        clips = interhand.capture_clips(source, fps=fps, hands_mean=hands_mean)
    except PoseFormatError as exc:
        raise DatasetError(str(exc)) from None
    infos, motions = [], []
    for capture, whole in clips.items():
        pieces = continuous_pieces(whole)
        for k, clip in enumerate(pieces):
            infos.append(ClipInfo(source=INTERHAND_SOURCE, name=capture if len(pieces) == 1 else f"{capture}/{k}",
                                  split=split, fps=clip.fps, num_frames=clip.num_frames, hand_model=clip.hand_model,
                                  group=capture, pose_convention=clip.extra["pose_convention"], extra=dict(clip.extra)))
            motions.append(clip)
    if not infos:  # said here, with the file: the store's "the source selected none" blamed split and max_clips
        where = source if isinstance(source, (str, os.PathLike)) else "the annotations"
        raise DatasetError(f"{where}: no annotated hand in any capture (an empty or all-null annotation file?)")
    return ClipList(clips=tuple(infos), motions=tuple(motions))


def continuous_pieces(clip: MotionClip) -> list[MotionClip]:
    """A capture's clip cut where ``extra["frame_indices"]`` jumps by more than 1.5 times its usual
    (median) step; pieces in which no hand is annotated are dropped. (Against the smallest step, one
    stray index cut a whole capture into one-frame pieces.)"""
    indices = np.asarray(clip.extra["frame_indices"])
    steps = np.diff(indices)
    cuts = np.flatnonzero(steps > 1.5 * np.median(steps)) + 1 if len(indices) > 1 else []
    bounds = [0, *map(int, cuts), len(indices)]
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        present = {s: m[a:b] for s, m in clip.present.items()}
        if not any(m.any() for m in present.values()):
            continue
        pieces.append(MotionClip(hands={s: p[a:b] for s, p in clip.hands.items()}, present=present, fps=clip.fps,
                                 hand_model=clip.hand_model,
                                 extra={**clip.extra, "frame_indices": indices[a:b].tolist()}))
    return pieces


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
