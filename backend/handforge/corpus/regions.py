"""Named surface regions of a hand rig (palm, back, finger pads, tips, knuckles, wrist), by vertex id.

Interaction templates name the contacts they intend ("left palm touches right palm") with these
regions. They are computed from the rig alone — each vertex's dominant skinning joint and whether
its rest normal faces the palm or the back of the hand — so they exist on any hand model (the open
hand, MANO) without hand-painted vertex lists. Mirroring keeps vertex order, so both sides of a
model share the ids; computing them on either side gives the same sets.
"""

from __future__ import annotations

import numpy as np
import trimesh

from handforge_shared.rig import HandRig
from handforge_shared.skeleton import FINGER_JOINTS, FINGERS

# Cosine between a vertex normal and the palm normal above which it is on the palmar (or, negated,
# dorsal) surface; between the two it is on the side of a finger.
_FACING = 0.35
TIP_RADIUS = 0.009   # m around the fingertip vertex
KNUCKLE_RADIUS = 0.012  # m around the dorsal skin point over the proximal joint
WRIST_DEPTH = 0.025  # m: vertices within this distance of the wrist joint along the hand's axis


def region_names() -> tuple[str, ...]:
    per_finger = ("pad", "tip", "nail", "proximal", "middle", "distal", "knuckle")
    return ("palm", "back", "wrist", "ulnar_edge", "radial_edge", "hand") + tuple(
        f"{f}_{part}" for f in FINGERS for part in per_finger)


def compute_regions(rig: HandRig) -> dict[str, np.ndarray]:
    """Every region of ``region_names()`` → sorted vertex ids (int64), none empty."""
    verts = np.asarray(rig.rest_vertices)
    normals = trimesh.Trimesh(verts, rig.faces, process=False).vertex_normals
    frames = rig.joint_frames()
    palm_dir = frames[0][:, 2]       # the wrist's abduction axis is the direction the palm faces
    along = frames[0][:, 1]          # wrist → middle knuckle
    joints = np.asarray(rig.rest_joints)
    dominant = np.asarray(rig.skin_weights).argmax(1)
    facing = normals @ palm_dir
    palmar, dorsal = facing > _FACING, facing < -_FACING
    depth = (verts - joints[0]) @ along  # distance from the wrist along the hand
    across = verts - joints[0]
    thumb_side = joints[FINGER_JOINTS["index"][0]] - joints[FINGER_JOINTS["pinky"][0]]
    thumb_side = thumb_side - (thumb_side @ along) * along
    thumb_side /= np.linalg.norm(thumb_side)
    lateral = across @ thumb_side
    on_palm = dominant == 0
    regions: dict[str, np.ndarray] = {
        "palm": on_palm & palmar & (depth > WRIST_DEPTH),
        "back": on_palm & dorsal & (depth > WRIST_DEPTH),
        "wrist": depth < WRIST_DEPTH,
        "ulnar_edge": on_palm & ~palmar & ~dorsal & (lateral < np.percentile(lateral[on_palm], 25)),
        "radial_edge": (on_palm | (dominant == FINGER_JOINTS["thumb"][0])) & ~palmar & ~dorsal
        & (lateral > np.percentile(lateral[on_palm], 60)),
        "hand": np.ones(len(verts), dtype=bool),
    }
    for i, finger in enumerate(FINGERS):
        proximal, middle, distal = FINGER_JOINTS[finger]
        tip = verts[rig.tip_vertex_ids[i]]
        regions[f"{finger}_pad"] = (dominant == distal) & palmar
        regions[f"{finger}_nail"] = (dominant == distal) & dorsal
        regions[f"{finger}_tip"] = np.linalg.norm(verts - tip, axis=1) < TIP_RADIUS
        regions[f"{finger}_proximal"] = dominant == proximal
        regions[f"{finger}_middle"] = dominant == middle
        regions[f"{finger}_distal"] = dominant == distal
        # the knuckle: the back of the hand around the proximal joint, i.e. around the dorsal skin point
        # nearest the joint (joint centres lie mid-depth, 9-18 mm under that skin)
        dorsal_ids = np.flatnonzero(dorsal)
        above = verts[dorsal_ids[np.linalg.norm(verts[dorsal_ids] - joints[proximal], axis=1).argmin()]]
        regions[f"{finger}_knuckle"] = (np.linalg.norm(verts - above, axis=1) < KNUCKLE_RADIUS) & dorsal
    out = {name: np.flatnonzero(regions[name]).astype(np.int64) for name in region_names()}
    empty = [name for name, ids in out.items() if not len(ids)]
    if empty:
        raise ValueError(f"this rig has no vertices in the regions {empty}: its rest pose is not a flat hand?")
    return out
