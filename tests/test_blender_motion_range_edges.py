"""In-between where the range's edges fall between the artist's keys, and on a hand whose wrist was never keyed.
Before: frames 7-12 of a range 7-31 held the pose of the key at 13 (the spline's and the model's way with frames
before the first observation), so the hand jumped to it at 7, and the curve from the key at 1 bent to meet that
(5 mm at frame 5); the learned engine moved a wrist nobody keyed by 25 mm. A kept part now joins the animation at
an edge its keys go beyond, and one never keyed stays as it is."""

from __future__ import annotations

import numpy as np
import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_range_edges")
    return run_with_backend("motion_range_edges_session.py", addon_zip, work / "blender")


def test_a_range_between_keys_joins_the_animation_at_its_edges(session):
    session.no_error("range_between_keys")
    found = session["range_between_keys"]
    assert found["result"][0] == ["FINISHED"], found["result"]
    before, after = np.array(found["before"]), np.array(found["after"])  # frames 0-40
    # at the edges, where the animation was; in between, moving (it held 0.04, the key at 13, over 7-12)
    assert abs(after[7] - before[7]) < 1e-4 and abs(after[31] - before[31]) < 1e-4, (before, after)
    assert np.all(np.diff(after[7:14]) > 0), after[7:14]  # rising from 7 to the key at 13, not held
    # outside the range the curve keeps close to its shape (the keys there exact; its handles see new neighbours)
    assert after[1] == before[1] and after[37] == before[37]
    outside = np.r_[0:7, 32:41]
    assert np.abs(after[outside] - before[outside]).max() < 2e-3, np.abs(after - before)


def test_a_wrist_never_keyed_stays_where_it_is(session):
    session.no_error("wrist_never_keyed")
    found = session["wrist_never_keyed"]
    rest_location, rest_rotation = (np.array(v) for v in found["rest"])
    for run in found["runs"]:  # the first run, then one more (it was held once, then moved 5 cm: a review)
        assert run["result"][0] == ["FINISHED"], run["result"]
        assert run["wrist_keys"] == 0, run  # left unkeyed, so held again
        for location, rotation in run["seen"]:
            assert np.abs(np.array(location) - rest_location).max() < 1e-4, (location, rest_location)
            assert min(np.abs(np.array(rotation) - rest_rotation).max(),
                       np.abs(np.array(rotation) + rest_rotation).max()) < 1e-4, (rotation, rest_rotation)


def test_the_spline_engine_says_it_placed_the_parts_not_kept(session):
    session.no_error("spline_with_wrists_free")
    found = session["spline_with_wrists_free"]
    assert found["spline"][0] == found["learned"][0] == ["FINISHED"], found
    note = ("the Spline engine does not generate: Wrist Rotation, Wrist Location (not kept) took Add Hands' pose and "
            "placement (flat fingers, palms down, the hands side by side); the Learned engine generates them")
    assert note in found["spline"][1], found["spline"][1]
    assert "does not generate" not in found["learned"][1], found["learned"][1]
