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

    FrameNet    MLP 126 → 256 → 256 → 128 (LayerNorm, GELU); the 128-d embedding is the feature.
    MotionNet   per-frame Linear 126 → 96, three 1-D convolutions over time (kernel 5, dilations
                1, 2, 4, GELU, residual), mean and max over time → 128-d feature.
Both carry small heads for their training targets (``feature_training.py``); evaluation uses only
the embedding. A checkpoint is one ``.safetensors`` file holding both networks, their configs,
the class names and the training recipe and results (JSON in the file's metadata).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn

from handforge import config
from handforge.evaluation.common import as_numpy
from handforge_shared.poses import MotionClip
from handforge_shared.skeleton import KEYPOINT_NAMES, NUM_KEYPOINTS

FORMAT = "handforge.features"
VERSION = 1
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "features_v1.safetensors"
from handforge.evaluation.settings import FEATURES  # noqa: E402 (declared where config finds it)

_WRIST, _INDEX1, _MIDDLE1, _PINKY1 = (KEYPOINT_NAMES.index(n) for n in ("wrist", "index1", "middle1", "pinky1"))
INPUT_DIM = 2 * NUM_KEYPOINTS * 3
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


# ----------------------------------------------------------------------------- networks
@dataclass
class FrameNetConfig:
    hidden: int = 256
    feature_dim: int = 128
    classes: list[str] = field(default_factory=list)


@dataclass
class MotionNetConfig:
    channels: int = 96
    feature_dim: int = 128
    kernel: int = 5
    dilations: tuple[int, ...] = (1, 2, 4)
    classes: list[str] = field(default_factory=list)     # motion kinds (softmax)
    templates: list[str] = field(default_factory=list)   # interactions present (sigmoid)


class FrameNet(nn.Module):
    def __init__(self, cfg: FrameNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Sequential(
            nn.Linear(INPUT_DIM, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden), nn.LayerNorm(cfg.hidden), nn.GELU(),
            nn.Linear(cfg.hidden, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim),
        )
        self.classify = nn.Linear(cfg.feature_dim, max(len(cfg.classes), 1))
        self.reconstruct = nn.Linear(cfg.feature_dim, INPUT_DIM)  # keeps finger detail in the feature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 126) canonical frames → (N, feature_dim) features."""
        return self.embed(x)


class MotionNet(nn.Module):
    def __init__(self, cfg: MotionNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.inp = nn.Sequential(nn.Linear(INPUT_DIM, c), nn.GELU())
        self.convs = nn.ModuleList(nn.Conv1d(c, c, cfg.kernel, dilation=d, padding=d * (cfg.kernel // 2))
                                   for d in cfg.dilations)
        self.out = nn.Sequential(nn.Linear(2 * c, cfg.feature_dim), nn.LayerNorm(cfg.feature_dim))
        self.classify = nn.Linear(cfg.feature_dim, max(len(cfg.classes), 1))
        self.templates = nn.Linear(cfg.feature_dim, max(len(cfg.templates), 1))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, 126) canonical motions (``mask`` (B, T) True on real frames) → (B, feature_dim)."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        m = mask[:, None, :].to(x.dtype)
        h = self.inp(x).transpose(1, 2) * m  # (B, C, T); padding kept at zero
        for conv in self.convs:
            h = (h + nn.functional.gelu(conv(h))) * m
        mean = h.sum(-1) / m.sum(-1).clamp_min(1.0)
        peak = h.masked_fill(m == 0, float("-inf")).amax(-1)
        return self.out(torch.cat([mean, peak], dim=-1))


# ----------------------------------------------------------------------------- checkpoints
@dataclass
class FeatureNetworks:
    frame: FrameNet
    motion: MotionNet
    recipe: dict[str, Any] = field(default_factory=dict)   # how it was trained, and the results

    def save(self, path: str | Path) -> Path:
        """Write one .safetensors file atomically (no partial file on failure)."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            raise FeatureError(f"{path}: feature checkpoints are .safetensors files; give a path ending in .safetensors")
        tensors = {f"frame.{k}": v.detach().cpu().contiguous() for k, v in self.frame.state_dict().items()}
        tensors |= {f"motion.{k}": v.detach().cpu().contiguous() for k, v in self.motion.state_dict().items()}
        meta = {"format": FORMAT, "version": VERSION, "frame": asdict(self.frame.cfg),
                "motion": asdict(self.motion.cfg), "recipe": self.recipe}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        try:
            save_file(tensors, str(tmp), metadata={"handforge": json.dumps(meta)})
            tmp.replace(path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureNetworks":
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise FeatureError(f"{path}: no such feature checkpoint; train one with `handforge train-features` "
                               f"or point {FEATURES.env} / [{FEATURES.section}] {FEATURES.name} at one")
        try:
            with safe_open(str(path), framework="pt") as fh:
                meta = json.loads((fh.metadata() or {}).get("handforge", "{}"))
                tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        except (SafetensorError, OSError, json.JSONDecodeError) as exc:
            raise FeatureError(f"{path}: not a readable feature checkpoint ({exc})") from None
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise FeatureError(f"{path}: not a HandForge feature checkpoint v{VERSION} "
                               f"(format {meta.get('format')!r} v{meta.get('version')!r})")
        motion_cfg = dict(meta["motion"], dilations=tuple(meta["motion"]["dilations"]))
        nets = cls(FrameNet(FrameNetConfig(**meta["frame"])), MotionNet(MotionNetConfig(**motion_cfg)),
                   meta.get("recipe", {}))
        for name, net in (("frame", nets.frame), ("motion", nets.motion)):
            state = {k[len(name) + 1:]: v for k, v in tensors.items() if k.startswith(name + ".")}
            try:
                net.load_state_dict(state)
            except RuntimeError as exc:
                raise FeatureError(f"{path}: the {name} network's weights do not match its config ({exc})") from None
        nets.frame.eval()
        nets.motion.eval()
        return nets

    # ------------------------------------------------------------------ features
    @torch.no_grad()
    def frame_features(self, keypoints: Any, batch_size: int = 4096) -> np.ndarray:
        """(N, 42, 3) two-hand keypoints (metres) → (N, 128) features."""
        x = canonical_frames(keypoints)
        return torch.cat([self.frame(x[s:s + batch_size]) for s in range(0, len(x), batch_size)] or
                         [torch.zeros(0, self.frame.cfg.feature_dim)]).numpy()

    @torch.no_grad()
    def motion_features(self, motions: Iterable[Any]) -> np.ndarray:
        """A (T, 42, 3) keypoint sequence per motion → (N, 128) features (one motion at a time)."""
        rows = [self.motion(canonical_motion(m)[None])[0] for m in motions]
        return torch.stack(rows).numpy() if rows else np.zeros((0, self.motion.cfg.feature_dim), np.float32)


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
