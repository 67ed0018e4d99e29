"""The export's camera sampler against hand-computed positions on its documented sphere (sample_camera: azimuth 0
is +Z of the model frame, the person's side; elevation above the hands, +Y up; roll about the view axis)."""

from __future__ import annotations

import numpy as np
import pytest

from handforge.export.sampler import sample_camera
from handforge.export.spec import parse_spec

WIDTH, HEIGHT = 64, 48
S30, C30 = 0.5, np.sqrt(3) / 2  # sin 30°, cos 30°


def _camera(distance: float, elevation: float, azimuth: float, centre=(0.0, 0.0, 0.0)):
    spec = parse_spec({"seed": 1, "samples": 1, "width": WIDTH, "height": HEIGHT, "render": {"engine": "none"},
                       "camera": {"distance": [distance, distance], "elevation": [elevation, elevation],
                                  "azimuth": [azimuth, azimuth], "roll": [0, 0]}})
    return sample_camera(spec, np.random.default_rng(0), np.asarray(centre, np.float64))


@pytest.mark.parametrize(("distance", "elevation", "azimuth", "centre", "position"), [
    # azimuth 90°, 30° above: towards +X, raised by sin 30° of the distance
    (0.5, 30, 90, (0, 0, 0), (0.5 * C30, 0.5 * S30, 0.0)),
    # azimuth 0, level: the person's side, +Z
    (0.5, 0, 0, (0, 0, 0), (0.0, 0.0, 0.5)),
    # azimuth 0, 30° below the hands, about an off-origin centre
    (0.4, -30, 0, (0.1, 0.2, -0.3), (0.1, 0.2 - 0.4 * S30, -0.3 + 0.4 * C30)),
    # azimuth −90°: towards −X, 30° above
    (0.2, 30, -90, (0, 0, 0), (-0.2 * C30, 0.2 * S30, 0.0)),
])
def test_the_camera_sits_on_the_documented_sphere_and_looks_at_the_centre(distance, elevation, azimuth, centre,
                                                                          position):
    """Mutation SA1 (sampler.py: the elevation's sign flipped) put the camera below the hands for a positive
    elevation; no test caught it."""
    camera, params = _camera(distance, elevation, azimuth, centre)
    assert params["distance"] == distance and params["elevation"] == elevation and params["azimuth"] == azimuth
    assert np.allclose(camera.position, position, atol=1e-9), camera.position
    # it looks at the centre: the centre is straight ahead, at the distance, on the principal point
    assert np.allclose(camera.to_camera(centre), (0.0, 0.0, distance), atol=1e-9)
    uv, z = camera.project(np.asarray(centre, np.float64))
    assert z > 0 and np.allclose(uv, (WIDTH / 2, HEIGHT / 2), atol=1e-9)
    # roll 0: world up (+Y) is image up (smaller pixel y), and the image is not mirrored
    above, _ = camera.project(np.asarray(centre, np.float64) + (0.0, 0.01, 0.0))
    assert above[1] < HEIGHT / 2
    assert np.isclose(np.linalg.det(camera.R), 1.0)
