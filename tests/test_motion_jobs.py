"""The motion jobs end to end: a real backend (subprocess) with a tiny motion checkpoint, a real
client; in-betweening with both engines keeps the keys exactly, wrist paths are followed,
generation works, progress comes per denoising step, jobs cancel, bad inputs are refused with a
message saying what to fix, and a missing checkpoint falls back to the spline engine."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from handforge.engines.checkpoints import save_model
from handforge.engines.motion.model import MotionDenoiser
from handforge.engines.motion.representation import FRAME_DIM
from handforge_shared.client import Cancelled, Error, JobFailed
from handforge_shared.poses import MotionClip
from tests.support.motion_keys import keyed_ends
from tests.support.server import running_server

UNIT_STATISTICS = {"data_mean": [0.0] * FRAME_DIM, "data_std": [1.0] * FRAME_DIM}  # (train motion writes real ones)

REPO = Path(__file__).resolve().parents[1]
FRAMES = 30
PARTS = 17


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    torch.manual_seed(0)
    net = MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, **UNIT_STATISTICS)
    torch.nn.init.normal_(net.output.weight, std=0.05)  # untrained but not the plain in-between
    folder = save_model(net, tmp_path_factory.mktemp("motion") / "tiny")
    env = {"HANDFORGE_MOTION_CHECKPOINT": str(folder),
           "HANDFORGE_MANO_DIR": str(tmp_path_factory.mktemp("no_mano_files")),  # MANO unavailable, wherever run
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as srv:
        yield srv


def keys() -> dict[str, np.ndarray]:
    arrays = keyed_ends(FRAMES)
    arrays["right.mask"][12, 3:7] = 1  # some finger joints of the right hand at frame 12
    return arrays


def clip_of(result) -> MotionClip:
    return MotionClip.from_arrays(result.data["motion"], result.arrays, strict=False)


def assert_keys_kept(clip: MotionClip, arrays: dict[str, np.ndarray]) -> None:
    for side in ("left", "right"):
        mask = arrays[f"{side}.mask"].astype(bool)
        pose = clip.hands[side]
        np.testing.assert_array_equal(pose.global_orient[mask[:, 0]], arrays[f"{side}.global_orient"][mask[:, 0]])
        np.testing.assert_array_equal(pose.transl[mask[:, 16]], arrays[f"{side}.transl"][mask[:, 16]])
        joints = np.repeat(mask[:, 1:16], 3, axis=1)
        np.testing.assert_array_equal(pose.hand_pose[joints], arrays[f"{side}.hand_pose"][joints])
        np.testing.assert_allclose(pose.betas, np.repeat(arrays[f"{side}.betas"][None], FRAMES, 0), atol=1e-7)


@pytest.mark.parametrize("engine", ["learned", "spline"])
def test_inbetween_keeps_every_key(server, engine):
    arrays = keys()
    messages = []
    with server.client() as client:
        learned = {"steps": 6} if engine == "learned" else {}
        result = client.run("motion.inbetween", {"engine": engine, "num_samples": 2, "seed": 1, **learned}, arrays,
                            timeout=120, on_progress=lambda e: messages.append(e.message))
    # no fall-back said (these random keys hold the hands 18 mm into each other: that is said, learned)
    assert result.data["engine"] == engine
    if engine == "spline":  # its 2 samples are one motion twice: said (they came back the same, unsaid); and the
        # keys 10 mm into each other, the spline between them 21 mm (measured as Keep Apart measures them)
        warning = result.data["warning"]
        assert warning.startswith("Your keys hold the hands 10 mm into each other on frames 0 and 29: the spline "
                                  "engine keeps keys as they are"), warning
        assert "The spline motion takes the hands 21 mm into each other on frames " in warning, warning
        assert warning.endswith("The spline engine draws one motion through the keys: seed 1 changes nothing; the "
                                "learned engine draws another for each seed. The spline engine makes one motion: the 2 "
                                "samples are the same; the learned engine draws different ones."), warning
    else:
        assert result.data.get("warning", "Your keys").startswith("Your keys")
    clip = clip_of(result)
    assert clip.num_frames == FRAMES and clip.hand_model == "open"
    assert_keys_kept(clip, arrays)
    assert result.arrays["samples.left"].shape == (2, FRAMES, 51)
    assert np.isfinite(result.arrays["samples.right"]).all()
    if engine == "learned":
        # the in-between's default variation, 0.8, runs the last 5 of 6 steps, and says so ("step 1/5" of Steps 6)
        assert "denoising step 5/5 (5 of Steps 6: variation under 1 starts part way)" in messages, messages
        assert not np.array_equal(result.arrays["samples.left"][0], result.arrays["samples.left"][1])


def test_inbetween_through_the_other_hand_reports_the_repair(server):
    """The default "repair" guidance: wrists keyed at every frame to trade places, so that the hands
    meet mid-way; the job's progress says when it moves them out of each other, and keys stay exact."""
    arrays = keys()
    for side, sign in (("left", -1.0), ("right", 1.0)):
        arrays[f"{side}.global_orient"][:] = [0.0, 0.0, -sign * np.pi / 2]  # palm to palm
        arrays[f"{side}.hand_pose"][:] = 0.0
        arrays[f"{side}.transl"][:] = 0.0
        arrays[f"{side}.transl"][:, 0] = np.linspace(sign * 0.15, -sign * 0.15, FRAMES)
        arrays[f"{side}.mask"][:, PARTS - 1] = 1
    arrays["right.mask"][12] = 0
    arrays["right.mask"][12, PARTS - 1] = 1
    events = []
    with server.client() as client:
        result = client.run("motion.inbetween", {"steps": 4}, arrays, timeout=300, on_progress=events.append)
    messages = [e.message for e in events]
    assert any(m.startswith("moving the hands out of each other") for m in messages), messages
    assert_keys_kept(clip_of(result), arrays)
    # the bar never goes back: the measurements after the polish set it back to 90 % (0.96 -> 0.9 seen)
    fractions = [e.fraction for e in events]
    assert all(b >= a for a, b in zip(fractions, fractions[1:])), list(zip(fractions, messages))


