"""The fast GL path: mesh images, per-mesh instance masks, depth and normals in one pass.

moderngl on a headless EGL context on Linux: Mesa's llvmpipe on a CPU machine (``EGL_PLATFORM=surfaceless``,
no display, no GPU), NVIDIA's EGL on GPU machines. Needs the ``moderngl`` package and the system's
libEGL (Debian: ``libegl1 libgl1-mesa-dri``). On macOS and Windows (no EGL in their glcontext wheels) the
platform's default context (CGL, WGL) from the GPU driver's OpenGL 3.3.

The mesh image is AttentionHand's conditioning image (Park et al., ECCV 2024,
https://arxiv.org/abs/2407.18034): flat-shaded hands, base colour (1, 1, 0.9), ambient 0.3 plus
three directional lights, on black; both hands are depth-composited by the z-buffer. Normals are
per face (screen-space derivatives of the camera-frame position), turned towards the camera.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from handforge.render.camera import Camera, clip_range

BASE_COLOUR = (1.0, 1.0, 0.9)
AMBIENT = 0.3
# towards each light, camera frame (x right, y down, z forward): the viewer, upper left, upper right
LIGHT_DIRECTIONS = ((0.0, 0.0, -1.0), (-0.6, -0.6, -0.5), (0.6, -0.6, -0.5))
LIGHT_INTENSITY = 0.8 / len(LIGHT_DIRECTIONS)

# The vertices come in the camera frame, moved there in float64 on the CPU: float32 world coordinates far
# from the origin lose the hand's detail (at 10 km from it, 196 of 25k mask pixels changed; at 100 km, 1742)
# while the labels, computed in float64, keep it.
_VERTEX = """
#version 330
uniform mat4 projection;
in vec3 in_position;
out vec3 v_camera;
void main() {
    v_camera = in_position;
    gl_Position = projection * vec4(in_position, 1.0);
}
"""

# The instance id rides in the colour target's alpha and depth gets a one-channel float target: fewer
# bytes per fragment and one read fewer, which is where llvmpipe spends its time (one interleaved run
# at 512² on the loaded 2-core machine: min 7.3 against 10.2 ms for three targets; noisy). The normals
# target is attached only when normals are asked for.
_FRAGMENT = """
uniform vec3 base_colour;
uniform float ambient;
uniform vec3 light_directions[3];
uniform float light_intensity;
uniform float instance;
in vec3 v_camera;
layout(location = 0) out vec4 out_colour;     // shaded rgb, instance / 255
layout(location = 1) out float out_depth;     // camera z
#ifdef NORMALS
layout(location = 2) out vec4 out_normal;
#endif
void main() {
    vec3 n = normalize(cross(dFdx(v_camera), dFdy(v_camera)));
    if (dot(n, v_camera) > 0.0) n = -n;       // towards the camera, whatever the winding
    float shade = ambient;
    for (int i = 0; i < 3; ++i) shade += light_intensity * max(dot(n, normalize(light_directions[i])), 0.0);
    out_colour = vec4(clamp(base_colour * shade, 0.0, 1.0), instance / 255.0);
    out_depth = v_camera.z;
#ifdef NORMALS
    out_normal = vec4(n, 0.0);
#endif
}
"""


# Clip y negated: GL's first framebuffer row (window y = 0) becomes the image's top row, so reads need no
# flip. Window y ↦ H − y maps pixel centres onto pixel centres, so nothing moves by a fraction of a pixel.
_FLIP_Y = np.diag([1.0, -1.0, 1.0, 1.0])


class GLUnavailable(RuntimeError):
    """No headless GL context here: ``reason`` why, ``hint`` what to install (the message says both)."""

    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(f"{reason}; {hint}")
        self.reason, self.hint = reason, hint


@dataclass
class GLImages:
    """One rendered view. Pixel (row j, column i) is the image pixel centred at (i + 0.5, j + 0.5)."""

    mesh: np.ndarray       # (H, W, 3) uint8, the AttentionHand-style mesh image
    instance: np.ndarray   # (H, W) uint8: 0 background, k + 1 where mesh k is nearest
    depth: np.ndarray      # (H, W) float32 camera z in metres, 0 on the background
    normals: np.ndarray | None  # (H, W, 3) float32 unit normals in the camera frame (0 on the background)
    # (H, W) float32: the occluder's camera z where one is nearest, 0 elsewhere (``first``); None before
    occluder_depth: np.ndarray | None = None

    def mask(self, index: int) -> np.ndarray:
        """(H, W) bool: where mesh ``index`` is visible."""
        return self.instance == index + 1

    def first(self, count: int) -> "GLImages":
        """These images with meshes ``count`` and after as occluders only: where one of them is nearest,
        the pixel is background in every image (what they hide stays hidden), its depth kept in
        ``occluder_depth``. In place."""
        hidden = self.instance > count
        # background in the images, not for visibility: a point there is covered when the occluder is in front
        # of it, and not when it lies behind (a forearm seen past a fingertip on the hand's outline)
        self.occluder_depth = np.where(hidden, self.depth, 0.0).astype(np.float32)
        if hidden.any():
            self.instance[hidden] = 0
            self.mesh[hidden] = 0
            self.depth[hidden] = 0.0
            if self.normals is not None:
                self.normals[hidden] = 0.0
        return self


def _headless_egl() -> bool:
    """Linux: a headless EGL context (Mesa's surfaceless platform or NVIDIA's EGL). macOS's and Windows's glcontext
    wheels have no EGL backend: there moderngl's default one (CGL, WGL) is asked for."""
    return sys.platform.startswith("linux")


