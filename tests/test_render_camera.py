"""The camera model without Blender: round trips, the GL matrix and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from handforge.render.camera import Camera, CameraError, from_blender, look_at, to_blender


def test_look_at_centres_the_target_and_keeps_up_up():
    R, t = look_at([0.0, -1.0, 0.5], [0.0, 0.0, 0.0], up=(0, 0, 1))
    cam = Camera.from_fov(R, t, 200, 100, 150.0)
    (u, v), z = cam.project(np.zeros(3))
    assert (u, v) == pytest.approx((100.0, 50.0)) and z == pytest.approx(np.sqrt(1.25))
    (_, v_above), _ = cam.project([0.0, 0.0, 0.1])
    assert v_above < 50.0  # higher in the world is higher in the image (smaller row)


def test_a_positive_roll_turns_what_the_camera_sees_anticlockwise():
    """look_at's roll, as its docstring says (every test had drawn rolls symmetrically, so a flipped sign passed):
    the camera looks along +y from y = -1; a point to its right (+x), after a roll of +90°, is above the centre
    (turned anticlockwise in the image, whose rows grow downwards), after -90° below it."""
    found = {}
    for degrees in (0.0, 90.0, -90.0):
        R, t = look_at([0.0, -1.0, 0.0], [0.0, 0.0, 0.0], up=(0, 0, 1), roll=np.radians(degrees))
        (u, v), _ = Camera.from_fov(R, t, 200, 200, 150.0).project([0.1, 0.0, 0.0])
        found[degrees] = (u - 100.0, v - 100.0)
    assert found[0.0][0] > 10 and found[0.0][1] == pytest.approx(0.0, abs=1e-9)  # right of the centre
    assert found[90.0][0] == pytest.approx(0.0, abs=1e-9) and found[90.0][1] < -10  # above it
    assert found[-90.0][0] == pytest.approx(0.0, abs=1e-9) and found[-90.0][1] > 10  # below it


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
@pytest.mark.parametrize("size", [(640, 480), (300, 700)])
def test_blender_round_trip(fit, size):
    R, t = look_at([0.3, -0.8, 0.4], [0.0, 0.1, 0.0], roll=0.3)
    K = np.array([[500.0, 0, 0.4 * size[0]], [0, 520.0, 0.55 * size[1]], [0, 0, 1]])
    cam = Camera(K, R, t, *size)
    back = from_blender(to_blender(cam, sensor_size=24.0, sensor_fit=fit))
    assert np.allclose(back.K, K) and np.allclose(back.R, R) and np.allclose(back.t, t)


def test_blender_settings_keep_lens_and_sensor_at_blenders_1_mm_and_the_camera():
    """(Mutation C22, camera.py to_blender: the scaling up of a lens or sensor side under 1 mm left out, survived
    here; only the slow Blender test held it.) A tall image of a short focal length: Blender raises a lens or sensor
    side under 1 mm to 1 mm, zooming the image, so none is given to it, and the settings read back are the camera."""
    R, t = look_at([0.0, -0.5, 0.0], [0.0, 0.0, 0.0])
    for width, height, focal in ((64, 320, 32.0), (4, 600, 300.0)):
        cam = Camera(np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1]]), R, t, width, height)
        for fit in ("AUTO", "HORIZONTAL", "VERTICAL"):
            settings = to_blender(cam, sensor_fit=fit)
            assert min(settings.lens, settings.sensor_width, settings.sensor_height) >= 1.0, (width, fit, settings)
            assert np.allclose(from_blender(settings).K, cam.K)


def test_gl_projection_maps_pixels_to_ndc():
    R, t = look_at([0.0, -1.0, 0.0], [0.0, 0.0, 0.0])
    cam = Camera(np.array([[300.0, 0, 90], [0, 310.0, 70], [0, 0, 1]]), R, t, 160, 120)
    points = np.random.default_rng(0).normal(0, 0.1, (20, 3))
    uv, _ = cam.project(points)
    clip = np.c_[cam.to_camera(points), np.ones(20)] @ cam.gl_projection(0.01, 10.0).T
    ndc = clip[:, :3] / clip[:, 3:]
    assert np.allclose((ndc[:, 0] + 1) / 2 * 160, uv[:, 0]) and np.allclose((1 - ndc[:, 1]) / 2 * 120, uv[:, 1])
    assert np.all(np.abs(ndc[:, 2]) < 1)


def test_bad_cameras_say_what_is_wrong():
    with pytest.raises(CameraError, match="rotation"):
        Camera(np.eye(3), np.diag([1.0, 1.0, -1.0]), np.zeros(3), 10, 10)
    with pytest.raises(CameraError, match="shape"):
        Camera(np.eye(2), np.eye(3), np.zeros(3), 10, 10)
    with pytest.raises(CameraError, match=r"^t has non-finite values \(NaN or infinity\): \[0.0, nan, 1.0\]$"):
        Camera(np.eye(3), np.eye(3), [0.0, np.nan, 1.0], 10, 10)
    # 640.7 was 640 unsaid, NaN a plain ValueError, a width past any float an OverflowError
    for width in (640.7, float("nan"), 0, True, "640", None, 10**400):
        with pytest.raises(CameraError, match="image size must be whole numbers of pixels"):
            Camera(np.eye(3), np.eye(3), np.zeros(3), width, 10)
    with pytest.raises(CameraError) as huge:
        Camera(np.eye(3), np.eye(3), np.zeros(3), 10**400, 10)
    assert len(str(huge.value)) < 120  # the 401 digits shortened
    assert Camera(np.eye(3), np.eye(3), np.zeros(3), np.int64(64), 48.0).width == 64
    with pytest.raises(CameraError, match="sensor_fit"):
        to_blender(Camera.from_fov(np.eye(3), np.zeros(3), 10, 10, 10.0), sensor_fit="DIAGONAL")


def test_pixel_aspects_blender_would_clamp_are_refused_naming_the_limit():
    """Blender clamps pixel_aspect_x and _y to 1–200 without a word: a camera of fx/fy = 300 became one of 200
    in Blender, its RGB off the masks and labels by up to 502 px."""
    R, t = look_at([0.0, -1.0, 0.0], [0.0, 0.0, 0.0])
    for fx, fy in ((3000.0, 10.0), (10.0, 3000.0)):
        with pytest.raises(CameraError, match=r"ratio of 300, more than the 200 Blender renders .* within 200× of "
                                              r"each other") as refused:
            to_blender(Camera(np.array([[fx, 0, 32], [0, fy, 24], [0, 0, 1]]), R, t, 64, 48))
        assert refused.value.value == "pixel_aspect"
    for fx, fy in ((2000.0, 10.0), (10.0, 2000.0)):  # 200 itself renders, and round-trips
        K = np.array([[fx, 0, 32], [0, fy, 24], [0, 0, 1]])
        settings = to_blender(Camera(K, R, t, 64, 48))
        assert max(settings.pixel_aspect_x, settings.pixel_aspect_y) == pytest.approx(200.0)
        assert np.allclose(from_blender(settings).K, K)


def test_gl_meshes_whose_faces_differ_late_are_drawn_each_with_its_own():
    pytest.importorskip("moderngl")
    from handforge.render.gl import GLUnavailable, renderer

    try:
        gl = renderer()
    except GLUnavailable as exc:
        pytest.skip(str(exc))
    R, t = look_at([0.0, 0.0, -1.0], [0.0, 0.0, 0.0], up=(0, -1, 0))
    cam = Camera.from_fov(R, t, 64, 64, 60.0)
    vertices = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [-0.1, -0.1, 0], [-0.05, -0.1, 0], [-0.1, -0.05, 0]])
    head = np.tile([[0, 1, 2]], (400, 1))  # the same first 4,800 bytes; the last face differs
    one, two = np.vstack([head, [[0, 1, 2]]]), np.vstack([head, [[3, 4, 5]]])
    drawn_one = gl.render(cam, [(vertices, one)]).mask(0).sum()
    assert gl.render(cam, [(vertices, two)]).mask(0).sum() > drawn_one > 0


def test_gl_meshes_of_changing_sizes_keep_no_old_buffers():
    """moderngl frees nothing by itself: a vertex buffer replaced for a mesh of another size stayed allocated
    (an export alternating one-hand and two-hand samples grew by a buffer a sample)."""
    pytest.importorskip("moderngl")
    from handforge.render.gl import GLUnavailable, renderer

    try:
        gl = renderer()
    except GLUnavailable as exc:
        pytest.skip(str(exc))
    created = []

    def buffer(*args, make=gl.ctx.buffer, **kwargs):
        created.append(make(*args, **kwargs))
        return created[-1]

    R, t = look_at([0.0, 0.0, -1.0], [0.0, 0.0, 0.0], up=(0, -1, 0))
    cam = Camera.from_fov(R, t, 16, 16, 20.0)
    vertices = np.random.default_rng(0).normal(0.0, 0.05, (100, 3))
    gl.ctx.buffer = buffer
    try:
        for n in (50, 60, 50, 60, 50):
            gl.render(cam, [(vertices[:n], np.array([[0, 1, 2]]))])
    finally:
        del gl.ctx.buffer
    assert sum(type(b.mglo).__name__ != "InvalidObject" for b in created) <= 2  # this size's and the faces'


def _gl_renderer():
    pytest.importorskip("moderngl")
    from handforge.render.gl import GLUnavailable, renderer

    try:
        return renderer()
    except GLUnavailable as exc:
        pytest.skip(str(exc))


def test_gl_a_bad_mesh_is_refused_saying_which_and_the_next_render_is_right():
    """The renderer is one per thread: a mesh without vertices released the old vertex buffer and then failed
    to allocate, and every later render of that thread failed ('InvalidObject' object has no attribute 'size');
    a NaN vertex blanked every mesh of the image (a NaN clip range), faces past the vertices drew garbage."""
    gl = _gl_renderer()
    R, t = look_at([0.0, -0.5, 0.0], [0.0, 0.0, 0.0])
    cam = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), R, t, 64, 64)
    vertices = np.array([[-0.05, 0, -0.05], [0.05, 0, -0.05], [0, 0, 0.05]])
    faces = np.array([[0, 1, 2]])
    good = [(vertices, faces), (vertices + [0.02, -0.01, 0.0], faces)]
    before = gl.render(cam, good)
    assert 0 < before.mask(0).sum() and 0 < before.mask(1).sum()
    nan_vertex = vertices.copy()
    nan_vertex[1, 2] = np.nan
    bad_meshes = {
        r"mesh 0 \(instance 1\): vertices must be numbers of shape \(V, 3\) with V >= 1, got float64 of shape \(0, 3\)":
            [(np.zeros((0, 3)), np.zeros((0, 3), int)), good[1]],
        r"mesh 1 \(instance 2\): 1 of its 3 vertices are not finite \(NaN or infinity\), the first at index 1":
            [good[0], (nan_vertex, faces)],
        r"mesh 1 \(instance 2\): face 1 \[0, 1, 7\] names a vertex outside 0 to 2":
            [good[0], (vertices, np.array([[0, 1, 2], [0, 1, 7]]))],
        r"mesh 0 \(instance 1\): faces must be whole numbers of shape \(F, 3\) with F >= 1":
            [(vertices, np.zeros((0, 3), int))],
    }
    for message, meshes in bad_meshes.items():
        with pytest.raises(ValueError, match=message):
            gl.render(cam, meshes)
        after = gl.render(cam, good)
        assert np.array_equal(after.instance, before.instance) and np.array_equal(after.depth, before.depth)


def test_gl_a_failed_vertex_buffer_allocation_leaves_the_renderer_working():
    """The old buffer was released before the new one was allocated; an allocation that failed (GL out of
    memory) left the released one in the renderer's list, used by every later render."""
    gl = _gl_renderer()
    R, t = look_at([0.0, -0.5, 0.0], [0.0, 0.0, 0.0])
    cam = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), R, t, 64, 64)
    small = (np.array([[-0.05, 0, -0.05], [0.05, 0, -0.05], [0, 0, 0.05]]), np.array([[0, 1, 2]]))
    large = (np.vstack([small[0], small[0] + [0.0, 0.0, 0.02]]), np.array([[0, 1, 2], [3, 4, 5]]))
    before = gl.render(cam, [small])

    def out_of_memory(*args, **kwargs):
        raise MemoryError("simulated: GL could not allocate the buffer")

    gl.ctx.buffer = out_of_memory
    try:
        with pytest.raises(MemoryError):
            gl.render(cam, [large])  # another size: a new buffer
    finally:
        del gl.ctx.buffer
    assert np.array_equal(gl.render(cam, [small]).instance, before.instance)
    assert gl.render(cam, [large]).mask(0).sum() >= before.mask(0).sum() > 0