def flat_hands_held_apart(keyed_frames) -> dict[str, np.ndarray]:
    """Flat hands keyed with their wrists 20 cm apart (their fingers 17 mm through each other) at ``keyed_frames``."""
    arrays = keys()
    for side in ("left", "right"):
        arrays[f"{side}.global_orient"][:] = 0.0
        arrays[f"{side}.hand_pose"][:] = 0.0
        arrays[f"{side}.transl"][:] = [-0.1 if side == "left" else 0.1, 0.0, 0.0]
        arrays[f"{side}.mask"][:] = 0
        arrays[f"{side}.mask"][keyed_frames] = 1
    return arrays


def test_keys_that_hold_the_hands_in_each_other_are_said_to(server):
    """Flat hands keyed 20 cm apart, their fingers 17 mm through each other at every key: the repair moved the
    wrists out between the keys and back (a held pose bounced at up to 3 m/s) and the result said nothing."""
    arrays = flat_hands_held_apart(keyed_frames=[0, FRAMES - 1])
    with server.client() as client:
        held = client.run("motion.inbetween", {"steps": 2}, arrays, timeout=300)
        far = {k: v + np.float32([0.2 if k.startswith("right") else -0.2, 0, 0]) if k.endswith("transl") else v
               for k, v in arrays.items()}
        apart = client.run("motion.inbetween", {"steps": 2}, far, timeout=300)
        off = client.run("motion.inbetween", {"steps": 2, "penetration_guidance": "off"}, arrays, timeout=300)
    assert "Your keys hold the hands 18 mm into each other" in held.data["warning"], held.data
    # (the add-on's option, and the param a script sends: a script caller had no Keep Apart to find)
    assert "set Keep Apart to Off (penetration_guidance 'off') to keep it as keyed" in held.data["warning"]
    assert "warning" not in apart.data and "warning" not in off.data  # (nothing repaired: nothing said)


def test_keys_on_every_frame_are_not_said_to_bounce(server):
    """The same hold keyed on every frame: nothing is free, so Keep Apart moves nothing, yet the result said it moved
    the wrists out between the keys and back and to set Keep Apart to Off (as 'off' does: nothing repaired, nothing
    said)."""
    arrays = flat_hands_held_apart(keyed_frames=slice(None))
    with server.client() as client:
        result = client.run("motion.inbetween", {"steps": 2}, arrays, timeout=300)
    assert "warning" not in result.data, result.data
    assert_keys_kept(clip_of(result), arrays)


def test_wrist_paths_through_each_other_are_said_to_leave_the_hands_in_each_other(server):
    """Two wrist paths crossing: the hands 20 mm into each other where they cross, which Keep Apart cannot undo
    (it never moves a keyed wrist), and nothing was said; paths apart say nothing."""
    t = 60
    line = np.linspace(0.15, -0.15, t)
    cross = {"left.transl": np.stack([-line, np.zeros(t), np.zeros(t)], 1).astype(np.float32),
             "right.transl": np.stack([line, np.zeros(t), np.zeros(t)], 1).astype(np.float32)}
    apart = {"left.transl": np.tile(np.float32([-0.1, 0, 0]), (t, 1)),
             "right.transl": np.tile(np.float32([0.1, 0, 0]), (t, 1))}
    with server.client() as client:
        crossed = client.run("motion.trajectory", {"steps": 8, "seed": 2}, cross, timeout=300)
        kept_apart = client.run("motion.trajectory", {"steps": 8, "seed": 2}, apart, timeout=300)
    assert "mm into each other where your wrist keys or paths bring them together" in crossed.data["warning"]
    assert "warning" not in kept_apart.data


def flat_hands_trading_places(start: float, end: float) -> dict[str, np.ndarray]:
    """Flat hands keyed at both ends only, the left wrist's transl going from x = -``start`` to -``end``, the right's
    from ``start`` to ``end`` (the spline engine's cubic wrist paths between)."""
    arrays = flat_hands_held_apart(keyed_frames=[0, FRAMES - 1])
    for side, sign in (("left", -1.0), ("right", 1.0)):
        arrays[f"{side}.transl"][:, 0] = np.linspace(sign * start, sign * end, FRAMES)
    return arrays


