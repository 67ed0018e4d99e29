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

from typing import Any, Sequence

import numpy as np

from handforge.evaluation.contact import pair_metrics
from handforge.evaluation.distribution import diversity, frechet_feature_distance, kid
from handforge.evaluation.features import FeatureNetworks, load_features, two_hand_keypoints
from handforge.evaluation.limits import joint_limit_metrics
from handforge.evaluation.motion import smoothness
from handforge_shared.mano_params import FLAT
from handforge_shared.poses import MotionClip, motion_files


def evaluate_clips(clips: Sequence[MotionClip], model: Any, reference: Sequence[MotionClip] | None = None,
                   features: FeatureNetworks | None = None, frames: int = 200, seed: int = 0,
                   progress: bool = False) -> dict[str, Any]:
    """A JSON-ready report of every metric (see the module docstring) for ``clips``."""
    if not clips:
        raise ValueError("no clips to evaluate")
    nets = features or load_features()
    rng = np.random.default_rng(seed)
    keypoints, present = zip(*(two_hand_keypoints(c, model) for c in clips))
    report: dict[str, Any] = {"clips": len(clips), "frames": int(sum(c.num_frames for c in clips))}

    smooth = [smoothness(k, c.fps, p).summary() for k, c, p in zip(keypoints, clips, present) if _run_of(p, 4)]
    if smooth:
        report["smoothness"] = {key: float(np.mean([s[key] for s in smooth])) for key in smooth[0]}
        report["smoothness"]["clips"] = len(smooth)
    poses = {side: [_present(c, side) for c in clips if side in c.hands] for side in ("left", "right")}
    report["joint_limits"] = {side: joint_limit_metrics(np.concatenate(found), side, model.rig(side)).summary()
                              for side, found in poses.items() if found and sum(map(len, found))}

    picked = _draw_frames(clips, present, frames, rng)
    if picked:
        verts = {side: np.concatenate([_vertices(model, clips[i], side, t) for i, t in picked]) for side in ("left", "right")}
        faces = {side: model.faces(side) for side in ("left", "right")}
        penetration, contact = pair_metrics(verts["left"], verts["right"], faces["left"], faces["right"],
                                            progress=progress)
        report["penetration"], report["contact"] = penetration.summary(), contact.summary()
        frame_feat = nets.frame_features(np.stack([keypoints[i][t] for i, t in picked]))
        report["diversity_frames"] = diversity(frame_feat) if len(frame_feat) > 1 else None
    whole = [k for k, p in zip(keypoints, present) if len(p) and p.all()]
    motion_feat = nets.motion_features(whole) if whole else None
    if motion_feat is not None and len(motion_feat) > 1:
        report["diversity_motions"] = diversity(motion_feat)

    if reference:
        ref_kp, ref_present = zip(*(two_hand_keypoints(c, model) for c in reference))
        ref_picked = _draw_frames(reference, ref_present, max(frames, 2), rng)
        if not ref_picked:
            raise ValueError("the reference clips have no frame with both hands present: the comparison is of "
                             "two-hand frames; give a reference of two-hand clips")
        ref_frames = nets.frame_features(np.stack([ref_kp[i][t] for i, t in ref_picked]))
        ref_whole = [k for k, p in zip(ref_kp, ref_present) if len(p) and p.all()]
        if picked and len(ref_frames) > 1 and len(frame_feat) > 1:
            report["vs_reference_frames"] = _distances(frame_feat, ref_frames)
        if ref_whole and motion_feat is not None and len(motion_feat) > 1 and len(ref_whole) > 1:
            report["vs_reference_motions"] = _distances(motion_feat, nets.motion_features(ref_whole))
    report["features"] = {"recipe_command": nets.recipe.get("command"), "corpus": nets.recipe.get("corpus_command")}
    return report


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


def _draw_frames(clips: Sequence[MotionClip], present: Sequence[np.ndarray], count: int,
                 rng: np.random.Generator) -> list[tuple[int, int]]:
    both = [(i, t) for i, p in enumerate(present) for t in np.flatnonzero(p)]
    if not both:
        return []
    chosen = rng.choice(len(both), size=min(count, len(both)), replace=False)
    return [both[k] for k in sorted(chosen)]


def _vertices(model: Any, clip: MotionClip, side: str, frame: int) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model.forward_pose(side, clip.hands[side][frame]).vertices.cpu().numpy()


def load_clips(folder: Any, max_clips: int | None = None) -> list[MotionClip]:
    """The motion clips of a folder (or of its ``clips/`` subfolder, as ``handforge corpus`` writes)."""
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
    clips = [MotionClip.load(f) for f in files]
    for path, clip in zip(files, clips):
        # raw InterHand2.6M poses are offsets from MANO's mean hand: read as flat ones, every joint angle,
        # limit violation, mesh and feature is measured on another pose, and nothing says so
        if clip.extra.get("pose_convention", FLAT) != FLAT:
            raise ValueError(f"{path}: holds {clip.extra['pose_convention']} hand poses (raw InterHand2.6M), not "
                             "HandForge's flat ones: convert its clips with interhand_files.to_flat and MANO's "
                             "hands_mean (ManoModel.hands_mean_arrays()) before measuring them")
    return clips
