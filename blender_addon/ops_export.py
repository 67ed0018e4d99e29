"""*Export Labelled Renders*: the hands over a frame range, seen by the scene's cameras, as a
labelled dataset written by the backend (job ``export_renders``).

The add-on reads what the scene shows — the hands' poses per frame (the Export Motion reader),
each armature's and camera's ``matrix_world`` and each camera's lens, sensor and shift — and sends
it; the backend converts the cameras with its one camera model, renders and labels. Everything is
checked here before anything is sent.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import hands, jobs, keys, placement
from .cameras import (active_camera, camera_matrix, job_pixel_aspect, render_cameras, rendered_hands, render_size,
                      unscaled)
from .properties import ONE_SHOT, PATH_FIELD, SCENE_FRAME_END, SCENE_FRAME_START, absolute_path, scene_range
from handforge_shared.poses import POSE_FIELDS, hand_array_name

MAX_SAMPLES = 1_000_000
MAX_SIDE = 8192  # pixels: the backend's limit on an exported image's side
CAMERA_ITEMS = [("ALL", "All Cameras", "Every camera in the scene that can render (ones excluded from the view "
                                        "layer or disabled in renders or viewports are skipped)"),
                ("ACTIVE", "Active Camera", "Only the scene's active camera (refused where timeline markers make another camera "
                                              "active on a frame of the range)")]
ENGINE_ITEMS = [("workbench", "Workbench", "Fast RGB images (Blender Workbench)"),
                ("cycles", "Cycles", "Realistic RGB images (Blender Cycles; slow)"),
                ("none", "None", "No RGB: mesh images, masks, depth and labels only (fastest)")]


def read_scene(context, found: dict, cameras: list, frames: range, active: bool = False) -> dict[str, np.ndarray]:
    """The request's arrays: poses per frame (read as Export Motion reads them), the armatures' and
    cameras' world matrices and the cameras' lens, sensor and shift at each frame. Only ``frames`` are
    read, not every frame between them (a long range at a large Step reads few). ``active``: ``cameras`` is the
    scene's active camera, refused where timeline markers make another one active on a frame (Render Animation
    renders that frame from the other: its labels were made from the first, unsaid)."""
    scene = context.scene
    clip = keys.export_clip(context, found, frames.start, frames[-1], frames.step)
    arrays: dict[str, np.ndarray] = {}
    for side, pose in clip.hands.items():
        for name in POSE_FIELDS:
            arrays[hand_array_name(side, name)] = np.asarray(getattr(pose, name)).astype(np.float32)
    T, C = len(frames), len(cameras)
    arm_matrices = {side: np.empty((T, 4, 4)) for side in found}
    cam_matrices, lens = np.empty((C, T, 4, 4)), np.empty((C, T))
    sensor, shift = np.empty((C, T, 2)), np.empty((C, T, 2))
    switched = []
    with placement.evaluating_frames(scene):  # (the artist's changes not keyed yet kept)
        for t, frame in enumerate(frames):
            scene.frame_set(frame)  # animated cameras, lenses and armature objects (and markers' cameras)
            if active and scene.camera != cameras[0]:
                switched.append((frame, scene.camera))
            for side, obj in found.items():
                arm_matrices[side][t] = unscaled(obj, np.array(obj.matrix_world))
            for c, cam in enumerate(cameras):
                cam_matrices[c, t] = camera_matrix(cam, np.array(cam.matrix_world))
                data = cam.data
                lens[c, t] = data.lens
                sensor[c, t] = data.sensor_width, data.sensor_height
                shift[c, t] = data.shift_x, data.shift_y
    if switched:
        frame, other = switched[0]
        more = f" (and {len(switched) - 1} more frame(s))" if len(switched) > 1 else ""
        raise ValueError(f"the active camera changes over the frames: timeline markers make "
                         f"{getattr(other, 'name', 'no camera')!r} the active one at frame {frame}{more}, not "
                         f"{cameras[0].name!r}: export each camera's frames on their own (Start and End), or choose "
                         "All Cameras")
    for side, matrices in arm_matrices.items():
        arrays[hand_array_name(side, "matrix_world")] = matrices
    arrays.update({"camera.matrix_world": cam_matrices, "camera.lens": lens, "camera.sensor": sensor,
                   "camera.shift": shift})
    return arrays


def output_folder(directory: str) -> str:
    if not directory.strip():
        raise ValueError("no output folder chosen: choose a folder for the dataset")
    return absolute_path(directory, "folder")


class HANDFORGE_OT_export_renders(jobs.JobOperator, bpy.types.Operator):
    """Export labelled renders of the hands over a frame range, seen by the scene's cameras: images, masks, 2D/3D keypoints, COCO and InterHand2.6M-style files (written by the backend)"""

    modal_from_ui = True  # a button runs it modally: progress, Esc cancels

    bl_idname = "handforge.export_renders"
    bl_label = "Export Labelled Renders"
    bl_options = {"REGISTER"}  # writes files, changes nothing in the scene
    job_kind = "export_renders"
    scene_bound = False  # the backend writes the files; the result only reports them
    cancelled_hint = "the images written so far are kept: export again to the same folder to resume"

    directory: StringProperty(name="Folder", subtype="DIR_PATH", default="", options=PATH_FIELD,
                              description="Dataset folder (on the backend's machine): new, empty, or this export's "
                                          "own unfinished one (resumed)")
    filter_folder: BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    frame_start: IntProperty(**SCENE_FRAME_START, options=ONE_SHOT)
    frame_end: IntProperty(**SCENE_FRAME_END, options=ONE_SHOT)
    frame_step: IntProperty(name="Step", default=0, min=0, description="Export every n-th frame (0: the scene's "
                                                                        "Frame Step, as rendering an animation does)")
    cameras: EnumProperty(name="Cameras", items=CAMERA_ITEMS, default="ALL", description="Which cameras to export from")
    resolution_x: IntProperty(name="Width", default=0, min=0, max=MAX_SIDE,
                              description="Image width in pixels (0: the scene's render resolution)")
    resolution_y: IntProperty(name="Height", default=0, min=0, max=MAX_SIDE,
                              description="Image height in pixels (0: the scene's render resolution)")
    engine: EnumProperty(name="RGB", items=ENGINE_ITEMS, default="workbench", description="How the RGB images are made")
    samples: IntProperty(name="Cycles Samples", default=16, min=1, max=4096, description="Cycles samples per pixel")
    seed: IntProperty(name="Seed", default=0, min=0, description="Lighting, background and skin tone per image come "
                                                                  "from the seed and the image's index")

    def job_request(self, context):
        scene = context.scene
        out = output_folder(self.directory)
        start, end = scene_range(scene, self.frame_start, self.frame_end)
        found, hands_skipped = rendered_hands(scene, hands.scene_hands(scene, "BOTH"), "export")
        step = self.frame_step or max(1, scene.frame_step)
        model = keys.check_export(found, start, end, step)  # a non-empty range, few enough frames, one hand model
        frames = range(start, end + 1, step)
        if self.cameras == "ALL":
            cameras, skipped = render_cameras(scene, context.view_layer)
        else:
            cameras, skipped = [active_camera(scene)], []
        # ones Blender does not evaluate would stand still over the frames, and the labels with them
        hands.check_evaluated(context.view_layer, found.values())
        hands.check_evaluated(context.view_layer, cameras, what="camera")
        if len(frames) * len(cameras) > MAX_SAMPLES:
            raise ValueError(f"{len(frames)} frames × {len(cameras)} cameras is more than {MAX_SAMPLES} images: "
                             "raise Step or narrow the frame range")
        width, height = render_size(scene, self.resolution_x, self.resolution_y, "the images", 8, MAX_SIDE)
        arrays = {**read_scene(context, found, cameras, frames, active=self.cameras == "ACTIVE"),
                  "frames": np.asarray(frames, np.int64)}
        self._summary = f"{len(frames)} frames × {len(cameras)} cameras"
        self._skipped = f"; skipped {len(skipped)} camera(s): {'; '.join(skipped)}" if skipped else ""
        self._skipped += "".join(f"; left out {note}" for note in hands_skipped)
        if self._skipped:  # said now too: the export may run long
            print(f"HandForge: Export Labelled Renders{self._skipped}", flush=True)
        params = {"model": model, "out": out, "width": width, "height": height,
                  "cameras": [{"name": c.name, "sensor_fit": c.data.sensor_fit} for c in cameras],
                  "pixel_aspect": job_pixel_aspect(scene.render.pixel_aspect_x, scene.render.pixel_aspect_y),
                  "engine": self.engine, "samples": self.samples, "seed": self.seed,
                  "command": f"Blender {bpy.app.version_string}: HandForge › Export Labelled Renders of "
                             f"{bpy.path.basename(bpy.data.filepath) or 'an unsaved scene'}, frames {start}-{end} "
                             f"step {step}, {self.cameras.lower()} cameras, {width}×{height}, {self.engine}"}
        return "export_renders", params, arrays

    def job_apply(self, context, result):
        data = result.data
        failed = data.get("failed") or {}
        text = (f"{data['finished']} labelled images ({self._summary}) in {data['out']}: {data['written']} new, "
                f"{data['skipped']} already there"
                + (f"; {len(failed)} failed, export again to retry them (sample {min(failed, key=int)}: "
                   f"{failed[min(failed, key=int)]})" if failed else "") + self._skipped
                + (f"; {data['warning']}" if data.get("warning") else ""))  # (e.g. images without a hand in view)
        return jobs.Noted(text) if failed else text  # images missing from the dataset: a warning

    def invoke(self, context, event):
        if not self.directory and not bpy.app.background and context.window is not None:
            context.window_manager.fileselect_add(self)  # the folder browser shows the options too
            return {"RUNNING_MODAL"}
        return super().invoke(context, event)  # the job (not execute: from the UI it calls invoke)



CLASSES = (HANDFORGE_OT_export_renders,)