def test_spline_paths_through_each_other_are_said_naming_the_frames(server):
    """The spline engine keeps nothing apart: flat hands keyed 40 cm apart at both ends, trading places, went
    through each other mid-way and the result said nothing (the learned engine's Keep Apart says so). Now the
    frames and the depth are said, numbered as the scene numbers them (``first_frame``, the range's first: counted
    from 0 they were the range's rows, not the frames the artist sees); hands that stay apart say nothing."""
    with server.client() as client:
        crossed = client.run("motion.inbetween", {"engine": "spline", "first_frame": 101},
                             flat_hands_trading_places(0.2, -0.2), timeout=120)
        apart = client.run("motion.inbetween", {"engine": "spline"}, flat_hands_trading_places(0.2, 0.2),
                           timeout=120)
    warning = crossed.data.get("warning", "")
    said = re.fullmatch(r"The spline motion takes the hands (\d+) mm into each other on frames (\d+) to (\d+), "
                        r"deepest at frame (\d+): add a key where they overlap, or use the learned engine with Keep "
                        r"Apart \(penetration_guidance\)\.", warning)  # (the job's param named too: a script's way)
    assert said, warning  # (the keys, 40 cm apart, are not said)
    depth, first, last, worst = map(int, said.groups())
    # the fingers meet some frames after the keys and go 20 mm into the other palm before the wrists pass (the
    # hands then point away from each other): rows 2 to 14 (the fallback's test, from 0), frames 103 to 115
    assert depth >= 10 and (first, last) == (103, 115) and first <= worst <= last, warning
    assert "warning" not in apart.data, apart.data


def test_a_spline_job_with_nothing_to_measure_ends_its_progress(server):
    """The spline's curves had 10 % of the bar and measuring the rest; with the hands beyond reach of each other
    (or one hand) nothing was measured and the bar stayed at 10 % until the result. Frames before 0 are named as
    such: '-18--6' read as nothing."""
    from handforge.engines.motion.overlap import _frames_named

    events = []
    with server.client() as client:
        client.run("motion.inbetween", {"engine": "spline"}, flat_hands_trading_places(0.4, 0.4), timeout=60,
                   on_progress=events.append)
    assert events[-1].fraction == 1.0, [(e.fraction, e.message) for e in events]
    assert _frames_named(np.array([-18, -17, -6, -5, 3])) == "frames -18 to -17, -6 to -5 and 3"


def test_both_wrists_sent_along_one_path_are_refused(server):
    """One path for both wrists (one curve chosen for both): the spline engine moved the hands through each other
    the whole way, unsaid, and the learned one said so only after its run. A hand's wrist is its rest joint moved by
    its transl, so one path is a transl of each hand's own; refused before sampling. 2 cm apart still runs."""
    from handforge.engines.motion.kinematics import rest_skeleton
    from handforge.hands.registry import load_hand_model

    rest, _ = rest_skeleton(load_hand_model("open"), torch.zeros(1, 2, 10))
    wrist = rest[0, :, 0].double().numpy()  # (2, 3): left, right
    path = np.stack([np.linspace(-0.1, 0.1, FRAMES), np.zeros(FRAMES), np.full(FRAMES, 0.3)], 1)
    one_path = {f"{side}.transl": (path - wrist[h]).astype(np.float32) for h, side in enumerate(("left", "right"))}
    apart = {**one_path, "right.transl": one_path["right.transl"] + np.float32([0.02, 0.0, 0.0])}
    with server.client() as client:
        for engine in ("spline", "learned"):
            with pytest.raises(JobFailed) as refused:
                client.run("motion.trajectory", {"engine": engine}, one_path, timeout=120)
            assert refused.value.code == "invalid_params", refused.value
            assert "put both wrists on one path, through each other" in refused.value.message, refused.value
            assert "send a different path for one wrist, or send one wrist's path only" in refused.value.hint
        assert clip_of(client.run("motion.trajectory", {"engine": "spline"}, apart, timeout=120)).num_frames == FRAMES


@pytest.fixture(scope="module")
def shipped():
    """A backend with the shipped motion model (the notes below are about motions it makes)."""
    with running_server("--devices", "cpu") as srv:
        yield srv


def one_hand_keyed(right_sent: bool = True) -> dict[str, np.ndarray]:
    """The left hand keyed (random poses) at both ends of 30 frames; the right hand sent without keys (the engine
    makes it), or, ``right_sent`` False, not sent: a scene of the left hand alone."""
    rng = np.random.default_rng(0)
    t = 30
    arrays = {"left.global_orient": np.zeros((t, 3), np.float32), "left.hand_pose": np.zeros((t, 45), np.float32),
              "left.transl": np.zeros((t, 3), np.float32), "left.mask": np.zeros((t, PARTS), np.uint8)}
    for k in (0, t - 1):
        arrays["left.global_orient"][k] = rng.uniform(-1, 1, 3)
        arrays["left.hand_pose"][k] = rng.uniform(-0.3, 0.3, 45)
        arrays["left.transl"][k] = [0.1 * k / t, 0.0, 0.3]
        arrays["left.mask"][k] = 1
    if right_sent:
        arrays.update({name.replace("left", "right"): np.zeros_like(value) for name, value in arrays.items()})
    return arrays


def test_a_hand_left_to_the_engine_is_not_said_to_follow_paths(shipped):
    """One hand keyed at both ends, the other sent without keys (the engine makes it): where the made hand went
    into the keyed one, the note told the artist to move wrist paths they had never sent (a review found it; the
    shipped model, which makes this motion, not the module's tiny one). With the other hand not sent (a scene of
    one hand: the add-on sends the hands its scene has) the same motion is made, yet there is no other hand to be
    in: it was said all the same, "The hands still go ... into each other", of a hand the scene does not have."""
    params = {"engine": "learned", "fps": 1000, "smoothing": 10, "variation": 0.01}
    with shipped.client() as client:
        result = client.run("motion.inbetween", params, one_hand_keyed(), timeout=300)
        alone = client.run("motion.inbetween", params, one_hand_keyed(right_sent=False), timeout=300)
    warning = result.data.get("warning", "")
    assert "wrist keys or paths" not in warning, warning
    assert warning.startswith("The hands still go ") and "Regenerate for another take" in warning, warning
    assert "warning" not in alone.data, alone.data
    assert set(clip_of(alone).hands) == {"left", "right"}  # (the result's format: both hands, the add-on keys its own)


