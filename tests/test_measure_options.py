"""`handforge measure`'s options: an empty --reference named as such; the feature networks loaded only for the
metrics that use them."""

from __future__ import annotations

import json

from handforge.cli import main
from handforge_shared.poses import MotionClip, TwoHandPose, side_by_side


def test_an_empty_reference_path_is_said_as_the_reference(tmp_path, monkeypatch, capsys):
    """It said "the clips folder is an empty path: give the folder of motion clips", though --clips was given
    and measurable: the user looked for the fault in --clips."""
    monkeypatch.chdir(tmp_path)
    MotionClip.from_frames([side_by_side()] * 4).save(tmp_path / "clips" / "a.npz")
    assert main(["measure", "--clips", str(tmp_path / "clips"), "--reference", "", "--frames", "2"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "handforge measure: --reference is an empty path: give the folder of reference clips (.npz), or leave "
        "--reference out"]


def _clips(folder):
    for name in ("a", "b"):
        MotionClip.from_frames([side_by_side()] * 5).save(folder / f"{name}.npz")
    return folder


def test_metrics_without_features_measure_with_a_broken_features_setting(tmp_path, monkeypatch, capsys):
    """With evaluation.features pointing at a checkpoint that is not there (a drive not mounted),
    `--metrics joint_limits,smoothness` was refused ("no such feature checkpoint"), though neither uses one."""
    clips = _clips(tmp_path / "clips")
    monkeypatch.setenv("HANDFORGE_FEATURES", str(tmp_path / "gone"))
    assert main(["measure", "--clips", str(clips), "--frames", "2", "--metrics", "joint_limits,smoothness,contact"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {"joint_limits", "smoothness", "contact"} <= set(report) and "features" not in report
    # a metric that uses them still says the checkpoint is missing
    assert main(["measure", "--clips", str(clips), "--frames", "2", "--metrics", "diversity_frames"]) == 2
    assert "no such feature checkpoint" in capsys.readouterr().err


def test_a_named_features_checkpoint_is_still_checked(tmp_path, capsys):
    """--features given is checked (and recorded) whatever the metrics."""
    clips = _clips(tmp_path / "clips")
    (tmp_path / "gone").mkdir()
    assert main(["measure", "--clips", str(clips), "--frames", "2", "--metrics", "joint_limits",
                 "--features", str(tmp_path / "gone")]) == 2
    assert "feature checkpoint" in capsys.readouterr().err


def test_a_clip_with_a_hand_far_from_the_origin_is_named(tmp_path, capsys):
    """The meshes' check said "a hand's vertices lie 1e+30 m from the origin" and named no clip of the folder."""
    _clips(tmp_path / "clips")
    near = side_by_side()
    far = TwoHandPose(left=near.left, right=near.right.replace(transl=near.right.transl + 1e30))
    MotionClip.from_frames([side_by_side()] * 4 + [far]).save(tmp_path / "clips" / "c.npz")
    assert main(["measure", "--clips", str(tmp_path / "clips"), "--frames", "5", "--metrics", "penetration"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'clips' / 'c.npz'} places a hand 1.73205e+30 m from the origin (frame 4)" in err, err
