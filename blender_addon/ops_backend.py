"""Operators for the backend: start/stop/connect, and the jobs (hand rigs, a check of the rig
against the backend, any job kind), all through the one job mechanism in ``jobs``."""

from __future__ import annotations

import os

import bpy
import numpy as np
from bpy.props import BoolProperty, EnumProperty, FloatVectorProperty, StringProperty

from . import connection, hands, importers, jobs, rig
from . import pose as pose_conv
from .errors import reports_errors
from .properties import ONE_SHOT, PATH_FIELD, absolute_path
from handforge_shared.client import hand_rigs, pose_arrays
from handforge_shared.files import parse_json
from handforge_shared.poses import HAND_MODEL_LABELS, PoseFormatError, hand_array_name, read_npz_arrays
from handforge_shared.skeleton import MODEL_TO_BLENDER, NUM_BETAS


class HANDFORGE_OT_start_backend(bpy.types.Operator):
    """Start a local backend with the command from the HandForge preferences, and connect to it (to the one started before, if it still runs)"""

    bl_idname = "handforge.start_backend"
    bl_label = "Start Local Backend"

    @reports_errors
    def execute(self, context):  # scripts and blender -b: wait until it answers
        connection.start_local(blocking=True)
        self.report({"INFO"}, connection.BACKEND.status)
        return {"FINISHED"}

    @reports_errors
    def invoke(self, context, event):
        connection.start_local(blocking=bpy.app.background)
        return {"FINISHED"}


class HANDFORGE_OT_stop_backend(bpy.types.Operator):
    """Disconnect, and stop the local backend if this Blender started it"""

    bl_idname = "handforge.stop_backend"
    bl_label = "Stop Backend"

    @reports_errors
    def execute(self, context):
        cancelled = sum(jobs.cancel())
        connection.disconnect(stop_local=True, why="Stop Backend")
        self.report({"INFO"}, "disconnected" + (f" ({cancelled} running job(s) cancelled)" if cancelled else ""))
        return {"FINISHED"}


class HANDFORGE_OT_connect(bpy.types.Operator):
    """Connect to a running backend (the address from the preferences, or the one given)"""

    bl_idname = "handforge.connect"
    bl_label = "Connect"

    address: StringProperty(name="Address", default="", options=ONE_SHOT,
                            description="tcp://HOST:PORT (empty: the preferences')")

    @reports_errors
    def execute(self, context):
        connection.connect(self.address or None, blocking=True)
        self.report({"INFO"}, connection.BACKEND.status)
        return {"FINISHED"}

    @reports_errors
    def invoke(self, context, event):
        connection.connect(self.address or None, blocking=bpy.app.background)
        return {"FINISHED"}


class HANDFORGE_OT_cancel_job(bpy.types.Operator):
    """Cancel a running backend job (all of them if none is named)"""

    bl_idname = "handforge.cancel_job"
    bl_label = "Cancel Job"

    job_id: StringProperty(name="Job", default="", options=ONE_SHOT,
                           description="The job to cancel (empty: every running job)")

    def execute(self, context):
        count, before = jobs.cancel(self.job_id)
        if not count:
            why = ("no backend is connected" if not connection.BACKEND.connected
                   else f"the backend is already cancelling {before} job(s)" if before
                   else f"no running job {self.job_id!r}" if self.job_id else "no job is running")
            self.report({"INFO"}, f"nothing to cancel: {why}")
            return {"CANCELLED"}
        self.report({"INFO"}, f"asked the backend to cancel {count} job(s)"
                              + (f" ({before} more already being cancelled)" if before else ""))
        return {"FINISHED"}


MODEL_ITEMS = [(name, label, description) for name, (label, description) in HAND_MODEL_LABELS.items()]


