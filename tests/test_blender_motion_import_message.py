"""What a motion keyed by Run Job's import says of keys that do not land on whole frames."""

from __future__ import annotations

import numpy as np
import pytest

from handforge_shared.poses import HandPose, MotionClip
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]

FRAMES = 10


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("import_message")
    pose = HandPose.zeros((FRAMES,)).replace(hand_pose=np.full((FRAMES, 45), 0.1))
    args = {}
    for name, fps in (("same_rate", 24.0), ("retimed", 30.0), ("doubled", 48.0)):
        args[name] = str(MotionClip(hands={"right": pose}, fps=fps).save(work / f"{name}.npz"))
    return run_blender("motion_import_message_session.py", addon_zip, work / "blender", args)


def test_run_jobs_motion_says_why_its_keys_fall_between_whole_frames(session):
    # before: "10 frames of motion keyed at 10-17.2", the fractional frames unexplained (Import Motion said why)
    session.no_error("messages")
    said = session["messages"]
    assert said["same_rate"].startswith(f"{FRAMES} frames of motion keyed at 10-19;"), said
    assert said["same_rate_subframe"].startswith(
        f"{FRAMES} frames of motion keyed at 10.5-19.5 (started at frame 10.5: its keys fall between whole frames)"), said
    assert said["retimed"].startswith(f"{FRAMES} frames of motion keyed at 10-17.2 (a 30 fps clip retimed to the "
                                      "scene's 24 fps: its keys fall between whole frames)"), said
    assert said["doubled"].startswith(f"{FRAMES} frames of motion keyed at 10-14.5 (a 48 fps clip retimed to the "
                                      "scene's 24 fps: its keys fall between whole frames)"), said


def test_a_frame_left_out_beside_an_earlier_motions_key_is_said_so_not_called_the_artists(session):
    # before: "right hand: your keys were kept at frame 17.2": no key of the artist's there, the frame named the
    # clip's own, left out beside the earlier (10.5-19.5) import's generated key at 17.5
    said = session["messages"]
    for name, earlier, left_out in (("retimed", "17.5", "17.2"), ("doubled", "14.8", "14.5")):
        assert "your keys were kept" not in said[name], said[name]
        assert (f"right hand: an earlier motion's keys at frame {earlier}, just outside this clip's frames, were kept, "
                f"so the clip was not keyed at frame {left_out}, within half a frame of them (delete those keys first "
                "to key the whole clip)") in said[name], said[name]


def test_import_motion_still_says_a_retimed_clips_keys_fall_between_frames(session):
    result, printed = session["messages"]["operator_retimed"]
    assert result == ["FINISHED"]
    assert ("at frames 100-107.2 (a 30 fps clip retimed to the scene's 24 fps: its keys fall between whole frames)"
            in printed), printed