def _install_hint() -> str:
    """What to install when no context can be made here."""
    if _headless_egl():
        return "on Debian/Ubuntu install libegl1 and libgl1-mesa-dri (Mesa's llvmpipe renders on the CPU)"
    return "the GPU driver's OpenGL 3.3 is needed: install or update the graphics driver"


def create_context():
    """A standalone GL 3.3 context: headless EGL on Linux, the platform's default (CGL, WGL) elsewhere."""
    egl = _headless_egl()
    if egl:
        os.environ.setdefault("EGL_PLATFORM", "surfaceless")  # Mesa: no display server needed
    try:
        import moderngl
    except ImportError:
        raise GLUnavailable("the GL renderer needs moderngl, which cannot be imported",
                            "pip install moderngl (in the backend extra)") from None
    try:
        if egl:
            return moderngl.create_standalone_context(require=330, backend="egl")
        return moderngl.create_standalone_context(require=330)
    except Exception as exc:  # noqa: BLE001 - glcontext raises plain Exceptions
        what = "headless EGL context" if egl else "OpenGL 3.3 context"
        raise GLUnavailable(f"no {what} ({exc})", _install_hint()) from None


@functools.lru_cache(maxsize=1)
def availability() -> tuple[str, str]:
    """('', '') when a GL context can be made here, else why not and what to install: an engine's availability.
    Tried once (an engine's status is read at every hello), on a thread of its own: making a context makes it
    current on the thread that makes it, and releasing it left that thread with none, so the thread's renderer
    drew nothing afterwards (an export's masks came out empty) or crashed the process (a segfault in Mesa)."""
    if getattr(_renderers, "gl", None) is not None:  # this thread has made one
        return "", ""
    found: list[tuple[str, str]] = []

    def probe() -> None:
        try:
            create_context().release()
            found.append(("", ""))
        except GLUnavailable as exc:
            found.append((exc.reason, exc.hint))
        except Exception as exc:  # noqa: BLE001 - said as the reason, not lost with the thread
            found.append((f"no GL context ({type(exc).__name__}: {exc})", _install_hint()))

    prober = threading.Thread(target=probe, name="handforge-gl-probe", daemon=True)
    prober.start()
    prober.join()
    return found[0]


