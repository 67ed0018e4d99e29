"""The learned model's frame rate and the scene's.

The model learnt motion at the frame rate of its training clips (``MotionDenoiser.config.fps``: 30 for the
open corpus). A scene at 24 fps (Blender's default) or 60 fps asks for one pose per scene frame: generated
frame for frame, its motion played at 0.8× or 0.5× the speed the model learnt, and a 512-frame limit counted
in the scene's frames. So the learned engine runs on the model's frames over the same span of time and the
result is resampled at the scene's frames (rotations along their arcs, translations linearly); every key
lands on the model frame nearest its time (within half a model frame, 17 ms at 30 fps) and comes back exact
on its own scene frame (``Observation.clip``).
"""

from __future__ import annotations

import math

import numpy as np

from handforge.engines.motion.observation import Observation
from handforge_shared.poses import ROTATION_FIELDS

FIELDS = (*ROTATION_FIELDS, "transl")
_SAME = 1e-9  # a scene frame this close to a model frame takes its values as they are


def model_frames(num_frames: int, fps: float, model_fps: float) -> int:
    """How many model frames span ``num_frames`` scene frames at ``fps``."""
    if math.isclose(fps, model_fps, rel_tol=1e-12):
        return num_frames
    return max(2, math.ceil((num_frames - 1) * model_fps / fps - _SAME) + 1)


def _times(num_frames: int, fps: float, model_fps: float) -> np.ndarray:
    """Each scene frame's time in model frames."""
    return np.arange(num_frames) * (model_fps / fps)


def at_model_rate(observation: Observation, model_fps: float) -> Observation:
    """``observation`` on the model's frames: each key on the model frame nearest its time (where two keys of
    one part meet there, the nearer in time); the observation itself when the rates agree."""
    frames = model_frames(observation.num_frames, observation.fps, model_fps)
    if frames == observation.num_frames and math.isclose(observation.fps, model_fps, rel_tol=1e-12):
        return observation
    times = _times(observation.num_frames, observation.fps, model_fps)
    nearest = np.minimum(np.rint(times).astype(int), frames - 1)
    mask = np.zeros((frames, *observation.part_mask.shape[1:]), dtype=bool)
    off = np.full(mask.shape, np.inf)
    values = {name: np.zeros((frames, *getattr(observation, name).shape[1:])) for name in FIELDS}
    for i in np.flatnonzero(observation.part_mask.any(axis=(1, 2))):
        j, distance = nearest[i], abs(times[i] - nearest[i])
        take = observation.part_mask[i] & (distance < off[j])  # (2, parts)
        mask[j] |= take
        off[j] = np.where(take, distance, off[j])
        for name in FIELDS:
            keyed = Observation._keyed(name, take[None])[0]
            values[name][j] = np.where(keyed, getattr(observation, name)[i], values[name][j])
    return Observation(**values, part_mask=mask, betas=observation.betas, hand_model=observation.hand_model,
                       fps=model_fps)


def at_scene_rate(values: dict[str, np.ndarray], observation: Observation, model_fps: float) -> dict[str, np.ndarray]:
    """Rig values (..., T_model, 2, size) generated for ``at_model_rate(observation, model_fps)`` → the
    values at ``observation``'s own frames (..., T, 2, size)."""
    from handforge_shared.rotations import axis_angle_to_quaternion, quaternion_to_axis_angle, slerp_quaternion

    frames = values["transl"].shape[-3]
    if frames == observation.num_frames and math.isclose(observation.fps, model_fps, rel_tol=1e-12):
        return values
    times = _times(observation.num_frames, observation.fps, model_fps)
    first = np.minimum(np.floor(times + _SAME).astype(int), frames - 2)
    weight = np.clip(times - first, 0.0, 1.0)
    on_first, on_next = np.abs(weight) < _SAME, np.abs(weight - 1.0) < _SAME  # on a model frame: its values as they are
    out = {}
    for name in FIELDS:
        value = np.asarray(values[name], dtype=np.float64)
        a, b = value[..., first, :, :], value[..., first + 1, :, :]
        w = weight[:, None, None]
        if name == "transl":
            mixed = a + w * (b - a)
        else:  # each joint's rotation along its arc
            shape = a.shape
            qa, qb = (axis_angle_to_quaternion(x.reshape(*shape[:-1], -1, 3)) for x in (a, b))
            mixed = quaternion_to_axis_angle(slerp_quaternion(qa, qb, np.broadcast_to(w, qa.shape[:-1])))
            mixed = mixed.reshape(shape)
        out[name] = np.where(on_first[:, None, None], a, np.where(on_next[:, None, None], b, mixed))
    return out


__all__ = ["at_model_rate", "at_scene_rate", "model_frames"]
