"""``placement.evaluating_frames`` in real Blender: after frames evaluated to read other frames, the scene holds
what it held before, keys written just before and the artist's changes not keyed yet alike."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_blender("placement_session.py", addon_zip, tmp_path_factory.mktemp("placement"))


def test_keys_written_just_before_are_not_undone_as_an_artists_change(session):
    # before: the value from before the new keys (0.42 on frame 5) was put back over them (10.42), unsaid
    session.no_error("rekeyed")
    found = session["rekeyed"]
    assert found["x"] == pytest.approx(found["keys"], abs=1e-6), found


def test_keys_written_while_frames_are_evaluated_are_shown_after(session):
    # before: the value from before them (0.42 on frame 5) was put back over the new keys (10.42), unsaid
    session.no_error("meanwhile")
    found = session["meanwhile"]
    assert found["x"] == pytest.approx(found["keys"], abs=1e-6), found


def test_a_node_value_changed_not_keyed_is_kept(session):
    # before: a material's node tree (an ID of its own) was not looked at: back on its keys (0.42)
    session.no_error("node")
    assert session["node"]["roughness"] == pytest.approx(0.75), session["node"]


def test_export_renders_reading_the_scene_keeps_the_artists_changes_not_keyed_yet(session):
    # before: its own frame loop put the prop back on its keys (0.42 on frame 5)
    session.no_error("export_renders")
    assert session["export_renders"] == {"x": 0.25, "frame": 5}, session["export_renders"]


def test_an_object_moved_by_a_curve_baked_to_samples_moves_as_an_object(session):
    # before: no keys, so taken to stand still: read where it stood now on every frame (x 0 on frame 10)
    session.no_error("baked")
    found = session["baked"]
    assert found["moves"] is True and found["x"][0] == pytest.approx(0.0) and found["x"][1] > 0.9, found
