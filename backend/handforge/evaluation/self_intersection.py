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

Given the skinning's parts (each vertex's most-weighted joint) and the joint tree, the same depths
are attributed to the two parts involved (the buried vertex's, and the part whose skin the probe
leaves through) and split in two:

    max_fold_depth    m, between one part and its parent or child: the crease on the palmar side of
                      a bent joint, where linear blend skinning folds skin into the neighbouring
                      segment; a property of the skinning, not of the pose
    max_part_depth    m, between parts that are not neighbours: a fingertip into the palm, the thumb
                      through a curled finger — what a pose can avoid (the pose library keeps it
                      under 2 mm)
    worst_parts       the joint names of that deepest non-neighbour pair
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
from handforge_shared.skeleton import JOINT_NAMES, JOINT_PARENTS

_UNDER_SKIN = 5e-4  # m
_STEP = 2.5e-4       # m
_MAX_DEPTH = 0.03    # m, deeper than any finger is thick


@dataclass(frozen=True)
class SelfIntersection:
    buried_vertices: int
    buried_faces: int
    max_depth: float
    volume: float
    max_fold_depth: float = float("nan")
    max_part_depth: float = float("nan")
    worst_parts: tuple[str, str] | None = None

    def as_dict(self) -> dict[str, Any]:
        row = {"buried_vertices": self.buried_vertices, "buried_faces": self.buried_faces,
               "max_depth_mm": round(self.max_depth * 1e3, 2), "volume_cm3": round(self.volume * 1e6, 3)}
        if not np.isnan(self.max_part_depth):
            row.update(fold_mm=round(self.max_fold_depth * 1e3, 2), part_mm=round(self.max_part_depth * 1e3, 2),
                       worst_parts="-".join(self.worst_parts) if self.worst_parts else "")
        return row


def self_intersection(vertices: Any, faces: Any, with_volume: bool = True, skin_weights: Any = None,
                      parents: tuple[int, ...] = JOINT_PARENTS) -> SelfIntersection:
    """Self-intersection of one posed hand (V, 3) with its (open or closed) faces; with the rig's
    ``skin_weights`` (V, J) also the fold / part split (module docstring)."""
    v = as_numpy(vertices).astype(np.float64)
    f = as_numpy(faces).astype(np.int64)
    normals = trimesh.Trimesh(v, f, process=False).vertex_normals
    sealed_mesh = as_sealed(f, len(v)).mesh(v)
    sealed = SurfaceQuery(sealed_mesh)
    buried = np.flatnonzero(sealed.winding_numbers(v - _UNDER_SKIN * normals) >= 2)
    depths = np.zeros(0)
    if len(buried):
        steps = np.arange(1, int(_MAX_DEPTH / _STEP) + 1) * _STEP
        probes = v[buried, None] - steps[None, :, None] * normals[buried, None]
        outside = sealed.winding_numbers(probes.reshape(-1, 3)).reshape(probes.shape[:2]) <= 1
        depths = np.where(outside.any(1), steps[np.argmax(outside, axis=1)], _MAX_DEPTH)
    volume = self_penetration_volume(v, f) if with_volume else float("nan")
    result = SelfIntersection(buried_vertices=len(buried), buried_faces=int(np.isin(f, buried).any(1).sum()),
                              max_depth=float(depths.max(initial=0.0)), volume=volume)
    if skin_weights is None:
        return result
    fold, part, pair = _split_by_parts(v, normals, buried, depths, sealed_mesh,
                                       as_numpy(skin_weights).argmax(1), parents)
    return SelfIntersection(result.buried_vertices, result.buried_faces, result.max_depth, volume,
                            max_fold_depth=fold, max_part_depth=part, worst_parts=pair)


def _split_by_parts(v, normals, buried, depths, sealed_mesh, part_of_vertex, parents):
    """(deepest fold, deepest non-neighbour penetration, its pair of joint names). The part a probe
    leaves through is the part of the sealed surface nearest to where it comes out."""
    if not len(buried):
        return 0.0, 0.0, None
    exits = v[buried] - depths[:, None] * normals[buried]
    _, _, triangles = trimesh.proximity.closest_point(sealed_mesh, exits)
    corners = sealed_mesh.faces[triangles]
    # A cap centre (sealing the wrist) is not a skinned vertex: use the triangle's first corner.
    corner = np.where(corners[:, 0] < len(v), corners[:, 0], corners[:, 1])
    own, other = part_of_vertex[buried], part_of_vertex[corner]
    parents = np.asarray(parents)
    neighbours = (own == other) | (parents[own] == other) | (parents[other] == own)
    fold = float(depths[neighbours].max(initial=0.0))
    if neighbours.all():
        return fold, 0.0, None
    worst = np.flatnonzero(~neighbours)[np.argmax(depths[~neighbours])]
    return fold, float(depths[worst]), (JOINT_NAMES[own[worst]], JOINT_NAMES[other[worst]])
