"""Import Motion onto bones holding huge but finite angles (1e6 rad, a script's) or NaN: the keys show the clip's
pose (they went on from the channels' values: off by up to 0.03 rad in float32, or NaN)."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_blender("far_angle_keys_session.py", addon_zip, tmp_path_factory.mktemp("far_keys") / "blender")


def test_motion_imported_over_huge_or_nan_angles_keys_the_clips_pose_in_every_rotation_mode(session):
    session.no_error("import")
    found = session["import"]
    assert found["import"][0] == ["FINISHED"], found
    for side in ("right", "left"):  # right: 1e6 rad before, left: NaN
        assert max(found[side]) < 2e-5, (side, found[side])
