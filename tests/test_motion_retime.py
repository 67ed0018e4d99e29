"""The learned motion engine at the scene's frame rate: it runs on its model's frames over the same time and
the result is resampled at the scene's (before: generated frame for frame, so at Blender's default 24 fps
every learned motion played at 0.8× the speed the model learnt, and at 60 fps at half)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from handforge.engines.checkpoints import load_model
from handforge.engines.motion import representation as rep
from handforge.engines.motion import retime
from handforge.engines.motion.model import MotionDenoiser
from handforge.engines.motion.observation import Observation
from handforge.engines.motion.pipeline import MotionPipeline
from handforge.engines.motion.settings import SHIPPED_CHECKPOINT
from handforge.engines.motion.synthesis import synthesize
from handforge.hands import load_hand_model
from handforge_shared import pose_library


@pytest.fixture(scope="module")
def pipe():
    return MotionPipeline(load_model(MotionDenoiser, str(SHIPPED_CHECKPOINT)), load_hand_model("open"))


def observation(frames: int, fps: float, keyed: tuple[int, ...] = ()) -> Observation:
    """Both hands relaxed, the right one curled into a fist at the last keyed frame."""
    go, hand_pose, transl = (np.zeros((frames, 2, n)) for n in (3, 45, 3))
    for h, side in enumerate(rep.HAND_AXIS):
        pose = pose_library.get("relaxed", side=side)
        go[:, h], hand_pose[:, h] = pose.global_orient, pose.hand_pose
        transl[:, h] = pose.transl + [0.25 * (2 * h - 1), 0, 0]
    if keyed:
        hand_pose[keyed[-1], 1] = pose_library.get("fist", side="right").hand_pose
    mask = np.zeros((frames, 2, rep.PARTS), bool)
    mask[list(keyed)] = True
    return Observation(go, hand_pose, transl, mask, np.zeros((2, 10)), fps=fps)


def test_the_shipped_model_learnt_at_30_fps_and_counts_its_frames_at_that_rate(pipe):
    assert pipe.model.config.fps == 30.0  # (its config predates the setting: the default, the corpus's rate)
    assert retime.model_frames(61, 60.0, 30.0) == 31 and retime.model_frames(25, 24.0, 30.0) == 31
    assert retime.model_frames(26, 24.0, 30.0) == 33  # 31.25 model frames: the span covered, not cut short
    assert retime.model_frames(40, 30.0, 30.0) == 40


def test_keys_land_on_the_nearest_model_frame_the_nearer_in_time_where_two_meet():
    scene = observation(61, 60.0, keyed=(0, 1, 31, 60))
    model = retime.at_model_rate(scene, 30.0)
    assert model.num_frames == 31 and model.fps == 30.0
    assert np.flatnonzero(model.part_mask.any(axis=(1, 2))).tolist() == [0, 16, 30]  # scene 1 (0.5) lost to 0
    assert np.array_equal(model.hand_pose[30], scene.hand_pose[60])
    assert np.array_equal(model.hand_pose[16], scene.hand_pose[31])  # 15.5 rounds to 16 (numpy: to even)
    assert retime.at_model_rate(observation(40, 30.0, keyed=(0, 39)), 30.0).num_frames == 40
    # a scene of one hand stays one on the model's frames (else its hand was kept apart from the generated other)
    one = replace(scene, part_mask=scene.part_mask & np.array([False, True])[:, None], scene_hands=("right",))
    assert retime.at_model_rate(one, 30.0).scene_hands == ("right",)


def test_resampled_rotations_follow_their_arc_and_translations_their_line():
    """Against scipy's Slerp: rig values made on 31 model frames, read at a 24 fps scene's 25 frames."""
    rng = np.random.default_rng(0)
    model_frames, scene = 31, observation(25, 24.0)
    rotations = Rotation.from_rotvec(rng.normal(size=(model_frames, 2 * 16, 3)).reshape(-1, 3) * 0.8)
    rotvec = rotations.as_rotvec().reshape(model_frames, 2, 16, 3)
    transl = rng.normal(size=(model_frames, 2, 3))
    values = {"global_orient": rotvec[:, :, 0], "hand_pose": rotvec[:, :, 1:].reshape(model_frames, 2, 45),
              "transl": transl}
    out = retime.at_scene_rate(values, scene, 30.0)
    times = np.arange(25) * 30.0 / 24.0
    assert out["transl"].shape == (25, 2, 3) and out["hand_pose"].shape == (25, 2, 45)
    for h in range(2):
        for joint in range(16):
            track = Rotation.from_rotvec(rotvec[:, h, joint])
            expected = Slerp(np.arange(model_frames), track)(times)
            got = Rotation.from_rotvec(out["global_orient"][:, h] if joint == 0 else
                                       out["hand_pose"][:, h, 3 * joint - 3:3 * joint])
            assert np.degrees((got * expected.inv()).magnitude()).max() < 1e-6
        for c in range(3):
            assert np.allclose(out["transl"][:, h, c], np.interp(times, np.arange(model_frames), transl[:, h, c]))
    on_model_frames = times == np.round(times)  # scene frames 0, 4, 8, ...: the model's values, bit for bit
    assert np.array_equal(out["hand_pose"][on_model_frames], values["hand_pose"][times[on_model_frames].astype(int)])


@pytest.mark.parametrize("fps, frames, step", [(60.0, 61, 2), (24.0, 25, 4)])
def test_one_second_is_the_same_motion_at_any_scene_frame_rate(pipe, fps, frames, step):
    """The same seed, keys and second of motion: the scene's frames on the model's frames are the 30 fps
    motion's (before: another, slower motion of 61 or 25 frames)."""
    model_step = {60.0: 1, 24.0: 5}[fps]
    for keyed in ((), (0, frames - 1)):  # generated, and in-betweened between two keys a second apart
        at_30 = synthesize(observation(31, 30.0, keyed=tuple(k * 30 // (frames - 1) for k in keyed)), "learned",
                           pipe, steps=4, seed=7)[0]
        at_fps = synthesize(observation(frames, fps, keyed=keyed), "learned", pipe, steps=4, seed=7)[0]
        assert at_fps.num_frames == frames and at_fps.fps == fps
        for side in rep.HAND_AXIS:
            for name in ("global_orient", "hand_pose", "transl"):
                scene = getattr(at_fps.hands[side], name)[::step]
                model = getattr(at_30.hands[side], name)[::model_step]
                assert np.allclose(scene, model, atol=1e-9), (fps, keyed, side, name)
        if keyed:  # the keys exact on their own scene frames
            assert np.array_equal(at_fps.hands["right"].hand_pose[-1], pose_library.get("fist", side="right").hand_pose)


def test_a_model_learns_the_frame_rate_of_its_clips_and_one_only():
    from types import SimpleNamespace

    from handforge.engines.motion.train import clips_fps
    from handforge.training.loop import TrainingError

    assert clips_fps([SimpleNamespace(fps=30.0), SimpleNamespace(fps=30)]) == 30.0
    with pytest.raises(TrainingError, match=r"the clips have 2 frame rates \(5, 30 fps\): train on clips of one"):
        clips_fps([SimpleNamespace(fps=30.0), SimpleNamespace(fps=5.0)])
    assert MotionDenoiser(d_model=8, num_layers=1, num_heads=2, ff_size=8, fps=60.0).config.fps == 60.0
    with pytest.raises(ValueError, match="fps must be a positive number"):
        MotionDenoiser(d_model=8, num_layers=1, num_heads=2, ff_size=8, fps=0.0)


def test_a_wrist_path_at_24_fps_is_a_path_on_every_model_frame():
    """A review found a 1 m/s path at 24 fps snapped to model frames: every fourth model frame without its key,
    the rest up to 8 mm off, so the model saw the wrist jerk between 1.25x and 0.625x its speed."""
    frames = 13
    scene = observation(frames, 24.0)
    transl = scene.transl.copy()
    transl[:, 1, 0] = np.arange(frames) / 24.0  # 1 m/s along x
    mask = np.zeros_like(scene.part_mask)
    mask[:, 1, rep.TRANSL_PART] = True
    path = Observation(scene.global_orient, scene.hand_pose, transl, mask, scene.betas, fps=24.0)
    model = retime.at_model_rate(path, 30.0)
    assert model.num_frames == 16 and model.part_mask[:, 1, rep.TRANSL_PART].all()
    assert np.allclose(model.transl[:, 1, 0], np.arange(16) / 30.0, atol=1e-12)  # on the path at its own time
    assert not model.part_mask[:, 0].any()  # the other hand free as it was