def test_gl_images_far_from_the_world_origin_are_those_at_it():
    """Vertices went to GL as float32 world coordinates, moved to the camera in float32 in the shader, while the
    labels are float64: a hand 10 km from the origin changed 196 of its 25k mask pixels, at 100 km 1742."""
    gl = _gl_renderer()
    rng = np.random.default_rng(1)
    vertices, faces = rng.normal(0.0, 0.03, (300, 3)), rng.integers(0, 300, (200, 3))  # a hand-sized mesh
    K = np.array([[600.0, 0, 128], [0, 600.0, 128], [0, 0, 1]])
    at_origin = None
    for distance in (0.0, 1e4, 1e5, 1e6):  # up to the export's world limit
        offset = distance * np.array([1.0, 0.7, 0.3])
        R, t = look_at(offset + [0.0, -0.5, 0.1], offset)
        images = gl.render(Camera(K, R, t, 256, 256), [(vertices + offset, faces)], normals=True)
        if at_origin is None:
            at_origin = images
        assert np.array_equal(images.instance, at_origin.instance), f"{distance:g} m from the origin"
        assert np.allclose(images.depth, at_origin.depth, atol=1e-5)
        assert np.allclose(images.normals, at_origin.normals, atol=1e-3)
    assert at_origin.mask(0).sum() > 20000


