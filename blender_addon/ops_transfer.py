"""*Transfer Pose*: the hands of a source image (an image datablock, e.g. one HandForge generated, or a
file) re-posed to the rigs' current pose seen by the active camera (backend job ``image.transfer``).

The target is sent as *Generate Image* sends it (``ops_image.read_request``); the source image's
pixels go as ``source.image`` and, when it is a HandForge image, its labels (``handforge_labels``)
as the source pose. Each variant comes back as an image datablock like *Generate Image*'s, with the
target pose's labels, optionally shown behind the camera and/or on a plane in front of it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import bpy
import numpy as np
from bpy.props import EnumProperty, FloatProperty, StringProperty
from handforge_shared.files import parse_json
from handforge_shared.poses import HAND_MODELS

from . import connection, jobs, ops_image
from .cameras import job_pixel_aspect
from .panels import _Panel, _wrapped
from .properties import PATH_FIELD, absolute_path

JOB_KIND = "image.transfer"
SOURCE_PROP = "handforge_transfer_source"  # Scene property: the panel's source image datablock
ENGINE_ITEMS = [("reference", "Reference (no training)", "ControlNet on the rigs' pose + attention to the source image"),
                ("ihpt", "IHPT", "The trained target generator (transfer.target_generator); needs the source's labels")]
GUIDE_ITEMS = [("auto", "Automatic", "Your ControlNets when the backend has them, else the guidance module"),
               ("controlnet", "ControlNets", "Your SD 1.x ControlNets (image.controlnets)"),
               ("attentionhand", "Guidance module", "The mesh-image guidance module (image.guidance)")]


def image_pixels(image) -> np.ndarray:
    """(H, W, 3) uint8 sRGB, top row first, of an image datablock (8-bit images as stored, float ones encoded);
    (H, W, 4) with its alpha when some pixel is transparent: the backend composites it over its backdrop
    (dropped here, a cut-out's hidden colours would show as the source's background)."""
    if image.type in ("RENDER_RESULT", "COMPOSITING"):  # Blender keeps these pixels from add-ons
        raise ValueError(f"{image.name!r} cannot be read by add-ons: save it (Image › Save As) and pick the saved "
                         "file or its image")
    width, height = image.size
    if (not width or not height) and image.source in ("SEQUENCE", "MOVIE"):
        # (its frames there: Blender loads one only to show it, so it was said to be missing)
        kind = "an image sequence" if image.source == "SEQUENCE" else "a movie"
        raise ValueError(f"image {image.name!r} is {kind}, no frame of it loaded: pick one frame's file (a still "
                         "image) as the source")
    if image.source == "TILED":  # (its pixels are tile 1001's alone, sent unsaid)
        raise ValueError(f"image {image.name!r} is a UDIM tiled image: pick one tile's file (a still image) as the "
                         "source")
    if not width or not height:
        raise ValueError(f"image {image.name!r} has no pixels (is its file missing?)")
    flat = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(flat)
    pixels = flat.reshape(height, width, image.channels)[::-1]
    check_finite_pixels(image, pixels)
    rgb = pixels[..., :3] if image.channels >= 3 else np.repeat(pixels[..., :1], 3, axis=2)
    # Blender holds float buffers premultiplied by alpha, except Channel Packed and Non-Color ones (their RGB as
    # read: divided, their colours went over-bright where the alpha is below 1 and black where it is 0)
    premultiplied = image.alpha_mode != "CHANNEL_PACKED" and not image.colorspace_settings.is_data
    # worked in place in the buffer read above, this function's own: copies of a 4096² float image took 1 GiB
    if image.is_float and image.channels == 4 and premultiplied:
        np.divide(rgb, pixels[..., 3:], out=rgb, where=pixels[..., 3:] > 0)
        rgb[pixels[..., 3] <= 0] = 0
    np.clip(rgb, 0, 1, out=rgb)
    if image.is_float and not image.colorspace_settings.is_data:
        srgb_encode(rgb)  # a float buffer (16-bit PNG, EXR) holds scene-linear light, not sRGB values
    if image.channels == 4 and image.alpha_mode in ("STRAIGHT", "PREMUL") and (pixels[..., 3] < 1).any():
        np.clip(pixels[..., 3:], 0, 1, out=pixels[..., 3:])  # (CHANNEL_PACKED: not coverage)
        if not pixels[..., 3].any():  # (it ran, on the backdrop alone, unsaid)
            raise ValueError(f"image {image.name!r} is transparent everywhere (alpha 0): nothing of it would show; "
                             "pick another image, or set its Alpha to None (Image editor › Sidebar › Image) to use "
                             "its colours")
        rgb = pixels  # its RGB, worked above, and its alpha
    rgb *= 255
    return np.round(rgb, out=rgb).astype(np.uint8)


def check_finite_pixels(image, pixels: np.ndarray) -> None:
    """Refuse a float image's NaN or infinite pixels (a render's fireflies, a script's): they went as black or white,
    unsaid. ``pixels``: (H, W, C), top row first."""
    bad = ~np.isfinite(pixels).all(axis=2)
    if bad.any():
        row, column = np.argwhere(bad)[0]
        raise ValueError(f"the source image {image.name!r} has {int(bad.sum())} of its {bad.size} pixels not finite "
                         f"(NaN or infinite), the first at row {row}, column {column} from the top left: they would "
                         "go as black or white; re-render the image or paint them over, or pick another image")


def srgb_encode(linear: np.ndarray) -> None:
    """Linear [0, 1] → sRGB-encoded [0, 1], in place (the inverse of what Blender applied when it read the file)."""
    dark = linear <= 0.0031308
    darks = linear[dark] * 12.92
    np.power(linear, 1 / 2.4, out=linear)
    linear *= 1.055
    linear -= 0.055
    linear[dark] = darks


SOURCE_SIDES = (16, 4096)  # the backend's source.image: pixels a side (image.transfer's SOURCE_SIZE)


def reduced(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """``pixels`` shrunk by the largest whole factor that keeps them at least ``width`` × ``height`` (box
    filter), and at least by the one that brings them within the backend's 4096 pixels a side: the backend
    resizes the source to the target's size anyway, so a camera photo goes as a fraction of its bytes instead
    of being refused (a 4400 × 2200 photo for a 2048² target was refused, in the backend's words)."""
    k = max(min(pixels.shape[0] // height, pixels.shape[1] // width), -(-max(pixels.shape[:2]) // SOURCE_SIDES[1]))
    if k < 2:
        return pixels
    rows, cols = pixels.shape[0] // k, pixels.shape[1] // k
    blocks = pixels[:rows * k, :cols * k].reshape(rows, k, cols, k, pixels.shape[2])
    # summed as uint32 (a float32 copy of a 4096² photo took 256 MiB), the mean exact in float64 and rounded as before
    return np.round(blocks.sum(axis=(1, 3), dtype=np.uint32) / (k * k)).astype(np.uint8)


def check_source_size(pixels: np.ndarray, given: tuple[int, int]) -> None:
    """Refuse a source the backend cannot take, in the artist's words (it was the backend's: "dimension
    source_width (axis 1) must be between 16 and 4096"); ``given``: its size as the artist knows it."""
    fewest = SOURCE_SIDES[0]
    if min(pixels.shape[:2]) < fewest:
        once = "" if tuple(given) == (pixels.shape[1], pixels.shape[0]) else \
            f", {pixels.shape[1]} × {pixels.shape[0]} once brought within {SOURCE_SIDES[1]} a side,"
        raise ValueError(f"the source image is {given[0]} × {given[1]} pixels{once} and Transfer Pose needs at least "
                         f"{fewest} a side: pick a larger image")


# the first bytes of the image files Blender reads, and what they are (a file's own say, whatever its name)
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "a PNG"), (b"\xff\xd8\xff", "a JPEG"), (b"v/1\x01", "an OpenEXR"),
              (b"II*\x00", "a TIFF"), (b"MM\x00*", "a TIFF"), (b"#?RADIANCE", "a Radiance HDR"),
              (b"DDS ", "a DDS"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000"))


def image_signature(path) -> str:
    """What kind of image file ``path`` starts as ("a PNG"), or "" (not one Blender reads, or unreadable)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError:
        return ""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP"
    if head[:2] == b"BM" and head[6:10] == bytes(4):  # (its reserved bytes: "BM" alone starts many a text)
        return "a BMP"
    return next((kind for magic, kind in SIGNATURES if head.startswith(magic)), "")


def source_image(scene, file: str):
    """The source datablock: ``file`` loaded (once) when given, else the panel's choice."""
    if file:
        path = Path(absolute_path(file, "file"))
        if path.is_dir():  # (said not to exist)
            raise ValueError(f"source file {path} is a folder: pick an image file in it, or an image datablock")
        if not path.is_file():
            raise ValueError(f"source file {path} does not exist: pick an image file or an image datablock")
        before = {image.as_pointer() for image in bpy.data.images}
        try:
            image = bpy.data.images.load(str(path), check_existing=True)
        except RuntimeError as exc:
            raise ValueError(f"cannot read {path} as an image: {exc}") from None
        if not all(image.size):  # Blender decodes lazily: a file it cannot read shows as 0 × 0
            if image.as_pointer() not in before:
                bpy.data.images.remove(image)  # no datablock left behind for it
            kind = image_signature(path)
            if kind:  # (said "not recognised" of a PNG cut short)
                raise ValueError(f"cannot read {path} as an image: it starts as {kind} file, which Blender could not "
                                 "decode: it is cut short or damaged (save or copy it again, or pick another file)")
            raise ValueError(f"cannot read {path} as an image: Blender does not recognise its contents "
                             "(pick a PNG, JPEG, EXR or another image file)")
        return image
    image = getattr(scene, SOURCE_PROP, None)
    if image is None:
        raise ValueError("no source image: pick an image datablock (HandForge › Transfer Pose) or a file")
    return image


def source_labels(image) -> str:
    """The source's HandForge labels (JSON text), "" when it has none; refused naming the image and the property
    when the artist edited them into something else (Custom Properties) or they are longer than the backend takes,
    which the backend only knew as "params.source_labels" or could not even be sent (a property group)."""
    labels = image.get("handforge_labels", "")
    fix = ("pick another image, or delete that property (Image editor › Sidebar › Image › Custom Properties) to "
           "transfer without the source's pose (Reference engine)")
    try:
        if not isinstance(labels, str):
            raise ValueError("not JSON text")
        if labels:
            parse_json(labels)  # (nested too deeply: a ValueError, not a RecursionError)
    except ValueError as exc:
        raise ValueError(f"the HandForge labels of {image.name!r} (its handforge_labels property) are damaged "
                         f"({exc}): {fix}") from None
    # longer than the backend takes (a HandForge image's are 11-14 KB): it said only "params.source_labels: is N
    # characters long", naming neither the image nor the property. Counted as the backend counts it: JSON-escaped,
    # as the message header carries it, where its spec says so (quotes take 2 there: within the limit as written,
    # such labels overflowed the header)
    over = connection.over_limit(JOB_KIND, "source_labels", labels)
    if over is not None:
        raise ValueError(f"the HandForge labels of {image.name!r} (its handforge_labels property) are {over[0]}, more "
                         f"than the backend takes ({over[1]:,}; a HandForge image's are 11-14 KB): {fix}")
    return labels


def check_hand_model(image, labels: str, model: str) -> None:
    """Refuse a source whose labels give its pose in another hand model than the rigs' (``model``): the same numbers
    are another pose there, and the backend refused it in its own terms ("set hand_model", which the add-on has no
    setting for). Labels from before the model was recorded are taken as the rigs'."""
    found = parse_json(labels) if labels else {}
    made_with = found.get("hand_model", model) if isinstance(found, dict) else model
    if isinstance(made_with, str) and made_with != model and made_with not in HAND_MODELS:
        # (an edited or foreign label: "add 'Open' rigs" sent the artist after a hand model that does not exist)
        raise ValueError(f"{image.name!r}'s HandForge labels name the hand model {made_with!r}, which HandForge does not "
                         f"have ({', '.join(HAND_MODELS)}): its labels were edited or come from elsewhere; pick an image "
                         "HandForge made, or, with the Reference engine, clear its handforge_labels property to "
                         "transfer without its pose")
    if isinstance(made_with, str) and made_with != model:  # (labels of another shape: the backend names what is wrong)
        raise ValueError(f"{image.name!r} was made with {made_with!r} hands (its HandForge labels give its pose in "
                         f"that hand model) and the rigs are {model!r} hands: add {made_with!r} rigs to transfer onto "
                         f"(HandForge › Add Hands from Backend, Hand Model {made_with!r}), or pick an image made with "
                         f"{model!r} rigs")


class HANDFORGE_OT_transfer_pose(ops_image.CameraImageJob, bpy.types.Operator):
    """Re-pose the hands of a source image to the rigs' pose seen by the active camera, keeping their look (backend pose transfer)"""

    bl_idname = "handforge.transfer_pose"
    bl_label = "Transfer Pose"
    job_kind = JOB_KIND

    source_file: StringProperty(name="Source File", default="", subtype="FILE_PATH", options=PATH_FIELD,
                                description="Source image file (empty: the panel's image datablock)")
    prompt: StringProperty(name="Prompt", default="two hands", description="What the image shows")
    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="reference", description="Pose-transfer engine")
    guide: EnumProperty(name="Pose Guide", items=GUIDE_ITEMS, default="auto",
                        description="Reference engine: what follows the rigs' pose")
    reference_scale: FloatProperty(name="Keep Look", default=1.0, min=0.0, max=1.0,
                                   description="How strongly the source's appearance is kept")

    def job_request(self, context):
        scene = context.scene
        ops_image.check_text(JOB_KIND, "prompt", self.prompt, "Prompt")
        self.check_seed()
        camera = self.request_camera(scene)
        width, height = ops_image.image_size(scene, self.resolution_x, self.resolution_y)
        arrays, model, left_out = ops_image.read_request(context, camera)
        before = {image.as_pointer() for image in bpy.data.images}
        source = source_image(scene, self.source_file)
        try:
            arrays["source.image"] = reduced(image_pixels(source), width, height)
            check_source_size(arrays["source.image"], tuple(source.size))
            labels = source_labels(source)
            check_hand_model(source, labels, model)
            if self.engine == "ihpt" and not labels:
                raise ValueError(f"{source.name!r} carries no HandForge labels: IHPT needs the source's pose (use a "
                                 "HandForge-generated image, or the Reference engine)")
        except Exception:
            if source.as_pointer() not in before:  # a file loaded for this refused request leaves no datablock
                bpy.data.images.remove(source)
            raise
        self._request = {"seed": self.seed, "source": source.name, "left_out": left_out,
                         "made_in": ops_image.made_in(context, camera, not (self.resolution_x or self.resolution_y)),
                         "source_uid": source.session_uid}
        self._loaded = source.name if source.as_pointer() not in before else ""  # (a file loaded for this request)
        params = {"prompt": self.prompt, "engine": self.engine, "guide": self.guide, "seed": self.seed,
                  "steps": self.steps, "width": width, "height": height, "batch": self.variants,
                  "reference_scale": self.reference_scale, "source_labels": labels, "hand_model": model,
                  "sensor_fit": camera.data.sensor_fit,
                  "pixel_aspect": job_pixel_aspect(scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)}
        return JOB_KIND, params, arrays

    def job_not_applied(self, context):
        """Refused, cancelled or failed: a source file loaded for it leaves no datablock behind (unless the
        artist has used it since)."""
        image = bpy.data.images.get(getattr(self, "_loaded", ""))
        if image is not None and not image.users:
            bpy.data.images.remove(image)

    def job_apply(self, context, result):
        request = self._request
        if self._loaded and self._loaded not in bpy.data.images:
            # loaded when the job started, outside any undo step: an undo while it ran took it away. Loaded again
            # here, it is in the result's undo step (a file gone meanwhile: the result still comes, naming it)
            with contextlib.suppress(ValueError):
                again = source_image(context.scene, self.source_file)
                self._loaded = again.name
                request["source"], request["source_uid"] = again.name, again.session_uid
        # the source as it is named now: renamed while the job ran, and its old name given to another image, the
        # results named that other image, and the fake user went to it (the source, unused, went at the next save)
        found = jobs.by_uid(bpy.data.images, request["source_uid"])
        gone = ""
        if found is not None:
            request["source"] = found.name
        else:  # deleted while it ran: its name may be another image's now, which must not be taken for it
            gone = f"; the source image {request['source']!r} was deleted while they were made"
        made, note = ops_image.import_images(context, result, "HandForge transfer", request["seed"], request["made_in"],
                                             self.set_background, self.add_plane and "HandForge transfer",
                                             seed_per_image=True,  # (image k drawn at seed + k, as Generate Image's)
                                             # (none named when deleted: its name leads to no image, or another)
                                             **({"transfer_source": request["source"]} if found is not None else {}))
        note += gone
        source = found  # (by its name, an image that took a deleted source's name got the fake user)
        if source is not None and source.library is None:
            # the results name their source, but nothing uses it: a file's image has no user, and the panel's
            # loses the panel's when another is picked. Saved so, the .blend drops it and the name leads nowhere;
            # a fake user keeps it (shown on the image, the artist's to clear when they want it gone). Set once the
            # results are in: a result refused leaves a file's image unused, and ``job_not_applied`` removes it
            source.use_fake_user = True
        warning = result.data.get("warning")  # e.g. no hand in the camera's view
        return (f"{len(made)} image(s) from {request['source']}: {', '.join(i.name for i in made)}"
                + note + request["left_out"] + (f"; {warning}" if warning else ""))



class HANDFORGE_PT_transfer(_Panel, bpy.types.Panel):
    bl_label = "Transfer Pose"

    def draw(self, context):
        layout = self.layout
        layout.template_ID(context.scene, SOURCE_PROP, open="image.open")
        layout.operator("handforge.transfer_pose", icon="MOD_DATA_TRANSFER")
        ok, why = connection.kind_status(JOB_KIND)
        if not ok and context.window_manager.handforge.kinds:
            _wrapped(layout.box(), why, icon="ERROR")  # in full: its config snippet says how to fix it


CLASSES = (HANDFORGE_OT_transfer_pose, HANDFORGE_PT_transfer)
ENGINES = ("transfer", "ihpt")  # their kinds run from this panel: no Run Job buttons of them in the Backend panel


def register() -> None:
    setattr(bpy.types.Scene, SOURCE_PROP, bpy.props.PointerProperty(
        type=bpy.types.Image, name="Source Image", description="The image whose hands Transfer Pose re-poses"))


def unregister() -> None:
    delattr(bpy.types.Scene, SOURCE_PROP)
