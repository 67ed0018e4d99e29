"""*Generate Image*: a prompt and the posed rigs seen by the active camera become images whose
hands follow the pose (backend job ``image.generate``), one image datablock per variant.

The rigs' current poses (``pose.read_pose``), their armatures' and the camera's ``matrix_world`` and
the camera's lens, sensor and shift are sent as Blender has them; the backend converts them with its
one camera model, as for *Export Labelled Renders*. Each image keeps its seed, prompt and the
backend's labels (``handforge_labels``, JSON) so it can be exported with them.
"""

from __future__ import annotations

import json
import traceback

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import connection, hands, importers, jobs
from . import pose as pose_conv
from .errors import USER_ERRORS
from .cameras import (active_camera, background_problem, camera_matrix, job_pixel_aspect, render_size,
                      rendered_hands, unscaled)
from .panels import TOP, _Panel, _wrapped
from .properties import ONE_SHOT
from handforge_shared.poses import POSE_FIELDS, hand_array_name

JOB_KIND = "image.generate"
ENGINE_ITEMS = [("auto", "Automatic", "AttentionHand when the backend has its guidance module, else your ControlNets"),
                ("attentionhand", "AttentionHand", "SD 1.x + the mesh-image guidance module + text attention stage"),
                ("controlnet", "ControlNet", "SD 1.x + your ControlNets on renders of the hands")]
PROMPT_PROP = "handforge_image_prompt"  # Scene property: the panel keeps the prompt
# what an image keeps of its result as labels: its pose means nothing without its hand model, and the
# image inherits that model's licence (as the labelled export records them)
LABEL_FIELDS = ("hands", "camera", "hand_model", "hand_model_licence")
MIN_SIDE, MAX_SIDE = 64, 2048  # pixels: the image engines' limits (SD's latents are 1/8 of the image)
SEED_MAX = 2**31 - 1  # the largest integer a Blender property holds: the Seed field, and each image's handforge_seed


def image_size(scene, width: int, height: int) -> tuple[int, int]:
    """The size of the images to make (0: the scene's render resolution at its percentage), checked as the
    image engines take it."""
    return render_size(scene, width, height, "the images", MIN_SIDE, MAX_SIDE, multiple=8)


def read_request(context, camera) -> tuple[dict[str, np.ndarray], str, str]:
    """The rigs' current poses and placement and the camera's Blender settings as arrays, the rigs' hand
    model, and a note ("; left out ...") for each hand whose mesh is disabled in renders: the image shows
    what a render would (before: such a hand was drawn all the same, unsaid)."""
    found, skipped = rendered_hands(context.scene, hands.scene_hands(context.scene, "BOTH"), "draw")
    # ones Blender does not evaluate show what they did when they were hidden, not this frame
    hands.check_evaluated(context.view_layer, found.values())
    hands.check_evaluated(context.view_layer, [camera], what="camera")
    arrays: dict[str, np.ndarray] = {}
    for side, obj in found.items():
        pose = pose_conv.read_pose(obj)
        for name in POSE_FIELDS:
            arrays[hand_array_name(side, name)] = np.asarray(getattr(pose, name), np.float32).reshape(1, -1)
        # refused here, naming the object to fix (a scaled parent too): the backend only knows "the left hand's rig"
        arrays[hand_array_name(side, "matrix_world")] = unscaled(obj, np.array(obj.matrix_world, np.float64))
    data = camera.data
    arrays.update({"camera.matrix_world": camera_matrix(camera, np.array(camera.matrix_world, np.float64)),
                   "camera.lens": np.array([data.lens], np.float64),
                   "camera.sensor": np.array([data.sensor_width, data.sensor_height], np.float64),
                   "camera.shift": np.array([data.shift_x, data.shift_y], np.float64)})
    return arrays, hands.one_hand_model(found, "an image of the hands"), "".join(f"; left out {n}" for n in skipped)


