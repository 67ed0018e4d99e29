"""Job kind ``export_renders``: the add-on's *Export Labelled Renders* (``blender_addon/ops_export.py``).

The request holds the scene's hand poses per exported frame, each armature's ``matrix_world`` and
each camera's Blender settings (``handforge.export.blender_scene`` says how they are read); the job
writes the labelled dataset into a folder on the backend's machine, with progress (and its ETA) and
cancel between samples. Everything that can be checked (shapes, the camera list, the folder) is
checked before the job is queued.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Mapping

import numpy as np

from handforge.engines.blender_inputs import CAMERA_SCALE_HINT, WORLD_LIMIT, camera_arrays, check_rigid
from handforge.engines.hands.jobs import MODEL_PARAM, cached_hand_model, check_model_available, pose_array_specs
from handforge.render.camera import BLENDER_MAX_PIXEL_ASPECT, SENSOR_FITS, CameraError, check_pixel_aspect
from handforge.server.jobs import JobContext, JobError, JobResult
from handforge.server.registry import Engine, JobKind, Registry
from handforge.server.schema import ArraySpec, Integer, JsonObject, ListOf, Number, Schema, String, invalid
from handforge_shared.files import file_error
from handforge_shared.poses import hand_array_name
from handforge_shared.protocol import ErrorCode
from handforge_shared.skeleton import SIDES

KIND = "export_renders"
MAX_FRAMES = 100_000
BLENDER_FRAME_LIMIT = 1_048_574  # Blender's frame numbers lie within ±this
MAX_CAMERAS = 64
MAX_SAMPLES = 1_000_000
TIMEOUT_S = 7 * 24 * 3600  # a long Cycles export runs for days; cancel stops it


def _arrays() -> dict[str, ArraySpec]:
    specs = pose_array_specs(
        lambda side: "frames", lambda side, field: f"{side} hand: {field} per exported frame, the rig's own space (as "
        "Export Motion writes)",
        # a hand is its global_orient and matrix_world; the rest alone would be dropped unseen
        partner=lambda side, field: hand_array_name(side, "matrix_world" if field == "global_orient" else "global_orient"))
    for side in SIDES:
        specs[hand_array_name(side, "matrix_world")] = ArraySpec(
            shape=("frames", 4, 4), required=False, requires=(hand_array_name(side, "global_orient"),),
            min=-WORLD_LIMIT, max=WORLD_LIMIT,
            doc=f"{side} hand: the armature object's matrix_world per exported frame (Blender world)")
    # an array, not a JSON list in params: 100,000 frame numbers do not fit the 64 KiB header
    specs["frames"] = ArraySpec(shape=("frames",), dtypes=("int32", "int64"), min=-BLENDER_FRAME_LIMIT,
                                max=BLENDER_FRAME_LIMIT, doc="the scene frame of each exported frame")
    specs.update(camera_arrays(("cameras", "frames"), whose="each camera per frame"))
    return specs


def _check(params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> None:
    from handforge.export.blender_scene import BlenderExportError, check_folder, request_record
    from handforge.export.folder import pending_indices
    from handforge.export.room import ExportTooLarge, check_room
    from handforge.render.blender import BLENDER_FIX, blender_missing

    frames, cameras = len(arrays["frames"]), len(params["cameras"])
    if arrays["camera.lens"].shape != (cameras, frames):
        raise invalid("arrays.camera.lens", f"must have shape ({cameras}, {frames}): one value per camera in "
                      "params.cameras and frame in arrays.frames")
    if not any(hand_array_name(side, "global_orient") in arrays for side in SIDES):
        raise invalid("arrays", "no hand given", "send the poses of the left and/or right hand "
                      "(<side>.global_orient with its matrix_world)")
    unique, counts = np.unique(arrays["frames"], return_counts=True)
    if (counts > 1).any():  # (each was exported again, as another sample of the same scene)
        raise invalid("arrays.frames", f"frame {int(unique[counts > 1][0])} is listed {int(counts[counts > 1][0])} times",
                      "list each frame once")
    names = set()
    for k, camera in enumerate(params["cameras"]):
        # (other keys were taken and ignored, a lens among them: the lens is arrays.camera.lens; written to the
        # folder's record all the same; an empty name or one with control characters labelled every sample so;
        # half a surrogate pair, "\ud800" in the JSON, was written into every label as text no UTF-8 reader takes)
        name = camera.get("name")
        if (set(camera) != {"name", "sensor_fit"} or not isinstance(name, str) or not name
                or any(unicodedata.category(c) in ("Cc", "Cs") for c in name)
                or camera.get("sensor_fit") not in SENSOR_FITS):
            shown = repr(camera)
            raise invalid(f"params.cameras[{k}]", "must be {\"name\": a non-empty str of whole characters without "
                          "control characters, \"sensor_fit\": "
                          f"{' | '.join(SENSOR_FITS)}}} and nothing else (lens, shift and sensor go in arrays.camera.*), "
                          f"got {shown[:200] + ' …' if len(shown) > 200 else shown}")
        if camera["name"] in names:  # (the labels name the camera: a dataset reader could not tell them apart)
            raise invalid(f"params.cameras[{k}]", f"camera name {camera['name']!r} is given twice",
                          "give each camera its own name")
        names.add(camera["name"])
    if frames * cameras > MAX_SAMPLES:
        raise invalid("arrays.frames", f"{frames} frames × {cameras} cameras is more than {MAX_SAMPLES} samples",
                      "export a shorter frame range, a larger frame step or fewer cameras")
    for side in SIDES:
        if hand_array_name(side, "matrix_world") in arrays:
            check_rigid(f"arrays.{hand_array_name(side, 'matrix_world')}", arrays[hand_array_name(side, "matrix_world")],
                         lambda f, side=side: f"the {side} hand's armature at frame {arrays['frames'][f]}")
    check_rigid("arrays.camera.matrix_world", arrays["camera.matrix_world"],
                 lambda c, f: f"camera {params['cameras'][c]['name']!r} at frame {arrays['frames'][f]}",
                 CAMERA_SCALE_HINT)
    try:  # (Blender clamps the ratio to 200, its RGB then unlike the masks and labels; 10,000 passed)
        check_pixel_aspect(*params["pixel_aspect"])
    except CameraError as exc:
        raise invalid("params.pixel_aspect", str(exc)) from None
    check_model_available(params, arrays)
    try:
        out = check_folder(params["out"], request_record(params, arrays))
    except BlenderExportError as exc:
        raise invalid("params.out", str(exc)) from None
    missing = blender_missing(params["engine"])
    # (refused before queueing: the job's Blender worker ended in a ModuleNotFoundError traceback; a finished
    # folder's samples are not rendered again: the folder as the job reads it, "~" expanded, once it is usable)
    if missing and pending_indices(out, frames * cameras):
        raise invalid("params.engine", missing, f"{BLENDER_FIX}, or choose RGB None for the GL images and labels")
    try:  # the memory of a sample now; the disk when the job knows which samples are left
        check_room(params["out"], params["width"], params["height"], (), 0)
    except ExportTooLarge as exc:
        raise invalid("params.width", str(exc)) from None


def export_renders(ctx: JobContext, params: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> JobResult:
    from handforge.export.blender_scene import (BlenderExport, BlenderExportError, check_folder,
                                                export_blender_scene, request_record)
    from handforge.export.folder import ExportBusy
    from handforge.export.room import ExportTooLarge
    from handforge.disk import stops_the_run
    from handforge.render.gl import GLUnavailable

    record = request_record(params, arrays)
    try:
        out = check_folder(params["out"], record)  # again: another job may have used it since
        request = BlenderExport.from_request(params, arrays)
        for c in range(len(request.cameras)):  # every camera converts, before any sample is written
            for f in range(len(request.frames)):
                request.camera(f, c)
    except (BlenderExportError, CameraError) as exc:
        raise JobError(ErrorCode.INVALID_PARAMS, str(exc)) from None
    model = cached_hand_model(ctx, params["model"])

    def progress(done: int, total: int, eta: float) -> None:
        ctx.progress(done / total, f"{done}/{total} samples, {eta:.0f} s left")

    ctx.progress(0.0, f"exporting {request.spec.samples} samples")
    try:
        summary = export_blender_scene(request, out, record, model, command=params["command"] or
                                       "Blender: HandForge › Export Labelled Renders", progress=progress)
    except GLUnavailable as exc:
        raise JobError(ErrorCode.MISSING_WEIGHTS, str(exc), "install the GL renderer's system packages") from None
    except (BlenderExportError, ExportTooLarge) as exc:
        raise JobError(ErrorCode.INVALID_PARAMS, str(exc)) from None
    except ExportBusy as exc:  # another export is writing into the folder right now
        raise JobError(ErrorCode.BUSY, str(exc)) from None
    except OSError as exc:  # a full disk, a folder this user cannot write: the run stopped at the first sample
        if not stops_the_run(exc, writing=True):
            raise
        raise JobError(ErrorCode.INTERNAL, file_error(exc, "choose another Output folder"),
                       "the samples already made are kept: export again to go on") from None
    failed = {str(index): why for index, why in summary.pop("failed", {}).items()}  # JSON keys
    data = {"out": str(out), "samples": request.spec.samples, **summary, "failed": failed}
    unseen = _without_visible_hands(out)
    if unseen:  # (a camera turned away, or a 1 mm lens: a dataset of empty images, said as a plain success)
        data["warning"] = (f"{unseen} of {summary.get('finished', request.spec.samples)} images show no keypoint of "
                           "either hand (the hands out of the camera's view, behind it, or too small in it): aim the "
                           "camera at the hands")
    return JobResult(data, {})


def _without_visible_hands(out) -> int:
    """The dataset card's count of samples without a visible keypoint (0 where the card cannot be read)."""
    from handforge.export.folder import CARD_JSON
    from handforge_shared.files import parse_json

    try:
        count = parse_json((out / CARD_JSON).read_text()).get("samples_without_visible_keypoints", 0)
    except (OSError, ValueError, AttributeError):
        return 0
    return count if isinstance(count, int) else 0


