"""In-between on a hand whose keys are all imported (Import Motion's generated keys). It said the hand "is keyed on
no frame of 1-48" though it held keys on every one of them: only the artist's own keys count. It now says the keys
there are imported or generated, not the artist's own, and points to Make Mine, which makes them so."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("motion_imported_keys")
    return run_with_backend("motion_imported_keys_session.py", addon_zip, work / "blender")


def test_inbetween_over_imported_keys_says_they_are_not_yours_and_names_make_mine(session):
    session.no_error("imported")
    found = session["imported"]
    assert found["keys"] > 0, found
    message = found["refused"]
    assert "keyed on no frame" not in message, message
    assert "has your own keys on no frame of 1-48" in message, message
    assert "its keys on 3 frames there are imported or generated, not your own" in message, message
    assert found["label"] == "Make Mine" and f"with {found['label']} (Animation panel, Generated keys)" in message, (
        message)
    assert found["made_mine"][0] == ["FINISHED"], found
    assert found["after"][0] == ["FINISHED"], found  # the same button runs on them now