def test_hands_left_in_each_other_are_said_of_every_sample(shipped):
    """With several samples the note measured the first only, while the add-on keys any (Keyed Sample): a later
    sample's made hand stayed in the keyed one and nothing was said (motion_v5: sample 1 8 mm in, the first clear).
    Now the note names every sample deeper than ``OVERLAP_SAID`` and no other, each sample's depth measured here
    again from the returned ``samples.<side>`` arrays (whichever checkpoint ships: the test asks only that some
    sample after the first goes in, which is the case the note missed)."""
    from handforge.engines.motion.jobs import OVERLAP_SAID
    from handforge.engines.motion.overlap import frame_depths
    from handforge.hands import load_hand_model

    with shipped.client() as client:
        result = client.run("motion.inbetween", {"fps": 1000, "seed": 3, "num_samples": 4}, one_hand_keyed(),
                            timeout=300)
    warning = result.data.get("warning", "")
    hands = load_hand_model("open")
    samples = {side: result.arrays[f"samples.{side}"].astype(np.float64) for side in ("left", "right")}
    depths = []
    for i in range(4):
        values = {"global_orient": np.stack([samples[s][i, :, :3] for s in ("left", "right")], 1),
                  "hand_pose": np.stack([samples[s][i, :, 3:48] for s in ("left", "right")], 1),
                  "transl": np.stack([samples[s][i, :, 48:] for s in ("left", "right")], 1)}
        depths.append(float(frame_depths(hands, np.zeros((2, 10)), values).max(initial=0.0)))
    # (the samples come back as float32, measured here again: a sample within half a millimetre of the threshold
    # may fall on either side of it, and is asked only to be said right if named)
    deep = [i for i, d in enumerate(depths) if d > OVERLAP_SAID + 5e-4]
    clear = [i for i, d in enumerate(depths) if d < OVERLAP_SAID - 5e-4]
    assert any(i > 0 for i in deep), f"no sample after the first goes in here ({depths}): the case is not made"
    named = {int(i): int(mm) for i, mm in re.findall(r"sample (\d+): (\d+) mm", warning)}
    assert warning.startswith("The hands still go into each other in places Keep Apart did not clear (sample "), \
        warning
    assert set(deep) <= set(named) and not set(clear) & set(named), (warning, depths)
    for i in named:
        assert abs(named[i] - depths[i] * 1000) <= 1.0, (warning, depths)


def test_trajectory_and_generate(server):
    path = np.stack([np.linspace(-0.2, -0.05, FRAMES), np.zeros(FRAMES), np.linspace(0, 0.1, FRAMES)], 1)
    with server.client() as client:
        result = client.run("motion.trajectory", {"steps": 4}, {"left.transl": path.astype(np.float32)}, timeout=120)
        clip = clip_of(result)
        np.testing.assert_array_equal(clip.hands["left"].transl, path.astype(np.float32))
        assert np.isfinite(clip.hands["right"].hand_pose).all()
        made = client.run("motion.generate", {"num_frames": 25, "steps": 3, "engine": "learned"}, {}, timeout=120)
    assert clip_of(made).num_frames == 25 and made.data["engine"] == "learned"
    # the model runs on its own frames (30 fps): a range is counted at that rate, not in the scene's frames
    with server.client() as client, pytest.raises(JobFailed) as long:
        client.run("motion.generate", {"num_frames": 410, "fps": 24.0, "steps": 1}, {}, timeout=60)
    assert long.value.code == "invalid_params"
    assert ("410 frames at 24 fps (17.04 s) is longer than the model's 512 frames at 30 fps (17.03 s)"
            in long.value.message), long.value.message
    assert "generate at most 409 frames at a time at 24 fps, or use the spline engine" in long.value.hint
    with server.client() as client:  # the most it said: 511 of the model's frames
        made = client.run("motion.generate", {"num_frames": 409, "fps": 24.0, "steps": 1}, {}, timeout=120)
    assert clip_of(made).num_frames == 409 and clip_of(made).fps == 24.0 and made.data["engine"] == "learned"


def test_a_range_longer_than_the_model_takes_is_refused_before_the_job_is_queued(server):
    # before: accepted, then refused once the job had its turn and had loaded the model
    with server.client() as client:
        generate = client.submit("motion.generate", {"num_frames": 410, "fps": 24.0, "steps": 1})
        inbetween = client.submit("motion.inbetween", {"fps": 1.0, "steps": 1}, keys())  # 29 s of keys
        outcomes = generate.wait(60), inbetween.wait(60)
    for outcome, field in zip(outcomes, ("params.num_frames", "arrays")):
        assert isinstance(outcome, Error) and outcome.code == "invalid_params", outcome
        assert outcome.field == field and " is longer than the model's 512 frames at 30 fps" in outcome.message
    assert outcomes[0].message.startswith("params.num_frames: 410 frames at 24 fps (17.04 s)")
    assert generate.position is None and inbetween.position is None  # never accepted
    with server.client() as client:  # the spline engine takes the kind's 512 frames at any rate (the hint said "any
        # length", and 513 is refused by the schema whatever the engine)
        assert client.run("motion.generate", {"num_frames": 512, "fps": 24.0, "engine": "spline"}, {},
                          timeout=120).data["engine"] == "spline"
        refused = client.submit("motion.generate", {"num_frames": 513, "fps": 24.0, "engine": "spline"}, {}).wait(60)
        assert isinstance(refused, Error) and refused.field == "params.num_frames", refused


