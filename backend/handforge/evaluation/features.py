"""The feature network that Fréchet distance, KID and diversity are computed on.

InterHandGen embeds two-hand meshes with a PointNet++ whose training is undocumented (its issue
#12) and whose weights are not in its repository; MDM uses action classifiers trained on its
datasets. HandForge trains its own small networks on its open corpus with a documented recipe
(``feature_training.py``, ``handforge train-features``) and ships the result.

Input: the 42 keypoints of a two-hand frame (the 21 InterHand2.6M keypoints of the left hand,
then of the right; metres, any hand model). They are first put in a canonical frame, so that
features describe the hands' articulation and their placement relative to each other, not where
the pair is in the world:
    origin    the right wrist;  x  towards the right middle-finger MCP;
    y         the right index MCP − pinky MCP direction, made orthogonal to x;  z = x × y;
    units     decimetres (values of order 1).
A frame network gets one canonical frame; a motion network gets a whole sequence in the
canonical frame of its first frame (so wrist paths and waving stay visible).

The networks, FrameNet (an MLP) and MotionNet (dilated temporal convolutions), are in
``feature_models.py`` (diffusers models, imported only when networks are loaded or built). A
checkpoint is a folder in the one format of every engine (``handforge.engines.checkpoints``):
``frame/`` and ``motion/`` (each ``config.json``, holding the class names too, and safetensors
weights) and ``recipe.json`` (how it was trained, and the results).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch
from torch import nn

from handforge import config
from handforge.evaluation.common import as_numpy

# declared in evaluation/settings.py, where config finds every key without importing this module
from handforge.evaluation.settings import FEATURES, SHIPPED_CHECKPOINT  # noqa: F401 - re-exported
from handforge_shared.files import parse_json
from handforge_shared.poses import MotionClip
from handforge_shared.skeleton import KEYPOINT_NAMES, NUM_KEYPOINTS

if TYPE_CHECKING:
    from handforge.evaluation.feature_models import FrameNet, MotionNet

RECIPE = "recipe.json"
LAYOUT = "frame/ and motion/ model folders plus recipe.json"

_WRIST, _INDEX1, _MIDDLE1, _PINKY1 = (KEYPOINT_NAMES.index(n) for n in ("wrist", "index1", "middle1", "pinky1"))
SCALE = 10.0  # metres → decimetres


class FeatureError(RuntimeError):
    """A feature checkpoint or input cannot be used; the message says what to do."""


# ----------------------------------------------------------------------------- canonical frame
def canonical_axes(keypoints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Origin (..., 3) and axes (..., 3, 3) (columns x, y, z) of the right hand's wrist frame."""
    right = keypoints[..., NUM_KEYPOINTS:, :]
    origin = right[..., _WRIST, :]
    x = nn.functional.normalize(right[..., _MIDDLE1, :] - origin, dim=-1)
    across = right[..., _INDEX1, :] - right[..., _PINKY1, :]
    y = nn.functional.normalize(across - (across * x).sum(-1, keepdim=True) * x, dim=-1)
    return origin, torch.stack([x, y, torch.cross(x, y, dim=-1)], dim=-1)


def canonical_frames(keypoints: Any) -> torch.Tensor:
    """(N, 42, 3) two-hand keypoints → (N, 126), each frame in its own canonical frame."""
    k = _keypoints(keypoints, 3)
    origin, axes = canonical_axes(k)
    return (((k - origin[:, None]) @ axes) * SCALE).reshape(len(k), -1)


def canonical_motion(keypoints: Any) -> torch.Tensor:
    """(T, 42, 3) → (T, 126), every frame in the canonical frame of the first one."""
    k = _keypoints(keypoints, 3)
    origin, axes = canonical_axes(k[0])
    return (((k - origin) @ axes) * SCALE).reshape(len(k), -1)


