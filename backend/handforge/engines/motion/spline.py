"""The spline engine: in-betweening of the same keys without a network.

Always available (no checkpoint), the fallback of the learned engine and the baseline of every
table. Per hand and part (``representation.PARTS``), over that part's keyed frames:

    rotations     scipy's ``RotationSpline`` (C² cubic spline in rotation space, Kim et al. 1995)
                  through the keys, one key: held; before the first and after the last key: held
    translation   a C¹ piecewise cubic Hermite (PCHIP: no overshoot between keys), held outside
    no key        the default placement of Add Hands (``poses.side_by_side``): flat fingers,
                  palms down, translations 24 cm apart (the open hand's wrist keypoints about
                  21 cm); a wrist without a path follows the other's path at that distance.
                  Placed by wrist joint (``representation``: the open hand at mean shape's
                  ``transl``), so MANO's wrists land where the open hand's do; a MANO observation
                  without its ``wrist_shift`` (the spline engine runs where MANO's files are not)
                  is placed by ``transl``

Exact at the keys: every keyed entry is written back from the observation (``Observation.clip``).
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation, RotationSpline

from handforge.engines.motion import representation as rep
from handforge.engines.motion.observation import Observation
from handforge_shared.poses import side_by_side


def interpolate_rotations(frames: np.ndarray, rotvecs: np.ndarray, num_frames: int,
                          default: np.ndarray | None = None) -> np.ndarray:
    """Axis-angle keys (K, 3) at increasing ``frames`` (K,) → (num_frames, 3), held outside the keys."""
    if len(frames) == 0:
        return np.repeat(np.zeros((1, 3)) if default is None else default[None], num_frames, 0)
    if len(frames) == 1:
        return np.repeat(rotvecs[:1], num_frames, 0)
    times = np.clip(np.arange(num_frames), frames[0], frames[-1]).astype(np.float64)
    return RotationSpline(frames.astype(np.float64), Rotation.from_rotvec(rotvecs))(times).as_rotvec()


def interpolate_points(frames: np.ndarray, points: np.ndarray, num_frames: int, default: np.ndarray) -> np.ndarray:
    """Point keys (K, 3) at increasing ``frames`` → (num_frames, 3), held outside the keys."""
    if len(frames) == 0:
        return np.repeat(default[None], num_frames, 0)
    if len(frames) == 1:
        return np.repeat(points[:1], num_frames, 0)
    times = np.clip(np.arange(num_frames), frames[0], frames[-1])
    return PchipInterpolator(frames, points, axis=0)(times)


def spline_inbetween(observation: Observation) -> dict[str, np.ndarray]:
    """Rig values {global_orient, hand_pose, transl}, each (T, 2, size), exact at the keys."""
    t = observation.num_frames
    mask = observation.part_mask
    rotations = np.concatenate([observation.global_orient[:, :, None],
                                observation.hand_pose.reshape(t, 2, rep.NUM_ROTATIONS - 1, 3)], axis=2)
    out_rot = np.zeros((t, 2, rep.NUM_ROTATIONS, 3))
    out_transl = np.zeros((t, 2, 3))
    rest = side_by_side()
    # each hand's wrist joint as the open hand at mean shape's transl: wrist = transl + shift
    shift = observation.wrist_shift if observation.wrist_shift is not None else np.zeros((2, 3))
    keyed_wrists = mask[..., rep.TRANSL_PART]
    centre = (observation.transl + shift)[keyed_wrists].mean(0) if keyed_wrists.any() else np.zeros(3)
    for h, side in enumerate(rep.HAND_AXIS):
        placed = rest.hand(side)
        for part in range(rep.NUM_ROTATIONS):
            keyed = np.flatnonzero(mask[:, h, part])
            default = placed.global_orient if part == 0 else None
            out_rot[:, h, part] = interpolate_rotations(keyed, rotations[keyed, h, part], t, default)
        keyed = np.flatnonzero(mask[:, h, rep.TRANSL_PART])
        out_transl[:, h] = interpolate_points(keyed, observation.transl[keyed, h], t,
                                              centre + placed.transl - shift[h])
    placed_at = [rest.hand(side).transl for side in rep.HAND_AXIS]
    has_path = [mask[:, h, rep.TRANSL_PART].any() for h in range(2)]
    for h in range(2):  # a hand without a path goes along beside the other's, as side_by_side places them
        if not has_path[h] and has_path[1 - h]:  # (at origin + placement it lay 12 cm off: inside the other)
            out_transl[:, h] = out_transl[:, 1 - h] + shift[1 - h] - shift[h] + placed_at[h] - placed_at[1 - h]
    values = {"global_orient": out_rot[:, :, 0], "hand_pose": out_rot[:, :, 1:].reshape(t, 2, -1),
              "transl": out_transl}
    return observation.with_keys(values)


def spline_motion(observation: Observation) -> np.ndarray:
    """(T, 198): ``spline_inbetween`` in the motion representation (of an observation placed on its hand model)."""
    return observation.motion_of(spline_inbetween(observation))


__all__ = ["interpolate_points", "interpolate_rotations", "spline_inbetween", "spline_motion"]
