"""Contact and proximity between two hands.

A vertex of one hand is *in contact* with the other hand when it lies within ``threshold`` of the
other hand's sealed surface, or inside it (a penetrating vertex touches too). Distances are exact
point-to-surface distances (``proximity.SurfaceQuery``), not vertex-to-vertex ones, which on a
5 mm mesh would overstate gaps by up to half an edge.

    contact_metrics(...)  per pair: the fraction of each hand's vertices in contact (the contact
                          or proximity ratio), the number of them, and whether the hands touch at all
    contact_mask(...)     per vertex, for one pair (e.g. to check that a template's intended
                          regions touch)
    contact_pairs(...)    (i, j) vertex pairs, one from each hand, closer than a distance

There is no contact metric in InterHandGen's or MDM's evaluation; this one follows hand-object
work (the share of hand vertices within a few millimetres of the other surface). The default
threshold, 5 mm, is about one edge of the open hand's mesh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from handforge.evaluation.common import maybe_progress, vertex_pairs
from handforge.evaluation.penetration import HandPair, PenetrationMetrics, collect_penetration
from handforge.evaluation.proximity import SurfaceQuery
from handforge.evaluation.seal import as_sealed

DEFAULT_THRESHOLD = 0.005  # m


@dataclass(frozen=True)
class ContactMetrics:
    """Per pair (arrays of shape (N,))."""

    ratio_a: np.ndarray      # fraction of A's vertices in contact with B
    ratio_b: np.ndarray      # fraction of B's vertices in contact with A
    count_a: np.ndarray      # number of A's vertices in contact
    count_b: np.ndarray
    in_contact: np.ndarray   # bool: at least one vertex of either hand in contact

    def summary(self) -> dict[str, float]:
        return {
            "contact_ratio": float(np.mean((self.ratio_a + self.ratio_b) / 2)),
            "contact_fraction_of_pairs": float(np.mean(self.in_contact)),
        }


def contact_metrics(verts_a: Any, verts_b: Any, faces_a: Any, faces_b: Any,
                    threshold: float = DEFAULT_THRESHOLD, progress: bool = False) -> ContactMetrics:
    """Contact ratios of N pairs of hands ((N, V, 3) each, or one (V, 3) pair), threshold in metres."""
    return pair_metrics(verts_a, verts_b, faces_a, faces_b, threshold, progress, volume=False)[1]


def pair_metrics(verts_a: Any, verts_b: Any, faces_a: Any, faces_b: Any, threshold: float = DEFAULT_THRESHOLD,
                 progress: bool = False, volume: bool = True) -> tuple[PenetrationMetrics | None, ContactMetrics]:
    """Penetration and contact of N pairs at once, sharing the distance queries (``volume=False``:
    contact only)."""
    _check_threshold(threshold)
    va, vb = vertex_pairs(verts_a, verts_b)
    topo_a, topo_b = as_sealed(faces_a, va.shape[1]), as_sealed(faces_b, vb.shape[1])
    counts = np.zeros((len(va), 2), dtype=np.int64)
    rows = []
    for i in maybe_progress(range(len(va)), progress, "hand pairs"):
        pair = HandPair(topo_a.mesh(va[i]), topo_b.mesh(vb[i]), margin=threshold)
        signed_a, signed_b = pair.open_signed()
        counts[i] = (signed_a >= -threshold).sum(), (signed_b >= -threshold).sum()
        if volume:
            rows.append(pair.penetration())
    contact = ContactMetrics(ratio_a=counts[:, 0] / va.shape[1], ratio_b=counts[:, 1] / vb.shape[1],
                             count_a=counts[:, 0], count_b=counts[:, 1], in_contact=counts.sum(1) > 0)
    return (collect_penetration(rows) if volume else None), contact


def contact_mask(points: np.ndarray, mesh: trimesh.Trimesh, threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """(P,) bool: each point lies inside the closed ``mesh`` or within ``threshold`` of its surface."""
    _check_threshold(threshold)
    points = np.asarray(points, dtype=np.float64)
    lo, hi = mesh.bounds
    near = np.all((points >= lo - threshold) & (points <= hi + threshold), axis=1)
    mask = np.zeros(len(points), dtype=bool)
    if near.any():
        mask[near] = SurfaceQuery(mesh).signed_distance(points[near]) >= -threshold
    return mask


def contact_pairs(verts_a: np.ndarray, verts_b: np.ndarray, max_distance: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """(K, 2) int array of (vertex of A, vertex of B) pairs closer than ``max_distance`` (m), sorted."""
    _check_threshold(max_distance)
    a = np.asarray(verts_a, dtype=np.float64)
    b = np.asarray(verts_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != 3 or b.shape[1] != 3:
        raise ValueError(f"contact_pairs takes one pair of (V, 3) vertex arrays, got {a.shape} and {b.shape}")
    pairs = cKDTree(a).query_ball_tree(cKDTree(b), r=max_distance)
    out = np.array([(i, j) for i, js in enumerate(pairs) for j in js], dtype=np.int64).reshape(-1, 2)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _check_threshold(value: float) -> None:
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"a contact distance must be a finite number of metres ≥ 0, got {value!r}")
