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
    """``observation`` on the model's frames. A model frame between two keyed scene frames of a part (a wrist
    path, a hand keyed on every frame) takes that part's keys at its own time (snapped to the nearest, a path
    at 24 fps lost every fourth model frame's key and the rest were up to 8 mm off at 1 m/s: the model saw it
    jerk); an isolated key goes to the model frame nearest its time (where two meet there, the nearer in
    time). The observation itself when the rates agree."""
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
    # within runs of keyed scene frames: each model frame's own time, between the two keys around it
    scene_times = np.arange(frames) * (observation.fps / model_fps)
    first, weight = _around(scene_times, observation.num_frames)
    on_first = weight < _SAME
    run = observation.part_mask[first] & (observation.part_mask[first + 1] | on_first[:, None, None])
    mask |= run
    for name in FIELDS:
        keys = getattr(observation, name)
        between = _between(name, keys[first], keys[first + 1], weight)
        values[name] = np.where(Observation._keyed(name, run), between, values[name])
    return Observation(**values, part_mask=mask, betas=observation.betas, hand_model=observation.hand_model,
                       fps=model_fps, wrist_shift=observation.wrist_shift, scene_hands=observation.scene_hands)


def at_scene_rate(values: dict[str, np.ndarray], observation: Observation, model_fps: float) -> dict[str, np.ndarray]:
    """Rig values (..., T_model, 2, size) generated for ``at_model_rate(observation, model_fps)`` → the
    values at ``observation``'s own frames (..., T, 2, size)."""
    frames = values["transl"].shape[-3]
    if frames == observation.num_frames and math.isclose(observation.fps, model_fps, rel_tol=1e-12):
        return values
    first, weight = _around(_times(observation.num_frames, observation.fps, model_fps), frames)
    out = {}
    for name in FIELDS:
        value = np.asarray(values[name], dtype=np.float64)
        out[name] = _between(name, value[..., first, :, :], value[..., first + 1, :, :], weight)
    return out


def _around(times: np.ndarray, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """For each time (in frames of a sequence of ``frames``): the frame before it (at most the last but one)
    and how far it is on to the next, in [0, 1]."""
    first = np.minimum(np.floor(times + _SAME).astype(int), frames - 2)
    return first, np.clip(times - first, 0.0, 1.0)


def _between(name: str, a: np.ndarray, b: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Values (..., F, 2, size) of field ``name`` ``weight`` (F,) of the way from ``a`` to ``b``: rotations along
    their arcs, translations on their line; ``a`` or ``b`` themselves, bit for bit, at 0 and 1."""
    from handforge_shared.rotations import axis_angle_to_quaternion, quaternion_to_axis_angle, slerp_quaternion

    w = weight[:, None, None]
    if name == "transl":
        mixed = a + w * (b - a)
    else:  # each joint's rotation along its arc
        shape = a.shape
        qa, qb = (axis_angle_to_quaternion(x.reshape(*shape[:-1], -1, 3)) for x in (a, b))
        mixed = quaternion_to_axis_angle(slerp_quaternion(qa, qb, np.broadcast_to(w, qa.shape[:-1]))).reshape(shape)
    return np.where(np.abs(w) < _SAME, a, np.where(np.abs(w - 1.0) < _SAME, b, mixed))


__all__ = ["at_model_rate", "at_scene_rate", "model_frames"]