class GLRenderer:
    """Renders meshes (world-frame vertices, triangle faces) through a ``Camera``. Reuses its context,
    program and framebuffers; a new image size allocates new framebuffers once."""

    def __init__(self) -> None:
        self.ctx = create_context()
        self._programs = {normals: self._program(normals) for normals in (False, True)}
        self._framebuffers: dict[tuple[int, int, bool], object] = {}
        self._index_buffers: dict[bytes, tuple[object, int]] = {}
        self._vertex_buffers: list = []

    @property
    def renderer_name(self) -> str:
        return self.ctx.info["GL_RENDERER"]

    def _program(self, normals: bool):
        header = "#version 330\n" + ("#define NORMALS\n" if normals else "")
        program = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=header + _FRAGMENT)
        program["base_colour"].value = BASE_COLOUR
        program["ambient"].value = AMBIENT
        program["light_directions"].value = LIGHT_DIRECTIONS
        program["light_intensity"].value = LIGHT_INTENSITY
        return program

    def _framebuffer(self, width: int, height: int, normals: bool):
        key = (width, height, normals)
        if key not in self._framebuffers:
            if len(self._framebuffers) >= 4:  # a run uses one or two sizes: keep memory bounded
                self._release(next(iter(self._framebuffers)))
            size = (width, height)
            targets = [self.ctx.texture(size, 4, dtype="f1"), self.ctx.texture(size, 1, dtype="f4")]
            if normals:
                targets.append(self.ctx.texture(size, 4, dtype="f4"))
            self._framebuffers[key] = self.ctx.framebuffer(color_attachments=targets,
                                                           depth_attachment=self.ctx.depth_renderbuffer(size))
        return self._framebuffers[key]

    def release_large(self, keep_bytes: int = 64 * 2**20) -> None:
        """Free the framebuffers above ``keep_bytes`` (at the end of an export: an 8192² one held 1.9 GB of
        the backend's memory until another size pushed it out; small ones stay, for the next job)."""
        # bytes a pixel: colour 4, depth target 4, depth buffer 4, normals 16
        large = [k for k in self._framebuffers if k[0] * k[1] * (28 if k[2] else 12) > keep_bytes]
        for key in large:
            self._release(key)
        if large:  # Mesa frees released textures at the next use of the context, not at their release
            fbo = self._framebuffer(1, 1, False)
            fbo.use()
            fbo.clear()
            self.ctx.finish()

    def _release(self, key: tuple[int, int, bool]) -> None:
        old = self._framebuffers.pop(key)
        for attachment in (*old.color_attachments, old.depth_attachment):
            attachment.release()
        old.release()

    def _indices(self, faces: np.ndarray):
        faces = np.ascontiguousarray(faces, dtype=np.int32)
        # the whole array's digest: two meshes whose faces differ only past a prefix drew with the first's
        key = hashlib.blake2b(faces.data, digest_size=16).digest() + bytes(str(faces.shape), "ascii")
        if key not in self._index_buffers:
            self._index_buffers[key] = (self.ctx.buffer(faces.tobytes()), faces.size)
        return self._index_buffers[key]

    def render(self, camera: Camera, meshes: Sequence[tuple[np.ndarray, np.ndarray]],
               normals: bool = False) -> GLImages:
        """``meshes``: (vertices (V, 3) world metres, faces (F, 3)) per instance, at most 255."""
        if not 0 < len(meshes) < 256:
            raise ValueError(f"render 1 to 255 meshes, got {len(meshes)}")
        meshes = [_checked_mesh(k, vertices, faces) for k, (vertices, faces) in enumerate(meshes)]
        W, H = camera.width, camera.height
        fbo = self._framebuffer(W, H, normals)
        program = self._programs[normals]
        near, far = clip_range(camera, [v for v, _ in meshes])
        program["projection"].write((_FLIP_Y @ camera.gl_projection(near, far)).T.astype("f4").tobytes())
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        while len(self._vertex_buffers) < len(meshes):
            self._vertex_buffers.append(None)
        for k, (vertices, faces) in enumerate(meshes):
            data = camera.to_camera(vertices).astype("f4").tobytes()  # (float64 until here: see _VERTEX)
            vbo = self._vertex_buffers[k]
            if vbo is None or vbo.size != len(data):
                if vbo is not None:
                    vbo.release()  # moderngl frees nothing itself: each change of size kept the old buffer
                    # (a failed allocation below left the released buffer here, and every later render of this
                    # thread's renderer failed on it: 'InvalidObject' object has no attribute 'size')
                    self._vertex_buffers[k] = None
                vbo = self._vertex_buffers[k] = self.ctx.buffer(reserve=len(data))
            vbo.write(data)
            ibo, _ = self._indices(faces)
            vao = self.ctx.vertex_array(program, [(vbo, "3f", "in_position")], index_buffer=ibo,
                                        index_element_size=4)
            program["instance"].value = float(k + 1)
            vao.render()
            vao.release()
        # Rows come top first (the projection is flipped). The instance is the colour's alpha, the high byte
        # of each little-endian RGBA word; GL packs the RGB itself: both far cheaper than numpy's strided
        # copies of a 4-channel image (3.5 of the 4.5 ms spent after drawing at 512²).
        rgba = np.frombuffer(fbo.read(components=4, attachment=0), "<u4").reshape(H, W)
        instance = (rgba >> 24).astype(np.uint8)
        mesh = _read_writable(fbo, (H, W, 3), "f1", components=3, attachment=0)
        depth = _read_writable(fbo, (H, W), "f4", components=1, attachment=1)
        normal_image = None
        if normals:
            normal_image = _read_writable(fbo, (H, W, 4), "f4", components=4, attachment=2)[..., :3].copy()
        return GLImages(mesh=mesh, instance=instance, depth=depth, normals=normal_image)


