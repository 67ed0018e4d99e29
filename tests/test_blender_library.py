"""The pose browser in real Blender: a thumbnail for every library pose, search, and the user pose
library (applied to either hand, kept in Blender's config folder across an add-on update)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from handforge_shared import anatomy, pose_library
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.skeleton import JOINT_NAMES
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]

ATOL = 2e-6
ROOT = Path(__file__).resolve().parent.parent


def angles_of(local: np.ndarray, side: str) -> np.ndarray:
    """(15, 3) anatomical angles of bone-local rotations (16, 3, 3) on the open hand."""
    f = load_open_hand_rig(side).joint_frames()
    return anatomy.matrix_to_anatomical((f @ local @ np.swapaxes(f, -1, -2))[1:], f, side)


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("library_session")
    args = {"joints": list(JOINT_NAMES), "presets": list(pose_library.names())}
    result = run_blender("library_session.py", addon_zip, work / "blender", args)
    result.user_dir = work / "blender" / "blender_user"
    return result


def test_every_library_pose_has_a_small_thumbnail_in_the_browser(session):
    session.no_error("thumbnails")
    result = session["thumbnails"]
    assert set(result["sizes"]) == set(pose_library.names())
    for name, (width, height, channels) in result["sizes"].items():
        assert (width, height, channels) == (96, 96, 4), name
    for name, (width, height, covered) in result["previews"].items():  # loaded for the browser's grid
        assert (width, height) == (96, 96) and 0.1 < covered < 0.9, (name, covered)
    total = sum(p.stat().st_size for p in (ROOT / "blender_addon" / "thumbnails").glob("*.png"))
    assert total < 400_000  # shipped small


def test_the_browser_searches_names_categories_and_descriptions(session):
    result = session["thumbnails"]
    assert "pinch" in result["search_pinch"] and "fist" not in result["search_pinch"]
    assert {"count_1", "count_5"} <= set(result["search_count"])
    assert result["search_none"] == []
    assert result["search_all"] == len(pose_library.names())


def test_a_saved_pose_applies_to_the_other_hand_as_its_mirror(session):
    session.no_error("round_trip")
    result = session["round_trip"]
    saved = angles_of(session.arrays["saved_right"], "right")
    np.testing.assert_allclose(angles_of(session.arrays["applied_left"], "left"), saved, atol=1e-5)
    # only the chosen hand moved (the right one stays reset: straight fingers)
    np.testing.assert_allclose(session.arrays["right_untouched"][1:], np.broadcast_to(np.eye(3), (15, 3, 3)), atol=ATOL)
    assert result["user_names"] == ["My OK"]
    assert result["user_search"] == [["My OK"], []]
    assert "no name" in result["no_name"]
    assert "exists" in result["taken"] and "Overwrite" in result["taken"]
    assert result["overwrite"] == ["FINISHED"]


def test_a_pose_name_with_spaces_around_it_is_the_same_name_to_save_apply_and_delete(session):
    session.no_error("padded_names")
    result = session["padded_names"]
    assert result["saved"] == ["fist mine"]
    assert result["apply"] == "" and result["delete"] == "", result
    np.testing.assert_allclose(session.arrays["padded_applied"], session.arrays["padded_saved"], atol=1e-5)
    assert result["after_delete"] == ["My OK"]
    assert "the name holds \\n, which the pose list cannot show" in result["line_break"], result
    assert result["after_line_break"] == ["My OK"]


def test_the_pose_library_panel_draws_a_thumbnail_button_per_pose_and_the_users_own(session):
    session.no_error("panel")
    drawn = session["panel"]

    def presets(rows):
        return [d[3] for d in rows if d[0] == "set" and d[2] == "preset"]

    def users(rows):
        return [d[3] for d in rows if d[0] == "set" and d[2] == "name" and d[3] and d[1] == d[3]]  # Apply buttons

    assert sorted(presets(drawn["all"])) == sorted(session["thumbnails"]["search_all_names"])
    assert sum(d[0] == "template_icon" for d in drawn["all"]) == len(presets(drawn["all"]))
    assert users(drawn["all"]) == ["My OK"]
    assert "ok" in presets(drawn["ok"]) and "fist" not in presets(drawn["ok"]) and users(drawn["ok"]) == ["My OK"]
    # an unreadable user library: the panel says so and still shows every built-in pose
    assert presets(drawn["corrupt"]) == presets(drawn["all"]) and users(drawn["corrupt"]) == []
    assert any(d[0] == "label" and "user_poses.json" in d[1] for d in drawn["corrupt"])
    # nested too deeply to parse: said the same way (it was a RecursionError out of every redraw of the panel)
    assert presets(drawn["deep"]) == presets(drawn["all"]) and users(drawn["deep"]) == []
    said = " ".join(d[1] for d in drawn["deep"] if d[0] == "label")
    assert "user_poses.json" in said and "nested too deeply" in said, said


def test_the_user_library_lives_in_the_config_folder_and_survives_an_update(session):
    session.no_error("after_update")
    path = session["round_trip"]["path"]
    folder = session["thumbnails"]["folder"]
    assert path.startswith(str(session.user_dir)) and "/config/" in path and path.endswith("user_poses.json")
    assert not path.startswith(folder.rsplit("/", 1)[0])  # never inside the add-on
    result = session["after_update"]
    assert result["reinstall"] == ["FINISHED"] and result["enabled"]
    assert result["user_names"] == ["My OK"]
    np.testing.assert_allclose(angles_of(session.arrays["after_update_right"], "right"),
                               angles_of(session.arrays["saved_right"], "right"), atol=1e-5)


def test_a_bad_user_library_is_named_with_the_fix(session):
    session.no_error("bad_library")
    result = session["bad_library"]
    assert "no user pose named 'Nobody'" in result["missing"]
    assert "user_poses.json" in result["corrupt"] and "move away" in result["corrupt"]
    assert "beyond ±360°" in result["huge_angle"]
    assert "nested too deeply" in result["deep"]
    for case in ("deep", "bad_version", "bad_angle", "huge_angle"):
        assert "user_poses.json" in result[case] and "move away" in result[case] and "failed" not in result[case], case
    assert result["after_delete"] == []
    assert "no user pose named 'My OK'" in result["deleted_again"]
