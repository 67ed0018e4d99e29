"""Blender session: Blender's own projection (``world_to_camera_view``) of points for given cameras.

Plain bpy, no add-on. Per camera (settings as ``BlenderCamera.to_dict()``): the camera is built,
its settings are read back as Blender stores them, and the points (Blender world) are projected.
"""

from __future__ import annotations

import bpy
import numpy as np
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Matrix, Vector

from session import Session

s = Session()
for obj in list(bpy.data.objects):
    bpy.data.objects.remove(obj)
scene = bpy.context.scene
points = np.array(s.args["points"])


def project_all():
    views, stored = [], []
    for i, settings in enumerate(s.args["cameras"]):
        data = bpy.data.cameras.new(f"cam{i}")
        obj = bpy.data.objects.new(f"cam{i}", data)
        scene.collection.objects.link(obj)
        scene.camera = obj
        for key in ("lens", "sensor_width", "sensor_height", "sensor_fit", "shift_x", "shift_y"):
            setattr(data, key, settings[key])
        render = scene.render
        render.resolution_x, render.resolution_y = settings["resolution_x"], settings["resolution_y"]
        render.resolution_percentage = 100
        render.pixel_aspect_x, render.pixel_aspect_y = settings["pixel_aspect_x"], settings["pixel_aspect_y"]
        obj.matrix_world = Matrix(settings["matrix_world"])
        bpy.context.view_layer.update()
        views.append([list(world_to_camera_view(scene, obj, Vector(p))) for p in points[i]])
        stored.append({"matrix_world": [list(r) for r in obj.matrix_world],
                       **{k: getattr(data, k) for k in ("lens", "sensor_width", "sensor_height", "sensor_fit",
                                                          "shift_x", "shift_y")},
                       "resolution_x": render.resolution_x, "resolution_y": render.resolution_y,
                       "pixel_aspect_x": render.pixel_aspect_x, "pixel_aspect_y": render.pixel_aspect_y})
    s.arrays["views"] = np.array(views)
    return stored


s.check("stored", project_all)
s.finish()
