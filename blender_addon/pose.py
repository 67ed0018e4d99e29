"""The one home of the conversion between MANO pose parameters and a hand rig's bone channels.

A HandForge armature's bone k rests in the joint's anatomical frame (``HandRig.joint_frames()``,
columns = flexion axis, bone direction, abduction axis), carried into Blender's Z-up frame by
``MODEL_TO_BLENDER`` (M): the bone's rest matrix is B_k = M·F_k. MANO's world-aligned joint rotation
R_k (relative to the parent, in model axes) then becomes the bone-local rotation

    L_k = B_kᵀ · (M R_k Mᵀ) · B_k = F_kᵀ R_k F_k         (M cancels out)

and back R_k = F_k L_k F_kᵀ. ``transl`` is the wrist bone's location: loc = F_0ᵀ · transl.
The frames are read from the bones themselves, so the conversion is exact for whatever rest pose
the armature has (e.g. after a shape change). Numbers are computed in float64 with numpy; Blender
stores them as float32.

Finger bones use Euler mode 'YZX' (x = flexion, see ``handforge_shared.anatomy``), the wrist a
quaternion (``rig`` sets them); a bone the user switched to another rotation mode is read and
written in that mode. Every pose written also sets the rig's pose-corrective shape keys.
"""

from __future__ import annotations

import numpy as np

from . import rig
from handforge_shared.poses import HandPose
from handforge_shared.rotations import (
    axis_angle_to_matrix,
    axis_angle_to_euler,
    axis_angle_to_quaternion,
    euler_other_solution,
    euler_to_matrix,
    matrix_to_axis_angle,
    matrix_to_euler,
    quaternion_to_matrix,
)
from handforge_shared.skeleton import JOINT_NAMES, MODEL_TO_BLENDER, NUM_BETAS, NUM_JOINTS

WRIST = JOINT_NAMES[0]


# ---------------------------------------------------------------------- pure numpy (vectorised)
def frames_from_rest_matrices(rest: np.ndarray) -> np.ndarray:
    """(16, 3, 3) model-frame joint frames F_k = Mᵀ·B_k from the bones' rest rotations B_k."""
    return MODEL_TO_BLENDER.T @ np.asarray(rest, dtype=np.float64)


def local_from_world(frames: np.ndarray, world: np.ndarray) -> np.ndarray:
    """(..., 16, 3, 3) world-aligned joint rotations R → bone-local rotations Fᵀ R F."""
    return np.swapaxes(frames, -1, -2) @ world @ frames


def world_from_local(frames: np.ndarray, local: np.ndarray) -> np.ndarray:
    """(..., 16, 3, 3) bone-local rotations L → world-aligned joint rotations F L Fᵀ."""
    return frames @ local @ np.swapaxes(frames, -1, -2)


