"""Blender's side of ``handforge.render.blender``: runs inside the bpy module, renders on request.

    python -m handforge.render.blender_worker

Reads one JSON request per line on stdin, answers one line ``HANDFORGE_WORKER {json}`` on stdout
(Blender prints its own lines there too). The scene (two hand meshes, a skin material, a camera,
lights) is built once; a request moves the vertices (``foreach_set``), the camera and the lights and
renders an RGBA PNG with a transparent film (the caller composites the background).
Request: ``{"engine", "samples", "antialiasing", "vertices": {side: .npy}, "faces": {side: .npy}, "camera":
BlenderCamera dict, "target": [3], "lighting": {"preset", "rotation_deg"}, "skin_tone": hex,
"out": png path, "rebuild": bool}`` (``rebuild``: a fresh scene first, the naive baseline).
"""

from __future__ import annotations

import json
import math
import sys
import traceback

import bpy
import numpy as np
from mathutils import Matrix, Vector

REPLY = "HANDFORGE_WORKER "
# HDRI-free lighting: (kind, elevation°, azimuth° from the camera's side, strength); area lights in W at 1 m
LIGHTS = {
    "studio": [("AREA", 35, -40, 60.0), ("AREA", 15, 55, 25.0), ("AREA", 30, 170, 40.0)],
    "soft": [("AREA", 60, 0, 90.0), ("AREA", 0, 120, 20.0), ("AREA", 0, -120, 20.0)],
    "rim": [("AREA", 20, 150, 80.0), ("AREA", 20, -150, 80.0), ("AREA", 10, 0, 12.0)],
    "top": [("SUN", 80, 0, 3.0), ("AREA", 10, 30, 10.0)],
}
CYCLES_EXPOSURE = 0.25  # the strengths above, scaled to expose skin at the default 1 m light distance
AMBIENT = {"studio": 0.15, "soft": 0.35, "rim": 0.08, "top": 0.2}
STUDIO_LIGHTS = {"studio": "studio.sl", "soft": "basic.sl", "rim": "rim.sl", "top": "Default"}


