"""Follow Wrist Path along a curve object that moves over the range (keyed, or carried by an animated parent): the
curve was placed where it stood on the frame shown when the button was pressed, for every frame, so the wrist went
along a still copy of it, another one for each frame pressed on (pressed on frame 1: 50 cm below where the curve was
at the end; on frame 20: 50 cm above where it was at the start). The wrist now follows the curve where it stands on
each frame, whatever frame is shown."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_moving_curve")
    return run_with_backend("motion_moving_curve_session.py", addon_zip, work / "blender")


def test_the_wrist_follows_a_moving_curve_where_it_stands_on_each_frame(session):
    session.no_error("moving_curve")
    found = session["moving_curve"]
    for pressed_at in ("1", "20"):
        run = found[pressed_at]
        assert run["result"] == ["FINISHED"], run
        wrists, targets = np.array(run["wrists"]), np.array(run["targets"])
        assert np.abs(wrists - targets).max() < 1e-3, (pressed_at, wrists[[0, 9, 19]], targets[[0, 9, 19]])
    assert np.allclose(found["1"]["wrists"], found["20"]["wrists"], atol=1e-5)  # the frame shown changes nothing


def test_a_moving_curve_blender_does_not_evaluate_is_refused_a_still_one_followed(session):
    session.no_error("hidden_curves")
    found = session["hidden_curves"]
    result, said = found["Hidden Moving Path"]
    assert result == ["CANCELLED"] and "left wrist path 'Hidden Moving Path'" in said, found
    assert found["Hidden Still Path"][0] == ["FINISHED"], found