class HANDFORGE_OT_backend_hands(jobs.JobOperator, bpy.types.Operator):
    """Add a left and a right hand of a hand model the backend has (MANO needs its files there)"""

    bl_idname = "handforge.backend_hands"
    bl_label = "Add Hands from Backend"
    job_kind = "hand_model"

    model: EnumProperty(name="Hand Model", items=MODEL_ITEMS, default="mano", description="Which hand model to build")
    use_shape: BoolProperty(name="Shape", default=False, description="Give the hands a shape")
    betas: FloatVectorProperty(name="Betas", size=NUM_BETAS, default=(0.0,) * NUM_BETAS,
                               description="Shape coefficients of the new hands (with Shape on)")

    @classmethod
    def description(cls, context, properties):
        ok, why = connection.hand_model_status(properties.model)
        return cls.__doc__ if ok else f"Cannot add {properties.model} hands: {why}"

    def job_request(self, context):
        ok, why = connection.hand_model_status(self.model)
        if not ok and connection.BACKEND.capabilities is not None:
            raise ValueError(f"the backend cannot build {self.model} hands: {why}")
        return "hand_model", {"model": self.model, "sides": ["left", "right"]}, {}

    def job_apply(self, context, result):
        rigs = hand_rigs(result)
        made, beside = hands.add_hands(context, rigs, name="MANO Hand" if self.model == "mano" else "Hand")
        if self.use_shape:
            for obj in made.values():
                hands.set_shape(context, obj, np.array(self.betas))
        return f"added {self.model} hands from the backend{beside}"


class HANDFORGE_OT_check_backend(jobs.JobOperator, bpy.types.Operator):
    """Send the current pose of the hands to the backend (forward_hands) and show its meshes next to Blender's: they should coincide"""

    bl_idname = "handforge.check_backend"
    bl_label = "Check Against Backend"
    job_kind = "forward_hands"

    def job_request(self, context):
        found = hands.scene_hands(context.scene, "BOTH")
        models = {obj.handforge.hand_model for obj in found.values()}
        if len(models) != 1:
            raise ValueError(f"the hands are of different models ({', '.join(sorted(models))})")
        for side, obj in found.items():
            if rig.hand_mesh(obj) is None:
                raise ValueError(f"the {side} hand {obj.name!r} has no HandForge hand mesh to compare: add the hands "
                                 "again with Add Hands")
        self._sides = list(found)
        poses = {side: pose_conv.read_pose(obj) for side, obj in found.items()}
        return "forward_hands", {"model": models.pop()}, pose_arrays(poses)

    def job_apply(self, context, result):
        found = hands.scene_hands(context.scene, "BOTH")
        worst = 0.0
        for side in self._sides:
            arm_obj = found[side]
            mesh_obj = rig.hand_mesh(arm_obj)
            if mesh_obj is None:
                raise ValueError(f"the {side} hand {arm_obj.name!r} lost its hand mesh while the job ran")
            verts = np.asarray(result.arrays[hand_array_name(side, "vertices")])[0]
            faces = np.array([p.vertices[:] for p in mesh_obj.data.polygons])
            # The backend poses the hand in the rig's own (armature) space: compare there, and show its
            # mesh where the rig stands, so that a moved, rotated or scaled rig is checked too.
            obj = importers.vertices_object(context, f"HandForge Backend.{side[0].upper()}", verts, faces)
            obj.matrix_world = arm_obj.matrix_world
            ev = mesh_obj.evaluated_get(context.evaluated_depsgraph_get()).data
            co = np.empty(len(ev.vertices) * 3, np.float32)
            ev.vertices.foreach_get("co", co)
            to_rig = np.array(arm_obj.matrix_world.inverted() @ mesh_obj.matrix_world)
            shown = co.reshape(-1, 3) @ to_rig[:3, :3].T + to_rig[:3, 3]
            deviation = float(np.abs(shown - verts @ MODEL_TO_BLENDER.T).max())
            obj["handforge_max_deviation_m"] = deviation
            worst = max(worst, deviation)
        return f"the backend's hands and Blender's agree within {worst * 1000:.4f} mm"


