"""One call to evaluate a set of two-hand motion clips, optionally against a reference set.

Every engine's output is measured the same way (``handforge measure``):
    penetration      exact volume (cm³) and depths (mm) between the hands, on ``frames``
                     randomly drawn two-hand frames (exact metrics cost ~0.1-0.5 s per frame)
    contact          contact ratio within 5 mm on the same frames
    joint limits     violations over every frame where each hand is present (degrees)
    smoothness       acceleration (m/s²) and jitter (mean jerk, m/s³) of all keypoints, per clip with
                     both hands present on 4 consecutive frames, then averaged over those clips
                     (``max_*``: the mean of each clip's maximum, not the worst clip's)
    diversity        of frame features (the drawn frames) and of motion features (one per clip)
    vs reference     Fréchet distance and KID (cubic; and InterHandGen's linear variant) of frame
                     features and of motion features (needs enough samples: KID subsets use
                     min(1000, N) samples, the Fréchet distance wants N well above 128)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from handforge.evaluation.contact import pair_metrics
from handforge.evaluation.distribution import diversity, frechet_feature_distance, kid
from handforge.evaluation.features import FeatureNetworks, load_features, two_hand_keypoints
from handforge.evaluation.limits import LimitMetrics, joint_limit_metrics
from handforge.evaluation.motion import smoothness
from handforge_shared.mano_params import FLAT
from handforge_shared.poses import MotionClip, motion_files


def evaluate_clips(clips: Sequence[MotionClip], model: Any, reference: Sequence[MotionClip] | None = None,
                   features: FeatureNetworks | None = None, frames: int = 200, seed: int = 0,
                   progress: bool = False) -> dict[str, Any]:
    """A JSON-ready report of every metric (see the module docstring) for ``clips``.

    ``clips`` and ``reference`` are read clip by clip, once for the per-clip statistics and again for the
    clips of the drawn frames, and only a few numbers per clip and a flag per frame are kept: with
    ``load_clips``'s lazily loaded folders, memory stays bounded whatever the number of clips. So
    ``clips[i]`` must give the same clip at each read (a list, a folder not written meanwhile)."""
    if not len(clips):
        raise ValueError("no clips to evaluate")
    nets = features or load_features()
    rng = np.random.default_rng(seed)
    scan = _scan(clips, model, nets, statistics=True)
    report: dict[str, Any] = {"clips": len(clips), "frames": scan.frames}
    if scan.smooth:
        report["smoothness"] = {key: float(np.mean([s[key] for s in scan.smooth])) for key in scan.smooth[0]}
        report["smoothness"]["clips"] = len(scan.smooth)
    report["joint_limits"] = {side: LimitMetrics(*(np.concatenate(column) for column in zip(*found))).summary()
                              for side, found in scan.limits.items() if found and sum(len(m[0]) for m in found)}

    picked = draw_frames(scan.present, frames, rng)
    if picked:
        keypoints, verts = _drawn(clips, scan.present, picked, model, vertices=True)
        faces = {side: model.faces(side) for side in ("left", "right")}
        penetration, contact = pair_metrics(verts["left"], verts["right"], faces["left"], faces["right"],
                                            progress=progress)
        report["penetration"], report["contact"] = penetration.summary(), contact.summary()
        frame_feat = nets.frame_features(keypoints)
        report["diversity_frames"] = diversity(frame_feat) if len(frame_feat) > 1 else None
    motion_feat = scan.motion_features
    if len(motion_feat) > 1:
        report["diversity_motions"] = diversity(motion_feat)

    if reference:
        ref = _scan(reference, model, nets, statistics=False)
        ref_picked = draw_frames(ref.present, max(frames, 2), rng)
        if not ref_picked:
            raise ValueError("the reference clips have no frame with both hands present: the comparison is of "
                             "two-hand frames; give a reference of two-hand clips")
        ref_frames = nets.frame_features(_drawn(reference, ref.present, ref_picked, model)[0])
        if picked and len(ref_frames) > 1 and len(frame_feat) > 1:
            report["vs_reference_frames"] = _distances(frame_feat, ref_frames)
        if len(motion_feat) > 1 and len(ref.motion_features) > 1:
            report["vs_reference_motions"] = _distances(motion_feat, ref.motion_features)
    report["features"] = {"recipe_command": nets.recipe.get("command"), "corpus": nets.recipe.get("corpus_command")}
    return report


@dataclass
class _Scan:
    """What one pass over the clips keeps: per clip, its two-hand frames' flags, smoothness summary,
    joint-limit violations per present pose (two floats) and motion feature (whole two-hand clips)."""

    present: list[np.ndarray] = field(default_factory=list)
    frames: int = 0
    smooth: list[dict[str, float]] = field(default_factory=list)
    limits: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=lambda: {"left": [], "right": []})
    motion_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def _scan(clips: Sequence[MotionClip], model: Any, nets: FeatureNetworks, statistics: bool) -> _Scan:
    scan, rows = _Scan(), []
    for clip in clips:  # (one clip and its keypoints at a time)
        keypoints, present = two_hand_keypoints(clip, model)
        scan.present.append(present)
        scan.frames += clip.num_frames
        if statistics and _run_of(present, 4):
            scan.smooth.append(smoothness(keypoints, clip.fps, present).summary())
        if statistics:
            for side in clip.hands:
                found = joint_limit_metrics(_present(clip, side), side, model.rig(side))
                scan.limits[side].append((found.max_violation_deg, found.total_violation_deg))
        if len(present) and present.all():
            rows.append(nets.motion_features([keypoints]))
    scan.motion_features = np.concatenate(rows) if rows else scan.motion_features
    return scan


def _drawn(clips: Sequence[MotionClip], present: Sequence[np.ndarray], picked: list[tuple[int, int]], model: Any,
           vertices: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The (N, 42, 3) keypoints of the ``picked`` (clip, frame) pairs and, with ``vertices``, each
    side's (N, V, 3) vertices; each clip of them read once more, and checked to be the one first read
    (its two-hand frames ``present``)."""
    keypoints, verts = [], {"left": [], "right": []}
    for index, group in itertools.groupby(picked, key=lambda pick: pick[0]):
        clip, frames = clips[index], [t for _, t in group]
        found, both = two_hand_keypoints(clip, model)
        if not np.array_equal(both, present[index]):
            raise ValueError(f"clip {index} changed between two reads (the frames drawn from it are not its frames "
                             "now): measure clips that stay as they are while they are measured")
        keypoints.append(found[frames])
        for side in verts if vertices else ():
            verts[side].extend(_vertices(model, clip, side, t) for t in frames)
    return np.concatenate(keypoints), {side: np.concatenate(found) for side, found in verts.items() if found}


