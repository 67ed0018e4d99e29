"""How far one posed hand intersects itself (LBS sinks curled fingers into the palm).

A vertex is *buried* when its skin lies inside another part of the same hand: a point 0.5 mm
under it (against its normal) has winding number ≥ 2 in the sealed hand (inside its own part and
inside another).

    buried_vertices   how many vertices are buried
    buried_faces      faces with a buried vertex (the faces that cut through another part)
    max_depth         m, how deep skin sank into another part (e.g. a fingertip into the palm): per
                      buried vertex the distance inwards (against its normal) to the other part's
                      skin, where the winding number falls back to 1 (sampled every 0.25 mm), the
                      largest of them
    volume            m³, ``penetration.self_penetration_volume`` (overlap counted once)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

from handforge.evaluation.common import as_numpy
from handforge.evaluation.penetration import self_penetration_volume
from handforge.evaluation.proximity import SurfaceQuery
from handforge.evaluation.seal import as_sealed

_UNDER_SKIN = 5e-4  # m
_STEP = 2.5e-4       # m
_MAX_DEPTH = 0.03    # m, deeper than any finger is thick


@dataclass(frozen=True)
class SelfIntersection:
    buried_vertices: int
    buried_faces: int
    max_depth: float
    volume: float

    def as_dict(self) -> dict[str, float]:
        return {"buried_vertices": self.buried_vertices, "buried_faces": self.buried_faces,
                "max_depth_mm": round(self.max_depth * 1e3, 2), "volume_cm3": round(self.volume * 1e6, 3)}


def self_intersection(vertices: Any, faces: Any, with_volume: bool = True) -> SelfIntersection:
    """Self-intersection of one posed hand (V, 3) with its (open or closed) faces."""
    v = as_numpy(vertices).astype(np.float64)
    f = as_numpy(faces).astype(np.int64)
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    sealed = SurfaceQuery(as_sealed(f, len(v)).mesh(v))
    buried = sealed.winding_numbers(v - _UNDER_SKIN * normals) >= 2
    depth = 0.0
    if buried.any():
        steps = np.arange(1, int(_MAX_DEPTH / _STEP) + 1) * _STEP
        probes = v[buried, None] - steps[None, :, None] * normals[buried, None]
        outside = sealed.winding_numbers(probes.reshape(-1, 3)).reshape(probes.shape[:2]) <= 1
        first_out = np.where(outside.any(1), steps[np.argmax(outside, axis=1)], _MAX_DEPTH)
        depth = float(first_out.max())
    volume = self_penetration_volume(v, f) if with_volume else float("nan")
    return SelfIntersection(buried_vertices=int(buried.sum()), buried_faces=int(np.any(buried[f], axis=1).sum()),
                            max_depth=depth, volume=volume)
