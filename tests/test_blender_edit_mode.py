"""HandForge buttons pressed while a hand is in Edit Mode (its armature or its mesh): those that pose or key the
hands are greyed and refuse, with the fix, and change nothing (Blender's undo in Edit Mode holds only the edited
bones or vertices: their change could not be undone); the others work as in Object Mode, as do all of them with
the mesh in Weight Paint or Sculpt Mode."""

from __future__ import annotations

import json

import numpy as np
import pytest

from handforge_shared.poses import HandPose
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]

# buttons that pose or key the hands: refused in Edit Mode
CHANGERS = ("set_shape", "apply_preset", "mirror_pose", "mirror_pose_from", "reset_pose", "paste_pose", "key_pose",
            "import_motion", "select_generated_keys", "delete_generated_keys", "make_artist_keys", "apply_user_pose",
            "motion_inbetween", "sample_interaction", "interaction_apply", "interaction_key")
# buttons that only read the hands (or add new ones): they work in Edit Mode, as in Object Mode
READERS = ("add_hands", "copy_pose", "export_motion", "save_user_pose", "export_renders")
EDIT_MODES = ("ARM_EDIT", "MESH_EDIT")
PAINT_MODES = ("WEIGHT_PAINT", "SCULPT")


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("edit_mode_session")
    pose = HandPose(global_orient=[0.3, -1.2, 0.1], hand_pose=np.full(45, 0.2), betas=np.zeros(10), transl=[0, 0, 0])
    args = {"clip_in": str(work / "clip.npz"), "clip_out": str(work / "out.npz"), "renders": str(work / "renders"),
            "pose": json.dumps({"format": "handforge.pose", "hands": {"right": pose.to_dict()}})}
    return run_with_backend("edit_mode_session.py", addon_zip, work / "blender", args)


@pytest.mark.parametrize("mode", EDIT_MODES)
def test_buttons_that_change_the_hands_refuse_in_edit_mode_and_change_nothing(session, mode):
    session.no_error("clip", "probe")
    probe = session["probe"]
    for name in CHANGERS:
        assert probe[f"{name}|OBJECT"]["error"] == "", (name, probe[f"{name}|OBJECT"])  # (the call itself is fine)
        got = probe[f"{name}|{mode}"]
        what = "mesh 'Hand.R" if mode == "MESH_EDIT" else "hand 'Hand.R"
        assert f"{what}" in got["error"] and "is in Edit Mode: leave it (Tab) first" in got["error"], (name, got)
        assert got["poll"] is False, (name, got)  # the button is greyed, with the reason
        assert got["changed"] == [] and got["mode_after"] == "EDIT", (name, got)


def _as_in_object_mode(session, names, mode) -> dict:
    """Assert that the buttons ``names`` ran in ``mode`` (not greyed) and left what they do in Object Mode."""
    session.no_error("clip", "probe")
    probe = session["probe"]
    for name in names:
        got = probe[f"{name}|{mode}"]
        assert got["error"] == "" and got["poll"] is True, (name, got)
        assert got["vs_object_mode"] == [] and got["lost_on_leave"] == [], (name, got)
    return probe


@pytest.mark.parametrize("mode", EDIT_MODES + PAINT_MODES)
def test_buttons_that_read_the_hands_work_in_edit_mode_as_in_object_mode(session, mode):
    probe = _as_in_object_mode(session, READERS, mode)
    # Add Hands leaves the mode, as Blender's own Add menu does
    assert probe[f"add_hands|{mode}"]["mode_after"] == "OBJECT"


def test_add_hands_says_which_mode_it_left(session):
    # before: it left Edit Mode (or Sculpt, Weight Paint) without a word
    session.no_error("add_hands_said")
    said = session["add_hands_said"]
    names = {"ARM_EDIT": "Edit Mode of 'Hand.R", "MESH_EDIT": "Edit Mode of 'Hand.R", "WEIGHT_PAINT": "Weight Paint of 'Hand.R",
             "SCULPT": "Sculpt Mode of 'Hand.R"}
    for mode, what in names.items():
        assert f"; left {what}" in said[mode] and "first (its changes kept)" in said[mode], (mode, said[mode])
    assert "added left and right hand" in said["None"] and "; left" not in said["None"], said["None"]


def test_add_hands_refused_keeps_the_artist_in_their_mode(session):
    # before: it left the mode, then refused (the hands' collection excluded) without saying it had left it
    session.no_error("add_hands_refused")
    found = session["add_hands_refused"]
    for mode, context_mode in (("EDIT", "EDIT_MESH"), ("SCULPT", "SCULPT")):
        got = found[mode]
        assert "is excluded from or hidden in the view layer" in got["message"], (mode, got)
        assert got["mode_after"] == context_mode and got["added"] == 0, (mode, got)


@pytest.mark.parametrize("mode", PAINT_MODES)
def test_every_button_works_with_the_mesh_in_weight_paint_or_sculpt_mode(session, mode):
    probe = _as_in_object_mode(session, CHANGERS, mode)
    assert all(probe[f"{name}|{mode}"]["mode_after"] == mode for name in CHANGERS)  # (the mode kept)


def test_the_finger_sliders_are_greyed_with_the_reason_in_edit_mode(session):
    session.no_error("slider_panel")
    labels = session["slider_panel"]
    assert any(t and t.startswith("The hand 'Hand.R") and "is in Edit Mode: leave it (Tab) first" in t
               for t in labels["ARM_EDIT"]), labels
    assert any(t and t.startswith("The mesh ") and "is in Edit Mode: leave it (Tab) first" in t
               for t in labels["MESH_EDIT"]), labels
    assert not any(t and "Edit Mode" in t for t in labels["None"]), labels
    # a rig that lost a joint: no sliders (set by a script, one moved nothing, unsaid), and why not
    said = " ".join(t for t in labels["lost"] if t)
    assert "has lost its bone(s) ring3 (renamed 'ringX'?): rename it back, undo" in said, labels["lost"]
    assert "Right hand: curl / spread" not in labels["lost"], labels["lost"]