def test_a_job_that_cannot_finish_in_time_fails_as_soon_as_its_pace_says_so(server):
    """1000 steps of 8 samples of 512 frames, to finish in 20 s: it ran to its limit before (600 s for the kind's), its device
    held all along; now it fails after a few steps, saying how long the whole would take."""
    started = time.monotonic()
    with server.client() as client, pytest.raises(JobFailed) as late:
        client.run("motion.generate", {"num_frames": 512, "steps": 1000, "num_samples": 8}, {}, timeout=20.0)
    assert late.value.code == "timeout" and "at this pace its 1000 denoising steps end about" in late.value.message
    assert time.monotonic() - started < 20.0


def test_a_long_job_cancels(server):
    with server.client() as client:
        job = client.submit("motion.inbetween", {"steps": 1000}, keys())
        deadline = time.monotonic() + 60
        while job.fraction == 0.0 and time.monotonic() < deadline:
            client.poll(0.2)
        job.cancel()
        assert isinstance(job.wait(60), Cancelled)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update({"left.mask": np.zeros((FRAMES, PARTS), np.uint8),
                         "right.mask": np.zeros((FRAMES, PARTS), np.uint8)}), "keys no frame"),
    (lambda a: a.update({"left.mask": np.full((FRAMES, PARTS), 2, np.uint8)}), "left.mask"),
    (lambda a: a.update({"right.transl": a["right.transl"][:-1]}), "frames"),
    (lambda a: a.pop("left.hand_pose"), "left.hand_pose"),
    (lambda a: a["left.transl"].__setitem__((0, 0), np.nan), "left.transl"),
])
def test_bad_inputs_are_refused_with_what_to_fix(server, change, message):
    arrays = keys()
    change(arrays)
    with server.client() as client, pytest.raises(JobFailed, match=message):
        client.run("motion.inbetween", {"engine": "spline"}, arrays, timeout=60)



def test_the_learned_engines_settings_asked_of_the_spline_engine_are_refused(server):
    """The spline engine reads no steps, variation, smoothing or guidance: asked of it they were ignored,
    unsaid; now refused naming them. Each kind's own defaults sent as they are still run."""
    with server.client() as client:
        for params, named in (({"steps": 6}, "params.steps"), ({"variation": 0.5, "smoothing": 2.0}, "params.variation"),
                              ({"penetration_guidance": "on"}, "params.penetration_guidance")):
            with pytest.raises(JobFailed) as info:
                client.run("motion.inbetween", {"engine": "spline", **params}, keys(), timeout=60)
            assert info.value.code == "invalid_params" and info.value.field == named, info.value
            one = len(params) == 1  # (one setting: "steps only applies …, or leave it out")
            assert f"only appl{'ies' if one else 'y'} to engine 'learned'" in info.value.message
            assert info.value.hint == f"set engine to 'learned', or leave {'it' if one else 'them'} out"
        defaults = {"steps": 20, "variation": 0.8, "smoothing": 1.0, "penetration_guidance": "repair"}
        assert client.run("motion.inbetween", {"engine": "spline", **defaults}, keys(), timeout=60)
        with pytest.raises(JobFailed, match="penetration_guidance only applies"):  # another kind, its own default
            client.run("motion.generate", {"engine": "spline", "penetration_guidance": "repair"}, {}, timeout=60)

def test_a_hand_model_not_available_here_is_refused_before_the_learned_engine_runs(server):
    """The learned engine runs the hand model (its guidance): refused at submit, with what to set; the
    spline engine needs none and runs."""
    with server.client() as client:
        with pytest.raises(JobFailed) as info:
            client.run("motion.inbetween", {"engine": "learned", "hand_model": "mano"}, keys(), timeout=60)
        assert info.value.code == "missing_weights" and "hand model 'mano' is not available" in info.value.message
        assert info.value.field == "params.hand_model"  # (was "")
        assert "HANDFORGE_MANO_DIR" in info.value.hint  # what to set
        assert client.run("motion.inbetween", {"engine": "spline", "hand_model": "mano"}, keys(), timeout=60)


