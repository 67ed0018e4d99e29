"""The hand skeleton: MANO's 16 joints, InterHand2.6M's 21 keypoints, sides and parameter sizes.

One home for these conventions; the backend, the add-on and every file format import them.

Pose parameters of one hand, on every hand model:
    global_orient (3)   axis-angle of the wrist, about the wrist joint, in the model frame
    hand_pose     (45)  15 axis-angles, MANO joint order 1..15, each relative to its parent and
                        expressed in world-aligned axes (MANO's convention, not bone-local axes)
    betas         (10)  shape coefficients of the model's linear shape space
    transl        (3)   translation added to every vertex, metres
The zero pose is the flat hand on every model (MANO with ``flat_hand_mean=True``).

Model frame (both models, right hand, zero pose): metres, fingers along -X, thumb towards +Z,
palm facing -Y (back of the hand +Y). The left hand is the mirror image through the plane x = 0.

Keypoint conventions (what each of the 21 keypoints is; exported labels use these)
    Order: InterHand2.6M's per hand (``KEYPOINT_NAMES``): for each finger thumb..pinky the tip (4),
    then joints 3, 2, 1 (distal to proximal), then the wrist. Finger joints 1/2/3 are MCP/PIP/DIP;
    the thumb's are CMC (thumb1), MCP (thumb2) and IP (thumb3).
    mano   joints: MANO's ``J_regressor`` applied to the shaped template (sparse vertex weights; a
           joint near the centre of the finger's cross-section); wrist: MANO's root joint, in the
           distal forearm proximal of the wrist crease. Tips: the vertices
           ``MANO_TIP_VERTEX_IDS`` (smplx's choice: 744, 320, 443, 554, 671).
    open   joints: the centre of the skin's section around each joint, a fixed vertex regressor
           baked like MANO's (``handforge.hands.open_hand_bake``, step 5): finger PIP/DIP and thumb
           MCP/IP at the centre in depth and width, finger MCP and thumb CMC at mid-depth of the
           palm through anny's joint; the wrist at the centre of the section at the capitate head
           (the wrist's centre of rotation, under the distal wrist crease), 85 mm from the middle
           MCP and 170 mm from the middle tip at betas = 0 (adult means of the distal wrist crease
           to the middle fingertip: 166.9 mm women, 182.6 mm men, Najd Mazhar et al., Med J Islam
           Repub Iran 23(1), 2009, mjiri.iums.ac.ir; hand length 167.6 / 184.9 mm, Binvignat et
           al., Int J Morphol, intjmorphol.com art_id=1830; no public figure for the wrist centre
           to the middle MCP was found, the ratio 0.50 of the two is ours; public figures bound it:
           under the third metacarpal's length, 66.1 mm in 40 adult CT scans, Arch Bone Jt Surg
           2024, abjs.mums.ac.ir article 25407, plus the carpal height, 0.53 of it, Youm et al.
           1978, = 101 mm, where anny's wrist head sat, and over that length less its head, ~60 mm). Tips: per finger the
           vertex of the distal segment farthest from the DIP (on the nail side of the tip's end,
           as MANO's tip vertices are).
    ``handforge compare-hands`` prints both models' keypoints and bone ratios side by side.
    InterHand2.6M: its 3D keypoints are human 2D annotations of each view triangulated to 3D
           (Moon et al., ECCV 2020): joints where annotators see the joint, tips at the end of the
           finger, the wrist at the middle of the wrist. Its MANO fits (NeuralAnnot) follow the
           ``mano`` convention above; the two differ by a few mm, most at the wrist and the tips, so
           compare a model's keypoints with the fitted MANO's, not with the annotations.
    2D detectors (MediaPipe Hands' 21 landmarks, OpenPose's hand keypoints; both in this order):
           learnt from such annotations. Against renders of the open hand (issue 18, 144 Cycles
           renders): their fingertips lie 7-9 mm short of our tip vertices (a convention, kept);
           their wrist lay 15-19 mm distal of anny's wrist head, about where the open hand's wrist
           is now (moved 16 mm distally); their knuckles lay 6-8 mm and PIP/DIP 3-4 mm palmar of
           anny's bone heads, about where the mid-depth joints are now. Compare such labels with
           PCK normalised by the hand's box, not as if they coincided.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Side = Literal["left", "right"]
SIDES: tuple[Side, Side] = ("left", "right")

NUM_JOINTS = 16
NUM_KEYPOINTS = 21
NUM_FINGER_JOINTS = 15
HAND_POSE_DIM = 3 * NUM_FINGER_JOINTS
NUM_BETAS = 10

FINGERS = ("thumb", "index", "middle", "ring", "pinky")

# MANO joint order (smplx / the MANO pickle's kintree_table).
JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)
JOINT_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# The three joints of each finger, proximal to distal, as MANO joint indices.
FINGER_JOINTS: dict[str, tuple[int, int, int]] = {
    "index": (1, 2, 3),
    "middle": (4, 5, 6),
    "pinky": (7, 8, 9),
    "ring": (10, 11, 12),
    "thumb": (13, 14, 15),
}

# InterHand2.6M's per-hand keypoint order: for each finger tip→base, then the wrist.
KEYPOINT_NAMES: tuple[str, ...] = (
    "thumb4", "thumb3", "thumb2", "thumb1",
    "index4", "index3", "index2", "index1",
    "middle4", "middle3", "middle2", "middle1",
    "ring4", "ring3", "ring2", "ring1",
    "pinky4", "pinky3", "pinky2", "pinky1",
    "wrist",
)

# Our 21-point "extended joints" are the 16 MANO joints followed by the 5 fingertips in
# FINGERS order (thumb, index, middle, ring, pinky). KEYPOINT_FROM_EXTENDED[i] is the row
# of that array holding keypoint i of the InterHand2.6M order.
TIP_OFFSET = NUM_JOINTS
_EXTENDED_NAMES = JOINT_NAMES + tuple(f"{f}4" for f in FINGERS)
KEYPOINT_FROM_EXTENDED: tuple[int, ...] = tuple(_EXTENDED_NAMES.index(n) for n in KEYPOINT_NAMES)

# Fingertip vertex ids of the MANO topology (smplx's choice), in FINGERS order.
MANO_TIP_VERTEX_IDS: tuple[int, ...] = (744, 320, 443, 554, 671)

# Bones drawn between keypoints (InterHand2.6M indices), e.g. for overlays.
KEYPOINT_PARENTS: tuple[int, ...] = tuple(
    -1 if n == "wrist" else (KEYPOINT_NAMES.index("wrist") if n.endswith("1") else i + 1)
    for i, n in enumerate(KEYPOINT_NAMES)
)

MODEL_FRAME_DESCRIPTION = (
    "handforge model frame: metres; the right hand at zero pose has fingers along -X, thumb towards +Z, "
    "palm facing -Y; the left hand is its mirror image through x = 0"
)

# Model frame → Blender (Z-up): the model's +Y (back of a flat hand) becomes Blender's +Z.
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def check_side(side: str) -> Side:
    """Return ``side`` if it names a hand, else raise a ValueError that says what is allowed."""
    if side not in SIDES:
        raise ValueError(f"unknown hand side {side!r}: use 'left' or 'right'")
    return side  # type: ignore[return-value]


def other_side(side: Side) -> Side:
    return "left" if check_side(side) == "right" else "right"


def keypoints_from_extended(extended: np.ndarray) -> np.ndarray:
    """Reorder (..., 21, 3) [16 MANO joints + 5 tips] into the InterHand2.6M keypoint order.

    Works on numpy arrays and torch tensors alike (plain indexing)."""
    return extended[..., list(KEYPOINT_FROM_EXTENDED), :]


def joint_children(parents: tuple[int, ...] = JOINT_PARENTS) -> list[list[int]]:
    children: list[list[int]] = [[] for _ in parents]
    for j, p in enumerate(parents):
        if p >= 0:
            children[p].append(j)
    return children
