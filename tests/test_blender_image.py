"""Generate Image from Blender through a real backend the add-on starts: greyed out with the
missing-weights reason when no image weights are configured; with tiny random SD weights (the
diffusers layout real weights come in) it makes one image datablock per variant, of the requested
size, labelled, named with the seed and shown behind the camera."""

from __future__ import annotations

import json

import numpy as np
import pytest
from handforge_shared import pose_library

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend
from tests.support import tiny_sd

pytestmark = [pytest.mark.blender, pytest.mark.slow]
SIZE = tiny_sd.IMAGE_SIZE


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("image_session")
    sd = tiny_sd.build_sd(work / "sd")
    guidance = tiny_sd.build_controlnet(work / "guidance", sd, seed=1)
    pose = {s: pose_library.get("fist", side=s).to_dict() for s in ("left", "right")}
    args = {"size": SIZE, "sd": str(sd), "guidance": str(guidance),
            "pose": json.dumps({"format": "handforge.pose", "hands": pose})}
    return run_with_backend("image_session.py", addon_zip, work / "blender", args,
                            unset=("HANDFORGE_CONTROLNETS",), timeout=900)


def test_button_is_greyed_out_with_the_missing_weights_reason(session):
    session.no_error("scene", "without_weights")
    found = session["without_weights"]
    assert found["poll"] is False
    assert found["engines"]["image"][0] is False and "image.sd_model" in found["engines"]["image"][1]
    assert "image.sd_model" in found["message"] and "engine image cannot run" in found["message"]


