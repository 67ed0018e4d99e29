"""MANO parameter conventions, converted in one place: flat vs mean-relative hand poses, PCA
coefficients vs full axis-angle poses, and the left-hand ``shapedirs`` sign fix.

Every function takes numpy arrays or torch tensors (the backend's MANO layer, differentiable) and
returns the same kind; the model arrays (``hands_mean``, ``hands_components``) must be of the same
kind, dtype and device as the pose. torch is imported only when a tensor is passed.

HandForge's ``hand_pose`` is *flat*: zero is the flat hand (smplx ``flat_hand_mean=True``). MANO's
own default, smplx's default (``flat_hand_mean=False``) and InterHand2.6M's annotations are
*mean-relative*: the model adds ``hands_mean`` (a relaxed, slightly curled hand) to the 45 values::

    flat = mean_relative + hands_mean          (per joint axis-angle vectors simply add: MANO
                                                adds the mean before converting to rotations)

PCA poses (smplx ``use_pca=True``, MANO's original ``ncomps``) are coefficients of the first
``n`` rows of ``hands_components`` and are mean-relative too::

    flat = coeffs @ hands_components[:n] + hands_mean

Each side has its own ``hands_mean`` and ``hands_components`` (the left ones are the mirror images
of the right ones in the real files); always use the ones of the hand the pose belongs to.
Units: MANO and InterHand2.6M MANO parameters are in metres; only InterHand2.6M's joint and camera
files use millimetres (converted in ``handforge.datasets.interhand_files``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .rotations import is_torch
from .skeleton import HAND_POSE_DIM

FLAT = "flat"
MEAN_RELATIVE = "mean_relative"
POSE_CONVENTIONS = (FLAT, MEAN_RELATIVE)


def not_flat(where: Any, convention: str, before: str) -> str:
    """The one wording of a refusal of clips whose hand poses are not flat (raw InterHand2.6M ones, offsets
    from MANO's mean hand: read as flat, every angle, mesh and keypoint is another pose's, and nothing says
    so). ``where``: the clip's file; ``before``: what the user meant to do with them ("measuring them")."""
    return (f"{where}: holds {convention} hand poses (raw InterHand2.6M), not HandForge's flat ones: convert its "
            f"clips with interhand_files.to_flat and MANO's hands_mean (ManoModel.hands_mean_arrays()) before {before}")

# smplx issue #48: in the released MANO_LEFT.pkl the x row of shapedirs has the right hand's sign.
# A correctly mirrored left model has shapedirs[:, 0] = -right[:, 0]; the buggy one has +right.
LEFT_SHAPEDIRS_BUG_THRESHOLD = 1.0


def _check_pose(hand_pose: Any, what: str = "hand_pose") -> None:
    if tuple(hand_pose.shape[-1:]) != (HAND_POSE_DIM,):
        raise ValueError(f"{what} must have shape (..., {HAND_POSE_DIM}), got {tuple(hand_pose.shape)}")


def check_pose_convention(name: str) -> str:
    if name not in POSE_CONVENTIONS:
        raise ValueError(f"unknown hand pose convention {name!r}: use one of {', '.join(POSE_CONVENTIONS)}")
    return name


def flat_from_mean_relative(hand_pose: Any, hands_mean: Any) -> Any:
    """(..., 45) mean-relative hand pose (smplx default, InterHand2.6M) → HandForge's flat pose."""
    _check_pose(hand_pose)
    _check_pose(hands_mean, "hands_mean")
    return hand_pose + hands_mean


def mean_relative_from_flat(hand_pose: Any, hands_mean: Any) -> Any:
    """(..., 45) HandForge flat hand pose → mean-relative (what smplx with its defaults expects)."""
    _check_pose(hand_pose)
    _check_pose(hands_mean, "hands_mean")
    return hand_pose - hands_mean


def convert_hand_pose(hand_pose: Any, hands_mean: Any, source: str, target: str) -> Any:
    """Convert between the two conventions by name (``"flat"`` / ``"mean_relative"``)."""
    check_pose_convention(source)
    check_pose_convention(target)
    if source == target:
        _check_pose(hand_pose)
        return hand_pose
    if source == MEAN_RELATIVE:
        return flat_from_mean_relative(hand_pose, hands_mean)
    return mean_relative_from_flat(hand_pose, hands_mean)


def _components(components: Any, num_comps: int | None) -> Any:
    if components.ndim != 2 or components.shape[1] != HAND_POSE_DIM:
        raise ValueError(f"hands_components must have shape (N, {HAND_POSE_DIM}), got {tuple(components.shape)}")
    n = components.shape[0] if num_comps is None else num_comps
    if not 1 <= n <= components.shape[0]:
        raise ValueError(f"number of PCA components must be in 1..{components.shape[0]}, got {n}")
    return components[:n]


def hand_pose_from_pca(coeffs: Any, hands_components: Any, hands_mean: Any | None = None) -> Any:
    """(..., n) PCA coefficients → (..., 45) axis-angle hand pose.

    With ``hands_mean`` the result is flat (MANO's PCA space is centred on the mean); without it
    the result is mean-relative, exactly what smplx computes before adding its ``pose_mean``.
    """
    basis = _components(hands_components, coeffs.shape[-1])
    pose = coeffs @ basis
    return pose if hands_mean is None else flat_from_mean_relative(pose, hands_mean)


def hand_pose_to_pca(hand_pose: Any, hands_components: Any, num_comps: int | None = None,
                     hands_mean: Any | None = None) -> Any:
    """(..., 45) axis-angle hand pose → (..., n) PCA coefficients (least squares when n < 45).

    Pass ``hands_mean`` when ``hand_pose`` is flat (the inverse of ``hand_pose_from_pca``).
    """
    _check_pose(hand_pose)
    basis = _components(hands_components, num_comps)
    relative = hand_pose if hands_mean is None else mean_relative_from_flat(hand_pose, hands_mean)
    if is_torch(basis):
        import torch

        pinv = torch.linalg.pinv(basis)
    else:
        pinv = np.linalg.pinv(np.asarray(basis))
    return relative @ pinv


def left_shapedirs_need_fix(left_shapedirs: np.ndarray, right_shapedirs: np.ndarray) -> bool:
    """True when the left model's x row of ``shapedirs`` has the right hand's sign (smplx #48)."""
    left = np.asarray(left_shapedirs, dtype=np.float64)
    right = np.asarray(right_shapedirs, dtype=np.float64)
    if left.shape != right.shape or left.ndim != 3 or left.shape[1] != 3:
        raise ValueError(f"left and right shapedirs must both be (V, 3, S), got {left.shape} and {right.shape}")
    return float(np.abs(left[:, 0, :] - right[:, 0, :]).sum()) < LEFT_SHAPEDIRS_BUG_THRESHOLD


def fix_left_shapedirs(left_shapedirs: np.ndarray, right_shapedirs: np.ndarray) -> tuple[np.ndarray, bool]:
    """The left model's ``shapedirs`` with its x row negated when it has the bug, and whether it had."""
    left = np.array(left_shapedirs, dtype=np.float64)
    if not left_shapedirs_need_fix(left, right_shapedirs):
        return left, False
    left[:, 0, :] *= -1.0
    return left, True
