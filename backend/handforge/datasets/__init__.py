"""Datasets: the open corpus, plain folders of motion clips and InterHand2.6M MANO sequences,
read the same way by every engine.

Representation (``representation.py``)
    A sample is a dict of tensors. Per frame and hand, the pose parameters in the shared
    conventions (``handforge_shared.skeleton``; README "Conventions"), float32:

        global_orient  (..., 2, 3)    wrist axis-angle
        hand_pose      (..., 2, 45)   15 finger-joint axis-angles, MANO joint order
        betas          (..., 2, 10)   shape
        transl         (..., 2, 3)    metres, model frame
        present        (..., 2)       bool; where False the hand is missing and its values are 0

    The hand axis is ``HAND_AXIS`` = ("left", "right"). A frame sample has no leading axis, a
    window of T frames has (T, ...). Every sample also carries ``clip`` (index into the dataset's
    clips), ``frame`` (its first frame within that clip) and ``mirrored``; ``dataset.info(i)``
    gives the clip's ``ClipInfo``: source, name, split, fps, num_frames, hand_model ("open" or
    "mano"), group (person group / capture, the unit splits keep together), pose_convention
    ("flat", or "mean_relative" for raw InterHand2.6M) and the clip's own metadata (``extra``).
    Rotation formats (6D, matrices) and normalisation are the engine's business, not the dataset's.

Reading
    ``open_corpus(folder, split=..., max_clips=...)``  a ``handforge corpus`` folder (splits.json)
    ``open_motion_folder(folder)``                       any folder of ``.npz`` motion clips
    ``open_interhand(root, split=..., fps=...)``         InterHand2.6M annotations/{train,val,test}
    (``interhand_files`` parses the dataset's JSON files: MANO annotations, cameras.)
    Each gives a clip source (``.clips`` infos, ``.load(i)``, ``.iter_clips(progress=...)``).
    ``ClipStore.build(source, cache=FOLDER)`` puts all frames in one contiguous array set
    (memory-mapped with a cache folder), and ``FrameDataset`` / ``WindowDataset`` serve samples
    from it to a ``torch.utils.data.DataLoader`` (workers included).

Example::

    store = ClipStore.build(open_corpus("data/corpus", split="train"), cache="data/corpus-train.store")
    windows = WindowDataset(store, length=64, stride=16, mirror=True)
    batch = next(iter(DataLoader(windows, batch_size=32, shuffle=True, num_workers=2)))
    batch["hand_pose"].shape  # (32, 64, 2, 45)
"""

from handforge.datasets import interhand_files
from handforge.datasets.corpus import (
    SPLITS,
    SPLITS_FORMAT,
    ClipFiles,
    load_clip,
    open_corpus,
    open_motion_folder,
    read_clip_info,
    read_splits,
)
from handforge.datasets.interhand import annotation_file, interhand_clips, open_interhand
from handforge.datasets.representation import (
    FIELDS,
    HAND_AXIS,
    ClipInfo,
    ClipList,
    DatasetError,
    arrays_to_clip,
    check_clips,
    clip_arrays,
    mirror_arrays,
    reach_problem,
)
from handforge.datasets.store import ClipStore
from handforge.datasets.torch_datasets import FrameDataset, WindowDataset

__all__ = [
    "FIELDS", "HAND_AXIS", "SPLITS", "SPLITS_FORMAT", "ClipFiles", "ClipInfo", "ClipList", "ClipStore",
    "DatasetError", "FrameDataset", "WindowDataset", "annotation_file", "arrays_to_clip", "check_clips", "clip_arrays",
    "interhand_clips", "interhand_files", "load_clip", "mirror_arrays", "open_corpus", "open_interhand", "open_motion_folder",
    "reach_problem", "read_clip_info", "read_splits",
]
