"""Interaction in real Blender through a real backend (templates engine: no weights).

Key Candidates on frames before 0 keyed them and only said Blender would not play them, while the motion buttons
refuse frames before 0: it now refuses too, before anything is keyed, in the motion buttons' words, naming the frames
and what to do; the candidates stay to browse."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_with_backend

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("interaction_frames_and_panel")
    return run_with_backend("interaction_frames_and_panel_session.py", addon_zip, work / "blender",
                            unset=("HANDFORGE_INTERACTION_CHECKPOINT",))


def test_key_candidates_before_frame_0_is_refused_before_anything_is_keyed(session):
    session.no_error("before_zero")
    found = session["before_zero"]
    assert found["frame"] == -3, found
    result, said = found["result"]
    assert result == ["CANCELLED"], found
    assert "frames -3 to -1: frames before 0 cannot be asked for" in said, said
    assert "go to frame 0 or later" in said, said
    assert found["keys_after"] == found["keys_before"], found
    assert found["still_browsed"] == 3, found

