"""Seal open hand meshes so that they enclose a volume.

MANO is open at the wrist (one 16-vertex boundary loop) and so is the open hand (one 20-vertex
loop). An open surface has no inside: volumes, booleans and inside/outside tests are undefined.
InterHandGen's evaluation fed the open MANO meshes to trimesh's boolean, which raised "Not all
meshes are volumes!"; a ``try/except`` turned that into a penetration of 0 for every sample
(https://github.com/jyunlee/InterHandGen/issues/5). We close every boundary loop with a fan of triangles to one new
vertex at the loop's centroid, wound against the loop's edges so the cap's normals face outwards.

Boundary loops are found from the faces alone (edges used by exactly one face), so any hand
topology works. The cap vertices are means of loop vertices, so sealing a torch tensor is
differentiable and follows the posed hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from trimesh.grouping import group_rows


OPEN_VERTICES = "handforge_open_vertices"  # mesh.metadata key: how many vertices precede the caps


class MeshTopologyError(ValueError):
    """The faces cannot be sealed into a closed surface; the message says why."""


@dataclass(frozen=True)
class SealedTopology:
    """How to close one open mesh topology.

    ``faces`` (F + C, 3) are the original faces followed by the cap fans; cap vertex ``k`` gets
    index ``num_vertices + k`` and sits at the mean of ``loops[k]``. A closed topology has no loops
    and ``faces`` equal to the input.
    """

    faces: np.ndarray
    num_vertices: int
    loops: tuple[np.ndarray, ...]

    def seal(self, vertices: Any) -> Any:
        """(..., V, 3) numpy array or torch tensor → (..., V + loops, 3) of the same kind."""
        if vertices.shape[-2:] != (self.num_vertices, 3):
            raise MeshTopologyError(
                f"vertices have shape {tuple(vertices.shape)}, but this topology needs (..., {self.num_vertices}, 3)"
            )
        if not self.loops:
            return vertices
        if isinstance(vertices, torch.Tensor):
            caps = [vertices[..., torch.as_tensor(loop, device=vertices.device), :].mean(-2) for loop in self.loops]
            return torch.cat([vertices, torch.stack(caps, -2)], dim=-2)
        vertices = np.asarray(vertices)
        caps = [vertices[..., loop, :].mean(-2) for loop in self.loops]
        return np.concatenate([vertices, np.stack(caps, -2)], axis=-2)

    def mesh(self, vertices: Any) -> trimesh.Trimesh:
        """The sealed mesh of one posed hand (V, 3) as a trimesh (no processing, no merging)."""
        v = vertices.detach().cpu().numpy() if isinstance(vertices, torch.Tensor) else np.asarray(vertices)
        if v.ndim != 2:
            raise MeshTopologyError(f"mesh() takes one hand's vertices (V, 3), got shape {v.shape}")
        mesh = trimesh.Trimesh(self.seal(v.astype(np.float64)), self.faces, process=False, validate=False)
        mesh.metadata[OPEN_VERTICES] = self.num_vertices  # the cap centres come after these
        return mesh


def seal_topology(faces: Any, num_vertices: int | None = None) -> SealedTopology:
    """Find the boundary loops of a triangle mesh and build the faces that close them.

    ``faces`` (F, 3) integer array or tensor, consistently wound. Raises ``MeshTopologyError`` if an
    edge is shared by more than two faces, the winding is inconsistent, or the result is not closed.
    """
    f = faces.detach().cpu().numpy() if isinstance(faces, torch.Tensor) else np.asarray(faces)
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise MeshTopologyError(f"faces must be an (F, 3) integer array, got {f.dtype} {f.shape}")
    f = f.astype(np.int64)
    n = int(f.max()) + 1 if num_vertices is None else int(num_vertices)
    edges = f[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)  # directed, as each face walks them
    sorted_edges = np.sort(edges, axis=1)
    if _max_edge_use(sorted_edges) > 2:
        raise MeshTopologyError("an edge is shared by more than two faces: the mesh is not a manifold surface")
    if _max_edge_use(edges) > 1:
        raise MeshTopologyError("two faces walk an edge in the same direction: the faces are not consistently wound")
    boundary = edges[group_rows(sorted_edges, require_count=1)]
    if not len(boundary):
        return SealedTopology(faces=f, num_vertices=n, loops=())
    # Loops = connected components of the boundary-edge graph.
    graph = coo_matrix((np.ones(len(boundary)), (boundary[:, 0], boundary[:, 1])), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    loop_labels = np.unique(label[boundary[:, 0]])
    loops, caps = [], []
    for k, lab in enumerate(loop_labels):
        loop_edges = boundary[label[boundary[:, 0]] == lab]
        loops.append(np.unique(loop_edges))
        # The cap walks each boundary edge backwards, so every edge is then used once each way.
        caps.append(np.column_stack([loop_edges[:, 1], loop_edges[:, 0], np.full(len(loop_edges), n + k)]))
    sealed = np.concatenate([f, *caps])
    if len(group_rows(np.sort(sealed[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1), require_count=1)):
        raise MeshTopologyError("sealing the boundary loops did not close the mesh (non-manifold boundary vertices?)")
    return SealedTopology(faces=sealed, num_vertices=n, loops=tuple(loops))


def _max_edge_use(sorted_edges: np.ndarray) -> int:
    _, counts = np.unique(sorted_edges, axis=0, return_counts=True)
    return int(counts.max())


_CACHE: dict[tuple[int, bytes], SealedTopology] = {}


def as_sealed(topology: Any, num_vertices: int | None = None) -> SealedTopology:
    """A ``SealedTopology`` as is, or faces sealed once and cached (hand topologies never change)."""
    if isinstance(topology, SealedTopology):
        return topology
    f = topology.detach().cpu().numpy() if isinstance(topology, torch.Tensor) else np.asarray(topology)
    key = (-1 if num_vertices is None else int(num_vertices), np.ascontiguousarray(f, dtype=np.int64).tobytes())
    if key not in _CACHE:
        if len(_CACHE) > 64:
            _CACHE.clear()
        _CACHE[key] = seal_topology(f, num_vertices)
    return _CACHE[key]
