"""Reset Pose on bones holding huge but finite angles: every bone goes back to its rest pose."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_blender("reset_far_angles_session.py", addon_zip, tmp_path_factory.mktemp("reset_far") / "blender")


def test_reset_puts_bones_holding_huge_angles_back_to_rest_in_every_rotation_mode(session):
    # before: the channels kept their whole turns (the written angle nearest the old one): 1e6 rad in float32 is
    # off a whole turn by up to 0.03 rad, so the "reset" fingers stayed bent, the wrist 1e6 rad around
    session.no_error("reset")
    assert session["reset"] == {"fingers": [["FINISHED"], ""], "placement": [["FINISHED"], ""]}
    fingers, rest = session.arrays["fingers_right"], session.arrays["rest_right"]
    np.testing.assert_allclose(fingers, rest, atol=2e-6)
    np.testing.assert_allclose(session.arrays["placement_left"], session.arrays["rest_left"], atol=2e-6)
