"""One call for both engines: keys in, motion clips out (used by the jobs and the evaluation).

    clips = synthesize(observation, engine="learned", pipeline=MotionPipeline(model, hands),
                       num_samples=2, steps=20, seed=0)

``engine="spline"`` (or ``pipeline=None``) runs the spline engine; it is deterministic, so its
samples are identical. The learned engine runs at its model's frame rate, whatever the observation's
(``retime``). Free finger joints outside the anatomical limits (``handforge_shared.anatomy``,
on the open hand's joint frames, which MANO's match within a degree or two) are moved to the
nearest pose inside them; every clip then reproduces the keys exactly (``Observation.clip``).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from handforge.engines.motion import representation as rep
from handforge.engines.motion import retime
from handforge.engines.motion.observation import Observation
from handforge.engines.motion.pipeline import DEFAULT_SMOOTHING, DEFAULT_STEPS, Guidance, MotionPipeline
from handforge.engines.motion.spline import spline_inbetween
from handforge_shared.poses import MotionClip

ENGINES = ("learned", "spline")


def synthesize(observation: Observation, engine: str = "learned", pipeline: MotionPipeline | None = None,
               num_samples: int = 1, steps: int = DEFAULT_STEPS, seed: int = 0, variation: float = 1.0,
               guidance: Guidance | None = None, callback: Callable[[int, int, str], None] | None = None,
               smoothing: float = DEFAULT_SMOOTHING, extra: dict | None = None) -> list[MotionClip]:
    if engine not in ENGINES:
        raise ValueError(f"unknown motion engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "spline" or pipeline is None:
        values = into_limits(spline_inbetween(observation), observation)
        if callback is not None:
            callback(1, 1, "spline")
        return [observation.clip(values, extra)] * num_samples
    # on the model's own frames over the same time (retime.py), the clips at the observation's frames
    model_fps = pipeline.model.config.fps
    generated = pipeline(retime.at_model_rate(observation, model_fps), num_samples=num_samples, steps=steps,
                         seed=seed, variation=variation, guidance=guidance, callback=callback, smoothing=smoothing)
    batch = into_limits(retime.at_scene_rate(generated, observation, model_fps), observation)
    return [observation.clip({k: v[i] for k, v in batch.items()}, extra) for i in range(num_samples)]


def into_limits(values: dict[str, np.ndarray], observation: Observation | None = None) -> dict[str, np.ndarray]:
    """``values`` (..., T, 2, size) with every finger joint outside its anatomical range clamped into it.

    With the ``observation``, a joint keyed outside its range (the rig's limits are a box; ours couple
    abduction to flexion) may stay outside it between its keys by as much as the keys are, that
    overshoot interpolated per angle between them (held before the first key and after the last):
    two keys 20° outside held still, not 20°, 8°, 8° … 8°, 20° (a snap beside each key)."""
    from handforge.evaluation.limits import joint_frames
    from handforge_shared.anatomy import anatomical_to_hand_pose, clamp_to_limits, hand_pose_to_anatomical

    hand_pose = np.array(values["hand_pose"], dtype=np.float64)
    for h, side in enumerate(("left", "right")):
        frames = joint_frames(side)
        pose = hand_pose[..., h, :]
        angles = hand_pose_to_anatomical(pose, frames, side)
        clamped = clamp_to_limits(angles)
        if observation is not None:
            allowed = _keys_overshoot(observation, h, side, frames)  # (T, 15, 3), signed
            past = angles - clamped
            kept = np.where(np.sign(past) == np.sign(allowed), np.sign(past) * np.minimum(abs(past), abs(allowed)), 0.0)
            clamped = clamped + kept
        outside = np.repeat(np.abs(clamped - angles).max(-1) > 1e-9, 3, axis=-1)   # (..., 45)
        hand_pose[..., h, :] = np.where(outside, anatomical_to_hand_pose(clamped, frames, side), pose)
    return {**values, "hand_pose": hand_pose}


def _keys_overshoot(observation: Observation, hand: int, side: str, frames) -> np.ndarray:
    """(T, 15, 3) how far (signed, per anatomical angle) the keys of each finger joint lie outside its range,
    interpolated between keyed frames (0 for a joint without keys)."""
    from handforge_shared.anatomy import clamp_to_limits, hand_pose_to_anatomical

    mask = observation.part_mask[:, hand, 1:rep.TRANSL_PART]   # (T, 15): the finger joints' parts
    angles = hand_pose_to_anatomical(observation.hand_pose[:, hand], frames, side)
    past = np.where(mask[..., None], angles - clamp_to_limits(angles), 0.0)
    out = np.zeros_like(past)
    times = np.arange(len(mask))
    for joint in np.flatnonzero(mask.any(axis=0)):
        keyed = np.flatnonzero(mask[:, joint])
        for c in range(3):
            out[:, joint, c] = np.interp(times, keyed, past[keyed, joint, c])
    return out


__all__ = ["ENGINES", "synthesize", "into_limits"]