def test_missing_checkpoint_falls_back_to_the_spline_engine(tmp_path):
    env = {"HANDFORGE_MOTION_CHECKPOINT": str(tmp_path / "none"),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as srv, srv.client() as client:
        result = client.run("motion.inbetween", {"engine": "learned"}, keys(), timeout=60)
        crossed = client.run("motion.inbetween", {"engine": "learned"}, flat_hands_trading_places(0.2, -0.2),
                             timeout=60)
    assert result.data["engine"] == "spline" and "no motion checkpoint" in result.data["warning"]
    assert_keys_kept(clip_of(result), keys())
    # the fallback's spline motion is measured as the spline engine's is (hands carried through each other, unsaid)
    assert "The spline motion takes the hands 20 mm into each other on frames 2 to 14" in crossed.data["warning"], \
        crossed.data


def test_a_damaged_checkpoint_falls_back_to_the_spline_engine_naming_the_file_and_the_server_stays_up(tmp_path):
    """A hand-edited config.json of max_frames 0 loaded, then every learned job was refused as "longer than the
    model's 0 frames"; the load refuses it now, and the job says why it ran the spline engine. Mended, the same
    server loads the model again; a truncated weights file is named as well."""
    torch.manual_seed(0)
    folder = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, **UNIT_STATISTICS),
                        tmp_path / "tiny")
    config_file, weights = folder / "config.json", folder / "diffusion_pytorch_model.safetensors"
    saved = config_file.read_text()
    config_file.write_text(saved.replace('"max_frames": 512', '"max_frames": 0'))
    env = {"HANDFORGE_MOTION_CHECKPOINT": str(folder),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    params = {"engine": "learned", "steps": 2}
    with running_server("--devices", "cpu", env=env) as srv, srv.client() as client:
        result = client.run("motion.inbetween", params, keys(), timeout=60)
        assert result.data["engine"] == "spline", result.data
        assert f"{folder}: cannot load the MotionDenoiser checkpoint: its config.json sets max_frames to 0, not a " \
            "whole number of at least 2" in result.data["warning"]
        assert_keys_kept(clip_of(result), keys())
        config_file.write_text(saved)
        assert client.run("motion.inbetween", params, keys(), timeout=60).data["engine"] == "learned"
        weights.write_bytes(weights.read_bytes()[:100])
        result = client.run("motion.inbetween", params, keys(), timeout=60)
        assert result.data["engine"] == "spline" and f"{weights}: not a readable safetensors weights file" in \
            result.data["warning"]


def test_penetration_guidance_and_variation_defaults_per_job_kind():
    """In-betweening repairs only the motions that pass a hand through the other and starts from its keys'
    in-between noised 80 % of the way; wrist paths and generation guide whenever the wrists are close and
    start from noise (README 'Motion')."""
    from handforge.server.builtin_jobs import default_registry

    registry = default_registry()
    kinds = ("motion.inbetween", "motion.trajectory", "motion.generate")
    defaults = {kind: (registry.kind(kind).schema.params["penetration_guidance"].default,
                       registry.kind(kind).schema.params["variation"].default) for kind in kinds}
    assert defaults == {"motion.inbetween": ("repair", 0.8), "motion.trajectory": ("auto", 1.0),
                        "motion.generate": ("auto", 1.0)}


def _generate_params(steps: int) -> dict:
    """motion.generate's params, validated as the schema would leave them: 10 frames, learned engine."""
    return {"engine": "learned", "hand_model": "open", "fps": 30.0, "seed": 0, "first_frame": 0, "num_samples": 1,
            "steps": steps, "variation": 1.0, "smoothing": 1.0, "penetration_guidance": "off", "num_frames": 10}


def test_more_steps_than_the_checkpoint_was_trained_with_is_invalid_params(tmp_path, monkeypatch):
    """The schema allows 1000 steps (the shipped model's diffusion steps); a checkpoint trained with fewer
    ended the job ``internal`` (diffusers' ValueError from set_timesteps) instead of saying the limit."""
    from handforge.engines.motion import jobs
    from handforge.server.jobs import JobContext, JobError

    torch.manual_seed(0)
    folder = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, num_train_timesteps=50,
                                       **UNIT_STATISTICS), tmp_path / "tiny")
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))
    ctx = JobContext("j", "motion.generate", lambda fraction, message, previews: None)
    params = _generate_params(steps=100)
    with pytest.raises(JobError) as failed:
        jobs.generate(ctx, params, {})
    assert failed.value.code == "invalid_params" and "exceeds the 50 diffusion steps" in failed.value.message
    assert "at most 50 steps" in failed.value.hint
    assert jobs.generate(ctx, {**params, "steps": 50}, {}).data["engine"] == "learned"  # the limit itself runs


def test_more_steps_than_the_checkpoint_was_trained_with_are_refused_before_the_job_is_queued(tmp_path, monkeypatch):
    # before: the request passed its check, and the job said it when its turn came
    from handforge.engines.motion import jobs
    from handforge_shared.protocol import ProtocolError

    folder = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, num_train_timesteps=50,
                                       **UNIT_STATISTICS), tmp_path / "tiny")
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))
    with pytest.raises(ProtocolError) as refused:
        jobs._check_generate(_generate_params(steps=100), {})
    assert refused.value.field == "params.steps" and "exceeds the 50 diffusion steps" in refused.value.message
    assert refused.value.hint == "ask for at most 50 steps"
    jobs._check_generate(_generate_params(steps=50), {})  # the limit itself is taken
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(tmp_path / "nonexistent"))  # falls back to the spline
    jobs._check_generate(_generate_params(steps=100), {})


