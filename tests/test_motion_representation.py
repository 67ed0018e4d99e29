"""The motion engine's representation: exact round trips with the rig parameters, joint positions
equal to the hand model's, keys expanded to channels, and the spline engine exact at its keys."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handforge.engines.motion import kinematics as kin
from handforge.engines.motion import representation as rep
from handforge.engines.motion.observation import Observation, ObservationError
from handforge.engines.motion.spline import spline_inbetween
from handforge.hands import load_hand_model
from handforge_shared.rotations import axis_angle_to_matrix
from handforge_shared.skeleton import KEYPOINT_FROM_EXTENDED


def random_rig(frames: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"global_orient": rng.normal(size=(frames, 2, 3)), "hand_pose": 0.6 * rng.normal(size=(frames, 2, 45)),
            "transl": 0.1 * rng.normal(size=(frames, 2, 3))}


def test_rig_round_trip_is_exact_up_to_float_error():
    rig = random_rig(7)
    origin = np.array([0.3, -0.2, 0.1])
    shift = np.array([[0.11, 0.008, 0.008], [-0.11, 0.008, 0.008]])  # another hand model's wrists (MANO's)
    motion = rep.encode(rig["global_orient"], rig["hand_pose"], rig["transl"], origin, shift)
    assert motion.shape == (7, rep.FRAME_DIM)
    back = rep.decode(motion, origin, shift)
    for name in ("global_orient", "hand_pose"):
        same = axis_angle_to_matrix(back[name].reshape(7, 2, -1, 3)) - axis_angle_to_matrix(rig[name].reshape(7, 2, -1, 3))
        assert np.abs(same).max() < 1e-9, name
    np.testing.assert_allclose(back["transl"], rig["transl"], atol=1e-12)
    # a rotation within [0, pi) comes back as the same axis-angle vector
    small = {k: v * 0.3 for k, v in rig.items()}
    again = rep.decode(rep.encode(small["global_orient"], small["hand_pose"], small["transl"], origin, shift), origin,
                       shift)
    np.testing.assert_allclose(again["hand_pose"], small["hand_pose"], atol=1e-9)


def test_torch_and_numpy_agree_and_batch():
    rig = random_rig(5, seed=1)
    origin = np.zeros((4, 3))
    batched = {k: np.broadcast_to(v, (4, *v.shape)) for k, v in rig.items()}
    shift = np.random.default_rng(2).normal(size=(4, 1, 2, 3))
    m_np = rep.encode(batched["global_orient"], batched["hand_pose"], batched["transl"], origin[:, None], shift)
    m_t = rep.encode(*(torch.tensor(batched[k]) for k in ("global_orient", "hand_pose", "transl")),
                     torch.tensor(origin)[:, None], torch.tensor(shift))
    assert m_np.shape == (4, 5, rep.FRAME_DIM)
    np.testing.assert_allclose(m_t.numpy(), m_np, atol=1e-12)


@pytest.mark.parametrize("hand_model", ["open", "far_mano"])
def test_points_are_the_hand_models_keypoints(hand_model, tmp_path):
    if hand_model == "far_mano":  # rest wrists some 9.6 cm out, as on real MANO
        pytest.importorskip("smplx")
        from handforge.hands.mano import load_mano
        from tests.support.synthetic_mano import write_far_wrist_mano

        model = load_mano(write_far_wrist_mano(tmp_path)).to(dtype=torch.float64)
    else:
        model = load_hand_model(hand_model, dtype=torch.float64)
    rig = random_rig(6, seed=2)
    betas = np.random.default_rng(3).normal(size=(2, 10)) * 0.5
    origin = np.array([0.05, 0.0, -0.1])
    motion = torch.tensor(rep.encode(rig["global_orient"], rig["hand_pose"], rig["transl"], origin,
                                     rep.wrist_shift(model, betas)))
    joints, tips = kin.rest_skeleton(model, torch.tensor(betas))
    pts = kin.points(motion, joints, tips, torch.tensor(origin))
    assert pts.shape == (6, 2, kin.NUM_POINTS, 3)
    for h, side in enumerate(rep.HAND_AXIS):
        out = model(side, rig["global_orient"][:, h], rig["hand_pose"][:, h], np.repeat(betas[h][None], 6, 0),
                    rig["transl"][:, h])
        # joints exactly; fingertips ride rigidly on the distal joint (skinned wholly to it on the open hand; the
        # synthetic MANO's made-up pose correctives move them by millimetres: its joints only)
        kept = [k for k, e in enumerate(KEYPOINT_FROM_EXTENDED) if hand_model == "open" or e < 16]
        assert (pts[:, h, kept] - out.keypoints[:, kept]).abs().max() < 1e-6


def test_part_mask_expands_to_the_channels_of_each_part():
    mask = np.zeros((3, 2, rep.PARTS), dtype=bool)
    mask[1, 0, 0] = True          # left wrist rotation at frame 1
    mask[2, 1, rep.TRANSL_PART] = True
    channels = rep.part_mask_to_channels(mask)
    assert channels.shape == (3, rep.FRAME_DIM)
    assert np.flatnonzero(channels[1]).tolist() == list(range(6))
    assert np.flatnonzero(channels[2]).tolist() == list(range(rep.FRAME_DIM - 3, rep.FRAME_DIM))
    assert channels.sum() == 9


def keys_observation(frames: int, key_frames: list[int], parts=None, seed: int = 0) -> Observation:
    rig = random_rig(frames, seed)
    mask = np.zeros((frames, 2, rep.PARTS), dtype=bool)
    for f in key_frames:
        mask[f] = True if parts is None else parts
    return Observation(**rig, part_mask=mask, betas=np.zeros((2, 10)))


def test_spline_is_exact_at_keys_and_smooth_between():
    obs = keys_observation(40, [0, 13, 39])
    values = spline_inbetween(obs)
    for name in ("global_orient", "hand_pose", "transl"):
        assert values[name].shape == getattr(obs, name).shape
        np.testing.assert_array_equal(values[name][[0, 13, 39]], getattr(obs, name)[[0, 13, 39]])
        assert np.isfinite(values[name]).all()
    # between keys the wrist moves a little each frame, never jumps
    steps = np.linalg.norm(np.diff(values["transl"], axis=0), axis=-1)
    assert steps.max() < 0.1


def test_spline_keys_only_the_given_parts():
    parts = np.zeros((2, rep.PARTS), dtype=bool)
    parts[1, 3] = True  # right hand, joint 3 only
    obs = keys_observation(20, [5, 15], parts=parts, seed=4)
    values = spline_inbetween(obs)
    np.testing.assert_array_equal(values["hand_pose"][[5, 15], 1, 6:9], obs.hand_pose[[5, 15], 1, 6:9])
    # unkeyed joints stay at rest, unkeyed wrists at the default placement
    assert np.abs(values["hand_pose"][:, 0]).max() == 0.0
    assert values["transl"][0, 0, 0] < 0 < values["transl"][0, 1, 0]


def test_spline_moves_a_hand_without_a_path_beside_the_other():
    # before: placed at the keyed wrists' mean + its side's offset, 12 cm from the keyed wrist: one hand
    # keyed at its Add-Hands place put the hands 14.5 mm inside each other, a keyed path passed through it
    from handforge_shared.poses import side_by_side

    rest = side_by_side()
    parts = np.zeros((2, rep.PARTS), dtype=bool)
    parts[1] = True  # the right hand only, everything of it
    obs = keys_observation(30, [0, 29], parts=parts, seed=1)
    obs.transl[0, 1] = rest.hand("right").transl
    obs.transl[29, 1] = rest.hand("right").transl + [0.3, 0.0, 0.0]
    values = spline_inbetween(obs)
    gap = values["transl"][:, 0] - values["transl"][:, 1]
    np.testing.assert_allclose(gap, np.broadcast_to(rest.hand("left").transl - rest.hand("right").transl, gap.shape),
                               atol=1e-12)


def test_observation_rejects_bad_keys():
    obs = keys_observation(10, [0, 9])
    bad = obs.transl.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ObservationError, match="non-finite"):
        Observation(obs.global_orient, obs.hand_pose, bad, obs.part_mask, obs.betas)
    with pytest.raises(ObservationError, match="part_mask"):
        Observation(obs.global_orient, obs.hand_pose, obs.transl, obs.part_mask[:, :, :5], obs.betas)
    # a NaN where nothing is keyed is ignored
    bad[4, 0, 0] = np.nan
    bad[0, 0, 0] = 0.0
    Observation(obs.global_orient, obs.hand_pose, bad, obs.part_mask, obs.betas)
    # the scene's hands: one or both sides, once each, and keys on those only
    with pytest.raises(ObservationError, match="scene_hands must name one or both of left, right"):
        Observation(obs.global_orient, obs.hand_pose, obs.transl, obs.part_mask, obs.betas, scene_hands=())
    with pytest.raises(ObservationError, match="part_mask keys the left hand, which scene_hands"):
        Observation(obs.global_orient, obs.hand_pose, obs.transl, obs.part_mask, obs.betas, scene_hands=("right",))
