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
A metric the clips cannot give (too few two-hand frames or clips, a value that is not finite) is left
out of the report and named in its ``not_measured``, with why.
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
from handforge_shared.mano_params import FLAT, not_flat
from handforge_shared.poses import MotionClip, motion_files


# Every metric evaluate_clips reports, by its key in the report (``handforge measure --metrics`` names them)
METRICS = ("penetration", "contact", "joint_limits", "smoothness", "diversity_frames", "diversity_motions",
           "vs_reference_frames", "vs_reference_motions")
REFERENCE_METRICS = ("vs_reference_frames", "vs_reference_motions")  # (only with a reference)
FEATURE_METRICS = ("diversity_frames", "diversity_motions", *REFERENCE_METRICS)  # (the others need no feature networks)


def evaluate_clips(clips: Sequence[MotionClip], model: Any, reference: Sequence[MotionClip] | None = None,
                   features: FeatureNetworks | None = None, frames: int = 200, seed: int = 0,
                   progress: bool = False, metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """A JSON-ready report of the ``metrics`` (see the module docstring; default: every one, those against
    the reference only with one) for ``clips``. A metric asked for that these clips cannot give (too few
    two-hand frames or clips, a value that is not finite) is left out, and ``report["not_measured"]``
    maps its name to why: a metric is never dropped unsaid. ``joint_limits.left`` / ``.right`` name one
    hand left out of ``joint_limits``.

    ``clips`` and ``reference`` are read clip by clip, once for the per-clip statistics and again for the
    clips of the drawn frames, and only a few numbers per clip and a flag per frame are kept: with
    ``load_clips``'s lazily loaded folders, memory stays bounded whatever the number of clips. So
    ``clips[i]`` must give the same clip at each read (a list, a folder not written meanwhile)."""
    if not len(clips):
        raise ValueError("no clips to evaluate")
    wanted = check_metrics(metrics, bool(reference))
    # (a feature checkpoint that cannot be loaded refused `--metrics penetration`, which never uses one)
    nets = features or (load_features() if set(FEATURE_METRICS) & wanted else None)
    rng = np.random.default_rng(seed)
    motions = bool({"diversity_motions", "vs_reference_motions"} & wanted)
    scan = _scan(clips, model, nets, statistics=True, motions=motions)
    report: dict[str, Any] = {"clips": len(clips), "frames": scan.frames}
    missing: dict[str, str] = {}
    if "smoothness" in wanted:
        if scan.smooth:
            _keep(report, missing, "smoothness", lambda: {
                **{key: float(np.mean([s[key] for s in scan.smooth])) for key in scan.smooth[0]},
                "clips": len(scan.smooth)})
        else:
            missing["smoothness"] = ("no clip has both hands present on 4 consecutive frames (acceleration and jerk "
                                     "need 4): give longer two-hand clips")
    if "joint_limits" in wanted:
        report["joint_limits"] = {side: LimitMetrics(*(np.concatenate(column) for column in zip(*found))).summary()
                                  for side, found in scan.limits.items() if found and sum(len(m[0]) for m in found)}
        absent = [side for side in scan.limits if side not in report["joint_limits"]]
        if len(absent) == len(scan.limits):
            del report["joint_limits"]
            missing["joint_limits"] = "no hand is present on any frame"
        for side in absent if "joint_limits" in report else ():
            missing[f"joint_limits.{side}"] = f"the {side} hand is present on no frame of the clips"

    two_hand = int(sum(np.count_nonzero(p) for p in scan.present))
    no_pair = "it is measured on two-hand frames, and no frame of the clips has both hands present"
    picked = draw_frames(scan.present, frames, rng)
    frame_feat = None
    mesh = [name for name in ("penetration", "contact") if name in wanted]
    if picked and (mesh or {"diversity_frames", "vs_reference_frames"} & wanted):
        keypoints, verts = _drawn(clips, scan.present, picked, model, vertices=bool(mesh))
        if mesh:
            faces = {side: model.faces(side) for side in ("left", "right")}
            penetration, contact = pair_metrics(verts["left"], verts["right"], faces["left"], faces["right"],
                                                progress=progress, volume="penetration" in wanted)
            for name, found in (("penetration", penetration), ("contact", contact)):
                if name in wanted:
                    _keep(report, missing, name, lambda found=found: found.summary())
        if {"diversity_frames", "vs_reference_frames"} & wanted:
            frame_feat = nets.frame_features(keypoints)
    for name in mesh if not picked else ():
        missing[name] = no_pair
    if "diversity_frames" in wanted:
        if frame_feat is not None and len(frame_feat) > 1:
            _keep(report, missing, "diversity_frames", lambda: diversity(frame_feat))
        else:
            missing["diversity_frames"] = no_pair if not picked else (
                f"needs 2 or more two-hand frames, {len(picked)} drawn: raise --frames" if two_hand > 1 else
                "needs 2 or more two-hand frames, the clips have 1")
    motion_feat = scan.motion_features
    whole = "clips with both hands present on every frame"
    if "diversity_motions" in wanted:
        if len(motion_feat) > 1:
            _keep(report, missing, "diversity_motions", lambda: diversity(motion_feat))
        else:
            missing["diversity_motions"] = f"needs 2 or more {whole}, the clips have {len(motion_feat)}"

    if reference and set(REFERENCE_METRICS) & wanted:
        ref = _scan(reference, model, nets, statistics=False, motions="vs_reference_motions" in wanted)
        ref_picked = draw_frames(ref.present, max(frames, 2), rng)
        # (left out as any metric the clips cannot give: raising here threw away the metrics already measured)
        for name in [m for m in REFERENCE_METRICS if m in wanted and not ref_picked]:
            missing[name] = ("the reference clips have no frame with both hands present: the comparison is of "
                             "two-hand frames; give a reference of two-hand clips")
        if "vs_reference_frames" in wanted and ref_picked:
            ref_frames = nets.frame_features(_drawn(reference, ref.present, ref_picked, model)[0])
            if frame_feat is not None and len(ref_frames) > 1 and len(frame_feat) > 1:
                _keep(report, missing, "vs_reference_frames", lambda: _distances(frame_feat, ref_frames))
            else:
                missing["vs_reference_frames"] = no_pair if not picked else (
                    f"needs 2 or more two-hand frames of the clips and of the reference, {len(picked)} and "
                    f"{len(ref_frames)} drawn" + (": raise --frames" if two_hand > len(picked) else ""))
        if "vs_reference_motions" in wanted and ref_picked:
            if len(motion_feat) > 1 and len(ref.motion_features) > 1:
                _keep(report, missing, "vs_reference_motions",
                      lambda: _distances(motion_feat, ref.motion_features))
            else:
                missing["vs_reference_motions"] = (f"needs 2 or more {whole} in the clips and in the reference, "
                                                   f"found {len(motion_feat)} and {len(ref.motion_features)}")
    if nets is not None:
        report["features"] = {"recipe_command": nets.recipe.get("command"),
                              "corpus": nets.recipe.get("corpus_command")}
    report["not_measured"] = missing
    return report


def check_metrics(metrics: Sequence[str] | None, with_reference: bool) -> set[str]:
    """The metric names ``metrics`` asks for (None: every one that applies), checked: an unknown name, or
    one against the reference without a reference, is a ValueError that lists what is allowed."""
    if metrics is None:
        return set(METRICS) - (set() if with_reference else set(REFERENCE_METRICS))
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {', '.join(METRICS)}")
    if not metrics:
        raise ValueError(f"no metric named; choose from {', '.join(METRICS)}")
    needs = [m for m in metrics if m in REFERENCE_METRICS]
    if needs and not with_reference:
        raise ValueError(f"{' and '.join(needs)} compare{'s' if len(needs) == 1 else ''} the clips with reference "
                         "clips: give the reference (--reference FOLDER), or leave "
                         f"{'it' if len(needs) == 1 else 'them'} out")
    return set(metrics)


def _keep(report: dict[str, Any], missing: dict[str, str], name: str, compute) -> None:
    """``report[name] = compute()``, unless the value is not finite or the distances refuse the features
    (NaN in them): then ``missing[name]`` says so. Written as NaN, the report was no longer JSON that
    strict readers (JavaScript's JSON.parse) accept, and a mean of it hid which metric had failed."""
    try:
        value = compute()
    except ValueError as exc:  # (distribution's checks: NaN or inf features, too few of them)
        missing[name] = f"could not be computed: {exc}"
        return
    bad = _not_finite(value)
    if bad:
        missing[name] = f"came out {bad} (not a finite number)"
        return
    report[name] = value


def _not_finite(value: Any, key: str = "") -> str:
    """The first number in ``value`` (a float, or dicts of them) that is NaN or infinite, named by its key
    ("max_depth_mm = nan"); "" when every one is finite."""
    if isinstance(value, dict):
        return next((bad for k, item in value.items() for bad in [_not_finite(item, f"{key}.{k}" if key else k)]
                     if bad), "")
    if isinstance(value, float) and not np.isfinite(value):
        return f"{key} = {value}" if key else str(value)
    return ""


@dataclass
class _Scan:
    """What one pass over the clips keeps: per clip, its two-hand frames' flags, smoothness summary,
    joint-limit violations per present pose (two floats) and motion feature (whole two-hand clips)."""

    present: list[np.ndarray] = field(default_factory=list)
    frames: int = 0
    smooth: list[dict[str, float]] = field(default_factory=list)
    limits: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=lambda: {"left": [], "right": []})
    motion_features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))


def _scan(clips: Sequence[MotionClip], model: Any, nets: FeatureNetworks | None, statistics: bool,
          motions: bool = True) -> _Scan:
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
        if motions and len(present) and present.all():
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
            raise ValueError(not_flat(path, clip.extra["pose_convention"], "measuring them"))
        from handforge.datasets.representation import clip_arrays, reach_problem

        far = reach_problem(clip_arrays(clip), [0], [str(path)])  # (the meshes' own check named no clip)
        if far:
            raise ValueError(far)
        return clip
