"""handforge compare-hands: the open hand's keypoints beside MANO's (synthetic MANO files here)."""

from __future__ import annotations

import json

import numpy as np

from handforge.cli import main
from handforge.hands.mano import load_mano
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.skeleton import KEYPOINT_NAMES, keypoints_from_extended
from tests.support.synthetic_mano import synthetic_mano_dir  # noqa: F401 - fixture


def test_compare_hands_prints_both_models_keypoints_and_bone_ratios(synthetic_mano_dir, capsys):
    assert main(["compare-hands", "--model-dir", str(synthetic_mano_dir), "--side", "left", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["keypoints"]) == list(KEYPOINT_NAMES) and len(result["bones"]) == 20
    ours = keypoints_from_extended(load_open_hand_rig("left").rest_extended_joints())
    mano = keypoints_from_extended(load_mano(synthetic_mano_dir).rig("left").rest_extended_joints())
    i, p = KEYPOINT_NAMES.index("middle1"), KEYPOINT_NAMES.index("wrist")
    bone = result["bones"]["wrist-middle1"]
    assert bone["open_mm"] == round(np.linalg.norm(ours[i] - ours[p]) * 1000, 1)
    assert bone["mano_mm"] == round(np.linalg.norm(mano[i] - mano[p]) * 1000, 1)
    assert abs(bone["ratio"] - bone["open_mm"] / bone["mano_mm"]) < 2e-3
    assert result["keypoints"]["wrist"]["open_mm"] == [0.0, 0.0, 0.0]

    assert main(["compare-hands", "--model-dir", str(synthetic_mano_dir)]) == 0
    table = capsys.readouterr().out
    assert "thumb4" in table and "wrist-middle1" in table


def test_compare_hands_without_mano_files_says_what_is_missing(tmp_path, capsys):
    assert main(["compare-hands", "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "handforge compare-hands needs MANO's files" in err and "holds neither MANO_RIGHT nor MANO_LEFT" in err