class HANDFORGE_OT_run_job(jobs.JobOperator, bpy.types.Operator):
    """Run a backend job and import what it returns (motion as keys, images as image datablocks)"""

    bl_idname = "handforge.run_job"
    bl_label = "Run Job"

    kind: StringProperty(name="Kind", options=ONE_SHOT,
                         description="The job kind, e.g. motion.inbetween (see the Backend panel)")
    params: StringProperty(name="Parameters", default="{}", options=ONE_SHOT,  # (one kind's params are not another's)
                           description="JSON object of job parameters")
    inputs: StringProperty(name="Inputs", subtype="FILE_PATH", default="", options=PATH_FIELD,
                           description="Optional .npz whose arrays are sent with the job (else: the current hand poses, "
                                       "if the job takes them)")
    image_target: EnumProperty(name="Images", default="IMAGE", description="Where images in the result go", items=[
        ("IMAGE", "Image", "Image datablocks only"),
        ("CAMERA", "Camera Background", "Also show the first behind the active camera, in place of the "
                                          "last result's"),
        ("PLANE", "Textured Plane", "Also show the first on a plane in front of the active camera (standing in the "
                                    "scene without one), refilled by the next result")])

    @classmethod
    def description(cls, context, properties):
        if not properties.kind:
            return cls.__doc__
        ok, why = connection.kind_status(properties.kind)
        return (why or cls.__doc__) if ok else f"Cannot run {properties.kind}: {why}"

    def job_request(self, context):
        if not self.kind:
            raise ValueError("name the job kind to run")
        # (said before the job runs, not once its result came; not for a kind whose results hold no images, e.g.
        # motion with Camera Background still chosen from an image job: it was refused for a camera it never uses)
        images = self.image_target == "CAMERA" and connection.may_return_images(self.kind)
        why = importers.camera_problem(context.scene) if images else ""
        if why:
            raise ValueError(why)
        try:
            params = parse_json(self.params or "{}")  # (nested too deeply: a ValueError, not a RecursionError)
        except ValueError as exc:
            raise ValueError(f"the job parameters are not valid JSON ({exc}): e.g. {{\"steps\": 10}}") from None
        if not isinstance(params, dict):
            raise ValueError("the job parameters must be a JSON object, e.g. {\"steps\": 10}")
        arrays = {}
        if self.inputs:
            # (absolute_path: "//" of an unsaved .blend sent the inputs in Blender's working folder, unsaid)
            path = absolute_path(self.inputs, "file")
            if not os.path.lexists(path):
                raise ValueError(f"Inputs {path}: no such file: choose a .npz file of arrays (save one with "
                                 "numpy.savez)")
            try:  # (np.load waited for ever on a FIFO, Blender frozen, and inflated whatever sizes a file declared)
                arrays = read_npz_arrays(path)
            except PoseFormatError as exc:  # a folder, a FIFO, a damaged, oversized or other file
                detail = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path} ")
                raise ValueError(f"Inputs {path} is not a .npz file of arrays ({detail}): save one with "
                                 "numpy.savez") from None
        else:
            takes = (connection.BACKEND.capabilities or {}).get("kinds", {}).get(self.kind, {}).get("arrays", {})
            if any(name.endswith(".global_orient") for name in takes):
                found = hands.scene_hands(context.scene, "BOTH")
                arrays = pose_arrays({side: pose_conv.read_pose(obj) for side, obj in found.items()})
        return self.kind, params, arrays

    def job_apply(self, context, result):
        warnings = []  # (what showing an image changed on a camera unasked: said apart, not lost in the summary)
        summary = importers.apply_result(context, result.data, result.arrays, self.kind, self.image_target, warnings)
        for warning in warnings:
            self.report({"WARNING"}, warning)
        return summary


CLASSES = (HANDFORGE_OT_start_backend, HANDFORGE_OT_stop_backend, HANDFORGE_OT_connect, HANDFORGE_OT_cancel_job,
           HANDFORGE_OT_backend_hands, HANDFORGE_OT_check_backend, HANDFORGE_OT_run_job)