def import_images(context, result, title: str, seed: int, made_in: dict, background: bool,
                  plane_name: str | bool, seed_per_image: bool = False, **properties) -> tuple[list, str]:
    """A job's ``images`` (N, H, W, 3) uint8 as packed image datablocks named "<title> seed S" with a
    fake user (kept in the saved .blend), each carrying its seed, variant, the result's labels and
    ``properties`` (as ``handforge_<key>``); the first shown behind the camera of ``made_in`` (``made_in()``'s
    session_uids: found renamed, and not another object that took its name) and/or on its scene's plane of
    kind ``plane_name`` (named so where the name is free), in the scene the request was made from even when
    another is shown now; with a note for the report ("" or "; …") when that camera is no longer in that scene,
    or it is not the one shown. Generate Image and Transfer Pose bring their results back this one way.
    All or nothing: a result that cannot be used (no camera intrinsics where they place the images), or a failure
    while they are made or shown, removes the images made (they stayed, with their fake users, outside any undo
    step) and says why. S is the seed that reproduces the image alone (``_image_seeds``); where the whole batch
    came from one seed, S is that seed and " vK" tells the variants apart."""
    images = np.asarray(result.arrays["images"])
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"the backend sent images of shape {images.shape} and type {images.dtype}")
    labels = _result_labels(result)
    # another scene shown while the job ran: the images belong to the one they were made from (before, a
    # finished image was discarded then, minutes of GPU time lost)
    scene = jobs.by_uid(bpy.data.scenes, made_in["scene"])
    camera = None if scene is None else jobs.by_uid(scene.objects, made_in["camera"])
    camera = camera if camera is not None and camera.type == "CAMERA" else None
    unshown = background_problem(camera, ", then pick the image in its Background Images (Camera properties)") \
        if camera is not None and background else ""
    if unshown:  # (e.g. a linked duplicate made while the job ran: the request refused one made before)
        background = False
    K = _intrinsics(result) if camera is not None else None  # (read before anything is made: it places them)
    seeds = _image_seeds(result, seed, len(images), seed_per_image)
    made: list = []
    shown_before = [b.image for b in camera.data.background_images] if camera is not None else []
    try:
        _make_images(made, images, title, seeds, labels, properties)
        return made, _show(context, made, made_in, scene, camera, background, unshown, plane_name, K)
    except Exception as exc:
        _discard(made, camera, shown_before)
        if isinstance(exc, USER_ERRORS):
            raise ValueError(f"{exc}; none of the images were kept") from None
        traceback.print_exception(exc)  # (a bug: its traceback in the console, the report says what it means)
        raise ValueError(f"the images could not be imported ({type(exc).__name__}: {exc}; see the system console): "
                         "none of them were kept") from exc


def _result_labels(result) -> str:
    """What each image keeps of the result (``LABEL_FIELDS``), as JSON; refused when the result's are not JSON."""
    try:
        return json.dumps({key: result.data.get(key) for key in LABEL_FIELDS})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the backend sent labels that cannot be kept with the images ({exc})") from None


def _intrinsics(result) -> np.ndarray:
    """The (3, 3) intrinsics the backend drew the images with (``data["camera"]["K"]``), checked: they place the
    images in front of the camera and tell whether they fit behind it."""
    camera = result.data.get("camera")
    K = camera.get("K") if isinstance(camera, dict) else None
    try:
        K = np.asarray(K, np.float64)
    except (TypeError, ValueError):
        K = np.zeros(0)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError("the backend sent images without the camera intrinsics they were drawn with "
                         "(data[\"camera\"][\"K\"], a 3 × 3 matrix), which place them: run it again, or update the "
                         "backend to match the add-on")
    return K


def _image_seeds(result, seed: int, count: int, seed_per_image: bool) -> list[int] | int:
    """The seed that reproduces each image alone: the result's ``data["seeds"]`` where it tells them, else
    ``seed + k`` where the engine draws image k from its own generator (``seed_per_image``: image.generate);
    else the one seed the whole batch came from (an int: its images are told apart by variant)."""
    told = result.data.get("seeds")
    if isinstance(told, list) and len(told) == count and all(type(s) is int and 0 <= s <= SEED_MAX for s in told):
        return told
    return [seed + k for k in range(count)] if seed_per_image else seed


