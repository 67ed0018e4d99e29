"""The demo's motion step: the learned engine (shipped checkpoint) in-betweens two keyed two-hand
poses through the ``motion.inbetween`` handler and writes a clip that keeps the keys bit for bit."""

from __future__ import annotations

import numpy as np

from handforge.engines.motion.demo import KEYED, NUM_FRAMES, inbetween_keyed_poses, keyed_arrays
from handforge_shared import pose_library
from handforge_shared.poses import MotionClip


def test_demo_inbetween_runs_the_learned_engine_and_keeps_the_keys(tmp_path):
    # the demo's own 20 DDIM steps and the job's variation, 0.8 (from pure noise motion_v5 sometimes holds the
    # first pose for two thirds of the gap and closes late)
    report = inbetween_keyed_poses(tmp_path)
    assert report["engine"] == "learned" and not report["warning"]
    assert report["key_error"] == 0.0 and report["frames"] == NUM_FRAMES
    clip = MotionClip.load(report["path"])
    keys = keyed_arrays()
    for side in ("left", "right"):
        pose = clip.hands[side].hand_pose
        np.testing.assert_array_equal(pose[[0, -1]], keys[f"{side}.hand_pose"][[0, -1]].astype(np.float32))
        # the fingers travel from the first pose to the second, without jumps
        fist = pose_library.get(KEYED[1], side=side).hand_pose
        distance = np.linalg.norm(pose - fist, axis=1)
        assert distance[0] > 1.0 and distance[-1] < 1e-6
        assert 0.2 * distance[0] < distance[NUM_FRAMES // 2] < 0.8 * distance[0]
        assert np.abs(np.diff(distance)).max() < 0.2 * distance[0]


def test_demo_names_the_checkpoint_that_ran(tmp_path, monkeypatch, capsys):
    # a configured checkpoint was said to be the "shipped checkpoint" while the step loaded the user's
    import shutil

    from handforge.engines.motion import demo as motion_demo
    from handforge.engines.motion.settings import CHECKPOINT, SHIPPED_CHECKPOINT

    mine = tmp_path / "shipped_copy"  # (its name starting with "shipped": once read as the shipped one's words)
    shutil.copytree(SHIPPED_CHECKPOINT, mine)
    monkeypatch.setenv(CHECKPOINT.env, str(mine))
    motion_demo.demo(tmp_path / "out")
    line = capsys.readouterr().out
    assert "shipped checkpoint" not in line and f"(checkpoint {mine} (from ${CHECKPOINT.env}" in line, line
    monkeypatch.delenv(CHECKPOINT.env)
    motion_demo.demo(tmp_path / "out")
    line = capsys.readouterr().out
    assert f"shipped checkpoint {SHIPPED_CHECKPOINT.name}" in line, line


def test_demo_help_says_the_configured_checkpoints_are_used():
    from handforge.commands.demo import HELP

    assert "shipped defaults" not in HELP and "interaction.checkpoint" in HELP and "motion.checkpoint" in HELP
