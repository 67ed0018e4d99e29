"""The curve an in-between starts from (``MotionPipeline.key_curves``): through keys a short gap apart the spline
engine's in-between, through keys far apart the model's own Hermite curve, mixed between (``SPLINE_GAPS``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handforge.engines.motion import representation as rep
from handforge.engines.motion.curves import short_gap_weight
from handforge.engines.motion.model import MotionDenoiser
from handforge.engines.motion.observation import Observation
from handforge.engines.motion.pipeline import SPLINE_GAPS, MotionPipeline
from handforge.engines.motion.spline import spline_inbetween
from handforge.hands import load_hand_model


def test_the_weight_is_one_across_short_gaps_and_none_across_long_ones():
    mask = torch.zeros(1, 80, 2, dtype=torch.bool)
    mask[0, [0, 10, 50, 79], 0] = True  # channel 0: gaps of 10, 40 and 29 frames between keys
    mask[0, 30, 1] = True               # channel 1: one key, no gap
    weight = short_gap_weight(mask, 20, 40)[0]
    np.testing.assert_array_equal(weight[1:10, 0], 1.0)
    np.testing.assert_array_equal(weight[11:50, 0], 0.0)
    np.testing.assert_allclose(weight[51:79, 0], (40 - 29) / 20)
    assert not weight[[0, 10, 50, 79], 0].any() and not weight[:, 1].any()  # keys, and no span at all


def hermite_motion(observation: Observation) -> np.ndarray:
    """(T, 198) the keys' Hermite curve per channel of the representation, each rotation along its arc (``curves``):
    what a Hermite model's curve is without the spline engine's."""
    from handforge.engines.motion.curves import hermite_keys, slerp_correction

    motion = torch.as_tensor(observation.motion())[None]
    mask = torch.as_tensor(observation.channel_mask())[None]
    curve = hermite_keys(motion, mask) + slerp_correction(motion, mask.bool(), torch.as_tensor(rep.ROTATION_CHANNELS))
    return curve[0].numpy()


def hermite_inbetween(observation: Observation) -> dict[str, np.ndarray]:
    return observation.values_of(hermite_motion(observation))


def keyed_gap(gap: int, seed: int) -> Observation:
    """Both hands keyed whole on the first and last 5 frames around ``gap`` free ones (random poses, hands apart)."""
    rng = np.random.default_rng(seed)
    frames = gap + 10
    betas = rng.uniform(-2, 2, (2, 10))  # (shapes whose wrist joints sit off the open hand's mean: placed by them)
    go, hand_pose = rng.uniform(-0.6, 0.6, (frames, 2, 3)), rng.uniform(-0.3, 0.3, (frames, 2, 45))
    transl = np.zeros((frames, 2, 3))
    transl[:, :, 0] = [-0.15, 0.15]
    transl += rng.uniform(-0.03, 0.03, (frames, 2, 3))
    part_mask = np.zeros((frames, 2, rep.PARTS), bool)
    part_mask[:5] = part_mask[-5:] = True
    return Observation(go, hand_pose, transl, part_mask, betas)


@pytest.mark.parametrize("gap, expected", [(15, "spline"), (70, "hermite")])
def test_an_in_between_starts_from_the_spline_engine_across_a_short_gap_and_the_hermite_curve_across_a_long_one(
        gap, expected):
    """A fresh network (its output layer zero: x0 is the curve it is given), so the in-between is the curve itself,
    compared with the spline engine's in-between and with `eval motion`'s keys' Hermite curve."""
    assert SPLINE_GAPS is not None and (gap + 1 <= SPLINE_GAPS[0] or gap + 1 >= SPLINE_GAPS[1])
    torch.manual_seed(0)
    model = MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, observation_curve="hermite")
    observation = keyed_gap(gap, seed=gap)
    made = MotionPipeline(model, load_hand_model("open"))(observation, steps=2, smoothing=0.0)
    oracle = (spline_inbetween if expected == "spline" else hermite_inbetween)(observation)
    other = (hermite_inbetween if expected == "spline" else spline_inbetween)(observation)
    for name in ("global_orient", "hand_pose", "transl"):
        np.testing.assert_allclose(made[name][0], oracle[name], atol=2e-5, err_msg=name)
    assert np.abs(made["hand_pose"][0] - other["hand_pose"]).max() > 1e-3  # (the two curves do differ here)


def test_a_jobs_samples_of_one_observation_take_its_spline_curve_once(monkeypatch):
    """``num_samples`` N denoise one observation N times: its spline curve was made N times (8 samples of 512 frames:
    8 rotation splines of every joint), now once."""
    from handforge.engines.motion import spline

    calls = []
    made = spline.spline_motion
    monkeypatch.setattr(spline, "spline_motion", lambda o: calls.append(o) or made(o))
    model = MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, observation_curve="hermite")
    values = MotionPipeline(model, load_hand_model("open"))(keyed_gap(15, seed=1), num_samples=4, steps=1)
    assert values["hand_pose"].shape[0] == 4 and len(calls) == 1, len(calls)


