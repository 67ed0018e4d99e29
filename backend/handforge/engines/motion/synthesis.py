"""One call for both engines: keys in, motion clips out (used by the jobs and the evaluation).

    clips = synthesize(observation, engine="learned", pipeline=MotionPipeline(model, hands),
                       num_samples=2, steps=20, seed=0)

``engine="spline"`` (or ``pipeline=None``) runs the spline engine; it is deterministic, so its
samples are identical. Every clip reproduces the keys exactly (``Observation.clip``).
"""

from __future__ import annotations

from typing import Callable

from handforge.engines.motion.observation import Observation
from handforge.engines.motion.pipeline import DEFAULT_STEPS, Guidance, MotionPipeline
from handforge.engines.motion.spline import spline_inbetween
from handforge_shared.poses import MotionClip

ENGINES = ("learned", "spline")


def synthesize(observation: Observation, engine: str = "learned", pipeline: MotionPipeline | None = None,
               num_samples: int = 1, steps: int = DEFAULT_STEPS, seed: int = 0, variation: float = 1.0,
               guidance: Guidance | None = None, callback: Callable[[int, int], None] | None = None,
               extra: dict | None = None) -> list[MotionClip]:
    if engine not in ENGINES:
        raise ValueError(f"unknown motion engine {engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "spline" or pipeline is None:
        values = spline_inbetween(observation)
        if callback is not None:
            callback(1, 1)
        return [observation.clip(values, extra)] * num_samples
    batch = pipeline(observation, num_samples=num_samples, steps=steps, seed=seed, variation=variation,
                     guidance=guidance, callback=callback)
    return [observation.clip({k: v[i] for k, v in batch.items()}, extra) for i in range(num_samples)]


__all__ = ["ENGINES", "synthesize"]
