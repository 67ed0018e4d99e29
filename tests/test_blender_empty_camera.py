"""A scene whose camera is an Empty: the buttons that see through the active camera say that it is not a camera
object and how to set one (they said the scene had no active camera, the artist seeing one set)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("empty_camera")
    np.savez(work / "image.npz", image=np.zeros((8, 16, 3), np.uint8))
    return run_with_backend("empty_camera_session.py", addon_zip, work / "blender",
                            {"renders": str(work / "renders"), "image": str(work / "image.npz")})


def test_export_renders_says_the_scene_camera_is_an_empty_and_how_to_fix_it(session):
    session.no_error("empty")
    said = session["empty"]["export"]
    assert ("the scene's camera 'Empty Cam' is an empty, not a camera object: set a camera object there (Scene "
            "properties › Camera) or export from All Cameras") in said, said
    assert "no active camera" not in said, said


def test_run_jobs_plane_says_why_it_stands_in_the_scene(session):
    result, printed = session["empty"]["plane"]
    assert result == ["FINISHED"], printed
    assert "standing in the scene (the scene's camera 'Empty Cam' is an empty, not a camera object)" in printed, printed
