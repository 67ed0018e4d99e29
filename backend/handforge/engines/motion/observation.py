"""What the animator gave: key values at any frames, on any parts of either hand.

``Observation`` is the one input of both engines (learned and spline):

    global_orient (T, 2, 3), hand_pose (T, 2, 45), transl (T, 2, 3)   rig values; only keyed
                                                                    entries are read
    part_mask     (T, 2, 17) bool    per frame and hand: wrist rotation, finger joints 1..15,
                                     wrist translation (``representation.PART_NAMES``)
    betas         (2, 10)            shape of each hand, carried into the result unchanged
    hand_model    "open" | "mano";  fps

``clip(...)`` turns generated rig values into a ``MotionClip`` and writes every key back
exactly, so the result reproduces the animator's values bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handforge.engines.motion import representation as rep
from handforge_shared.poses import ROTATION_FIELDS, HandPose, MotionClip, check_hand_model



class ObservationError(ValueError):
    """Keys that cannot be used; the message says which array and how to fix it."""


@dataclass(frozen=True)
class Observation:
    global_orient: np.ndarray
    hand_pose: np.ndarray
    transl: np.ndarray
    part_mask: np.ndarray
    betas: np.ndarray
    hand_model: str = "open"
    fps: float = 30.0

    def __post_init__(self) -> None:
        mask = np.asarray(self.part_mask)
        if mask.ndim != 3 or mask.shape[1:] != (2, rep.PARTS) or mask.dtype != bool:
            raise ObservationError(f"part_mask must be a (T, 2, {rep.PARTS}) bool array, got {mask.dtype} {mask.shape}")
        frames = mask.shape[0]
        if frames < 2:
            raise ObservationError(f"a motion needs at least 2 frames, got {frames}")
        for name, size in (("global_orient", 3), ("hand_pose", 45), ("transl", 3)):
            value = np.asarray(getattr(self, name), dtype=np.float64)
            if value.shape != (frames, 2, size):
                raise ObservationError(f"{name} must have shape ({frames}, 2, {size}) like part_mask, got {value.shape}")
            keyed = self._keyed(name, mask)
            if not np.isfinite(value[keyed]).all():
                raise ObservationError(f"{name} has a non-finite value (NaN or inf) at a keyed frame")
            object.__setattr__(self, name, value)
        betas = np.asarray(self.betas, dtype=np.float64)
        if betas.shape != (2, 10) or not np.isfinite(betas).all():
            raise ObservationError(f"betas must be two finite rows of 10 (left, right), got {betas.shape}")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "part_mask", mask)
        try:
            check_hand_model(self.hand_model)
        except ValueError as exc:
            raise ObservationError(str(exc)) from None
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ObservationError(f"fps must be a positive number, got {self.fps!r}")

    @staticmethod
    def _keyed(name: str, mask: np.ndarray) -> np.ndarray:
        """(T, 2, size) bool: which entries of ``name`` the mask keys."""
        if name == "global_orient":
            return np.repeat(mask[..., :1], 3, -1)
        if name == "hand_pose":
            return np.repeat(mask[..., 1:rep.TRANSL_PART], 3, -1)
        return np.repeat(mask[..., rep.TRANSL_PART:], 3, -1)

    @property
    def num_frames(self) -> int:
        return self.part_mask.shape[0]

    @property
    def origin(self) -> np.ndarray:
        """The canonical origin: mean of the keyed wrist translations, else the model origin."""
        keyed = self.part_mask[..., rep.TRANSL_PART]
        if keyed.any():
            return self.transl[keyed].mean(0)
        return np.zeros(3)

    def channel_mask(self) -> np.ndarray:
        return rep.part_mask_to_channels(self.part_mask)

    def motion(self) -> np.ndarray:
        """(T, 198) the keyed values in the representation (unkeyed entries: whatever was given)."""
        return rep.encode(self.global_orient, self.hand_pose, self.transl, self.origin)

    def with_keys(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``values`` (..., T, 2, size) with every keyed entry replaced by the key (exact)."""
        out = {}
        for name in (*ROTATION_FIELDS, "transl"):
            keyed = self._keyed(name, self.part_mask)
            out[name] = np.where(keyed, getattr(self, name), np.asarray(values[name], dtype=np.float64))
        return out

    def clip(self, values: dict[str, np.ndarray], extra: dict | None = None) -> MotionClip:
        """A (T, 2, ...) set of generated values → ``MotionClip`` with the keys written back exactly."""
        exact = self.with_keys(values)
        hands = {side: HandPose(global_orient=exact["global_orient"][:, h], hand_pose=exact["hand_pose"][:, h],
                                betas=np.repeat(self.betas[h][None], self.num_frames, 0), transl=exact["transl"][:, h])
                 for h, side in enumerate(rep.HAND_AXIS)}
        return MotionClip(hands=hands, fps=self.fps, hand_model=self.hand_model, extra=extra or {})


__all__ = ["Observation", "ObservationError"]