def test_the_gl_availability_probe_leaves_the_threads_renderer_drawing():
    """The export engine's status tried a GL context on the calling thread and released it: that left the thread
    with no current context, and its renderer drew nothing afterwards (the full suite's next export segfaulted
    in Mesa). In a fresh interpreter, so that a crash fails this test alone: a renderer made through
    renderer() and a GLRenderer of its own, each drawing the same image before and after the probe."""
    import subprocess
    import sys

    _gl_renderer()  # (skips where there is no GL here)
    code = """
import numpy as np
from handforge.render import gl
from handforge.render.camera import Camera, look_at
R, t = look_at([0.0, -0.5, 0.0], [0.0, 0.0, 0.0])
cam = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), R, t, 64, 64)
mesh = (np.array([[-0.05, 0, -0.05], [0.05, 0, -0.05], [0, 0, 0.05]]), np.array([[0, 1, 2]]))
for make in (gl.GLRenderer, gl.renderer):  # (its own first: the probe then runs, on a thread of its own)
    drawer = make()
    before = drawer.render(cam, [mesh]).instance
    assert gl.availability() == ("", ""), gl.availability()
    gl.availability.cache_clear()
    after = drawer.render(cam, [mesh]).instance
    print(make.__name__, int((before > 0).sum()), bool(np.array_equal(before, after)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.split("\n")
    assert lines[0].split()[0] == "GLRenderer" and lines[1].split()[0] == "renderer", done.stdout
    assert all(int(line.split()[1]) > 0 and line.split()[2] == "True" for line in lines[:2]), done.stdout


@pytest.mark.parametrize("platform, egl", [("linux", True), ("darwin", False), ("win32", False)])
def test_gl_context_asks_for_egl_only_on_linux_and_says_what_to_install_there(monkeypatch, platform, egl):
    """create_context() asked moderngl for backend="egl" everywhere: macOS's and Windows's glcontext wheels have
    no EGL backend (their defaults are CGL and WGL), so no context was ever made there, and the hint said to
    apt-get Debian packages. Now EGL on Linux only, the platform default elsewhere, each with its own hint."""
    import sys
    import types

    from handforge.render import gl

    calls: list[dict] = []

    def create_standalone_context(**kwargs):
        calls.append(kwargs)
        raise Exception("no context for this test")

    monkeypatch.setitem(sys.modules, "moderngl",
                        types.SimpleNamespace(create_standalone_context=create_standalone_context))
    monkeypatch.setattr(sys, "platform", platform)
    with pytest.raises(gl.GLUnavailable) as raised:
        gl.create_context()
    assert calls == ([{"require": 330, "backend": "egl"}] if egl else [{"require": 330}])
    if egl:
        assert "libegl1" in raised.value.hint and "EGL" in raised.value.reason
    else:
        assert "libegl1" not in raised.value.hint and "OpenGL 3.3" in raised.value.hint
        assert "EGL" not in raised.value.reason


@pytest.mark.parametrize("winding", [[[0, 1, 2], [0, 2, 3]], [[0, 2, 1], [0, 3, 2]]])
def test_gl_a_plane_facing_the_camera_has_its_depth_normal_and_shading_by_hand(winding):
    """A square in the plane z = 1 m of the camera frame, off the optical axis, either winding: its pixels hold
    depth 1 (camera z, not the distance to the camera: 1.03 to 1.08 m there), the normal (0, 0, −1) (towards the
    camera; the frame's z looks forward) and the mesh image's shading computed by hand: ambient 0.3 plus 0.8/3 per
    light × cos to it, the viewer's light head-on (1) and the upper left and upper right ones at
    (∓0.6, −0.6, −0.5) (0.5 / √0.97 each): 0.8374 × base colour (1, 1, 0.9) = (214, 214, 192) of 255. The
    background is 0 everywhere. Before this test, normals turned away from the camera (shading 0.3 only) or
    depth as the distance passed every test of the GL renderer's callers."""
    pytest.importorskip("moderngl")
    from handforge.render.gl import GLUnavailable, renderer

    try:
        gl = renderer()
    except GLUnavailable as exc:
        pytest.skip(str(exc))
    cam = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 64)
    square = np.array([[0.05, -0.25, 1.0], [0.3, -0.25, 1.0], [0.3, 0.2, 1.0], [0.05, 0.2, 1.0]])
    images = gl.render(cam, [(square, np.array(winding))], normals=True)
    inside = np.zeros((64, 64), bool)
    inside[32 - 25:32 + 20, 32 + 5:32 + 30] = True  # pixels u = 32 + 100 x, v = 32 + 100 y
    covered = images.instance == 1
    assert (covered[inside]).all() and covered.sum() <= inside.sum() + 2 * 64  # (edge pixels may go either way)
    np.testing.assert_allclose(images.depth[covered], 1.0, atol=1e-6)
    np.testing.assert_allclose(images.normals[covered], np.tile([0.0, 0.0, -1.0], (covered.sum(), 1)), atol=1e-5)
    shade = 0.3 + 0.8 / 3 * (1 + 2 * 0.5 / np.sqrt(0.97))
    expected = np.round(np.array([1.0, 1.0, 0.9]) * shade * 255)
    assert expected.tolist() == [214, 214, 192]
    assert np.abs(images.mesh[covered].astype(int) - expected).max() <= 1
    assert not images.mesh[~covered].any() and not images.depth[~covered].any() and not images.normals[~covered].any()


