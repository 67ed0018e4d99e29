"""An artist's odd but real states around the pose tools in real Blender: a hand-edited user pose library,
library-overridden hands with linked keys under auto-keying, Add Hands beside an overridden HandForge collection."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("artist_session")
    return run_blender("artist_session.py", addon_zip, work / "blender")


def test_a_hand_edited_library_name_is_applied_and_deleted_as_listed(session):
    session.no_error("names")
    out = session["names"]
    for key in ("spaced", "long"):
        assert out[f"{key}_apply"][0] == ["FINISHED"], out[f"{key}_apply"]
        assert out[f"{key}_posed"] > 0.1  # the left hand took the saved fist
        assert out[f"{key}_delete"][0] == ["FINISHED"], out[f"{key}_delete"]
    assert out["left"] == ["fist"]


def test_save_pose_says_when_the_library_folder_cannot_be_made(session):
    session.no_error("folder")
    out = session["folder"]
    result, said = out["saved"]
    assert result == ["CANCELLED"] and "handforge cannot be made" in said and "move that away" in said, said
    assert out["stray"] is False  # nothing written to Blender's working folder


def test_a_nan_finger_bone_is_replaced_by_the_posing_tools_and_named_by_the_reading_ones(session):
    session.no_error("nan_bone")
    out = session["nan_bone"]
    for tool in ("apply_preset", "apply_user_pose", "mirror_pose", "paste_pose"):
        assert out[tool] == ["FINISHED"] and out[f"{tool}_finite"], (tool, out[tool])
    for tool, (result, said) in out["refused"].items():
        assert result == ["CANCELLED"], (tool, said)
        assert "the bone 'index2' of the hand 'Hand.R'" in said and "Reset Pose" in said, (tool, said)


def test_save_pose_keeps_the_pose_the_joint_limits_show(session):
    session.no_error("limits")
    out = session["limits"]
    assert out["saved"][0] == ["FINISHED"] and out["applied"][0] == ["FINISHED"], out
    assert abs(out["flexion"]) < 10.0, out["flexion"]  # what the limits showed (about 5°), not the channels' 69°


def test_the_shown_pose_is_not_read_while_the_armature_shows_its_rest_position(session):
    out = session["limits"]["at_rest"]
    for tool, (result, said) in out.items():
        assert result == ["CANCELLED"] and "shows its Rest Position" in said and "Pose Position" in said, (tool, said)


def test_set_shape_waits_for_a_forearm_in_edit_mode(session):
    session.no_error("forearm")
    out = session["forearm"]
    result, said = out["set_shape"]
    assert result == ["CANCELLED"] and "'Hand.R Forearm' of the hand 'Hand.R' is in Edit Mode" in said, said
    assert out["betas"] == [0.0, 0.0]  # neither hand changed


def test_pose_buttons_wait_while_another_object_is_in_edit_mode(session):
    session.no_error("prop")
    out = session["prop"]
    assert out["poll"] is False
    result, said = out["apply_preset"]
    assert result == ["CANCELLED"] and "'Cup' is in Edit Mode" in said and "leave it (Tab) first" in said, said
    assert out["moved"] == 0.0


def test_pose_tools_refuse_to_auto_key_into_a_linked_action_before_posing(session):
    session.no_error("overridden")
    out = session["overridden"]
    assert out["override"] and out["action_linked"]
    for tool, (result, said) in out["tools"].items():
        assert result == ["CANCELLED"], (tool, said)
        assert "linked from" in said and "hands.blend" in said and "auto-keying off" in said, (tool, said)
    assert out["moved"] == 0.0  # nothing posed (it was, and the next frame change took it away)
    assert out["unkeyed"][0] == ["FINISHED"], out["unkeyed"]  # without auto-keying, posing is the artist's call


def test_add_hands_builds_beside_an_overridden_hand_collection(session):
    out = session["overridden"]
    assert out["add_hands"][0] == ["FINISHED"], out["add_hands"]
    assert out["new"] and all(local for _, _, local in out["new"]), out["new"]
    assert {coll for _, coll, _ in out["new"]} == {"HandForge.001"}, out["new"]