def _make_images(made: list, images: np.ndarray, title: str, seeds: list[int] | int, labels: str,
                 properties: dict) -> None:
    """One packed image datablock a variant, appended to ``made`` as it is made (removed by the caller on failure).
    ``seeds``: each image's own (named by it: the seed to run again for that image alone), or the batch's one."""
    for variant, pixels in enumerate(images):
        if isinstance(seeds, list):
            seed, name = seeds[variant], f"{title} seed {seeds[variant]}"
        else:
            seed, name = seeds, f"{title} seed {seeds}" + (f" v{variant + 1}" if len(images) > 1 else "")
        # always a new datablock (Blender numbers a taken name, "… seed 0.001"): a run never overwrites an
        # earlier result or an image of the artist's, and one undo removes exactly what it made
        image = importers.image_datablock(name, pixels)
        made.append(image)
        # a fake user: nothing else uses a variant after the first (nor any, with neither background nor plane),
        # and saving the .blend drops an image with no user, pixels, labels and all. Shown on the image in the
        # Image editor, the artist's to clear for the ones they don't want to keep
        image.use_fake_user = True
        image["handforge_seed"], image["handforge_variant"], image["handforge_labels"] = seed, variant, labels
        for key, value in properties.items():
            image[f"handforge_{key}"] = value


def _discard(made: list, camera, shown_before: list) -> None:
    """Remove the images ``import_images`` made before it failed; on ``camera``, a background it added for them goes
    and one it gave them (in place of the last result's) shows what it showed before (``shown_before``)."""
    if camera is not None:
        backgrounds = camera.data.background_images
        for index in reversed(range(len(backgrounds))):
            if backgrounds[index].image in made:
                if index < len(shown_before) and shown_before[index] not in made:
                    backgrounds[index].image = shown_before[index]
                else:
                    backgrounds.remove(backgrounds[index])
    for image in made:
        bpy.data.images.remove(image)


def _show(context, made: list, made_in: dict, scene, camera, background: bool, unshown: str,
          plane_name: str | bool, K) -> str:
    """The first image shown behind ``camera`` and/or on its scene's plane; the note for the report."""
    # what showing it changed on the camera unasked: its Background Images, off, turned on (the artist's own there
    # show again too); backgrounds of older Run Job results taken off
    camera_changes, behind = [], None
    if camera is not None and background:
        behind = importers.show_behind(camera, made[0])
        _, camera_changes = importers.background_said(camera, behind)
    moved_from, hidden, edited = None, [], ""
    if camera is not None and plane_name:
        before = importers.scene_plane(scene, plane_name, camera)
        edited = importers.edited_plane(scene, plane_name, camera)  # (left as it is, the images kept)
        if not edited:
            moved_from = before.parent if before is not None and before.parent not in (None, camera) else None
            _, hidden = importers.add_plane(scene, camera, made[0], plane_name, view_corners(
                K, made[0].size[0], made[0].size[1], importers.PLANE_DISTANCE))
    # the camera (or its scene) deleted or unlinked while the job ran: the images are kept, and the report
    # says why they are shown nowhere (made from that camera's view, they belong on no other)
    shown = [what for what, asked in (("behind it", background), ("on a plane in front of it", plane_name)) if asked]
    note = ""
    if camera is None and shown:
        note = (f"; not shown {' or '.join(shown)}: the camera they were made for is no longer in the "
                f"{'scene' if scene is not None else 'file (its scene was deleted, or another file opened)'} (the images "
                "are in the Image editor)")
    elif scene is not None and scene != context.scene and shown:
        note = f"; shown in scene {scene.name!r}, where they were made"
    if unshown:
        note += f"; not shown behind camera {camera.name!r}: it {unshown}"
    if edited:
        note += f"; {edited}"
    note += "".join(f"; {said}" for said in camera_changes)
    if camera is not None and scene is not None:
        if shown and scene.camera != camera:  # (switched while it ran: the images belong to the one they saw)
            note += f"; shown with camera {camera.name!r}, which they were made from, not the active one"
        if moved_from is not None:  # (one plane a scene: the first camera's went, unsaid)
            note += (f"; the image plane moved from camera {moved_from.name!r} to {camera.name!r} (one a scene: rename "
                     "the plane to keep it where it was)")
        if hidden:
            note += f"; {importers.hidden_said(hidden)}"
        render = scene.render
        now = (render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y)
        # (drawn in the render's pixel aspect as it was sent, fy/fx in its intrinsics: a render of 2:1 pixels shows
        # an image of its resolution in place, stretched to twice its width like a render of it)
        (fx, _, _), (_, fy, _) = K[:2]
        misfit = importers.misfit_behind(scene, behind["background"], (fy, fx)) if behind is not None else ""
        if misfit and importers.moved_behind(behind["background"]):  # (its fix said; a plane shows it in place)
            note += f"; {misfit}, or the Image Plane shows it in place"
        elif misfit and behind["background"].frame_method != "STRETCH":  # (cropped or fitted: the artist's choice)
            note += f"; {misfit}: the Image Plane shows it in place"
        elif misfit:  # (the plane is sized by the image's own camera, and fits)
            then = made_in.get("render")
            # made at the render's size (Width and Height 0), changed while the job ran: "generate at the render's
            # shape (Width and Height 0)" told the artist to do what they had done
            pixels = f" of pixel aspect {then[2]:g}:{then[3]:g}" if then and tuple(then[2:]) != now[2:] else ""
            how = (f"run it again (the render resolution was {then[0]} × {then[1]}{pixels} when it was sent; Width "
                   "and Height 0 follow it)" if then and tuple(then) != now
                   else "generate at the render's shape (Width and Height 0)")
            note += f"; {misfit}, off the rigs: the Image Plane shows it in place, or {how}"
    return note