@pytest.mark.parametrize("damage", [None, "diverged", "fewer layers"])
def test_the_submit_check_refuses_exactly_what_the_job_refuses(tmp_path, monkeypatch, damage):
    """A checkpoint whose weights hold NaN (a diverged training run), or whose config.json sets fewer layers than
    its weights hold, passed the submit check as a model of 50 diffusion steps and 8 frames, which then refused 100
    steps and 10 frames; the job, whose load refuses such a checkpoint, would have served them with the spline
    engine. The engine's note said nothing of it either."""
    from handforge.engines.motion import jobs
    from handforge.server.jobs import JobContext, JobError
    from handforge_shared.protocol import ProtocolError

    torch.manual_seed(0)
    net = MotionDenoiser(d_model=32, num_layers=2, num_heads=2, ff_size=64, num_train_timesteps=50, max_frames=8,
                         **UNIT_STATISTICS)
    if damage == "diverged":
        with torch.no_grad():
            net.output.weight[0, 0] = float("nan")
    folder = save_model(net, tmp_path / "tiny")
    if damage == "fewer layers":
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "num_layers": 1}))
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))
    ctx = JobContext("j", "motion.generate", lambda fraction, message, previews: None)
    outcomes = []
    for changes in ({"steps": 100}, {"num_frames": 10}, {"steps": 2, "num_frames": 8}):
        params = {**_generate_params(steps=2), "num_frames": 8, **changes}
        try:
            jobs._check_generate(params, {})
            at_submit = "accepted"
        except ProtocolError as exc:
            at_submit = f"refused: {exc.message}"
        try:
            by_job = f"served by {jobs.generate(ctx, params, {}).data['engine']}"
        except JobError as exc:
            by_job = f"refused: {exc.message}"
        outcomes.append((at_submit, by_job))
    for at_submit, by_job in outcomes:  # refused at submit as by the job (the submit's names the field), or served
        assert (at_submit.startswith("refused: ") and by_job.startswith("refused: ") and by_job[9:] in at_submit) \
            or (at_submit, by_job[:9]) == ("accepted", "served by"), outcomes
    engines = [by_job for _, by_job in outcomes]
    if damage:
        assert engines == ["served by spline"] * 3, outcomes
        assert {"diverged": "holds weights that are not finite (NaN or infinity) in output.weight",
                "fewer layers": "sets num_layers to 1, but its weights file holds 2 (encoder.layers.0-1), so it does "
                                "not describe these weights; set it to 2"}[damage] in jobs._note()
    else:
        assert [e.split(":")[0] for e in engines] == ["refused", "refused", "served by learned"], outcomes
        assert jobs._note() == ""


def test_a_checkpoint_of_another_frame_size_falls_back_to_the_spline_engine_saying_why(tmp_path, monkeypatch):
    """A MotionDenoiser of another frame_dim (as the unit tests build) loads as a checkpoint; the job then
    ended ``internal`` with a tensor-size RuntimeError from sampling. It is no motion model: the job runs the
    spline engine and says so, as for a missing checkpoint (`eval motion` refuses it: test_motion_model.py)."""
    from handforge.engines.motion import jobs
    from handforge.server.jobs import JobContext

    folder = save_model(MotionDenoiser(frame_dim=10, d_model=16, num_layers=1, num_heads=2, ff_size=32),
                        tmp_path / "small")
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))
    ctx = JobContext("j", "motion.generate", lambda fraction, message, previews: None)
    result = jobs.generate(ctx, _generate_params(steps=4), {})
    assert result.data["engine"] == "spline"
    assert "10 channels per frame, not the motion representation's 198" in result.data["warning"]
    # the setting to fix, and what ran instead (it read as a bare path and its problem, whose setting unsaid)
    assert "the learned model cannot be used (motion.checkpoint: " in result.data["warning"], result.data
    assert "the spline engine made this motion" in result.data["warning"], result.data


@pytest.mark.parametrize("kind, arrays, field", [
    # a hand's keys sent without their mask: was "arrays.right.mask: no keys given"
    ("motion.inbetween", lambda: {k: v for k, v in keys().items() if k.startswith("left.") and k != "left.mask"},
     "arrays.left.mask"),
    # a left wrist's rotations without their path: was "arrays.right.transl: no wrist path given"
    ("motion.trajectory", lambda: {"left.global_orient": np.zeros((FRAMES, 3), np.float32)}, "arrays.left.transl"),
])
def test_a_hand_sent_incomplete_is_told_the_array_it_lacks(kind, arrays, field):
    from handforge.server.builtin_jobs import default_registry
    from handforge_shared.protocol import ProtocolError

    job = default_registry().kind(kind)
    sent = arrays()
    params = job.schema.validate({"engine": "spline"}, sent)
    with pytest.raises(ProtocolError) as refused:
        job.check(params, sent)
    assert refused.value.field == field and "is required with" in refused.value.message, refused.value.message


def test_more_samples_leave_the_first_one_as_it_was(server):
    """The first sample is the result's clip; asking for more must not change it. One (N, T, C) noise draw made
    it depend on N at 20 frames (torch's CPU normal fill redraws the last 16 values of a draw)."""
    with server.client() as client:
        one, three = (client.run("motion.generate", {"num_frames": 20, "steps": 3, "seed": 7, "num_samples": n}, {},
                                 timeout=120) for n in (1, 3))
    for side in ("left", "right"):
        for name in ("global_orient", "hand_pose", "transl"):
            # (to float rounding: a batch of 3 sums in another order than a batch of 1; it was 0.13 rad apart)
            np.testing.assert_allclose(one.arrays[f"{side}.{name}"], three.arrays[f"{side}.{name}"], atol=1e-5)
        assert not np.array_equal(three.arrays[f"samples.{side}"][0], three.arrays[f"samples.{side}"][1])


def test_a_checkpoint_replaced_between_its_checks_at_submit_leaves_the_job_to_decide(tmp_path, monkeypatch):
    # its config checked, then unreadable when read for the model's limits (a training run writing it just then):
    # an internal error at submit ("the backend failed to handle this submit"); now the job decides, as for a
    # checkpoint it falls back from
    from handforge.engines import checkpoints
    from handforge.engines.motion import jobs

    folder = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, num_train_timesteps=50,
                                       **UNIT_STATISTICS), tmp_path / "tiny")
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))

    def replaced(folder, spec):
        raise checkpoints.CheckpointError(f"{folder}/config.json: not a readable model config")

    monkeypatch.setattr(checkpoints, "saved_config", replaced)
    jobs._check_generate(_generate_params(steps=100), {})