def test_blender_round_trip_through_the_model_to_blender_frame():
    """(Mutation C15, camera.py from_blender: the camera centre brought back with world_to_blender instead of its
    transpose, survived: every round trip above used the identity.) The export hands Blender the camera in Blender's
    world frame (``MODEL_TO_BLENDER``, a quarter turn): read back, it is the same camera."""
    from handforge_shared.skeleton import MODEL_TO_BLENDER

    R, t = look_at([0.3, -0.8, 0.4], [0.0, 0.1, 0.0], roll=0.3)
    cam = Camera(np.array([[500.0, 0, 250.0], [0, 520.0, 270.0], [0, 0, 1]]), R, t, 640, 480)
    back = from_blender(to_blender(cam, world_to_blender=MODEL_TO_BLENDER), world_to_blender=MODEL_TO_BLENDER)
    assert np.allclose(back.K, cam.K) and np.allclose(back.R, R) and np.allclose(back.t, t)
    assert np.allclose(back.position, cam.position)


def test_gl_occluders_are_background_in_every_image_their_depth_kept_apart():
    """(Mutations G5, gl.py first: an occluder's depth left in the depth image, and G9: occluder_depth holding the
    hands' depth too, survived.) Where an occluder (a forearm) is nearest, ``first`` makes the pixel background in
    the instance, mesh, depth and normals images, and only ``occluder_depth`` keeps its depth; elsewhere that is 0."""
    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 64)

    def quad(x0, x1, z):
        return (np.array([[x0, -1.0, z], [x1, -1.0, z], [x1, 1.0, z], [x0, 1.0, z]]),
                np.array([[0, 1, 2], [0, 2, 3]]))

    images = _gl_renderer().render(camera, [quad(-1.0, 1.0, 1.0), quad(0.0, 1.0, 0.5)], normals=True)
    occluder = images.instance == 2
    assert occluder[:, 40:].all() and (images.instance[:, :30] == 1).all()  # the occluder covers the right half
    images.first(1)
    assert (images.instance[occluder] == 0).all() and (images.mesh[occluder] == 0).all()
    assert (images.depth[occluder] == 0).all() and (images.normals[occluder] == 0).all()
    assert np.allclose(images.occluder_depth[occluder], 0.5, atol=1e-5)
    assert (images.occluder_depth[~occluder] == 0).all()
    assert np.allclose(images.depth[:, :30], 1.0, atol=1e-5)  # the hand's own pixels keep theirs