def _distances(generated: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {"frechet": frechet_feature_distance(generated, reference),
            "kid_cubic": kid(generated, reference)[0],
            "kid_linear_interhandgen": kid(generated, reference, degree=1)[0]}


def _run_of(present: np.ndarray, length: int) -> bool:
    """Whether ``present`` (T,) holds ``length`` consecutive True frames (what jerk needs)."""
    run = 0
    for p in np.asarray(present, bool):
        run = run + 1 if p else 0
        if run >= length:
            return True
    return False


def _present(clip: MotionClip, side: str) -> np.ndarray:
    """The hand's poses (T', 45) on the frames where it is present (absent frames hold zeros, which
    are within every limit and would dilute the statistics)."""
    mask = clip.present.get(side)
    pose = np.asarray(clip.hands[side].hand_pose)
    return pose if mask is None else pose[np.asarray(mask, bool)]


def draw_frames(present: Sequence[np.ndarray], count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` (clip, frame) pairs drawn without replacement from the frames flagged in ``present`` (one
    (T,) bool array per clip), in order: the pairs listed clip by clip, ``rng.choice`` of their numbers.
    Numbered through, not listed (a list of every pair was ~100 bytes a frame: 400 MB for a 20,000-sequence
    corpus)."""
    per_clip = np.array([np.count_nonzero(p) for p in present], np.int64)
    total = int(per_clip.sum())
    if not total:
        return []
    chosen = np.sort(rng.choice(total, size=min(count, total), replace=False))
    ends = np.cumsum(per_clip)
    clip_of = np.searchsorted(ends, chosen, side="right")
    return [(int(i), int(np.flatnonzero(present[i])[k - ends[i] + per_clip[i]])) for i, k in zip(clip_of, chosen)]


def _vertices(model: Any, clip: MotionClip, side: str, frame: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.forward_pose(side, clip.hands[side][frame]).vertices.cpu().numpy()


def load_clips(folder: Any, max_clips: int | None = None) -> "ClipFolder":
    """The motion clips of a folder (or of its ``clips/`` subfolder, as ``handforge corpus`` writes), loaded
    one at a time when read."""
    from pathlib import Path

    if not str(folder).strip():  # ("" is the current folder: "--clips $UNSET" measured whatever clips were there)
        raise ValueError("the clips folder is an empty path: give the folder of motion clips (.npz)")
    folder = Path(folder).expanduser()  # "--clips=~/clips" reaches us unexpanded (the shell leaves it)
    # said apart from an empty folder: "no motion clips found" for one clip given as a file read as if
    # the clip were not one, and for a mistyped folder hid the typo
    if folder.is_file():
        raise ValueError(f"{folder} is a file: give the folder of motion clips (.npz) that holds it")
    if not folder.exists():
        raise ValueError(f"{folder}: no such folder (a folder of motion clips .npz, or a corpus folder)")
    clip_dir = folder / "clips" if (folder / "clips").is_dir() else folder
    files = motion_files(clip_dir)[: max_clips or None]
    if not files:
        raise ValueError(f"{folder}: no motion clips (.npz) found")
    return ClipFolder(files)


class ClipFolder(Sequence[MotionClip]):
    """Motion clip files, each loaded and checked when read and not kept: a folder of any size (a
    20,000-clip corpus is GBs of poses and keypoints) is measured in bounded memory."""

    def __init__(self, files: Sequence[Any]) -> None:
        self.files = list(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return ClipFolder(self.files[index])
        path = self.files[index]
        clip = MotionClip.load(path)
        # raw InterHand2.6M poses are offsets from MANO's mean hand: read as flat ones, every joint angle,
        # limit violation, mesh and feature is measured on another pose, and nothing says so
        if clip.extra.get("pose_convention", FLAT) != FLAT:
            raise ValueError(f"{path}: holds {clip.extra['pose_convention']} hand poses (raw InterHand2.6M), not "
                             "HandForge's flat ones: convert its clips with interhand_files.to_flat and MANO's "
                             "hands_mean (ManoModel.hands_mean_arrays()) before measuring them")
        return clip
