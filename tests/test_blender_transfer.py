"""Transfer Pose from Blender through a real backend the add-on starts, on tiny random SD and
ControlNet weights (the diffusers layout real weights come in): image datablocks with the target
pose's labels, the camera background and a plane; a missing source file, or one that is not an image, is refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from handforge.engines.transfer.jobs import SOURCE_LABELS_MAX
from handforge_shared import pose_library

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend
from tests.support import tiny_sd

pytestmark = [pytest.mark.blender, pytest.mark.slow]
SIZE = tiny_sd.IMAGE_SIZE


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("transfer_session")
    sd = tiny_sd.build_sd(work / "sd")
    tiny_sd.build_controlnet(work / "controlnets" / "control_sd15_depth", sd, seed=2)
    pose = {s: pose_library.get("fist", side=s).to_dict() for s in ("left", "right")}
    labels = {"hands": {"right": {"params_world": pose_library.get("spread", side="right").to_dict()}}, "camera": {}}
    args = {"size": SIZE, "sd": str(sd), "controlnets": str(work / "controlnets"),
            "pose": json.dumps({"format": "handforge.pose", "hands": pose}), "labels": json.dumps(labels)}
    return run_with_backend("transfer_session.py", addon_zip, work / "blender", args, timeout=900)


def test_transfer_from_a_datablock_makes_variants_background_and_plane(session):
    session.no_error("scene", "from_datablock")
    found = session["from_datablock"]
    assert found["poll"] is True and found["result"] == ["FINISHED"]
    # each named by the seed that makes it alone (image k drawn at seed + k since 2026-12-06; "seed 3 v2" before)
    assert sorted(found["images"]) == ["HandForge transfer seed 3", "HandForge transfer seed 4"]
    for image in found["images"].values():
        assert image["size"] == [SIZE, SIZE] and image["source"] == "Source"
        uv = np.array(json.loads(image["labels"])["hands"]["right"]["keypoints_2d"])
        assert uv.shape == (21, 2) and np.all((uv > 0) & (uv < SIZE))  # the target pose's labels, in view
    assert found["background"] == "HandForge transfer seed 3"
    assert found["plane"] == {"parent": "Cam", "image": "HandForge transfer seed 3"}


def test_transfer_from_a_file_and_a_missing_file_is_refused(session):
    session.no_error("from_file")
    found = session["from_file"]
    assert "is a folder: pick an image file in it, or an image datablock" in found["folder"], found["folder"]
    assert "the source image is 8 × 8 pixels and Transfer Pose needs at least 16 a side: pick a larger image" \
        in found["tiny"], found["tiny"]
    assert "does not exist" in found["missing"] and found["objects_kept"]
    assert "does not recognise its contents" in found["not_image"] and "carries no HandForge labels" in found["unlabelled"]
    # a PNG cut short: named as one, damaged (it said Blender did not recognise it, "pick a PNG")
    assert "it starts as a PNG file, which Blender could not decode: it is cut short or damaged" in found["cut"], found
    assert found["images_kept"]  # no debris left
    assert found["result"] == ["FINISHED"] and found["source"] == "source.png" and found["labels"]


def test_a_16_bit_source_is_sent_as_its_srgb_values(session):
    # before: a 16-bit PNG (a float buffer in Blender, scene-linear) was sent as if its values were sRGB:
    # mid-grey 128 went as 55, every source of this kind much darker than it is
    session.no_error("sixteen_bit")
    found = session["sixteen_bit"]
    assert found["is_float"] and np.abs(np.array(found["sent"]) - found["expected"]).max() <= 1


def test_a_transparent_source_is_sent_with_its_alpha(session):
    # before: the alpha was dropped, so the cut-out's hidden (black) pixels went as the source's background
    session.no_error("transparent")
    found = session["transparent"]
    assert found["shape"] == [4, 8, 4] and found["alpha"] == [255] * 4 + [0] * 4
    assert found["opaque"] == [4, 8, 3] and found["reduced"] == [4, 8, 4]
    assert found["large_for_2048"] == [1100, 2200, 3]
    # a float image's buffer is premultiplied: sent as such, its colours went at half their value here
    assert found["float_alpha"] == [128] * 32
    assert np.abs(np.array(found["float_rgb"]) - found["levels"]).max() <= 1



def test_a_channel_packed_source_is_sent_as_its_rgb(session):
    # before: its float buffer, which Blender keeps unpremultiplied for Channel Packed, was divided by its alpha
    # as a premultiplied one: colours over-bright where the alpha is below 1, black where it is 0
    session.no_error("channel_packed")
    found = session["channel_packed"]
    assert found["shape"] == [4, 32, 3]
    assert np.abs(np.array(found["rgb"]) - found["levels"]).max() <= 1
    # a Non-Color one as well (was divided, as Channel Packed was); its alpha kept as coverage
    assert found["data_shape"] == [4, 32, 4] and np.abs(np.array(found["data_rgb"]) - found["levels"]).max() <= 1

def test_the_result_plane_fills_a_portrait_shifted_cameras_view(session):
    # before: the plane was sized by the sensor width as if the fit were horizontal, and centred: for a
    # portrait image (AUTO fit: the sensor spans the height) it was twice too large, and shift was ignored
    session.no_error("portrait_plane")
    found = session["portrait_plane"]
    assert found["result"] == ["FINISHED"]
    assert np.allclose(found["corners"], [[0, 0], [0, 1], [1, 0], [1, 1]], atol=2e-3), found["corners"]


def test_a_photo_larger_than_the_backend_takes_is_reduced_not_refused(session):
    # before: a 4160 × 2080 source was refused ("arrays.source.image: dimension source_width ... must be
    # between 16 and 4096"), though the backend resizes it to the target's size anyway
    session.no_error("photo_source")
    assert session["photo_source"] == {"result": ["FINISHED"], "made": True}


def test_the_render_result_as_source_says_to_save_it_first(session):
    # before: "image 'Render Result' has no pixels (is its file missing?)": it has no file, and its pixels are
    # kept from add-ons by Blender
    session.no_error("render_result")
    message = session["render_result"]["message"]
    assert "'Render Result' cannot be read by add-ons: save it" in message and "file missing" not in message


def test_a_relative_source_file_of_an_unsaved_blend_is_refused(session):
    # before: "//elsewhere.png" of an unsaved .blend was read from Blender's working folder, whatever it is
    session.no_error("relative_source")
    found = session["relative_source"]
    assert found["unsaved"] and "is relative and the .blend is not saved" in found["message"], found
    assert found["images_kept"]



def test_a_source_with_damaged_labels_is_refused_naming_the_image_and_its_property(session):
    session.no_error("damaged_labels")
    for what, message in session["damaged_labels"].items():
        assert "'Edited Labels'" in message and "handforge_labels" in message, (what, message)
        assert "params." not in message and "submit header" not in message, (what, message)
    # the backend's limit, read from its kinds (not a second copy in the add-on)
    assert (f"are 40,031 characters long as sent, JSON-escaped (40,025 as written), more than the backend takes "
            f"({SOURCE_LABELS_MAX:,}; a HandForge image's are 11-14 KB): pick another image, or delete that property"
            in session["damaged_labels"]["too_long"])
    # counted as the backend counts it: 24,025 characters as written, its quotes escaped in the header
    assert "are 48,031 characters long as sent, JSON-escaped (24,025 as written)" in session["damaged_labels"]["quotes"]
    assert "are damaged (nested too deeply" in session["damaged_labels"]["deep"]  # (a RecursionError before)


def test_a_source_of_another_hand_model_and_a_long_prompt_are_refused_in_the_artists_words(session):
    session.no_error("artists_words")
    found = session["artists_words"]
    assert ("'Made With MANO' was made with 'mano' hands (its HandForge labels give its pose in that hand model) and "
            "the rigs are 'open' hands: add 'mano' rigs to transfer onto (HandForge › Add Hands from Backend, Hand "
            "Model 'mano'), or pick an image made with 'open' rigs" in found["mano"]), found["mano"]
    # a hand model HandForge does not have: damaged labels (it said "add 'Open' rigs", which do not exist)
    assert ("'Made With MANO''s HandForge labels name the hand model 'Open', which HandForge does not have (open, mano)"
            in found["unknown"] and "add 'Open' rigs" not in found["unknown"]), found["unknown"]
    assert "the Prompt is 9,000 characters long" in found["prompt"] and "more than the backend takes" in found["prompt"]
    assert "params." not in found["mano"] + found["prompt"], found


def test_the_newest_results_plane_shows_and_the_other_kinds_is_hidden(session):
    # before: both planes shown at the same spot, the older transfer's in front of the newer image in the render
    session.no_error("planes_of_both_kinds")
    found = session["planes_of_both_kinds"]
    assert [result for result, _ in found["said"].values()] == [["FINISHED"]] * 3, found
    assert found["after_transfer"] == {"HandForge image": [False, False], "HandForge transfer": [True, True]}, found
    assert found["after_image"] == {"HandForge image": [True, True], "HandForge transfer": [False, False]}, found
    assert found["image_shown"] == "HandForge seed 73"
    assert "hid the plane 'HandForge image' in front of the same camera" in found["said"]["transfer"][1], found
    assert "hid the plane 'HandForge transfer' in front of the same camera" in found["said"]["image"][1], found


def test_an_image_sequence_source_is_said_to_be_one(session):
    session.no_error("sequence_source")
    message = session["sequence_source"]["message"]
    assert "image sequence" in message and "missing" not in message, message

def test_a_rig_in_an_excluded_collection_is_refused(session):
    # before: its pose and placement were sent as last evaluated, not as the frame shows them
    session.no_error("hidden_rig")
    assert "is in a collection excluded from the view layer" in session["hidden_rig"]["message"]


def test_a_source_file_of_a_result_not_applied_leaves_no_datablock(session):
    # before: the file loaded for the request stayed as an image datablock when the result was not applied
    # (another scene shown, cancelled, failed), though a refused request leaves none
    session.no_error("file_not_applied")
    found = session["file_not_applied"]
    assert found["result"] == ["CANCELLED"] and "Transfer Pose cancelled" in found["printed"], found
    assert found["images_kept"], found


def test_a_source_file_stays_through_an_undo_while_the_transfer_runs(session):
    # before: the file was loaded when the job started, outside any undo step: Ctrl-Z while it ran took the
    # datablock away (the result came, naming a source image no longer there)
    session.no_error("file_undone")
    found = session["file_undone"]
    assert found["undone"] == [["FINISHED"]] and found["result"] == ["FINISHED"], found
    assert found["source"] == "undone_source.png" and found["there"] is True, found
    assert found["redone"] is True, found


def test_camera_problems_are_said_for_transfer_not_for_exporting(session):
    # before: "set one (Scene properties › Camera) or export from All Cameras" and "only perspective cameras are
    # exported": the export's words, for a button that has no All Cameras and exports nothing
    session.no_error("camera_problems")
    found = session["camera_problems"]
    assert "no active camera" in found["none"] and "Scene properties" in found["none"], found
    assert "ortho" in found["ortho"] and "perspective" in found["ortho"], found
    assert "camera 'Cam' shares its camera data 'Cam' with 'Cam.001'" in found["shared"], found
    assert "turn off Camera Background" in found["shared"], found
    assert not any("export" in message.lower() for message in found.values()), found


def test_a_result_plane_the_artist_kept_keeps_its_image(session):
    # before: the next run refilled the mesh and material named "HandForge transfer" that a renamed or copied
    # plane still used: the kept plane showed the new image
    session.no_error("kept_plane")
    found = session["kept_plane"]
    assert found["second"] == found["third"] == ["FINISHED"], found
    assert found["renamed"][0] == found["renamed"][1] == "HandForge transfer seed 21", found
    assert found["copy"][0] == found["copy"][1] == "HandForge transfer seed 22", found
    assert found["new"] == "HandForge transfer seed 23", found


def test_the_sources_results_name_are_in_the_saved_file(session):
    # before: a source file's image had no user, nor had the panel's once another was picked there: saving the
    # .blend dropped them, and after reopening the results' handforge_transfer_source named no image
    session.no_error("saved_sources")
    found = session["saved_sources"]
    assert found["results"] == [["FINISHED"]] * 3, found
    assert {"Panel", "saved_source.png"} <= set(found["named"]) and found["missing"] == [], found
    # before: a result nothing used (seed 41's once seed 42's took the camera's background, both of seed 43's
    # variants) had no user either, and was gone after reopening with its pixels and transfer source
    assert {"HandForge transfer seed 41", "HandForge transfer seed 43", "HandForge transfer seed 44"} <= set(
        found["saved"]), found
    assert found["reopened"] == found["saved"], found
    assert found["pixels"] == {name: True for name in found["saved"]}, found
    assert found["properties"] == {name: True for name in found["saved"]}, found


def test_a_transfer_made_while_another_scene_is_shown_lands_in_the_scene_it_was_made_from(session):
    session.no_error("scene_switched")
    found = session["scene_switched"]
    assert found["result"] == ["FINISHED"] and found["image"], found
    assert f"shown in scene {found['scene']!r}, where they were made" in found["printed"], found


def test_a_source_deleted_while_the_job_ran_is_said_and_no_other_image_is_taken_for_it(session):
    session.no_error("deleted_source")
    found = session["deleted_source"]
    assert found["result"] == ["FINISHED"] and found["impostor_kept"] is False, found
    assert "the source image 'Deleted Source' was deleted while they were made" in found["printed"], found
    assert found["named"] is None, found  # (it named the image that took its name)


def test_a_source_renamed_while_the_job_ran_is_still_the_one_named(session):
    session.no_error("renamed_source")
    found = session["renamed_source"]
    assert found["result"] == ["FINISHED"] and found["impostor"] == ["Renamed Source"]
    assert found["named"] == "Source Now" and found["kept"] is True and found["impostor_kept"] is False
