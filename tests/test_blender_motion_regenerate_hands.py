"""Regenerate after the panel's Left/Right Hand fields were cleared: the motion buttons then take the scene's first
hand of each side, and with two pairs in the scene Regenerate keyed the other pair, which never had the motion
(README: "It acts on the hands it keyed ... with ... other hands chosen in the panel since, it says so instead").
It now says so and keys nothing; with one pair it still runs. Refused for keys deleted since, it advised what only
In-between can do ("widen the range"); it now advises what Regenerate takes."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_regenerate_hands")
    return run_with_backend("motion_regenerate_hands_session.py", addon_zip, work / "blender")


def test_regenerate_refuses_the_other_pair_the_cleared_fields_would_take(session):
    session.no_error("two_pairs")
    found = session["two_pairs"]
    assert found["made"][0] == ["FINISHED"], found
    assert found["regenerated"][0] == ["CANCELLED"], found
    said = found["regenerated"][1]
    assert "no longer names as its hands" in said and "names no left or right hand" in said, said
    assert repr(found["first_names"]["left"]) in said, said  # the rig it would have keyed
    assert found["first_keys"] == {"left": 0, "right": 0}, found
    assert all(n > 0 for n in found["second_keys"].values()), found


def test_regenerate_with_one_pair_and_cleared_fields_still_runs(session):
    session.no_error("one_pair")
    found = session["one_pair"]
    assert found["made"][0] == ["FINISHED"] and found["regenerated"][0] == ["FINISHED"], found
    assert all(n > 0 for n in found["keys"].values()), found


def test_regenerate_refused_for_too_few_keys_advises_what_regenerate_can_take(session):
    session.no_error("fewer_keys")
    found = session["fewer_keys"]
    assert found["inbetween"][0] == ["FINISHED"], found
    result, said = found["regenerated"]
    assert result == ["CANCELLED"] and "is keyed only at frame 1 of 1-20" in said, said
    advice = ("key the pose at another frame (Key Pose), or run In-between again over a wider range or on the other "
              "hand only")
    assert said.strip().endswith(advice), said
    assert "widen the range" not in said, said
    result, said = found["inbetween_again"]  # In-between itself keeps its own advice
    assert result == ["CANCELLED"] and "widen the range, or choose the other hand only" in said, said
