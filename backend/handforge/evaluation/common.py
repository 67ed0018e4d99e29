"""Small helpers the metric modules share: input checking and progress bars."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import torch

from handforge.datasets.corpus import SPLITS
from handforge_shared.skeleton import NUM_KEYPOINTS

# The feature networks' input: both hands' 21 keypoints, (x, y, z) each.
INPUT_DIM = 2 * NUM_KEYPOINTS * 3


def as_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


MAX_HAND_EXTENT_M = 2.0  # no hand (with a forearm) spans more along one axis
# Farther from the origin, the hand models' float32 vertices lose the hand's millimetres (their step is
# 0.06 mm at 1 km, 6 cm at 1000 km): a clip translated by 1e30 m collapsed each hand to a point and was
# said as a mesh "wound clockwise"
MAX_HAND_DISTANCE_M = 1000.0


TRAIN_SPLIT = SPLITS[0]  # the corpus split `handforge train` fits its models on


def training_split_note(splits: Iterable[str], option: str) -> str:
    """The line an evaluation prints and its report records when it reads the training split ('' when every split
    it reads is held-out): `eval interaction --split train` printed its figures as any others, nothing saying
    that the model had been fitted on those very frames. ``option``: the command's option that picks splits."""
    if TRAIN_SPLIT not in splits:
        return ""
    return (f"note: the {TRAIN_SPLIT} split is the one training reads, so these figures are not held-out "
            f"(evaluate on validation or test with {option} for that)")


def held_out_fields(note: str) -> dict[str, Any]:
    """What a report records of ``training_split_note``'s ``note``: held_out, and the note when it is not."""
    return {"held_out": not note, **({"note": note} if note else {})}


def vertex_pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two hands' vertices as float64 (N, V, 3) arrays (one (V, 3) pair becomes N = 1), checked."""
    a, b = as_numpy(a), as_numpy(b)
    if a.ndim == 2 and b.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim != 3 or b.ndim != 3 or a.shape[-1] != 3 or b.shape[-1] != 3 or len(a) != len(b):
        raise ValueError(f"vertices must be (N, V, 3) for both hands with the same N, got {a.shape} and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("vertices contain NaN or inf")
    extent = max(float(np.ptp(h, axis=1).max()) for h in (a, b)) if a.shape[1] and b.shape[1] else 0.0
    distance = max(float(np.abs(h).max()) for h in (a, b)) if a.size and b.size else 0.0
    if distance > MAX_HAND_DISTANCE_M:
        raise ValueError(f"a hand's vertices lie {distance:.4g} m from the origin, more than the "
                         f"{MAX_HAND_DISTANCE_M:g} m within which its millimetres can be measured: check the hands' "
                         "translations (transl, in metres)")
    if extent > MAX_HAND_EXTENT_M:  # millimetres would be accepted and measured with metre thresholds
        raise ValueError(f"a hand's vertices span {extent:.4g} along an axis: they must be in metres (a hand is "
                         f"about 0.2 m; millimetres? divide by 1000)")
    return a.astype(np.float64), b.astype(np.float64)


def maybe_progress(items: Iterable, progress: bool, desc: str) -> Iterable:
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="pair")