def _checked_mesh(index: int, vertices, faces) -> tuple[np.ndarray, np.ndarray]:
    """Mesh ``index``'s vertices and faces as arrays, or a ValueError saying what is wrong with them. Said up
    front: a mesh without vertices failed in GL, faces past the last vertex drew whatever lay beyond it, and
    one NaN vertex made the clip range NaN, so that no mesh of the image was drawn."""
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    what = f"mesh {index} (instance {index + 1})"
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0 or vertices.dtype.kind not in "iuf":
        raise ValueError(f"{what}: vertices must be numbers of shape (V, 3) with V >= 1, got {vertices.dtype} "
                         f"of shape {vertices.shape}: leave a mesh without vertices out")
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        raise ValueError(f"{what}: {int((~finite).sum())} of its {len(vertices)} vertices are not finite (NaN or "
                         f"infinity), the first at index {int(np.argmin(finite))}: fix the pose or transform "
                         "that made them")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 or faces.dtype.kind not in "iu":
        raise ValueError(f"{what}: faces must be whole numbers of shape (F, 3) with F >= 1, got {faces.dtype} "
                         f"of shape {faces.shape}")
    outside = (faces < 0) | (faces >= len(vertices))
    if outside.any():
        face = int(np.argmax(outside.any(axis=1)))
        raise ValueError(f"{what}: face {face} {faces[face].tolist()} names a vertex outside 0 to "
                         f"{len(vertices) - 1} (the mesh has {len(vertices)} vertices): faces index the mesh's own "
                         "vertices, from 0")
    return vertices, faces


def _read_writable(fbo, shape: tuple[int, ...], gl_dtype: str, **read) -> np.ndarray:
    """A framebuffer attachment read into a new writable array of ``shape`` (no copy after the read);
    ``gl_dtype`` is moderngl's name: "f1" (uint8) or "f4" (float32)."""
    out = np.empty(shape, np.uint8 if gl_dtype == "f1" else np.float32)
    fbo.read_into(out, alignment=1, dtype=gl_dtype, **read)
    return out


_renderers = threading.local()


def renderer() -> GLRenderer:
    """This thread's GL renderer: an EGL context is current on one thread only, and the backend runs
    jobs on several worker threads."""
    if getattr(_renderers, "gl", None) is None:
        _renderers.gl = GLRenderer()
    return _renderers.gl
