"""Placing a hand in a scene by its palm: where the palm centre is, where the fingers point and
which way the palm faces.

Interaction templates are written in these terms ("left palm faces right, fingers up") in the
*scene frame* of the person whose hands they are: x to their right, y up, z towards their back
(so "forward", away from the body, is -z). The hand models' frame is the same frame with the
right hand lying palm down, fingers pointing left.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handforge_shared.rig import HandRig
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from handforge_shared.skeleton import FINGER_JOINTS

RIGHT = np.array([1.0, 0.0, 0.0])
UP = np.array([0.0, 1.0, 0.0])
BACK = np.array([0.0, 0.0, 1.0])     # towards the body
FORWARD = -BACK                      # away from the body

_PALM_JOINTS = [0] + [FINGER_JOINTS[f][0] for f in ("index", "middle", "ring", "pinky")]


def unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True).clip(1e-12)


def rotate(v: np.ndarray, axis: np.ndarray, degrees: float) -> np.ndarray:
    """``v`` rotated about ``axis`` by ``degrees`` (right-hand rule)."""
    return axis_angle_to_matrix(unit(axis) * np.radians(degrees)) @ np.asarray(v, dtype=np.float64)


@dataclass(frozen=True)
class PalmFrame:
    """A hand's palm: centre (3,) and unit axes forward (wrist → fingers) and normal (palm side)."""

    centre: np.ndarray
    forward: np.ndarray
    normal: np.ndarray

    def basis(self) -> np.ndarray:
        """(3, 3) columns forward, normal (orthogonalised), forward × normal."""
        f = unit(self.forward)
        n = unit(self.normal - (self.normal @ f) * f)
        return np.stack([f, n, np.cross(f, n)], axis=1)


def rest_palm(joints: np.ndarray, frames: np.ndarray) -> PalmFrame:
    """The palm frame of a rest hand: centre from its (16, 3) joints (wrist and the four long
    fingers' knuckles), axes from the wrist's anatomical frame (``frames[0]``: bone direction =
    forward, abduction axis = the way the palm faces). Pass the rig's zero-shape frames for every
    hand shape: the axes are then the same for all shapes (shape changes them by a degree or so),
    which is all placement needs, and no frames are recomputed per shape."""
    return PalmFrame(centre=np.asarray(joints)[_PALM_JOINTS].mean(0), forward=frames[0][:, 1], normal=frames[0][:, 2])


def rig_palm(rig: HandRig, betas: np.ndarray | None = None) -> PalmFrame:
    return rest_palm(rig.shaped(betas)[1], rig.joint_frames())


def place(rest: PalmFrame, wrist: np.ndarray, target: PalmFrame) -> tuple[np.ndarray, np.ndarray]:
    """``global_orient`` (3,) and ``transl`` (3,) that move a rest hand's palm onto ``target``.

    The models rotate the whole hand about the wrist joint (``wrist``, rest position), then
    translate: x' = R (x − wrist) + wrist + transl.
    """
    rot = target.basis() @ rest.basis().T
    transl = target.centre - (rot @ (rest.centre - wrist) + wrist)
    return matrix_to_axis_angle(rot), transl