def params_to_local(frames: np.ndarray, global_orient: np.ndarray, hand_pose: np.ndarray,
                    transl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose parameters (batch dims allowed) → bone-local rotations (..., 16, 3, 3), wrist location (..., 3)."""
    go = np.asarray(global_orient, dtype=np.float64)
    hp = np.asarray(hand_pose, dtype=np.float64)
    aa = np.concatenate([go[..., None, :], hp.reshape(*hp.shape[:-1], NUM_JOINTS - 1, 3)], axis=-2)
    local = local_from_world(frames, axis_angle_to_matrix(aa))
    location = np.einsum("ji,...j->...i", frames[0], np.asarray(transl, dtype=np.float64))
    return local, location


def local_to_params(frames: np.ndarray, local: np.ndarray, location: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of ``params_to_local``: global_orient, hand_pose, transl (betas are the rig's)."""
    aa = matrix_to_axis_angle(world_from_local(frames, np.asarray(local, dtype=np.float64)))
    transl = np.einsum("ij,...j->...i", frames[0], np.asarray(location, dtype=np.float64))
    return {
        "global_orient": aa[..., 0, :],
        "hand_pose": aa[..., 1:, :].reshape(*aa.shape[:-2], 3 * (NUM_JOINTS - 1)),
        "transl": transl,
    }


def euler_near(first: np.ndarray, order: str, compat: np.ndarray) -> np.ndarray:
    """The Euler angles (..., 3) of the rotations ``first`` (Euler angles, float64) nearest to
    ``compat`` (same shape): each angle moved by whole turns, and the equivalent second solution
    taken where it is closer, so that keys interpolate smoothly."""
    compat = np.asarray(compat, dtype=np.float64)
    candidates = [compat + (sol - compat + np.pi) % (2 * np.pi) - np.pi  # nearest by whole turns
                  for sol in (first, euler_other_solution(first, order))]
    dist = [np.abs(c - compat).sum(-1) for c in candidates]
    return np.where((dist[1] < dist[0])[..., None], candidates[1], candidates[0])


def continuous_quaternions(quats: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """(T, ..., 4) quaternions (w, x, y, z) with signs flipped along axis 0 so that neighbours lie
    in one hemisphere, the first in that of ``previous`` (..., 4): keys interpolate the short way."""
    q = np.array(quats, dtype=np.float64)
    if len(q) > 1:
        steps = np.where(np.sum(q[1:] * q[:-1], axis=-1) < 0, -1.0, 1.0)
        q *= np.concatenate([np.ones_like(steps[:1]), np.cumprod(steps, axis=0)])[..., None]
    if previous is not None:
        q *= np.where(np.sum(q[0] * previous, axis=-1) < 0, -1.0, 1.0)[..., None]
    return q


def continuous_euler(aa: np.ndarray, mode: str, previous: np.ndarray | None = None) -> np.ndarray:
    """(T, ..., 3) axis-angles → (T, ..., 3) Euler angles without jumps: the first frame compatible
    with ``previous`` (..., 3), every later one within half a turn of the one before. Computed in
    ``aa``'s precision, through quaternions (no 3×3 matrices: a third of an import's time before)."""
    euler = axis_angle_to_euler(aa, mode)
    if previous is not None:
        # frame 0 in float64 on both sides: near gimbal lock float32 outer angles are off by more than
        # the tolerance below, which would put every later frame on the other branch
        first = axis_angle_to_euler(np.asarray(aa[0], dtype=np.float64), mode)
        start = euler_near(first, mode, previous)
        # where frame 0 is closer to ``previous`` on the other branch (a+π, π−b, c+π), use it throughout
        other = np.abs((start - first + np.pi) % (2 * np.pi) - np.pi).max(axis=-1) > 1e-6
        if np.any(other):
            euler = np.where(other[..., None], euler_other_solution(euler, mode), euler)
        euler[0] = start
    # np.unwrap, in a third of its time: each step is brought within half a turn of the one before
    turns = np.round(np.diff(euler, axis=0) * (1 / (2 * np.pi)))
    if turns.any():  # rare (a channel passing ±π); the cumulative sum over frames is the slow part
        euler[1:] -= (2 * np.pi) * np.cumsum(turns, axis=0, dtype=euler.dtype)
    return euler


def rotation_channels(aa: np.ndarray, mode: str, previous: np.ndarray | None = None) -> tuple[str, np.ndarray]:
    """Bone-local rotations as axis-angles (T, ..., 3) → (data path property, (T, ..., C) channel
    values) in ``mode``. ``previous`` (..., C) are the channels' current values; results stay
    continuous with them."""
    if mode == "QUATERNION":
        return "rotation_quaternion", continuous_quaternions(axis_angle_to_quaternion(aa), previous)
    if mode == "AXIS_ANGLE":  # angle in [0, π] and a unit axis (Blender's rest: 0 about +Y)
        aa = matrix_to_axis_angle(axis_angle_to_matrix(np.asarray(aa, dtype=np.float64)))
        angle = np.linalg.norm(aa, axis=-1, keepdims=True)
        axis = np.where(angle > 1e-12, aa / np.maximum(angle, 1e-12), np.array([0.0, 1.0, 0.0]))
        return "rotation_axis_angle", np.concatenate([angle, axis], axis=-1)
    return "rotation_euler", continuous_euler(aa, mode, previous)


def rest_change(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(16, 3, 3) Q = Fᵀ·F' from the joint frames before and after the rest bones changed (a new shape):
    a bone-local rotation L shows the same joint rotation F·L·Fᵀ on the new rest as Qᵀ·L·Q, a wrist
    location l the same translation as Qᵀ·l (``reframed_channels``). Made an exact rotation (nearest, by
    SVD): from float32 bones Q is off one by ~1e-6, which Euler keys near gimbal lock magnified to degrees."""
    u, _, vt = np.linalg.svd(np.swapaxes(before, -1, -2) @ after)
    return u @ vt


def reframed_channels(values: np.ndarray, mode: str, q: np.ndarray) -> np.ndarray:
    """One bone's channel values (T, C) in ``mode`` → those showing the same joint rotations after a rest
    change ``q`` (3, 3) (``rest_change``), each near its old value: keys keep their whole turns, Euler
    branch and quaternion sign, so they interpolate as before."""
    v = np.asarray(values, dtype=np.float64)
    if mode in ("QUATERNION", "AXIS_ANGLE"):  # Qᵀ·R(axis, θ)·Q = R(Qᵀ·axis, θ): the vector part turns
        return np.concatenate([v[:, :1], v[:, 1:] @ q], axis=1)
    local = q.T @ euler_to_matrix(v, mode) @ q
    return euler_near(matrix_to_euler(local, mode), mode, v)


def channels_to_matrix(values: np.ndarray, mode: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if mode == "QUATERNION":
        return quaternion_to_matrix(v)
    if mode == "AXIS_ANGLE":
        return axis_angle_to_matrix(v[..., 1:] / np.maximum(np.linalg.norm(v[..., 1:], axis=-1, keepdims=True), 1e-12) * v[..., :1])
    return euler_to_matrix(v, mode)


# ---------------------------------------------------------------------- the rig (bpy objects)
def bone_frames(arm_obj) -> np.ndarray:
    """(16, 3, 3) model-frame joint frames of a HandForge armature, from its rest bones."""
    bones = arm_obj.data.bones
    rest = np.empty((len(bones), 16), np.float32)
    bones.foreach_get("matrix_local", rest.ravel())  # one call, not 16 Matrix copies (per frame change)
    # RNA matrices are stored column by column
    return frames_from_rest_matrices(rest.reshape(-1, 4, 4)[joint_rows(bones), :3, :3].transpose(0, 2, 1))


def joint_rows(collection) -> list[int]:
    """Where each of JOINT_NAMES is in a collection of bones or pose bones (bulk reads come in its order)."""
    rows = {item.name: i for i, item in enumerate(collection)}
    return [rows[name] for name in JOINT_NAMES]


def channel_prop(mode: str) -> str:
    """The pose bone property that holds the rotation in ``mode``."""
    return {"QUATERNION": "rotation_quaternion", "AXIS_ANGLE": "rotation_axis_angle"}.get(mode, "rotation_euler")


def channel_values(pbone) -> np.ndarray:
    mode = pbone.rotation_mode
    if mode == "QUATERNION":
        return np.array(pbone.rotation_quaternion, dtype=np.float64)
    if mode == "AXIS_ANGLE":
        return np.array(pbone.rotation_axis_angle, dtype=np.float64)
    return np.array(pbone.rotation_euler, dtype=np.float64)


def not_a_number(arm_obj) -> tuple[str, str] | None:
    """The first joint whose channel is not a number as the rig stands (bone name, "rotation" or, the wrist's,
    "location"), or None: what a pose read from it would fail on, in the artist's terms."""
    for name in JOINT_NAMES:
        pb = arm_obj.pose.bones[name]
        if not np.isfinite(channel_values(pb)).all():
            return name, "rotation"
        if name == JOINT_NAMES[0] and not np.isfinite(np.array(pb.location)).all():
            return name, "location"
    return None


def read_channels(pbones) -> dict[str, tuple[list[int], np.ndarray]]:
    """The joints' rotation channels in bulk, by rotation mode: mode → (joints as indices of
    JOINT_NAMES, their channel values (joints, C) float64)."""
    rows = joint_rows(pbones)
    modes = [pb.rotation_mode for pb in pbones]
    by_mode: dict[str, list[int]] = {}
    for k, row in enumerate(rows):
        by_mode.setdefault(modes[row], []).append(k)
    out = {}
    for mode, joints in by_mode.items():
        prop = channel_prop(mode)
        buf = np.empty((len(pbones), 3 if prop == "rotation_euler" else 4), np.float32)
        pbones.foreach_get(prop, buf.ravel())
        out[mode] = joints, buf[[rows[k] for k in joints]].astype(np.float64)
    return out


def read_local(arm_obj, visual: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Bone-local rotations (16, 3, 3) and wrist location (3,) of the rig's current pose.

    ``visual``: what is shown (after constraints such as joint limits), from the evaluated pose
    matrices; otherwise the animation channels themselves (exact inverse of ``write_local``)."""
    pbones = arm_obj.pose.bones
    if not visual:  # bulk reads of every channel: this runs on every frame change
        local = np.empty((NUM_JOINTS, 3, 3))
        for mode, (joints, values) in read_channels(pbones).items():  # one conversion per mode
            local[joints] = channels_to_matrix(values, mode)
        return local, np.array(pbones[WRIST].location, dtype=np.float64)
    bones = arm_obj.data.bones
    local = np.zeros((NUM_JOINTS, 3, 3))
    location = np.zeros(3)
    for k, name in enumerate(JOINT_NAMES):
        pb, bone = pbones[name], bones[name]
        pose = np.array(pb.matrix)
        rest = np.array(bone.matrix_local)
        if pb.parent is None:
            rel_pose, rel_rest = pose, rest
        else:  # this bone's pose relative to its parent's pose, as if it had no own transform
            rel_pose = np.linalg.inv(np.array(pb.parent.matrix)) @ pose
            rel_rest = np.linalg.inv(np.array(bone.parent.matrix_local)) @ rest
        basis = np.linalg.inv(rel_rest) @ rel_pose
        rot = basis[:3, :3] / np.linalg.norm(basis[:3, :3], axis=0, keepdims=True)
        local[k] = rot
        if k == 0:
            location = basis[:3, 3]
    return local, location


def channels_near(local: np.ndarray, mode: str, previous: np.ndarray) -> tuple[str, np.ndarray]:
    """One bone's channel values (C,) for the bone-local rotation ``local`` (3, 3) in ``mode``, continuous with
    its ``previous`` ones where Blender's float32 channels can hold that: continuity with a NaN made the new one
    NaN, and with 1e6 rad (a script's) kept its whole turns, off by up to 0.03 rad in float32 (Reset left the
    fingers bent). Else the nearest to zero."""
    aa = matrix_to_axis_angle(local[None])
    if np.isfinite(previous).all():
        prop, values = rotation_channels(aa, mode, previous)
        if np.allclose(channels_to_matrix(values[0].astype(np.float32), mode), local, atol=1e-5):
            return prop, values[0]
    prop, values = rotation_channels(aa, mode)
    return prop, values[0]


def write_local(arm_obj, local: np.ndarray, location: np.ndarray | None, joints: range | list[int] | None = None) -> None:
    """Set bone channels from bone-local rotations (16, 3, 3) (only ``joints`` if given)."""
    pbones = arm_obj.pose.bones
    for k in joints if joints is not None else range(NUM_JOINTS):
        pb = pbones[JOINT_NAMES[k]]
        prop, values = channels_near(local[k], pb.rotation_mode, channel_values(pb))
        setattr(pb, prop, values.tolist())
    if location is not None:
        pbones[WRIST].location = np.asarray(location, dtype=np.float64).tolist()


def rig_betas(arm_obj) -> np.ndarray:
    return np.array(arm_obj.handforge.betas, dtype=np.float64)[:NUM_BETAS]


def constrained(arm_obj) -> bool:
    """Whether an active bone constraint (HandForge's joint limits, or the artist's own: IK, Limit or Copy
    Rotation) sits between the rig's channels and the pose Blender shows."""
    return any(not con.mute and con.influence > 0 for pb in arm_obj.pose.bones for con in pb.constraints)


def read_pose(arm_obj, visual: bool | None = None) -> HandPose:
    """The rig's current pose as MANO parameters. ``visual`` defaults to what is shown where a constraint acts
    (``constrained``): read by the joint-limits switch alone, a finger held by the artist's own constraint (IK,
    Limit Rotation) was sent, labelled and copied as its channels, off what the viewport shows."""
    if visual is None:
        visual = constrained(arm_obj)
    local, location = read_local(arm_obj, visual=visual)
    params = local_to_params(bone_frames(arm_obj), local, location)
    return HandPose(betas=rig_betas(arm_obj), **params)


def write_pose(arm_obj, pose: HandPose, fingers_only: bool = False) -> None:
    """Pose the rig from MANO parameters (betas are the rig's own: see ``hands.set_shape``)."""
    if pose.batch_shape:
        raise ValueError("write_pose takes one pose, not a batch")
    local, location = params_to_local(bone_frames(arm_obj), pose.global_orient, pose.hand_pose, pose.transl)
    joints = range(1, NUM_JOINTS) if fingers_only else None
    write_local(arm_obj, local, None if fingers_only else location, joints)
    update_correctives(arm_obj)


def update_correctives(arm_obj) -> None:
    """Set the pose-corrective shape keys (MANO hands) from the current (visual) pose."""
    keys = rig.corrective_keys(arm_obj)
    if not keys:
        return
    local, _ = read_local(arm_obj, visual=constrained(arm_obj))
    values = rig.corrective_values(world_from_local(bone_frames(arm_obj), local))
    for kb, v in zip(keys, values):
        kb.value = float(v)


# ---------------------------------------------------------------------- between rigs' armature spaces
def relative_transform(source_world: np.ndarray, rig_world: np.ndarray) -> np.ndarray:
    """rig_world⁻¹ · source_world, checked rigid: the candidates keep their size only between rigs of one scale."""
    if min(abs(np.linalg.det(np.asarray(m, np.float64)[:3, :3])) for m in (source_world, rig_world)) < 1e-12:
        # (np.linalg.inv's "Singular matrix" was the whole message)
        raise ValueError("a hand rig's object is scaled to 0: clear its scale (Object › Clear › Scale, Alt-S)")
    T = np.linalg.inv(rig_world) @ source_world
    if not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
        raise ValueError("the hand rigs' objects are scaled differently: clear their scale (Object › Clear › "
                         "Scale) or give both the same")
    if np.linalg.det(T[:3, :3]) < 0:  # (a reflection passes the test above: the pose came out mirrored twice)
        raise ValueError("one hand rig's object is mirrored (a negative scale) and the other not: clear its scale "
                         "(Object › Clear › Scale)")
    return T


def into_rig_space(pose: dict[str, np.ndarray], source_world: np.ndarray, rig_world: np.ndarray,
                   rig_wrist_head: np.ndarray) -> dict[str, np.ndarray]:
    """Pose parameters (batched) meant for a rig whose armature had ``source_world`` → the same
    hand in world space for a rig whose armature has ``rig_world``.

    A rig shows global_orient R as the wrist bone's armature-space rotation M·R·F and transl t as
    its head at h + M·t (``pose``: h the rest head, M model→Blender axes). With T = rig_world⁻¹ ·
    source_world: R' = Mᵀ·T·M·R and t' = Mᵀ·(T(h + M·t) − h)."""
    T = relative_transform(source_world, rig_world)
    M, rotation, shift = MODEL_TO_BLENDER, T[:3, :3], T[:3, 3]
    out = dict(pose)
    R = axis_angle_to_matrix(np.asarray(pose["global_orient"], np.float64))
    out["global_orient"] = matrix_to_axis_angle(M.T @ rotation @ M @ R)
    head = np.asarray(rig_wrist_head, np.float64) + np.asarray(pose["transl"], np.float64) @ M.T
    out["transl"] = (head @ rotation.T + shift - rig_wrist_head) @ M
    return out


def world_mirrored(pose: HandPose, giver, taker) -> HandPose:
    """``pose`` shown on rig ``giver`` → its world mirror image through ``giver``'s armature YZ plane, as a
    pose for the other-side rig ``taker`` (whatever either's parents); refuses rigs of different world scales."""
    mirrored = pose.mirrored()  # the mirror image within the giving armature's own space
    # ``mirrored`` puts the wrist at the mirror of the giver's only from a rest wrist that mirrors the giver's;
    # a hand of another shape (Set Shape) rests elsewhere: its wrist landed 8 mm off. Relative to the taker's
    # rest wrist h_t, the mirrored head S·(h_g + M·t) is reached with t' = mirrored t + Mᵀ·(S·h_g − h_t)
    # (a giver that is the taker itself, for a pasted pose whose rig is not here: taken to be its mirror)
    reflect = np.diag([-1.0, 1.0, 1.0])  # the armature's YZ plane
    taker_head = np.array(taker.data.bones[WRIST].head_local)
    giver_head = reflect @ taker_head if giver == taker else np.array(giver.data.bones[WRIST].head_local)
    shift = MODEL_TO_BLENDER.T @ (reflect @ giver_head - taker_head)
    moved = into_rig_space({"global_orient": mirrored.global_orient, "transl": mirrored.transl + shift},
                           np.array(giver.matrix_world), np.array(taker.matrix_world), taker_head)
    return mirrored.replace(**moved)