def _gl_availability() -> tuple[str, str]:
    """Every sample's masks and labels come from the GL pass, whatever makes its RGB: no GL context, no export
    (doctor said 'export available' without moderngl)."""
    from handforge.render.gl import availability

    return availability()


def register_jobs(registry: Registry) -> None:
    registry.add_engine(Engine("export", "labelled renders of a Blender scene's hands and cameras "
                               "(images, masks, keypoints; COCO and InterHand2.6M-style files)",
                               availability=_gl_availability))
    registry.add_kind(JobKind(
        KIND, export_renders, engine="export", device="gpu", timeout=TIMEOUT_S, check=_check,
        schema=Schema(
            params={"model": MODEL_PARAM,
                    "out": String(doc="dataset folder on the backend's machine (absolute); new, empty, or this "
                                      "request's own unfinished export (resumed)", max_length=1024),
                    "cameras": ListOf(doc="per camera {name, sensor_fit}", min_items=1, max_items=MAX_CAMERAS,
                                      item=JsonObject()),
                    "width": Integer(doc="image width, pixels", min=8, max=8192),
                    "height": Integer(doc="image height, pixels", min=8, max=8192),
                    "pixel_aspect": ListOf(doc="Blender's pixel aspect x, y (one at most "
                                               f"{BLENDER_MAX_PIXEL_ASPECT:g}× the other)", default=[1.0, 1.0], min_items=2,
                                           max_items=2, item=Number(min=0.01, max=100.0)),
                    "engine": String(doc="RGB images: Blender Workbench, Cycles, or none (GL images and labels)",
                                     default="workbench", choices=("workbench", "cycles", "none")),
                    "samples": Integer(doc="Cycles samples per pixel", default=16, min=1, max=4096),
                    "seed": Integer(doc="lighting, background and skin tone per sample come from (seed, index)",
                                    default=0, min=0, max=2**31 - 1),
                    "command": String(doc="what made the request, for the dataset card", default="",
                                      max_length=1024)},
            arrays=_arrays(),
            dims={"frames": (1, MAX_FRAMES), "cameras": (1, MAX_CAMERAS)}),
        description="labelled renders of the hands over frames and cameras, written to a folder",
        returns={"out": "the dataset folder", "samples": "frames × cameras",
                 "written / skipped / finished": "samples written now, already there, in the folder"}))


__all__ = ["export_renders", "register_jobs"]