def _keypoints(keypoints: Any, ndim: int) -> torch.Tensor:
    k = torch.as_tensor(as_numpy(keypoints), dtype=torch.float32)
    if k.ndim != ndim or k.shape[-2:] != (2 * NUM_KEYPOINTS, 3):
        raise FeatureError(f"expected two-hand keypoints of shape ({'N' if ndim == 3 else ''}, 42, 3) "
                           f"(left 21 then right 21), got {tuple(k.shape)}")
    if not torch.isfinite(k).all():
        raise FeatureError("keypoints contain NaN or inf")
    return k


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class FeatureNetworks:
    frame: FrameNet
    motion: MotionNet
    recipe: dict[str, Any] = field(default_factory=dict)   # how it was trained, and the results

    def save(self, folder: str | Path) -> Path:
        """Write the checkpoint folder atomically (no partial folder on failure)."""
        from handforge.engines.checkpoints import CheckpointError, atomic_folder, write_model

        folder = Path(folder)
        if folder.suffix == ".safetensors":
            raise FeatureError(f"{folder}: feature checkpoints are folders ({LAYOUT}); give a folder path, "
                               "e.g. features_v2")
        try:
            with atomic_folder(folder) as tmp:
                write_model(self.frame, tmp / "frame")
                write_model(self.motion, tmp / "motion")
                (tmp / RECIPE).write_text(json.dumps(self.recipe, indent=1) + "\n")
        except CheckpointError as exc:
            raise FeatureError(str(exc)) from None
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "FeatureNetworks":
        from handforge.engines.checkpoints import CheckpointError, load_model
        from handforge.evaluation.feature_models import FrameNet, MotionNet

        folder = Path(folder)
        where = f"point {FEATURES.env} / [{FEATURES.section}] {FEATURES.name} at one"
        if folder.is_file():
            raise FeatureError(f"{folder} is a file: feature checkpoints are folders ({LAYOUT}) written by "
                               f"`handforge train-features`; {where}")
        if not folder.is_dir():
            raise FeatureError(f"{folder}: no such feature checkpoint; train one with `handforge train-features` "
                               f"or {where}")
        try:
            frame, motion = load_model(FrameNet, folder / "frame"), load_model(MotionNet, folder / "motion")
            recipe = parse_json((folder / RECIPE).read_text()) if (folder / RECIPE).is_file() else {}
        except (CheckpointError, OSError, ValueError) as exc:
            raise FeatureError(f"{folder}: not a readable feature checkpoint ({exc})") from None
        return cls(frame, motion, recipe)

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def frame_features(self, keypoints: Any, batch_size: int = 4096) -> np.ndarray:
        """(N, 42, 3) two-hand keypoints (metres) → (N, 128) features."""
        k = _keypoints(keypoints, 3)
        if not len(k):  # (no frame: no features)
            return np.zeros((0, self.frame.config.feature_dim), np.float32)
        x = canonical_frames(k)
        return torch.cat([self.frame(x[s:s + batch_size]) for s in range(0, len(x), batch_size)] or
                         [torch.zeros(0, self.frame.config.feature_dim)]).numpy()

    @torch.no_grad()
    def motion_features(self, motions: Iterable[Any]) -> np.ndarray:
        """A (T, 42, 3) keypoint sequence per motion → (N, 128) features (one motion at a time)."""
        rows = [self.motion(canonical_motion(m)[None])[0] for m in motions]
        return torch.stack(rows).numpy() if rows else np.zeros((0, self.motion.config.feature_dim), np.float32)


def load_features(path: str | Path | None = None) -> FeatureNetworks:
    """The checkpoint at ``path``, else the configured one (``evaluation.features``), else the shipped one."""
    return FeatureNetworks.load(path if path is not None else config.value(FEATURES.key))


def two_hand_keypoints(clip: MotionClip, model: Any) -> tuple[np.ndarray, np.ndarray]:
    """A clip's (T, 42, 3) keypoints (left then right; metres) and a (T,) mask of frames where
    both hands are present. A clip without one of the hands has no two-hand frames."""
    from handforge.evaluation.motion import clip_keypoints

    if set(clip.hands) != {"left", "right"}:
        return np.zeros((0, 2 * NUM_KEYPOINTS, 3)), np.zeros(0, dtype=bool)
    kp = clip_keypoints(clip, model)
    return np.concatenate([kp["left"], kp["right"]], axis=1), clip.present["left"] & clip.present["right"]