def test_the_clip_records_the_settings_that_made_it(server):
    """The clip's extra.motion_engine: a spline motion recorded the learned engine's steps and variation, which it
    never used, and a learned one left out its smoothing, guidance and checkpoint, which shape it."""
    with server.client() as client:
        spline = clip_of(client.run("motion.inbetween", {"engine": "spline", "seed": 4}, keys(), timeout=60))
        learned = clip_of(client.run("motion.inbetween", {"steps": 3, "seed": 4, "smoothing": 2.0,
                                                          "penetration_guidance": "off"}, keys(), timeout=120))
    assert spline.extra["motion_engine"] == {"engine": "spline"}
    assert learned.extra["motion_engine"] == {"engine": "learned", "checkpoint": "tiny", "seed": 4, "steps": 3,
                                              "variation": 0.8, "smoothing": 2.0, "penetration_guidance": "off"}


def test_the_spline_engines_progress_says_what_it_does(server):
    """Its one progress update read 'spline' (the stage's name), shown as such in Blender's status bar; measuring
    where its hands go into each other follows, said so (the wrists within reach on all 30 frames)."""
    events = []
    with server.client() as client:
        client.run("motion.inbetween", {"engine": "spline"}, keys(), timeout=60, on_progress=events.append)
    assert [(e.fraction, e.message) for e in events] == [
        (0.1, "spline curves through the keys"),
        (1.0, "measuring where the hands go into each other (30/30 frames)")], events


def test_a_frame_keying_only_the_wrist_translation_is_a_key(server):
    """PART_DOC: a mask row's columns say which parts of that frame are keys, column 16 the wrist translation; a
    row with any column set keys that frame. A right hand whose mask sets only column 16 (on frames 0 and 29, no
    other column anywhere) keys two frames: the request is accepted, and the job keeps those wrist positions."""
    from handforge.server.builtin_jobs import default_registry

    arrays = {k: v for k, v in keyed_ends(FRAMES).items() if k.startswith("right.")}  # the right hand alone
    arrays["right.mask"][:] = 0
    arrays["right.mask"][[0, FRAMES - 1], PARTS - 1] = 1  # the wrist translation, nothing else
    job = default_registry().kind("motion.inbetween")
    params = job.schema.validate({"engine": "spline"}, arrays)
    job.check(params, arrays)  # accepted (no "keys no frame (all zeros)")
    with server.client() as client:
        result = client.run("motion.inbetween", {"engine": "spline"}, arrays, timeout=60)
    transl = clip_of(result).hands["right"].transl
    np.testing.assert_array_equal(transl[[0, FRAMES - 1]], arrays["right.transl"][[0, FRAMES - 1]])


@pytest.mark.parametrize("fps", [1.0, 12.0, 24.0, 25.0, 29.97, 60.0, 120.0])
def test_the_hint_names_the_most_frames_the_model_takes(tmp_path, monkeypatch, fps):
    """'generate at most N frames': N is the largest frame count whose span the model takes, i.e. the largest N
    with retime.model_frames(N, fps, model fps) <= the model's max_frames (found here by counting up); N is taken
    and N + 1 refused with that hint. A model of 64 frames at 30 fps: at 24 fps N = 51 (50 gaps of 1/24 s span
    62.5 model gaps: 64 model frames), at 1 fps N = 3, at 60 fps N = 127."""
    from handforge.engines.motion import jobs, retime
    from handforge_shared.protocol import ProtocolError

    folder = save_model(MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64, max_frames=64,
                                       **UNIT_STATISTICS), tmp_path / "tiny")
    monkeypatch.setenv("HANDFORGE_MOTION_CHECKPOINT", str(folder))
    most = 2
    while retime.model_frames(most + 1, fps, 30.0) <= 64:
        most += 1
    assert {1.0: 3, 24.0: 51, 60.0: 127}.get(fps, most) == most  # the counted N, by hand where worked out above
    params = {**_generate_params(steps=1), "fps": fps}
    jobs._check_generate({**params, "num_frames": most}, {})  # the most it says is taken
    with pytest.raises(ProtocolError) as refused:
        jobs._check_generate({**params, "num_frames": most + 1}, {})
    assert refused.value.field == "params.num_frames"
    assert refused.value.hint == (f"generate at most {most} frames at a time at {fps:g} fps, or use the spline "
                                  "engine (up to 512 frames at any frame rate)")


def test_a_job_cancels_while_it_checks_where_the_hands_overlap(server):
    """After denoising, the learned engine measures where every sample's hands overlap (8 samples of 512 frames take
    tens of seconds on a CPU): it says so, and a cancel stops the job there. Mutation testing: that stage's progress
    (the cancel point) left out, every motion test passed."""
    with server.client() as client:
        job = client.submit("motion.inbetween", {"steps": 1, "num_samples": 8}, keyed_ends(512))
        deadline = time.monotonic() + 120
        while "checking where the hands overlap" not in job.message and not job.done and time.monotonic() < deadline:
            client.poll(0.05)
        assert "checking where the hands overlap" in job.message, (job.message, job.outcome)
        job.cancel()
        assert isinstance(job.wait(60), Cancelled), job.outcome
