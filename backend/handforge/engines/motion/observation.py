"""What the animator gave: key values at any frames, on any parts of either hand.

``Observation`` is the one input of both engines (learned and spline):

    global_orient (T, 2, 3), hand_pose (T, 2, 45), transl (T, 2, 3)   rig values; only keyed
                                                                    entries are read
    part_mask     (T, 2, 17) bool    per frame and hand: wrist rotation, finger joints 1..15,
                                     wrist translation (``representation.PART_NAMES``)
    betas         (2, 10)            shape of each hand, carried into the result unchanged
    hand_model    "open" | "mano";  fps
    wrist_shift   (2, 3)             the hand model's rest wrist joints for these betas minus the open
                                     hand's at mean shape (``representation.wrist_shift``): how its
                                     ``transl`` maps to the motion's translation channels. Worked out
                                     from the shipped rig for the open hand; a MANO observation gets it
                                     from its hand model (``placed``; ``MotionPipeline`` does so itself)
    scene_hands   the sides the scene has ("left", "right"): a request names the hands it sends. Both
                  hands are generated either way (the motion is two-hand), but a hand the scene lacks
                  is nowhere to collide with: nothing keeps the other apart from it or measures overlap

``clip(...)`` turns generated rig values into a ``MotionClip`` and writes every key back
exactly, so the result reproduces the animator's values bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

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
    wrist_shift: np.ndarray | None = None
    scene_hands: tuple[str, ...] = rep.HAND_AXIS

    def __post_init__(self) -> None:
        scene_hands = tuple(self.scene_hands)
        if not scene_hands or len(set(scene_hands)) != len(scene_hands) or not set(scene_hands) <= set(rep.HAND_AXIS):
            raise ObservationError(f"scene_hands must name one or both of {', '.join(rep.HAND_AXIS)} once each, got "
                                   f"{self.scene_hands!r}")
        object.__setattr__(self, "scene_hands", tuple(s for s in rep.HAND_AXIS if s in scene_hands))
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
        absent = [h for h, side in enumerate(rep.HAND_AXIS) if side not in self.scene_hands]
        if mask[:, absent].any():
            raise ObservationError(f"part_mask keys the {rep.HAND_AXIS[absent[0]]} hand, which scene_hands "
                                   f"{self.scene_hands} leaves out: name it there, or key only the scene's hands")
        try:
            check_hand_model(self.hand_model)
        except ValueError as exc:
            raise ObservationError(str(exc)) from None
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise ObservationError(f"fps must be a positive number, got {self.fps!r}")
        shift = self.wrist_shift
        if shift is None and self.hand_model == "open":
            shift = rep.wrist_shift(rep.open_hand_wrists(), betas)
        if shift is not None:
            shift = np.asarray(shift, dtype=np.float64)
            if shift.shape != (2, 3) or not np.isfinite(shift).all():
                raise ObservationError(f"wrist_shift must be two finite rows of 3 (left, right), got {shift.shape}")
        object.__setattr__(self, "wrist_shift", shift)

    @staticmethod
    def _keyed(name: str, mask: np.ndarray) -> np.ndarray:
        """(T, 2, size) bool: which entries of ``name`` the mask keys."""
        if name == "global_orient":
            return np.repeat(mask[..., :1], 3, -1)
        if name == "hand_pose":
            return np.repeat(mask[..., 1:rep.TRANSL_PART], 3, -1)
        return np.repeat(mask[..., rep.TRANSL_PART:], 3, -1)

    @property
    def both_hands(self) -> bool:
        """Whether the scene has both hands: only then can one go into the other (penetration guidance, overlap notes)."""
        return len(self.scene_hands) == 2

    @property
    def num_frames(self) -> int:
        return self.part_mask.shape[0]

    def placed(self, hands: Any) -> "Observation":
        """This observation with the ``wrist_shift`` of ``hands`` (its ``HandModel``, or that model's
        ``WristJoints``) for its betas."""
        name = getattr(hands, "name", self.hand_model)
        if name != self.hand_model:
            raise ObservationError(f"the keys are for the {self.hand_model} hand model, not {name}")
        return replace(self, wrist_shift=rep.wrist_shift(hands, self.betas))

    def _shift(self) -> np.ndarray:
        if self.wrist_shift is None:
            raise ObservationError(f"where the {self.hand_model} hand's wrist joints sit is not known here: place the "
                                   "observation on its hand model first (Observation.placed(hand_model))")
        return self.wrist_shift

    @property
    def origin(self) -> np.ndarray:
        """The canonical origin: mean of the keyed wrist joints (as ``transl + wrist_shift``), else the model origin."""
        keyed = self.part_mask[..., rep.TRANSL_PART]
        if keyed.any():
            return (self.transl + self._shift())[keyed].mean(0)
        return np.zeros(3)

    def channel_mask(self) -> np.ndarray:
        return rep.part_mask_to_channels(self.part_mask)

    def motion(self) -> np.ndarray:
        """(T, 198) the keyed values in the representation (unkeyed entries: whatever was given)."""
        return self.motion_of({"global_orient": self.global_orient, "hand_pose": self.hand_pose,
                               "transl": self.transl})

    def motion_of(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Rig values (T, 2, size) of this observation's hands → (T, 198) in the representation (``values_of``'s
        inverse: the same origin and wrist joints)."""
        return rep.encode(values["global_orient"], values["hand_pose"], values["transl"], self.origin, self._shift())

    def values_of(self, motion: np.ndarray) -> dict[str, np.ndarray]:
        """Motion (..., T, 198) of this observation → its rig values (..., T, 2, size), keys written back exactly."""
        return self.with_keys(rep.decode(motion, self.origin, self._shift()))

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
