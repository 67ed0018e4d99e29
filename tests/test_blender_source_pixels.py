"""Transfer Pose's source pixels of a float image (a script's float buffer, an EXR file) holding NaN or infinite
pixels: refused, saying how many, where and what to do (they went as black, or white, without a word)."""

from __future__ import annotations

import pytest

from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    return run_blender("source_pixels_session.py", addon_zip, tmp_path_factory.mktemp("source_pixels") / "blender")


def test_a_float_source_with_nan_or_infinite_pixels_is_refused_saying_how_many(session):
    # before: NaN went as 0 (black) and infinity as 255 (white), unsaid
    session.no_error("not_finite")
    found = session["not_finite"]
    assert found["clean"] == [4, 8, 3]  # a finite one is sent
    for name, count in (("Fireflies", 4), ("fireflies.exr", 3)):
        message = found["buffer" if name == "Fireflies" else "file"]
        assert f"the source image {name!r} has {count} of its 32 pixels not finite (NaN or infinite)" in message, message
        assert "the first at row 0, column 0 from the top left" in message, message
        assert "re-render the image or paint them over, or pick another image" in message, message