def srgb_to_linear(hex_colour: str) -> tuple[float, float, float]:
    c = np.array([int(hex_colour[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])
    return tuple(np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).tolist())


class Worker:
    def __init__(self) -> None:
        self.built = False

    def build(self, request: dict) -> None:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        scene = bpy.context.scene
        self.material = bpy.data.materials.new("HandForge Skin")
        self.material.use_nodes = True
        bsdf = self.material.node_tree.nodes["Principled BSDF"]
        for name, value in (("Roughness", 0.5), ("Subsurface Weight", 0.15), ("Subsurface Scale", 0.004)):
            if name in bsdf.inputs:
                bsdf.inputs[name].default_value = value
        self.bsdf = bsdf
        self.meshes = {}
        for side, faces_path in request["faces"].items():
            faces = np.load(faces_path)
            verts = np.load(request["vertices"][side])
            mesh = bpy.data.meshes.new(f"{side} hand")
            mesh.from_pydata(verts.tolist(), [], faces.tolist())
            mesh.shade_smooth()
            mesh.materials.append(self.material)
            obj = bpy.data.objects.new(f"{side} hand", mesh)
            scene.collection.objects.link(obj)
            self.meshes[side] = mesh
        cam_data = bpy.data.cameras.new("HandForge Camera")
        self.camera = bpy.data.objects.new("HandForge Camera", cam_data)
        scene.collection.objects.link(self.camera)
        scene.camera = self.camera
        scene.world = bpy.data.worlds.new("HandForge World")
        scene.world.use_nodes = True
        scene.render.film_transparent = True
        scene.render.image_settings.file_format = "PNG"
        scene.render.image_settings.color_mode = "RGBA"
        # a hand-off file the caller reads back at once: zlib's work (about 6 ms a 256² render at
        # Blender's default 15%, more to inflate) buys nothing; the pixels are the same at any level
        scene.render.image_settings.compression = 0
        scene.render.resolution_percentage = 100
        scene.view_settings.view_transform = "Standard"
        scene.render.engine = "CYCLES" if request["engine"] == "cycles" else "BLENDER_WORKBENCH"
        if request["engine"] == "cycles":
            scene.cycles.device = "CPU"
            scene.cycles.samples = int(request["samples"])
            scene.cycles.use_adaptive_sampling = False
            scene.cycles.use_denoising = False
            scene.cycles.max_bounces = 4
        else:
            shading = scene.display.shading
            shading.light, shading.color_type = "STUDIO", "MATERIAL"
            scene.display.render_aa = request["antialiasing"]  # "OFF" … "32": handforge.render.blender.ANTIALIASING
        self.lights = []
        self.engine = request["engine"]
        self.built = True

    def set_lights(self, lighting: dict, target: Vector, cam_position: Vector) -> None:
        scene = bpy.context.scene
        preset = lighting["preset"]
        if self.engine != "cycles":
            names = [s.name for s in bpy.context.preferences.studio_lights if s.type == "STUDIO"]
            shading = scene.display.shading
            shading.studio_light = STUDIO_LIGHTS[preset] if STUDIO_LIGHTS[preset] in names else names[0]
            shading.studiolight_rotate_z = math.radians(lighting["rotation_deg"] - 180.0)
            return
        for obj in self.lights:
            bpy.data.objects.remove(obj)
        self.lights = []
        background = scene.world.node_tree.nodes["Background"]
        background.inputs["Strength"].default_value = AMBIENT[preset]
        view = cam_position - target
        base = math.atan2(view.y, view.x) + math.radians(lighting["rotation_deg"] * 0.25 - 45.0)
        for k, (kind, elevation, azimuth, strength) in enumerate(LIGHTS[preset]):
            data = bpy.data.lights.new(f"light{k}", kind)
            data.energy = strength * CYCLES_EXPOSURE
            if kind == "AREA":
                data.size = 0.5
            obj = bpy.data.objects.new(f"light{k}", data)
            scene.collection.objects.link(obj)
            el, az = math.radians(elevation), base + math.radians(azimuth)
            obj.location = target + Vector((math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)))
            obj.rotation_euler = (target - obj.location).to_track_quat("-Z", "Y").to_euler()
            self.lights.append(obj)

    def render(self, request: dict) -> dict:
        if request.get("rebuild") or not self.built:
            self.build(request)
        scene = bpy.context.scene
        for side, mesh in self.meshes.items():
            verts = np.load(request["vertices"][side]).astype(np.float32)
            mesh.vertices.foreach_set("co", verts.ravel())
            mesh.update()
        cam = request["camera"]
        data = self.camera.data
        for key in ("lens", "sensor_width", "sensor_height", "sensor_fit", "shift_x", "shift_y"):
            setattr(data, key, cam[key])
        data.clip_start, data.clip_end = request["clip"]  # the GL images' range (render.camera.clip_range)
        render = scene.render
        render.resolution_x, render.resolution_y = cam["resolution_x"], cam["resolution_y"]
        render.pixel_aspect_x, render.pixel_aspect_y = cam["pixel_aspect_x"], cam["pixel_aspect_y"]
        self.camera.matrix_world = Matrix(cam["matrix_world"])
        colour = srgb_to_linear(request["skin_tone"])
        self.bsdf.inputs["Base Color"].default_value = (*colour, 1.0)
        if "Subsurface Radius" in self.bsdf.inputs:
            self.bsdf.inputs["Subsurface Radius"].default_value = (1.0, 0.2, 0.1)
        self.material.diffuse_color = (*colour, 1.0)
        self.set_lights(request["lighting"], Vector(request["target"]), self.camera.matrix_world.translation)
        render.filepath = request["out"]
        bpy.ops.render.render(write_still=True)
        return {"out": request["out"]}


def main() -> int:
    from handforge.termination import die_with_parent

    # a parent killed outright (an export worker the driver kills, then removes its scratch folder): this
    # process ends at once, not after a render that would write into that folder and make it again
    if len(sys.argv) > 1 and not die_with_parent(int(sys.argv[1])):
        return 1
    worker = Worker()
    print(REPLY + json.dumps({"ready": bpy.app.version_string}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            reply = worker.render(json.loads(line))
        except Exception:  # noqa: BLE001 - sent back to the caller
            reply = {"error": traceback.format_exc()}
        print(REPLY + json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
