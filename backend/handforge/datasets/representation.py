"""The one sample representation every engine reads (see the package docstring for the layout).

numpy here; the torch datasets (``torch_datasets``) convert each sample as they hand it out, so that the stores
and the readers stay usable without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Mapping, Protocol, Sequence

import numpy as np

from handforge_shared.poses import MAX_REACH_M, POSE_FIELDS, HandPose, MotionClip
from handforge_shared.rotations import mirror_axis_angle, mirror_points
from handforge_shared.skeleton import SIDES

HAND_AXIS = SIDES  # the order of the hand axis in every array: 0 = left, 1 = right
FIELDS: dict[str, int] = dict(POSE_FIELDS)  # global_orient 3, hand_pose 45, betas 10, transl 3
DTYPE = np.float32


class DatasetError(ValueError):
    """A dataset folder or file cannot be read; the message names it and says how to fix it."""


@dataclass(frozen=True)
class ClipInfo:
    """What is known about one clip besides its frames.

    ``source``: "handforge-corpus" or "InterHand2.6M"; ``name``: the clip file's stem or the
    capture id; ``split``: "train" / "validation" / "test" (None for a plain folder of clips);
    ``group``: the person group (corpus) or capture id (InterHand2.6M), the unit splits keep
    together; ``pose_convention``: "flat" (HandForge's) or "mean_relative" (raw InterHand2.6M);
    ``extra``: the clip file's own metadata (the corpus keeps kind, templates, contact_frames
    under ``extra["corpus"]``).
    """

    source: str
    name: str
    split: str | None
    fps: float
    num_frames: int
    hand_model: str
    group: str | None = None
    pose_convention: str = "flat"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"extra": dict(self.extra)}


def check_clips(clips: Sequence[ClipInfo], hand_model: str, fix: str = "pass --hand-model {model}") -> None:
    """``DatasetError`` unless every clip is of ``hand_model`` with HandForge's flat hand poses: a
    model trained on one hand's poses read through another's skeleton learns wrong joint positions, and
    an export would pose and label the wrong hand. ``fix`` says how to choose the clips' model."""
    models = sorted({c.hand_model for c in clips})
    if models != [hand_model]:
        raise DatasetError(f"the clips are of the {' and '.join(models)} hand model{'s' if len(models) > 1 else ''}, "
                           f"this run is for the {hand_model} hand: {fix.format(model=models[0])}"
                           + (" (one model per run)" if len(models) > 1 else ""))
    raw = sorted({c.name for c in clips if c.pose_convention != "flat"})
    if raw:
        raise DatasetError(f"{len(raw)} clip(s) hold mean-relative hand poses (raw InterHand2.6M), e.g. {raw[0]}: "
                           "read InterHand2.6M with --interhand, or save its clips with flat poses "
                           "(interhand_files.to_flat with MANO's hands_mean)")


# (MAX_REACH_M: a hand at 1e30 m, finite and so a valid clip, failed every export sample ("look_at: eye and target
# coincide") and made training's loss inf, said as a learning rate too high)


def reach_problem(arrays: Mapping[str, np.ndarray], starts: Sequence[int], names: Sequence[str]) -> str:
    """Which clip places a present hand beyond ``MAX_REACH_M`` of the origin ('' when none): ``arrays`` in
    ``clip_arrays``' layout, the clips one after another, clip k's frames from ``starts[k]`` on, named ``names[k]``."""
    distance = np.linalg.norm(arrays["transl"].astype(np.float64), axis=-1)  # (T, 2): (float64: 1e30² overflows float32)
    frame_reach = np.where(arrays["present"], distance, 0.0).max(axis=1, initial=0.0)
    if not len(frame_reach) or frame_reach.max() <= MAX_REACH_M:
        return ""
    worst = int(np.argmax(frame_reach))
    clip = int(np.searchsorted(np.asarray(starts), worst, side="right")) - 1
    return (f"{names[clip]} places a hand {frame_reach[worst]:g} m from the origin (frame {worst - starts[clip]}), "
            f"beyond the {MAX_REACH_M:g} m where float32 positions keep to a millimetre: move its hands nearer the "
            "origin (translations are metres)")


def clip_arrays(clip: MotionClip) -> dict[str, np.ndarray]:
    """A clip in the representation: each field (T, 2, D) float32, ``present`` (T, 2) bool.

    A hand the clip lacks is all zeros and never present; so is a hand in frames where it is absent.
    """
    t = clip.num_frames
    out = {name: np.zeros((t, len(HAND_AXIS), size), dtype=DTYPE) for name, size in FIELDS.items()}
    out["present"] = np.zeros((t, len(HAND_AXIS)), dtype=bool)
    for h, side in enumerate(HAND_AXIS):
        pose = clip.hands.get(side)
        if pose is None:
            continue
        mask = clip.present[side]
        out["present"][:, h] = mask
        for name in FIELDS:
            out[name][:, h] = np.where(mask[:, None], getattr(pose, name), 0.0)
    return out


def mirror_arrays(sample: Mapping[str, Any]) -> dict[str, Any]:
    """The mirror image of a sample (numpy or torch, any leading shape): the hands swap places and
    each is mirrored through x = 0 (``handforge_shared.rotations``), as ``MotionClip.mirrored`` does.

    An involution: mirroring twice gives the sample back. Keys other than the pose fields and
    ``present`` pass through unchanged.
    """
    out = dict(sample)
    swap = [1, 0]
    hand_pose = sample["hand_pose"]
    joints = hand_pose.reshape(*hand_pose.shape[:-1], -1, 3)
    out["global_orient"] = mirror_axis_angle(sample["global_orient"][..., swap, :])
    out["hand_pose"] = mirror_axis_angle(joints[..., swap, :, :]).reshape(hand_pose.shape)
    out["betas"] = sample["betas"][..., swap, :]
    out["transl"] = mirror_points(sample["transl"][..., swap, :])
    out["present"] = sample["present"][..., swap]
    return out


def arrays_to_clip(arrays: Mapping[str, np.ndarray], info: ClipInfo) -> MotionClip:
    """Back from the representation to a ``MotionClip`` (hands never present are left out)."""
    hands, present = {}, {}
    for h, side in enumerate(HAND_AXIS):
        mask = np.asarray(arrays["present"][:, h], dtype=bool)
        if mask.any():
            hands[side] = HandPose(**{name: np.asarray(arrays[name][:, h]) for name in FIELDS})
            present[side] = mask
    if not hands:
        raise DatasetError(f"{info.name}: no hand is present in any frame")
    return MotionClip(hands=hands, present=present, fps=info.fps, hand_model=info.hand_model,
                      extra=dict(info.extra))


class ClipSource(Protocol):
    """Anything the datasets read clips from: ``ClipFiles`` (corpus, folders) or ``ClipList``."""

    clips: Sequence[ClipInfo]

    def __len__(self) -> int: ...

    def load(self, index: int) -> MotionClip: ...


@dataclass(frozen=True)
class ClipList:
    """Clips already in memory (InterHand2.6M: its JSON is parsed whole anyway), with their infos."""

    clips: tuple[ClipInfo, ...]
    motions: tuple[MotionClip, ...]

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, index: int) -> MotionClip:
        return self.motions[index]

    def iter_clips(self, progress: bool = False, desc: str = "clips") -> Iterator[tuple[ClipInfo, MotionClip]]:
        from tqdm import tqdm

        for i in tqdm(range(len(self.clips)), desc=desc, unit="clip", disable=not progress):
            yield self.clips[i], self.motions[i]