def check_text(kind: str, name: str, text: str, field: str) -> str:
    """``text`` of the operator's ``field`` (its name in the panel), refused when longer than the backend takes for
    its parameter ``name`` (``connection.over_limit``): the backend said "params.prompt: is N characters long as
    the message header carries it, JSON-escaped", the protocol's words."""
    over = connection.over_limit(kind, name, text)
    if over is not None:
        raise ValueError(f"the {field} is {over[0]}, more than the backend takes ({over[1]:,}): shorten it (CLIP "
                         "reads its first 77 tokens, a sentence or two)")
    return text


def made_in(context, camera, follows_render: bool) -> dict:
    """Where a request was made: its scene's and camera's session_uids, for ``import_images``; and, for images
    sized by the render (``follows_render``: Width and Height 0), its render resolution and pixel aspect then."""
    render = context.scene.render
    return {"scene": context.scene.session_uid, "camera": camera.session_uid,
            "render": [render.resolution_x, render.resolution_y, render.pixel_aspect_x, render.pixel_aspect_y]
            if follows_render else None}


def view_corners(K, width: int, height: int, distance: float) -> list[tuple[float, float, float]]:
    """The image's corners at ``distance`` in front of the camera, in its local axes (-Z forward, +Y up),
    from the intrinsics the backend drew it with (sensor fit, shift and pixel aspect are in them)."""
    (fx, _, cx), (_, fy, cy) = K[0], K[1]
    left, right = -cx / fx * distance, (width - cx) / fx * distance
    top, bottom = cy / fy * distance, -(height - cy) / fy * distance  # image rows go down, the camera's Y up
    return [(left, bottom, 0.0), (right, bottom, 0.0), (right, top, 0.0), (left, top, 0.0)]


class CameraImageJob(jobs.JobOperator):
    """What Generate Image and Transfer Pose share: images of the rigs seen by the active camera, by seed, shown
    behind that camera and/or on a plane in front of it in the scene they were made from (``import_images``)."""

    modal_from_ui = True  # a button runs it modally: progress, Esc cancels
    scene_bound = False  # its images go to the scene it was made from, whichever is shown

    seed: IntProperty(name="Seed", default=0, min=0, description="Random seed; variants continue from it")
    steps: IntProperty(name="Steps", default=20, min=1, max=200, description="Sampling steps")
    resolution_x: IntProperty(name="Width", default=0, min=0, max=MAX_SIDE,
                              description="Image width, a multiple of 8 (0: the scene's render resolution)")
    resolution_y: IntProperty(name="Height", default=0, min=0, max=MAX_SIDE,
                              description="Image height, a multiple of 8 (0: the scene's render resolution)")
    variants: IntProperty(name="Variants", default=1, min=1, max=16, description="How many images")
    set_background: BoolProperty(name="Camera Background", default=True,
                                 description="Show the first image as the camera's background")
    add_plane: BoolProperty(name="Image Plane", default=False, description="Also show the first image on a plane "
                                                                           "in front of the camera")

    def check_seed(self) -> None:
        """Refused when the last variant's seed (seed + variants - 1) is past ``SEED_MAX``: its image could not keep
        it, and the whole result was dropped once made (and the Seed field could not run it again)."""
        last = self.seed + self.variants - 1
        if last > SEED_MAX:
            raise ValueError(f"seed {self.seed} with {self.variants} variants: the last would be seed {last}, past "
                             f"{SEED_MAX}, the largest Blender keeps; use a seed of at most {SEED_MAX - self.variants + 1}")

    def request_camera(self, scene):
        """The active camera the images are made from, checked; refused for Camera Background when its camera data
        cannot take it (``background_problem``): shared (Alt-D), an image of its view would show behind the others
        too. Refused, not given a copy of the data: the artist linked the cameras to edit them as one (lens,
        sensor), and unlinking them unasked would break that unseen; Blender's own Apply Transform refuses
        multi-user data the same way."""
        camera = active_camera(scene, otherwise=", aimed at the hands")
        why = background_problem(camera, ", or turn off Camera Background (the Image Plane shows the image in front "
                                         "of this camera alone)") if self.set_background else ""
        if why:
            raise ValueError(f"camera {camera.name!r} {why}")
        return camera


