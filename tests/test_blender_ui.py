"""What the add-on tells the user in real Blender: descriptions, labels, and no silent no-ops."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_blender("ui_session.py", addon_zip, tmp_path_factory.mktemp("ui_session") / "blender")


def test_every_operator_and_property_has_a_one_line_description(session):
    session.no_error("described")
    described = session["described"]
    assert described["operators"] >= 15
    assert {"HANDFORGE_PG_hand", "HANDFORGE_PG_scene", "HANDFORGE_PG_backend", "HANDFORGE_PG_job"} <= set(described["groups"])
    assert described["missing"] == [] and described["broken"] == []
    # each spread slider says where it moves its own finger (anatomy.curl_spread_angles: positive away from the
    # middle finger; the middle finger itself towards the index, the thumb away from the index); before, every
    # one said "away from the middle finger", the middle finger's and the thumb's too
    spread = described["spread"]
    assert spread["thumb"].startswith("Spread the thumb away from the index (negative: towards it)"), spread
    assert spread["middle"].startswith("Spread the middle finger towards the index (negative: towards the ring "
                                       "finger)"), spread
    for finger in ("index", "ring", "pinky"):
        assert spread[finger].startswith(f"Spread the {finger} away from the middle finger (negative: towards it)"), spread
    assert all(text.endswith("from its current pose; keyable") for text in spread.values()), spread


def test_every_file_field_of_an_operator_accepts_a_path_beside_the_blend_file(session):
    session.no_error("path_fields")
    assert session["path_fields"] == []


def test_shape_sliders_are_labelled(session):
    session.no_error("shape_labels")
    labels = session["shape_labels"]
    assert len(labels) == 10 and len(set(labels)) == 10 and all(labels)


def test_add_hands_on_a_scene_with_hands_adds_a_pair_beside_them(session):
    session.no_error("add_twice")
    result = session["add_twice"]
    assert result["armatures"] == 4
    assert set(result["first"].values()).isdisjoint(result["second"].values())  # the tools act on the new pair
    assert min(result["second_x"]) > max(result["first_x"]) + 0.3  # beside, not stacked on the first pair


def test_an_operator_with_nothing_to_do_says_so(session):
    session.no_error("nothing_to_do")
    result = session["nothing_to_do"]
    assert result["result"] == ["CANCELLED"]
    assert "no pose correctives" in result["printed"]
    said = result["no_generated_keys"]  # (it read "the left and right hand has no generated keys")
    assert "the left and right hands have no generated keys" in said["BOTH"], said
    assert "the left hand has no generated keys" in said["LEFT"], said


def test_the_backend_panel_shows_engines_with_jobs_and_says_what_an_engine_lacks(session):
    # before: boxes without buttons for the image engines, their reasons cut mid-word and config snippets
    # squashed onto one line; and nothing said when the interaction engine ran without its learned model
    session.no_error("backend_panel")
    panel = session["backend_panel"]
    assert panel["bad"] == [] and panel["jobs"] == ["interaction.sample"]
    assert "Attentionhand" not in panel["labels"] and "Interaction" in panel["labels"]
    note = panel["labels"].index("engine 'learned' cannot run")
    assert panel["icons"][note] == "INFO" and "(interaction.checkpoint: not set);" in panel["labels"][note + 1]
    assert panel["interaction_first_label"] == "engine 'learned' cannot run"  # said above its buttons too


def test_set_shape_with_no_active_object_leaves_none_active(session):
    # before: the hand Set Shape edited in Edit Mode stayed the active object
    session.no_error("set_shape_nothing_active")
    assert session["set_shape_nothing_active"] == {"result": ["FINISHED"], "active": None}


def test_save_pose_in_a_scene_with_only_a_left_hand_saves_the_left_hand(session):
    # before: the dialog offered the right hand, and saving said "no right hand in the scene"
    session.no_error("save_pose_only_left")
    assert session["save_pose_only_left"] == {"side": "LEFT", "error": ""}


def test_the_transfer_panel_says_in_full_why_its_engine_cannot_run(session):
    # before: one label cut at 80 characters, mid-word, and the config snippet that fixes it lost
    session.no_error("transfer_panel")
    labels = session["transfer_panel"]["labels"]
    assert 'checkpoint = "/models/ihpt.pt"' in " ".join(labels)
    assert all(len(label) <= 60 for label in labels)


def test_key_pose_refuses_hands_in_an_excluded_collection_and_keeps_their_keys(session):
    # before: Key Pose keyed the pose the hands had when their collection was excluded over the frame's keys
    session.no_error("key_pose_excluded")
    result = session["key_pose_excluded"]
    assert result["keys_kept"] is True
    assert "excluded from the view layer" in result["key"] and "excluded from the view layer" in result["copy"]


def test_key_pose_copy_and_export_refuse_hands_disabled_in_viewports(session):
    # before: the scene's HandForge pointers kept an evaluated (never animated) copy of a disabled hand, so the
    # check passed: Key Pose keyed its stale pose over the frame's keys, Export Motion wrote it on every frame
    session.no_error("key_pose_disabled")
    for how, result in session["key_pose_disabled"].items():
        for what in ("key", "copy", "export"):
            assert "is disabled in viewports" in result[what] and "enable it there" in result[what], (how, result)
        assert result["keys_kept"] is True and result["written"] is False, (how, result)
        assert result["export_from_curves"] == ["FINISHED"], (how, result)  # read from its curves: right as it is


def test_set_shape_refuses_a_hand_whose_mesh_lost_its_shape_keys(session):
    # before: done, and the bones took the new shape while the mesh kept the old one (a posed hand tore)
    session.no_error("set_shape_no_shape_keys")
    result = session["set_shape_no_shape_keys"]
    assert "lost its shape key(s) beta_0" in result["error"]
    assert result["bones_kept"] is True and result["betas"] == [0.0, 0.0]  # neither hand changed


def test_cancel_job_without_a_backend_says_there_is_nothing_to_cancel(session):
    # before: "asked the backend to cancel 0 job(s)", with no backend to ask
    session.no_error("cancel_no_backend")
    result = session["cancel_no_backend"]
    assert result["result"] == ["CANCELLED"]
    assert "nothing to cancel" in result["printed"] and "no backend is connected" in result["printed"]
    assert "0 job" not in result["printed"]


def test_update_correctives_on_a_mano_hand_without_its_mesh_says_the_mesh_is_missing(session):
    # before: "has no pose correctives (MANO hands have them; the open hand does not)" for a MANO hand
    session.no_error("correctives_no_mesh")
    result = session["correctives_no_mesh"]
    error = result["error"]
    assert f"{result['left']!r}" in error and "no hand mesh" in error and "Add Hands" in error, error
    assert "MANO hands have them" not in error


def test_a_path_or_one_shot_option_is_not_taken_from_the_last_call_but_a_file_browsers_path(session):
    # before: Export Motion without a file wrote again to the last call's file; a script's connect(address=...)
    # or generate_image(prompt=...) overrode the preferences' address or the panel's prompt on every later click
    session.no_error("remembered_options")
    result = session["remembered_options"]
    assert result["remembered"] == []
    # a file browser's path stays remembered, as Blender's own exporters': the browser opens at the last file
    assert result["browser_paths"] == {"handforge.import_motion": True, "handforge.export_motion": True}
    assert result["browser_rewrote"] is True
    # Hands (Panel Setting) is not remembered either: a Fist after one on the left alone poses both hands, as the
    # panel says (before: only the left, the last call's Left)
    assert result["panel_curls"]["left"] > 0.5 and result["panel_curls"]["right"] > 0.5, result["panel_curls"]