def test_between_the_two_the_curve_is_their_mix_and_a_half_precision_model_keeps_its_dtype():
    """Keys 40 frames apart: a third of the way from the Hermite curve to the spline engine's (``SPLINE_GAPS``), in
    the representation; in bfloat16 the mixed curve stays bfloat16 (a float32 weight turned the network's input to
    float32, which a half-precision model refused)."""
    assert SPLINE_GAPS == (30, 60)
    model = MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, observation_curve="hermite")
    observation = keyed_gap(39, seed=5)
    made = MotionPipeline(model, load_hand_model("open"))(observation, steps=2, smoothing=0.0)
    placed = MotionPipeline(model, load_hand_model("open")).placed([observation])[0]
    hermite, spline = hermite_motion(placed), placed.motion_of(spline_inbetween(placed))
    weight = (60 - 40) / 30
    expected = placed.values_of(hermite + weight * (spline - hermite))  # (the mixed 6D columns made orthonormal)
    for name in ("global_orient", "hand_pose", "transl"):
        np.testing.assert_allclose(made[name][0], expected[name], atol=2e-5, err_msg=name)
    assert np.abs(expected["hand_pose"] - spline_inbetween(placed)["hand_pose"]).max() > 1e-3  # (neither curve)
    half = MotionPipeline(model.to(torch.bfloat16), load_hand_model("open"))(observation, steps=1)
    assert np.isfinite(half["hand_pose"]).all()


@pytest.mark.parametrize("spline_observation", [False, True])
def test_training_with_spline_observation_shows_the_network_the_samplers_curve(monkeypatch, spline_observation):
    """``MotionObjective(spline_observation=True)`` (``train motion --spline-observation``) gives the network, for a
    window's keys, the observation the sampler gives it for the same keys as a job (``MotionPipeline.key_curves``'s
    fill); without it, the model's own curve (which differs across this short gap)."""
    from handforge.engines.motion import losses
    from handforge.engines.motion.pipeline import make_train_scheduler

    torch.manual_seed(0)
    model = MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, observation_curve="hermite")
    hands = load_hand_model("open")
    windows = [keyed_gap(15, seed=s) for s in (1, 2, 3, 4)]

    def keyed(window: Observation, part_mask: np.ndarray) -> Observation:
        return Observation(window.global_orient, window.hand_pose, window.transl, part_mask, window.betas)

    windows[1] = keyed(windows[1], np.zeros_like(windows[1].part_mask))  # no key: nothing to mix
    # rotations only: no wrist keyed, where the training's origin (the first frame's) is not a job's (the model's
    # origin): no translation channel is mixed then, and rotations have no origin
    rotations = windows[2].part_mask.copy()
    rotations[..., rep.TRANSL_PART] = False
    windows[2] = keyed(windows[2], rotations)
    some = windows[3].part_mask.copy()  # one hand's path and a few fingers of the other
    some[:, 0, rep.TRANSL_PART] = False
    some[:, 1, 4:rep.TRANSL_PART] = False
    windows[3] = keyed(windows[3], some)
    frames = windows[0].num_frames
    batch = {f: torch.tensor(np.stack([getattr(w, f) for w in windows]), dtype=torch.float32)
             for f in ("global_orient", "hand_pose", "transl")}
    batch["betas"] = torch.tensor(np.stack([np.repeat(w.betas[None], frames, 0) for w in windows]), dtype=torch.float32)
    # the objective's draws made the windows' own: the whole window, their key sets
    monkeypatch.setattr(losses, "random_key_masks", lambda b, t: torch.as_tensor(np.stack([w.part_mask for w in windows])))
    seen = []
    monkeypatch.setattr(MotionDenoiser, "forward", lambda self, x, t, observation, mask, offset: seen.append(observation) or x)
    objective = losses.MotionObjective(hands, make_train_scheduler(), min_length=frames,
                                       spline_observation=spline_observation)
    objective(model, batch)
    pipe = MotionPipeline(model, hands)
    placed = pipe.placed(windows)
    keys, mask = pipe._keys(placed)
    sampler = pipe.key_curves(placed, keys, mask)[0]
    free = ~mask
    difference = (seen[0] - sampler)[free].abs().max()
    if spline_observation:
        assert difference < 1e-4, difference
    else:
        assert difference > 1e-2, difference
        torch.testing.assert_close(seen[0], model.observe(keys.float(), mask), atol=1e-4, rtol=0)