class HANDFORGE_OT_generate_image(CameraImageJob, bpy.types.Operator):
    """Generate images from the prompt whose hands follow the rigs' pose, seen by the active camera (backend image engines)"""

    bl_idname = "handforge.generate_image"
    bl_label = "Generate Image"
    job_kind = JOB_KIND

    prompt: StringProperty(name="Prompt", default="", options=ONE_SHOT,
                           description="What the image shows (empty: the panel's prompt)")
    negative_prompt: StringProperty(name="Negative Prompt", default="", description="What the image must not show")
    engine: EnumProperty(name="Engine", items=ENGINE_ITEMS, default="auto", description="Image engine")

    def job_request(self, context):
        scene = context.scene
        prompt = (self.prompt or getattr(scene, PROMPT_PROP, "")).strip()
        if not prompt:
            raise ValueError("no prompt: type what the image shows (HandForge › Generate Image › Prompt)")
        check_text(JOB_KIND, "prompt", prompt, "Prompt")
        check_text(JOB_KIND, "negative_prompt", self.negative_prompt, "Negative Prompt")
        self.check_seed()
        camera = self.request_camera(scene)
        width, height = image_size(scene, self.resolution_x, self.resolution_y)
        arrays, model, left_out = read_request(context, camera)
        self._request = {"prompt": prompt, "seed": self.seed, "left_out": left_out,
                         "made_in": made_in(context, camera, not (self.resolution_x or self.resolution_y))}
        params = {"prompt": prompt, "negative_prompt": self.negative_prompt, "engine": self.engine, "seed": self.seed,
                  "steps": self.steps, "width": width, "height": height, "batch": self.variants,
                  "hand_model": model, "sensor_fit": camera.data.sensor_fit,
                  "pixel_aspect": job_pixel_aspect(scene.render.pixel_aspect_x, scene.render.pixel_aspect_y)}
        return JOB_KIND, params, arrays

    def job_apply(self, context, result):
        request = self._request
        # image k of the batch is drawn from its own generator at seed + k (image.generate): named and kept by it
        made, note = import_images(context, result, "HandForge", request["seed"], request["made_in"],
                                   self.set_background, self.add_plane and "HandForge image", seed_per_image=True,
                                   prompt=request["prompt"])
        warning = result.data.get("warning")  # e.g. TAS found no hand-related word
        return (f"{len(made)} image(s) {made[0].size[0]}×{made[0].size[1]}: {', '.join(i.name for i in made)}"
                + note + request["left_out"] + (f"; {warning}" if warning else ""))



class HANDFORGE_PT_image(_Panel, bpy.types.Panel):
    bl_label = "Generate Image"
    bl_order = TOP  # above the Backend panel, where it has always been

    def draw(self, context):
        layout = self.layout
        layout.prop(context.scene, PROMPT_PROP, text="", icon="TEXT")
        layout.operator("handforge.generate_image", icon="IMAGE_DATA")
        ok, why = connection.kind_status(JOB_KIND)
        if not ok and context.window_manager.handforge.kinds:  # say why the button is grey (missing weights)
            _wrapped(layout.box(), why, icon="ERROR")


CLASSES = (HANDFORGE_OT_generate_image, HANDFORGE_PT_image)
ENGINES = ("image",)  # its kinds run from this panel: no Run Job buttons of them in the Backend panel


def register() -> None:
    setattr(bpy.types.Scene, PROMPT_PROP, StringProperty(
        name="Prompt", default="", description="What Generate Image shows, e.g. two hands holding a mug"))


def unregister() -> None:
    delattr(bpy.types.Scene, PROMPT_PROP)
