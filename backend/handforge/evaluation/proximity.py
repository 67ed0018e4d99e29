"""Exact signed distance from points to a closed triangle mesh, fast enough for whole hands.

trimesh's ``proximity.signed_distance`` answers the same question but queries an R-tree point by
point and decides inside/outside by ray *parity*: several seconds per pair of 1.6k-vertex hands
here, and wrong where a hand intersects itself (a finger pressed into the palm by skinning:
two overlapping parts give even parity, "outside"). We compute

distance  each point's closest surface point among candidate triangles (trimesh's vectorised
          point-triangle routine). The candidates are complete: if p's nearest vertex is at
          distance d, its closest surface point is at most d away, so the triangle holding it has
          its centroid within d + r of p, r bounding the distance from that triangle's centroid to
          its corners. Triangles are grouped by r (hand meshes mix 1 mm and 25 mm triangles, the
          wrist cap's fan being the largest), one k-d tree of centroids per group, each searched
          within d + (the group's largest r).
inside    the winding number, counted exactly as the *signed* crossings of a ray from p (+1 where
          the ray leaves the surface, −1 where it enters); a point is inside when it is > 0, i.e.
          inside the union of the hand's overlapping parts. The triangles a ray can cross come from
          a 2-D grid over their shadows on the plane across the ray.

For a self-intersecting mesh the distance is to the nearest sheet of skin, which may be buried
inside another part: then it underestimates the depth below the union's surface.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree



def _ray_frame() -> np.ndarray:
    """A right-handed orthonormal frame whose first column is the (fixed, generic) ray direction;
    a ray along an axis would graze the edges of axis-aligned meshes such as boxes."""
    frame = np.linalg.qr(np.array([[0.8017, 0.2145, -0.5575], [-0.3312, 0.9023, -0.2762], [0.4977, 0.3741, 0.7829]]))[0]
    return frame * np.array([1.0, 1.0, np.sign(np.linalg.det(frame))])  # right-handed: keeps the crossing signs


_RAY_FRAME = _ray_frame()


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
        self.face_longest = np.linalg.norm(triangles - np.roll(triangles, 1, axis=1), axis=2).max(1)
        self._ray_triangles = triangles @ _RAY_FRAME  # x along the ray, (y, z) across it
        shadow = self._ray_triangles[:, :, 1:]
        self._shadow_edges = np.roll(shadow, -1, axis=1) - shadow  # edge k: corner k → k + 1
        self._shadow_box = np.concatenate([shadow.min(1), shadow.max(1)], axis=1)
        self._grid = None

    def signed_distance(self, points: np.ndarray) -> np.ndarray:
        """(P,) distance from each point to the surface: positive inside, negative outside (m)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        if not len(points):
            return np.zeros(0)
        distance = self.unsigned_distance(points)
        return np.where(self.winding_numbers(points) > 0, distance, -distance)

    def unsigned_distance(self, points: np.ndarray) -> np.ndarray:
        """(P,) distance from each point to the closest point of the surface (m)."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        point_ids, face_ids = self._candidates(points)
        closest = trimesh.triangles.closest_point(self.vertices[self.faces[face_ids]], points[point_ids])
        dist = np.linalg.norm(points[point_ids] - closest, axis=1)
        best = np.full(len(points), np.inf)
        np.minimum.at(best, point_ids, dist)
        return best

    def winding_numbers(self, points: np.ndarray) -> np.ndarray:
        """(P,) integer winding numbers: 1 inside a simple closed surface, 0 outside, 2 in overlaps."""
        p = np.asarray(points, dtype=np.float64).reshape(-1, 3) @ _RAY_FRAME
        line, hit_x, sign = self.ray_crossings(p[:, 1:])
        ahead = hit_x > p[line, 0]
        return np.bincount(line[ahead], weights=sign[ahead], minlength=len(p)).round().astype(np.int64)

    def ray_crossings(self, across: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where lines along the ray direction, at (Q, 2) positions ``across`` it (ray-frame y, z),
        cross the surface: (line id, position along the ray, +1 leaving / −1 entering) per crossing."""
        line, face = self._ray_candidates(across)
        return self._crossings(line, face, across[line])

    def grid_crossings(self, lo: np.ndarray, spacing: float, keep: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Like ``ray_crossings`` for the lines of a regular grid across the ray: line (i, j) passes
        through lo + (i + ½, j + ½)·spacing; only lines where ``keep`` (shape (I, J)) is True.
        Line ids are i·J + j. Each face lists the grid lines under its shadow's bounding box."""
        shape = np.array(keep.shape)
        first = np.maximum(np.ceil((self._shadow_box[:, :2] - lo) / spacing - 0.5), 0).astype(np.int64)
        last = np.minimum(np.floor((self._shadow_box[:, 2:] - lo) / spacing - 0.5), shape - 1).astype(np.int64)
        span = np.maximum(last - first + 1, 0)
        count = span[:, 0] * span[:, 1]
        face = np.repeat(np.arange(len(count)), count)
        local = np.arange(len(face)) - np.repeat(np.cumsum(count) - count, count)
        i = first[face, 0] + local // span[face, 1]
        j = first[face, 1] + local % span[face, 1]
        wanted = keep[i, j]
        i, j, face = i[wanted], j[wanted], face[wanted]
        return self._crossings(i * shape[1] + j, face, lo + (np.stack([i, j], 1) + 0.5) * spacing)

    def _crossings(self, line: np.ndarray, face: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        box = self._shadow_box[face]  # cheap rejection before the edge functions
        near = (q[:, 0] >= box[:, 0]) & (q[:, 0] <= box[:, 2]) & (q[:, 1] >= box[:, 1]) & (q[:, 1] <= box[:, 3])
        line, face, q = line[near], face[near], q[near]
        corner = self._ray_triangles[face]  # (pairs, 3 corners, 3)
        rel = q[:, None, :] - corner[:, :, 1:]
        edge = self._shadow_edges[face]
        # edge functions of the line against each edge k (corner k → k + 1) of the triangle's shadow
        e = edge[:, :, 0] * rel[:, :, 1] - edge[:, :, 1] * rel[:, :, 0]
        total = e.sum(1)  # twice the signed shadow area: its sign says leaving or entering
        hit = (np.all(e >= 0, axis=1) | np.all(e <= 0, axis=1)) & (total != 0)
        e, total, corner = e[hit], total[hit], corner[hit]
        # barycentric weight of corner k is the edge function of the opposite edge over the total
        hit_x = (e[:, 1] * corner[:, 0, 0] + e[:, 2] * corner[:, 1, 0] + e[:, 0] * corner[:, 2, 0]) / total
        return line[hit], hit_x, np.sign(total)

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

    def _ray_candidates(self, across: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(point id, face id) pairs whose shadows share a grid cell: every face a ray might cross."""
        origin, size, shape, cell_start, cell_faces = self._shadow_grid()
        cell = np.floor((across - origin) / size).astype(np.int64)
        valid = np.all((cell >= 0) & (cell < shape), axis=1)
        key = cell[:, 0] * shape[1] + cell[:, 1]
        start = np.where(valid, cell_start[np.where(valid, key, 0)], 0)
        count = np.where(valid, cell_start[np.where(valid, key, 0) + 1] - start, 0)
        point_ids = np.repeat(np.arange(len(across)), count)
        offsets = np.arange(len(point_ids)) - np.repeat(np.cumsum(count) - count, count)
        return point_ids, cell_faces[np.repeat(start, count) + offsets]

    def _shadow_grid(self):
        """A uniform grid over the triangles' shadows across the ray, as CSR cell → faces."""
        if self._grid is None:
            lo, hi = self._shadow_box[:, :2], self._shadow_box[:, 2:]
            size = 0.5 * max(float(np.median((hi - lo).max(1))), 1e-12)
            origin = lo.min(0)
            shape = np.floor((hi.max(0) - origin) / size).astype(np.int64) + 1
            first = np.floor((lo - origin) / size).astype(np.int64)
            last = np.floor((hi - origin) / size).astype(np.int64)
            span = last - first + 1
            count = span[:, 0] * span[:, 1]
            face = np.repeat(np.arange(len(lo)), count)
            local = np.arange(len(face)) - np.repeat(np.cumsum(count) - count, count)
            i = first[face, 0] + local // span[face, 1]
            j = first[face, 1] + local % span[face, 1]
            key = i * shape[1] + j
            order = np.argsort(key, kind="stable")
            cell_start = np.searchsorted(key[order], np.arange(shape[0] * shape[1] + 1))
            self._grid = (origin, size, shape, cell_start, face[order])
        return self._grid


def positive_winding_volume(queries: list[SurfaceQuery], spacing: float,
                            focus: list[np.ndarray] | None = None) -> float:
    """Volume (m³) of the region inside every one of the closed meshes (winding number > 0 in each).

    Parallel lines along the ray direction, ``spacing`` apart (midpoint rule across them), are cut
    exactly where they cross the surfaces; the lengths where all winding numbers are positive are
    summed. For one mesh this is the volume of the union of its (possibly overlapping) parts.
    ``focus`` (optional, one array of face ids per mesh): the region's surface lies on these faces,
    so lines that miss all their shadows are skipped.
    """
    if not (np.isfinite(spacing) and spacing > 0):
        raise ValueError(f"spacing must be a positive number of metres, got {spacing!r}")
    frames = [q.vertices @ _RAY_FRAME for q in queries]
    lo = np.max([f.min(0) for f in frames], axis=0)[1:]
    hi = np.min([f.max(0) for f in frames], axis=0)[1:]
    if np.any(lo >= hi):
        return 0.0
    shape = np.ceil((hi - lo) / spacing).astype(np.int64)
    keep = np.ones(shape, dtype=bool) if focus is None else _shadow_mask(queries, focus, lo, spacing, shape)
    crossings = [q.grid_crossings(lo, spacing, keep) for q in queries]
    if any(len(c[0]) == 0 for c in crossings):
        return 0.0  # some mesh is not crossed by any line: nothing is inside all of them
    line = np.concatenate([c[0] for c in crossings])
    x = np.concatenate([c[1] for c in crossings])
    steps = np.zeros((len(line), len(queries)))  # winding change per mesh at each crossing
    start = 0
    for k, c in enumerate(crossings):
        steps[start:start + len(c[0]), k] = c[2]
        start += len(c[0])
    order = np.lexsort((-x, line))  # along each line from +∞ backwards: winding builds up
    line, x, steps = line[order], x[order], steps[order]
    first = np.r_[True, line[1:] != line[:-1]]
    running = np.cumsum(steps, axis=0)
    winding = running - (running - steps)[first][np.cumsum(first) - 1]  # restart at each line
    inside_all = np.all(winding[:-1] > 0, axis=1) & ~first[1:]  # between this crossing and the next
    return float(np.sum((x[:-1] - x[1:])[inside_all]) * spacing**2)


def _shadow_mask(queries: list[SurfaceQuery], focus: list[np.ndarray], lo: np.ndarray, spacing: float,
                 shape: np.ndarray) -> np.ndarray:
    """Grid cells (lines) inside the bounding rectangle of the shadow of any focus face."""
    marks = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.int64)  # 2-D difference array
    for q, faces in zip(queries, focus):
        shadow = q._ray_triangles[np.asarray(faces, dtype=np.int64)][:, :, 1:]
        first = np.clip(np.floor((shadow.min(1) - lo) / spacing).astype(np.int64), 0, shape)
        last = np.clip(np.floor((shadow.max(1) - lo) / spacing).astype(np.int64) + 1, 0, shape)
        np.add.at(marks, (first[:, 0], first[:, 1]), 1)
        np.add.at(marks, (last[:, 0], first[:, 1]), -1)
        np.add.at(marks, (first[:, 0], last[:, 1]), -1)
        np.add.at(marks, (last[:, 0], last[:, 1]), 1)
    return marks.cumsum(0).cumsum(1)[: shape[0], : shape[1]] > 0