def test_generate_image_makes_image_datablocks_of_the_requested_size(session):
    session.no_error("scene", "with_weights")
    found = session["with_weights"]
    assert found["poll"] is True and found["result"] == ["FINISHED"]
    images = found["images"]
    # each named and kept by the seed that reproduces it alone: image k of the batch is drawn at seed + k (before:
    # "HandForge seed 5 v1", "… v2", both kept as seed 5, and seed 5 alone gave back the first only)
    assert sorted(images) == ["HandForge seed 5", "HandForge seed 6"]
    assert {name: image["seed"] for name, image in images.items()} == {"HandForge seed 5": 5, "HandForge seed 6": 6}
    for name, image in images.items():
        assert image["size"] == [SIZE, SIZE] and image["packed"]
        assert image["prompt"] == "two hands waving"
        labels = json.loads(image["labels"])
        uv = np.array(labels["hands"]["right"]["keypoints_2d"])
        assert uv.shape == (21, 2) and np.all((uv > 0) & (uv < SIZE))  # the rigs are in view
        # the hand model the pose belongs to and its licence, as the export's labels (before: neither)
        assert labels["hand_model"] == "open" and labels["hand_model_licence"].startswith("CC0-1.0")
        pixels = session.arrays[name]
        assert pixels.shape == (SIZE, SIZE, 4) and pixels[..., :3].std() > 0.01  # a picture, not a blank
    assert not np.array_equal(session.arrays["HandForge seed 5"], session.arrays["HandForge seed 6"])
    # while it ran, the Jobs panel drew each step's preview (latents as RGB, an eighth of the side), gone after
    preview = session.arrays["preview"]
    assert preview.shape == (SIZE // 8, SIZE // 8, 4) and np.all(preview[..., 3] == 1.0)
    assert preview[..., :3].std() > 0.01 and preview.min() >= 0.0 and preview.max() <= 1.0
    conversions = found["previews"]
    assert np.allclose(conversions["flipped"], [[[120 / 255, 140 / 255, 160 / 255, 1], [180 / 255, 200 / 255, 220 / 255, 1]],
                                                [[0, 20 / 255, 40 / 255, 1], [60 / 255, 80 / 255, 100 / 255, 1]]])
    assert all(conversions["malformed"]) and conversions["left"]
    assert found["background"] == "HandForge seed 5" and found["show_background"] is True
    assert found["plane"] == {"parent": "Cam", "image": "HandForge seed 5"}  # on a plane in front of it too
    # a second run with the same seed, over an image of the artist's with the name it takes: every
    # earlier result and the artist's image stay as they were, the new one gets a numbered name
    second = found["second"]
    assert second["result"] == ["FINISHED"] and second["kept"] == {"HandForge seed 5": True, "HandForge seed 6": True}
    assert second["own"] == {"size": [4, 4], "mine": True} and second["new"] == ["HandForge seed 9.001"]
    # the batch's second image, run alone at the seed it is named by, comes back (but for rounding)
    alone = second["alone"]
    assert alone["name"] == "HandForge seed 6.001" and alone["seed"] == 6, alone
    assert alone["largest_difference"] <= 8 / 255, alone


def test_a_camera_renamed_while_the_image_is_made_still_gets_it_behind(session):
    session.no_error("camera_renamed")
    found = session["camera_renamed"]
    assert found["result"] == ["FINISHED"] and found["background"] == "HandForge seed 8", found


def test_a_camera_sharing_its_data_with_a_linked_duplicate_gets_no_background_meant_for_one_view(session):
    # before: Camera Background set the image on the camera data both objects use: one view's image was shown
    # behind the other camera too, off its rigs, unsaid
    session.no_error("linked_duplicate")
    found = session["linked_duplicate"]
    first, second = found["twins"]  # (numbered names: earlier checks left cameras named "Cam.00N")
    assert f"camera 'Cam' shares its camera data 'Cam' with {first!r} (a linked duplicate" in found["refused"], found
    assert "Make Single User" in found["refused"] and "Image Plane" in found["refused"], found
    assert found["made"] is False, found  # refused before anything was sent
    assert found["plane"] == [["FINISHED"], "HandForge seed 51"], found  # a plane hangs from the object alone
    result, printed = found["mid_job"]
    assert result == ["FINISHED"] and found["mid_job_image"], found  # the image made meanwhile is kept
    assert f"not shown behind camera 'Cam': it shares its camera data 'Cam' with {second!r}" in printed, printed
    before, mine, twins = found["backgrounds"]
    assert mine == twins == before and found["shared"] is True, found  # the data is left as it was, still shared


def test_a_background_the_artist_hid_shows_the_next_image(session):
    session.no_error("hidden_background")
    found = session["hidden_background"]
    assert found["result"] == ["FINISHED"] and ["HandForge seed 53", True] in found["backgrounds"], found


def test_the_cameras_background_images_turned_on_are_said_with_the_artists_own_shown_again(session):
    session.no_error("backgrounds_turned_on")
    found = session["backgrounds_turned_on"]
    assert found["result"] == ["FINISHED"] and found["shows"] is True, found
    assert (f"turned on the Background Images of camera {found['camera']!r} (they were off) to show the result: its "
            "own background 'Artist Sketch' shows again too" in found["printed"]), found["printed"]


def test_a_camera_linked_from_a_library_is_refused_camera_background_before_the_job(session):
    # before: the image was made, then shown behind nothing (Blender ignores changes to linked data), unsaid
    session.no_error("linked_camera")
    found = session["linked_camera"]
    assert found["linked"] is True and found["made"] is False, found
    assert "camera 'Layout Cam' uses camera data 'Layout Cam' linked from" in found["refused"], found
    assert "layout.blend" in found["refused"] and "Make Local" in found["refused"], found


def test_where_an_image_shows_is_said_when_it_is_not_where_the_artist_looks(session):
    session.no_error("said_where")
    result, printed = session["said_where"]["shape"]
    assert result == ["FINISHED"]
    assert (f"behind the camera the {SIZE} × {SIZE} image is stretched to the render's 160 × 90 frame, off the rigs: "
            "the Image Plane shows it in place") in printed, printed
    result, printed = session["said_where"]["crop"]  # before: "stretched", with Frame Method Crop
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    assert (f"behind the camera the {SIZE} × {SIZE} image is cropped to fill the render's 160 × 90 frame (the "
            "background's Frame Method is Crop): its top and bottom are cut off: the Image Plane shows it in place"
            ) in printed, printed
    result, printed = session["said_where"]["switched"]
    assert result == ["FINISHED"]
    assert "shown with camera 'Cam', which they were made from, not the active one" in printed, printed
    result, printed = session["said_where"]["moved"]
    assert result == ["FINISHED"]
    assert "the image plane moved from camera 'Cam' to 'Other Cam' (one a scene: rename the plane" in printed, printed


def test_a_render_resolution_changed_mid_job_is_said_so_not_told_to_use_width_and_height_0_again(session):
    # before: "generate at the render's shape (Width and Height 0)" to an artist who had
    session.no_error("render_changed")
    result, printed = session["render_changed"]["changed"]
    assert result == ["FINISHED"]
    assert ("the 128 × 64 image is stretched to the render's 128 × 128 frame, off the rigs: the Image Plane shows it in "
            "place, or run it again (the render resolution was 128 × 64 when it was sent") in printed, printed
    assert "(Width and Height 0)" not in printed, printed
    result, printed = session["render_changed"]["asked"]  # a size of their own: 0 is still the advice
    assert result == ["FINISHED"]
    assert "the Image Plane shows it in place, or generate at the render's shape (Width and Height 0)" in printed, printed
    # before: the render's pixel aspect was not seen: an image drawn in it, of the render's resolution, fits its frame
    # (a naive aspect check calls it stretched); one whose render turned to 2:1 pixels while it ran is stretched
    result, printed = session["render_changed"]["pixels_fit"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    # before: unsaid with Frame Method Fit, shown 2:1 (its square pixels) in the 4:1 frame it was drawn for
    result, printed = session["render_changed"]["pixels_fitted"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    assert ("the 128 × 64 image is fitted into the render's 128 × 64 frame of pixel aspect 2:1 (the background's "
            "Frame Method is Fit) at its Display Aspect 1:1: it does not fill the frame it was drawn for") in printed
    # before: unsaid, the background's own Scale taking it off the frame it fits
    result, printed = session["render_changed"]["pixels_scaled"]
    assert result == ["FINISHED"] and "stretched" not in printed, printed
    assert ("the 128 × 64 image does not line up with the render's frame: its background is moved off it (Scale 0.8); "
            "set Offset 0, 0, Rotation 0 and Scale 1 (the camera's Background Images) to line it up, or the Image Plane "
            "shows it in place") in printed, printed
    result, printed = session["render_changed"]["pixels_changed"]
    assert result == ["FINISHED"]
    assert ("the 128 × 64 image is stretched to the render's 128 × 64 frame of pixel aspect 2:1, off the rigs: the "
            "Image Plane shows it in place, or run it again (the render resolution was 128 × 64 of pixel aspect 1:1 "
            "when it was sent") in printed, printed


def test_a_rig_or_camera_under_a_scaled_parent_is_refused_naming_the_parent(session):
    session.no_error("scaled_parent")
    found = session["scaled_parent"]
    assert "through its parent 'Carrier'" in found["hand"] and "clear the scale of 'Carrier'" in found["hand"], found
    assert "'Cam' is mirrored (a negative scale) through its parent 'Carrier'" in found["camera_mirrored"], found
    # mirrored by a negative scale (axis lengths 1): the same, not the backend's "clear its scale" for the rig
    assert "is mirrored (a negative scale) through its parent 'Carrier'" in found["mirrored"], found
    # before: each said to clear the scale of 'Carrier' or 'Character', already 1: the fix that fixes it now
    assert ("by the parent inverse of 'Hand.R' (parented to 'Carrier' while that was scaled)" in found["parent_inverse"]
            and "Alt-P › Clear Parent Inverse" in found["parent_inverse"]), found
    assert ("through the bone 'forearm' of 'Character'" in found["bone"]
            and "clear the pose scale of 'forearm'" in found["bone"]), found
    assert "set the Delta Scale of 'Hand.R' to 1" in found["delta"], found
    assert found["made"] is False, found


def test_a_scaled_camera_is_sent_as_blender_renders_through_it(session):
    # before: refused, saying to clear a scale that changes nothing in Blender's render
    session.no_error("scaled_camera")
    for name, found in session["scaled_camera"].items():
        assert not np.allclose(found["scale"], 1.0), (name, found)  # the camera was scaled
        assert np.allclose(found["sent_scale"], 1.0, atol=1e-9), (name, found)
        assert found["error"] < 1e-5, (name, found)  # the sent camera sees what Blender's scaled one does (float32)


def test_the_image_plane_fills_the_view_1_m_away_under_a_scaled_camera(session):
    # before: hung in the camera's scaled axes: 1 cm away under a camera scaled 0.01 by its parent (inside its clip
    # start: never seen), and twice the frame under a scale of (1, 1, 0.5)
    session.no_error("plane_under_scaled_cameras")
    found = session["plane_under_scaled_cameras"]
    assert np.allclose(found["imported"]["scale"], 0.01) and np.allclose(found["squashed"]["scale"], [1, 1, 0.5])
    for name, case in found.items():
        assert case["result"] == ["FINISHED"], (name, case)
        assert np.allclose(case["depth"], 1.0, atol=1e-5) and case["depth"][0] > case["clip_start"], (name, case)
        # where the unscaled camera shows it (a square image in the render's wider frame: its width across the view)
        assert np.allclose(case["corners"], found["unscaled"]["corners"], atol=2e-3), (name, case)
    assert [x for x, _ in found["unscaled"]["corners"]] == [0, 0, 1, 1], found
    # the image upright and unmirrored: its top at the top of the view, its left on the left (each corner's
    # texture coordinate against where Blender's camera sees that corner)
    for name, case in found.items():
        corners = case["uv_seen"]
        assert len(corners) == 4, (name, case)
        for u0, v0, x0, y0 in corners:
            for u1, v1, x1, y1 in corners:
                assert u0 == u1 or np.sign(u1 - u0) == np.sign(x1 - x0), (name, case)  # rightwards in both
                assert v0 == v1 or np.sign(v1 - v0) == np.sign(y1 - y0), (name, case)  # upwards in both


def test_a_plane_hidden_by_a_newer_result_shows_the_next_result_it_takes_without_a_camera(session):
    session.no_error("plane_without_camera")
    found = session["plane_without_camera"]
    assert found["hidden"] == ["probe image"] and found["hidden_then"] == [True, False], found
    assert "standing in the scene" in found["said"] and found["shown_now"] == [True, True], found


def test_a_prompt_longer_than_the_backend_takes_is_refused_in_the_panels_words(session):
    # before: the backend's "params.prompt: is 24000 characters long as the message header carries it, JSON-escaped"
    session.no_error("prompts_too_long")
    found = session["prompts_too_long"]
    assert found["made"] is False
    assert ("the Prompt is 9,000 characters long as sent, JSON-escaped (9,000 as written), more than the backend "
            "takes (8,000): shorten it" in found["ascii"]), found["ascii"]
    assert "the Prompt is 24,000 characters long as sent, JSON-escaped (2,000 as written)" in found["emoji"], found
    assert "the Negative Prompt is 10,000 characters long as sent, JSON-escaped (5,000 as written)" in found["negative"]
    assert not any("params." in message for message in found.values() if isinstance(message, str)), found


def test_a_hand_disabled_in_renders_is_left_out_of_the_image_and_said(session):
    session.no_error("hand_left_out")
    found = session["hand_left_out"]
    assert found["result"] == ["FINISHED"] and found["sides"] == [["left"]], found
    assert ("left out the right hand: 'Hand.R Mesh' is disabled in renders (its own or its collection's camera icon "
            "in the Outliner): enable it there to draw it") in found["printed"], found["printed"]
    assert "no hand to draw" in found["refused"] and "'Hand.L Mesh' is disabled" in found["refused"], found
    assert found["made_after_refusal"] is False, found
    notes = found["notes"]
    assert "no hand to draw: the right hand: 'Hand.R Mesh' is not in scene 'Rig Alone', only its rig is" in \
        notes["not_in_scene"], notes
    assert notes["no_mesh"] == ["the right hand: its rig 'Hand.R.001' has no hand mesh (deleted?): add the hands again "
                                "(HandForge › Add Hands) to draw it"], notes


def test_a_size_out_of_range_from_the_render_percentage_names_the_percentage(session):
    session.no_error("render_percentage")
    found = session["render_percentage"]
    assert "19200×10800 pixels (the scene's render resolution 1920×1080 at 1000%)" in found["1000"], found
    assert "64 to 2048 pixels a side, multiples of 8" in found["1000"], found
    # 1080 at 1% is 10.8: Blender truncates (BKE_render_resolution), as the size sent does
    assert "19×10 pixels" in found["1"] and "at 1%" in found["1"], found
    assert found["made"] is False, found


def test_pixels_wider_than_the_jobs_bound_are_generated(session):
    session.no_error("wide_pixels")
    assert session["wide_pixels"] == {"150:1": "", "200:1": "", "150:150": ""}, session["wide_pixels"]


def test_a_camera_deleted_while_the_image_is_made_is_said_in_the_report(session):
    session.no_error("camera_deleted")
    found = session["camera_deleted"]
    assert found["result"] == ["FINISHED"] and found["deleted"] and found["image"], found
    assert "not shown behind it or on a plane in front of it: the camera they were made for is no longer in the " \
           "scene" in found["printed"], found
    assert found["planes"] == [], found  # no plane left hanging from nothing


def test_an_image_made_while_another_scene_is_shown_lands_in_the_scene_it_was_made_from(session):
    session.no_error("scene_switched")
    found = session["scene_switched"]
    assert found["result"] == ["FINISHED"] and found["shown"] == "Looked At" and found["image"], found
    assert "shown in scene 'Scene', where they were made" in found["printed"], found
    assert found["plane"] == "HandForge seed 42" and "HandForge seed 42" in found["background"], found
    assert found["planes_elsewhere"] == [], found
    result, printed = found["deleted"]
    assert result == ["FINISHED"] and found["deleted_image"], found
    assert "no longer in the file (its scene was deleted, or another file opened)" in printed, found


def test_each_scene_gets_its_own_image_plane_and_an_artists_object_of_its_name_is_left_alone(session):
    session.no_error("planes_per_scene")
    found = session["planes_per_scene"]
    # before: the second scene took the first scene's plane (found by name in the whole file) to its camera
    assert found["second"]["results"] == [["FINISHED"], ["FINISHED"]], found
    assert found["second"]["planes"] == [["MESH", "Second Cam", "HandForge seed 12"]], found
    assert found["first"] == ["Cam", "HandForge seed 5", "Scene", 1], found
    # before: the empty holding the name made every run add a plane ("HandForge image.001", ".002", ...)
    assert found["third"]["results"] == [["FINISHED"], ["FINISHED"]], found
    planes = found["third"]["planes"]
    assert planes[0] == ["EMPTY", None, None] and planes[1:] == [["MESH", "Third Cam", "HandForge seed 14"]], found


def test_a_linked_copy_scene_gets_its_own_plane_and_leaves_the_first_scenes_alone(session):
    # before: the linked copy holds the first scene's plane (the same object), so its run re-parented it to its
    # own camera and showed its image there: the plane moved in the first scene too
    session.no_error("linked_copy")
    found = session["linked_copy"]
    assert found["results"] == [["FINISHED"]] * 3, found
    assert len(found["shared"]) == 1 and found["first"] == found["shared"], found
    assert found["first"][0][1:] == ["Cam", "HandForge seed 15"], found
    # the first scene's plane, linked there, and one of its own, reused by its second run
    own = [plane for plane in found["linked"] if plane != found["first"][0]]
    assert len(found["linked"]) == 2 and [p[1:] for p in own] == [["Linked Cam", "HandForge seed 17"]], found


def test_a_linked_copy_sharing_the_camera_shows_its_image_on_the_shared_plane(session):
    session.no_error("linked_copy_shared_camera")
    found = session["linked_copy_shared_camera"]
    assert found["results"] == [["FINISHED"]] * 2, found
    names = [p[0] for p in found["before"]]
    assert [p[:2] for p in found["shared"]] == [[n, "Cam"] for n in names], found  # no second plane
    assert [p[2] for p in found["shared"]] == ["HandForge seed 18"], found
    # the copy deleted, the first scene's run still finds its plane
    assert found["after"] == [[names[0], "Cam", "HandForge seed 19"]], found


def test_a_full_copy_scene_shows_its_images_on_its_copied_plane(session):
    session.no_error("full_copy")
    found = session["full_copy"]
    assert found["results"] == [["FINISHED"]] * 2, found
    assert len(found["before"]) == 1 and found["first"] == found["before"], found  # the first scene's untouched
    (name, camera, _), = found["copied"]
    assert camera == found["camera"] != found["before"][0][1], found
    assert found["copy"] == [[name, camera, "HandForge seed 61"]], found  # one plane, the last image


def test_a_copy_the_artist_made_of_the_plane_is_theirs_to_keep(session):
    session.no_error("artists_copy")
    found = session["artists_copy"]
    assert found["result"] == ["FINISHED"], found
    planes = found["planes"]
    assert {name: planes[name] for name in found["kept"]} == found["kept"], found  # both kept as they were
    new = [image for name, image in planes.items() if name not in found["before"]]
    assert new == ["HandForge seed 62"], found


def test_an_undo_while_the_image_is_made_still_brings_it_as_one_undo_step(session):
    session.no_error("undone_mid_job")
    found = session["undone_mid_job"]
    assert found["undone"] == [["FINISHED"]], found  # the undo did run while the job ran
    assert found["result"] == ["FINISHED"] and found["image"] is True, found
    assert found["background"] == "HandForge seed 21" and found["running"] == 0, found
    assert found["undone_again"] is False, found


def test_every_result_is_in_the_saved_file_with_its_pixels_and_properties(session):
    # before: a result nothing used (every variant after the first; any, with neither background nor plane) had
    # no user, so saving the .blend dropped it: reopened, only the images shown somewhere were left
    session.no_error("saved_results")
    found = session["saved_results"]
    assert found["result"] == ["FINISHED"], found
    assert found["made"] == ["HandForge seed 31", "HandForge seed 32", "HandForge seed 33"], found
    assert found["variants"] == [0, 1, 2], found
    assert len(found["saved"]) > 3 and "HandForge seed 6" in found["saved"], found
    assert found["reopened"] == found["saved"], found
    assert found["pixels"] == {name: True for name in found["saved"]}, found
    assert found["properties"] == {name: True for name in found["saved"]}, found


def test_a_file_opened_while_an_image_is_made_drops_its_preview(session):
    session.no_error("file_opened_mid_job")
    found = session["file_opened_mid_job"]
    assert found["started"] == ["RUNNING_MODAL"] and found["shown"] and found["running"] == 0
    assert not found["preview_left"] and found["held"] == 0
