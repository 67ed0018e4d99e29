"""Exact signed distance from points to a closed triangle mesh, fast enough for whole hands.

trimesh's ``proximity.signed_distance`` gives the same numbers but queries an R-tree point by
point and decides inside/outside by casting rays, about a second per 1.6k-vertex hand here. We
find each point's closest surface point among candidate triangles picked by a k-d tree, with
trimesh's vectorised point-triangle routine, and take the sign from the angle-weighted
pseudonormal of the closest feature (face, edge or vertex), which is exact for closed, consistently
wound meshes without self-intersections (Bærentzen & Aanæs, IEEE TVCG 2005).

Why the candidates are complete: if p's nearest vertex is at distance d, its closest surface point
is at most d away, so the triangle holding it has its centroid within d + r of p, where r bounds
the distance from that triangle's centroid to its corners. Triangles are grouped by r (hand meshes
mix 1 mm and 25 mm triangles, the wrist cap's fan being the largest), one k-d tree of centroids per
group, and each group is searched within d + (the group's largest r).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import trimesh
from scipy.spatial import cKDTree

_ON_FEATURE = 1e-9  # barycentric tolerance: closest points are clamped exactly onto edges


class SurfaceQuery:
    """Distance queries against one closed mesh (build once per posed mesh, query many points)."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        self.mesh = mesh
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        self.tree = cKDTree(self.vertices)
        triangles = self.vertices[self.faces]
        centroid = triangles.mean(1)
        radius = np.linalg.norm(triangles - centroid[:, None], axis=2).max(1)
        # size classes a factor of two apart: (face ids, their centroid tree, their largest radius)
        size_class = np.ceil(np.log2(np.maximum(radius / max(np.median(radius), 1e-12), 1.0))).astype(int)
        self.groups = []
        for c in np.unique(size_class):
            ids = np.flatnonzero(size_class == c)
            self.groups.append((ids, cKDTree(centroid[ids]), float(radius[ids].max())))

    @cached_property
    def _edge_normals(self) -> np.ndarray:
        """Per face and edge (F, 3): the sum of the two adjacent face normals (edge k: corner k → k+1)."""
        unique = np.zeros((len(self.mesh.edges_unique), 3))
        np.add.at(unique, self.mesh.edges_unique_inverse, np.repeat(self.mesh.face_normals, 3, axis=0))
        return unique[self.mesh.faces_unique_edges]

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """(P,) distance from each point to the surface: positive inside, negative outside (m)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not len(points):
            return np.zeros(0)
        point_ids, face_ids = self._candidates(points)
        closest = trimesh.triangles.closest_point(self.vertices[self.faces[face_ids]], points[point_ids])
        dist = np.linalg.norm(points[point_ids] - closest, axis=1)
        # keep the closest candidate of each point (pairs are grouped by point after the lexsort)
        order = np.lexsort((dist, point_ids))
        first = order[np.r_[True, point_ids[order][1:] != point_ids[order][:-1]]]
        best_face, best_point, best_dist = face_ids[first], closest[first], dist[first]
        normal = self._pseudonormal(best_face, best_point)
        outside = np.einsum("ij,ij->i", points - best_point, normal) > 0
        return np.where(outside, -best_dist, best_dist)

    def _candidates(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point id, face id) pairs that must contain each point's closest surface point."""
        nearest, _ = self.tree.query(points)
        point_ids, face_ids = [], []
        for ids, tree, radius in self.groups:
            balls = tree.query_ball_point(points, r=nearest + radius * (1 + 1e-9) + 1e-12, return_sorted=False)
            counts = np.fromiter((len(b) for b in balls), dtype=np.int64, count=len(balls))
            point_ids.append(np.repeat(np.arange(len(points)), counts))
            face_ids.append(ids[np.fromiter((f for b in balls for f in b), dtype=np.int64, count=int(counts.sum()))])
        return np.concatenate(point_ids), np.concatenate(face_ids)

    def _pseudonormal(self, face_ids: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The angle-weighted pseudonormal of the face, edge or vertex each closest point lies on."""
        bary = trimesh.triangles.points_to_barycentric(self.vertices[self.faces[face_ids]], points)
        on_zero = bary < _ON_FEATURE
        normal = np.array(self.mesh.face_normals[face_ids])
        edge = on_zero.sum(1) == 1  # on the edge opposite the corner whose coordinate is 0
        opposite = np.argmax(on_zero[edge], axis=1)
        normal[edge] = self._edge_normals[face_ids[edge], (opposite + 1) % 3]
        corner = on_zero.sum(1) >= 2  # at the corner whose coordinate is ~1
        vertex = self.faces[face_ids[corner], np.argmax(bary[corner], axis=1)]
        normal[corner] = self.mesh.vertex_normals[vertex]
        return normal
