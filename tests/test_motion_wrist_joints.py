"""The motion engine places wrist joints, not ``transl``: the same keyed wrist positions give the same motion
on every hand model, however far its rest wrist sits from its origin (real MANO's some 9.6 cm, the open
hand's 1.6 cm), and the open hand at mean shape is encoded as the shipped checkpoint was trained."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handforge.engines.motion import representation as rep
from handforge.engines.motion.model import MotionDenoiser
from handforge.engines.motion.observation import Observation
from handforge.engines.motion.pipeline import MotionPipeline
from handforge.engines.motion.spline import spline_inbetween
from handforge.hands import load_hand_model
from handforge.hands.wrists import WristJoints
from tests.support.synthetic_mano import write_far_wrist_mano

FRAMES = 24


@pytest.fixture(scope="module")
def far_mano(tmp_path_factory):
    pytest.importorskip("smplx")
    from handforge.hands.mano import load_mano

    return load_mano(write_far_wrist_mano(tmp_path_factory.mktemp("far_mano")))


@pytest.fixture(scope="module")
def open_hand():
    return load_hand_model("open")


def rest_wrists(hands, betas: np.ndarray) -> np.ndarray:
    """(2, 3) each side's wrist joint at zero pose and transl, from the hand model's forward itself."""
    return np.stack([hands(side, torch.zeros(1, 3), torch.zeros(1, 45), torch.as_tensor(betas[h][None]).float(),
                           torch.zeros(1, 3)).joints[0, 0].double().numpy() for h, side in enumerate(rep.HAND_AXIS)])


@pytest.mark.parametrize("which", ["open", "far_mano"])
def test_the_wrist_joint_is_the_rest_wrist_moved_by_transl_whatever_the_pose(which, request):
    """Both hand models turn ``global_orient`` about the wrist joint (smplx's convention), so ``WristJoints``
    plus ``transl`` is where the wrist is on every frame."""
    hands = request.getfixturevalue(which if which == "far_mano" else "open_hand")
    wrists = WristJoints.of(hands)
    rng = np.random.default_rng(0)
    n = 5
    betas = torch.as_tensor(rng.normal(size=(n, 10)), dtype=torch.float32)
    transl = torch.as_tensor(0.2 * rng.normal(size=(n, 3)), dtype=torch.float32)
    for side in rep.HAND_AXIS:
        out = hands(side, torch.as_tensor(rng.normal(size=(n, 3)), dtype=torch.float32),
                    torch.as_tensor(0.5 * rng.normal(size=(n, 45)), dtype=torch.float32), betas, transl)
        assert (out.joints[:, 0] - (wrists(side, betas) + transl)).abs().max() < 1e-6, side
    if which == "far_mano":  # the model this file is about: its rest wrists far out, x mirrored
        rest = rest_wrists(hands, np.zeros((2, 10)))
        np.testing.assert_allclose(rest, [[-0.0957, 0.0064, 0.0062], [0.0957, 0.0064, 0.0062]], atol=1e-6)


def test_the_open_hand_at_mean_shape_is_encoded_as_the_shipped_checkpoint_was_trained():
    """Its translation channels are ``transl`` minus the mean keyed ``transl``, as before wrist joints."""
    rng = np.random.default_rng(1)
    values = {"global_orient": rng.normal(size=(FRAMES, 2, 3)), "hand_pose": 0.4 * rng.normal(size=(FRAMES, 2, 45)),
              "transl": 0.1 * rng.normal(size=(FRAMES, 2, 3))}
    mask = np.zeros((FRAMES, 2, rep.PARTS), dtype=bool)
    mask[[0, 5, 23]] = True
    observation = Observation(**values, part_mask=mask, betas=np.zeros((2, 10)))
    np.testing.assert_array_equal(observation.wrist_shift, np.zeros((2, 3)))
    origin = values["transl"][mask[..., rep.TRANSL_PART]].mean(0)
    np.testing.assert_allclose(observation.origin, origin, rtol=0, atol=1e-15)
    motion = observation.motion()
    np.testing.assert_allclose(rep.translations(motion), values["transl"] - origin, rtol=0, atol=1e-15)
    # and back: the open hand's transl
    np.testing.assert_allclose(rep.decode(motion, origin, observation.wrist_shift)["transl"], values["transl"],
                               rtol=0, atol=1e-15)


def keys_for(hands, betas: np.ndarray, wrists_world: np.ndarray, go: np.ndarray, hp: np.ndarray,
             mask: np.ndarray) -> Observation:
    """Keys putting the wrist joints at ``wrists_world`` (T, 2, 3) on ``hands`` with ``betas``."""
    transl = wrists_world - rest_wrists(hands, betas)[None]
    return Observation(go, hp, transl, mask, betas, hand_model=hands.name)


def world_wrists(hands, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
    return transl + rest_wrists(hands, betas)


def inbetween_keys(seed: int = 2):
    rng = np.random.default_rng(seed)
    wrists = np.tile([[-0.12, 0.02, 0.0], [0.12, 0.0, 0.01]], (FRAMES, 1, 1)) + 0.03 * rng.normal(size=(FRAMES, 2, 3))
    go = 0.5 * rng.normal(size=(FRAMES, 2, 3))
    hp = 0.3 * rng.normal(size=(FRAMES, 2, 45))
    mask = np.zeros((FRAMES, 2, rep.PARTS), dtype=bool)
    mask[:3] = mask[-3:] = True
    mask[10, 1, rep.TRANSL_PART] = True       # the right wrist keyed mid-gap: the left's is generated there
    betas = 0.8 * rng.normal(size=(2, 10))
    return wrists, go, hp, mask, betas


def test_a_far_wrist_hand_model_gets_the_open_hands_motion_for_the_same_wrist_keys(open_hand, far_mano):
    """Before: the channels held ``transl`` minus its mean, so the keys of a hand model whose rest wrists sit
    19 cm further apart (real MANO's) were to the network two hands 19 cm further apart than the open hand's
    with the same wrists, and the generated wrists ended centimetres elsewhere."""
    torch.manual_seed(0)
    net = MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64,
                         data_mean=[0.0] * rep.FRAME_DIM, data_std=[0.1] * rep.FRAME_DIM)
    torch.nn.init.normal_(net.output.weight, std=0.5)  # untrained, and far from the plain in-between of the keys
    net.eval()
    wrists, go, hp, mask, betas = inbetween_keys()
    results = {}
    for hands in (open_hand, far_mano):
        keys = keys_for(hands, betas, wrists, go, hp, mask)
        values = MotionPipeline(net, hands)(keys, num_samples=2, steps=4, seed=3)
        # the keys come back exactly, in the model's own transl
        keyed = mask[..., rep.TRANSL_PART]
        assert (values["transl"][:, keyed] == keys.transl[keyed]).all()
        results[hands.name] = (values, world_wrists(hands, betas, values["transl"]))
    (open_values, open_wrists), (mano_values, mano_wrists) = results["open"], results["mano"]
    free = ~mask[..., rep.TRANSL_PART]
    assert np.abs(open_wrists[:, free] - wrists[free]).max() > 1e-3  # generated there, not the keys held
    np.testing.assert_allclose(mano_wrists, open_wrists, rtol=0, atol=2e-6)
    for name in ("global_orient", "hand_pose"):
        np.testing.assert_allclose(mano_values[name], open_values[name], rtol=0, atol=2e-5)


def test_the_spline_engine_places_a_hand_without_keys_beside_the_other_by_its_wrist(open_hand, far_mano):
    """A hand without keys goes along beside the keyed one as Add Hands places two open hands: on MANO too."""
    wrists, go, hp, mask, betas = inbetween_keys(seed=4)
    mask[:, 0] = False  # the left hand has no keys at all
    placed = {}
    for hands in (open_hand, far_mano):
        keys = keys_for(hands, betas, wrists, go, hp, mask).placed(hands)
        placed[hands.name] = world_wrists(hands, betas, spline_inbetween(keys)["transl"])
    np.testing.assert_allclose(placed["mano"], placed["open"], rtol=0, atol=1e-6)  # (rest wrists: float32 forward)


def test_a_mano_observation_without_its_wrists_says_how_to_place_it():
    wrists, go, hp, mask, betas = inbetween_keys()
    keys = Observation(go, hp, wrists, mask, betas, hand_model="mano")
    with pytest.raises(ValueError, match=r"Observation.placed\(hand_model\)"):
        keys.motion()
