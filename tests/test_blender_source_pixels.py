"""Transfer Pose's source pixels of a float image (a script's float buffer, an EXR file): NaN or infinite pixels
refused, saying how many, where and what to do (they went as black, or white, without a word); a large one read
without copies of its buffer (a 4096² one took 1 GiB more than its 256 MiB)."""

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
        says = f"the source image {name!r} has {count} of its 32 pixels not finite (NaN or infinite)"
        assert says in message, message
        assert "the first at row 0, column 0 from the top left" in message, message
        assert "re-render the image or paint them over, or pick another image" in message, message


def test_a_large_float_source_is_read_in_its_own_buffer(session):
    # before: 4.2 times its float buffer (1072 MiB for a 4096² RGBA EXR: float32 copies for the un-premultiply,
    # the clip, the sRGB encoding, the alpha), and the reduction a float32 copy of the uint8 image (5 times it)
    session.no_error("large")
    found = session["large"]
    assert found["as_straight"] and found["reduced"], found  # the same pixels as before
    assert found["read_mib"] < 1.5 * found["buffer_mib"], found
    assert found["reducing_mib"] < 2.5 * found["sent_mib"], found


def test_a_source_transparent_everywhere_or_tiled_is_refused_saying_why(session):
    session.no_error("nothing_to_see")
    found = session["nothing_to_see"]
    assert "image 'Clear' is transparent everywhere (alpha 0): nothing of it would show" in found["clear"], found
    assert "set its Alpha to None" in found["clear"], found
    assert found["one_pixel"].startswith("sent "), found
    assert "image 'Tiles' is a UDIM tiled image: pick one tile's file" in found["tiled"], found
