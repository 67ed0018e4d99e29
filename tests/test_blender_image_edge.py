"""Generate Image and Transfer Pose at the edges of what an artist may set (real Blender, a real backend the add-on
starts, tiny random SD weights): seeds at the top of the Seed field with variants, the image plane in Edit Mode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from handforge_shared import pose_library

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend
from tests.support import tiny_sd

pytestmark = [pytest.mark.blender, pytest.mark.slow]
TOP = 2**31 - 1


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("image_edge")
    sd = tiny_sd.build_sd(work / "sd")
    guidance = tiny_sd.build_controlnet(work / "guidance", sd, seed=1)
    pose = {s: pose_library.get("fist", side=s).to_dict() for s in ("left", "right")}
    np.savez(work / "two_images.npz", images=np.stack([np.full((8, 16, 3), grey, np.uint8) for grey in (60, 200)]))
    args = {"size": 64, "sd": str(sd), "guidance": str(guidance), "two_images": str(work / "two_images.npz"),
            "pose": json.dumps({"format": "handforge.pose", "hands": pose})}
    return run_with_backend("image_edge_session.py", addon_zip, work / "blender", args,
                            unset=("HANDFORGE_CONTROLNETS",), timeout=900)


@pytest.mark.parametrize("button", ["generate", "transfer"])
def test_variants_past_the_largest_seed_are_refused_before_the_job(session, button):
    """Before: sent, run, and every image dropped once made (an image's seed property holds 32 bits)."""
    session.no_error("scene", "seeds_at_the_top")
    found = session["seeds_at_the_top"][button]
    result, said = found["refused"]
    assert result == ["CANCELLED"] and found["made"] == [], found
    assert (f"seed {TOP} with 2 variants: the last would be seed {TOP + 1}, past {TOP}, the largest Blender keeps; "
            f"use a seed of at most {TOP - 1}") in said, said
    assert "queued" not in said and "sent" not in said, said  # (refused before anything went to the backend)


def test_variants_up_to_the_largest_seed_are_named_and_kept_by_it(session):
    session.no_error("seeds_at_the_top")
    found = session["seeds_at_the_top"]["below"]
    assert found["ran"] == ["FINISHED"]
    assert found["made"] == {f"HandForge seed {TOP - 1}": TOP - 1, f"HandForge seed {TOP}": TOP}


def test_a_plane_in_edit_mode_keeps_the_images_and_says_why_it_is_not_refilled(session):
    """Before: "Cannot add vertices in edit mode" while the plane was refilled, and the whole result dropped."""
    session.no_error("plane_in_edit_mode")
    found = session["plane_in_edit_mode"]
    assert found["ran"] == ["FINISHED"], found
    assert found["made"] == ["HandForge seed 12"], found
    assert found["background"] == "HandForge seed 12"  # (behind the camera as asked)
    assert ("not shown on plane 'HandForge image': it is in Edit Mode (back in Object Mode, run it again, or pick the "
            "image in the plane's material)") in found["said"], found
    # the plane as it was: its four corners (written back on leaving Edit Mode), the older image
    assert found["first"] == found["after"] == {"vertices": 4, "image": "HandForge seed 11"}


def test_run_jobs_plane_in_edit_mode_keeps_the_images_and_says_why(session):
    """Before: "HandForge failed (RuntimeError: Error: Cannot add vertices in edit mode)", the images left in the
    file all the same."""
    session.no_error("run_job_plane_in_edit_mode")
    found = session["run_job_plane_in_edit_mode"]
    assert found["ran"] == ["FINISHED"], found
    assert found["made"] == ["echo image_000.001", "echo image_001.001"], found
    assert ("not shown on plane 'echo image': it is in Edit Mode (back in Object Mode, run it again, or pick the image "
            "in the plane's material)") in found["said"], found
    assert found["first"] == found["after"] == {"vertices": 4, "image": "echo image_000"}
