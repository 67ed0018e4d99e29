"""The demo's Blender session (runs inside the bpy module, in its own process; see ``blender_demo``).

    python -m handforge.blender_demo_scene SPEC.json

Installs the HandForge extension zip into the temporary Blender user folder given by
``BLENDER_USER_RESOURCES``, then works like an artist, through the add-on's operators: add both
hands, pose them with presets, key each pose, and save ``hands.blend`` and Workbench renders.
Writes ``blender.json``: per keyed frame the preset and the 21 keypoints of each hand read from
the rig's bones (model frame, metres), and ``keyed_poses.npz``, the animation as a motion clip,
so the caller can check the keypoints against the backend's for the same parameters.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils import Vector

from handforge_shared.skeleton import KEYPOINT_NAMES, MODEL_TO_BLENDER

ADDON = "bl_ext.user_default.handforge"


def keypoints(arm) -> list:
    """The 21 keypoints (InterHand2.6M order) of a HandForge rig: the heads of the bones of the
    same names (joints, and the fingertip bones thumb4..pinky4), back in the model frame."""
    pts = np.array([np.array(arm.matrix_world @ arm.pose.bones[name].head) for name in KEYPOINT_NAMES])
    return (pts @ MODEL_TO_BLENDER).round(7).tolist()  # row vectors: p_model = Mᵀ p_blender


def setup_render(scene, width: int, height: int):
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = "MATERIAL"
    scene.display.render_aa = "8"
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    cam_data = bpy.data.cameras.new("HandForge Camera")
    cam_data.lens = 40
    cam = bpy.data.objects.new("HandForge Camera", cam_data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    return cam


def frame_hands(cam, meshes) -> None:
    """Aim the camera at the hands from the front (fingertip side) and above, as close as fits them."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    points = []
    for obj in meshes:
        ev = obj.evaluated_get(depsgraph)
        co = np.empty(len(ev.data.vertices) * 3, np.float32)
        ev.data.vertices.foreach_get("co", co)
        mw = np.array(obj.matrix_world)
        points.append(co.reshape(-1, 3) @ mw[:3, :3].T + mw[:3, 3])
    pts = np.concatenate(points)
    back = np.array([0.0, 0.84, 0.55])  # from the hands towards the camera: in front of the fingertips, above
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    x, y = pts @ right, pts @ up
    target = right * (x.min() + x.max()) / 2 + up * (y.min() + y.max()) / 2 + back * (pts @ back).mean()
    rel = pts - target
    margin = 0.9  # of the half field of view
    tx, ty = math.tan(cam.data.angle_x / 2) * margin, math.tan(cam.data.angle_y / 2) * margin
    distance = float(np.max(np.maximum(np.abs(rel @ right) / tx, np.abs(rel @ up) / ty) + rel @ back))
    cam.location = Vector((target + back * distance).tolist())
    cam.rotation_euler = Vector((-back).tolist()).to_track_quat("-Z", "Y").to_euler()


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    out.mkdir(parents=True, exist_ok=True)
    timings = {}
    t = time.perf_counter()
    bpy.ops.extensions.package_install_files(filepath=spec["zip"], repo="user_default", enable_on_install=True)
    if ADDON not in bpy.context.preferences.addons:
        raise SystemExit("the HandForge extension did not enable (see the messages above)")
    for obj in list(bpy.data.objects):  # the startup scene's cube, light and camera
        bpy.data.objects.remove(obj)
    timings["install_s"] = time.perf_counter() - t

    scene = bpy.context.scene
    t = time.perf_counter()
    bpy.ops.handforge.add_hands()
    keyed = []
    frame = 1
    for preset in spec["presets"]:  # named poses from the preset library, on both hands
        scene.frame_set(frame)
        bpy.ops.handforge.apply_preset(preset=preset, sides="BOTH")
        bpy.ops.handforge.key_pose(sides="BOTH")
        keyed.append({"frame": frame, "preset": preset})
        frame += spec["frame_step"]
    for name, hands_params in spec["pasted"].items():  # whole two-hand poses (e.g. an interaction)
        scene.frame_set(frame)
        bpy.ops.handforge.paste_pose(text=json.dumps({"format": "handforge.pose", "hands": hands_params}), sides="BOTH")
        bpy.ops.handforge.key_pose(sides="BOTH")
        keyed.append({"frame": frame, "preset": name})
        frame += spec["frame_step"]
    scene.frame_start, scene.frame_end = 1, keyed[-1]["frame"]
    timings["pose_and_key_s"] = time.perf_counter() - t

    cam = setup_render(scene, spec["width"], spec["height"])
    t = time.perf_counter()
    hands = {"left": scene.handforge.left, "right": scene.handforge.right}
    meshes = [child for arm in hands.values() for child in arm.children if child.type == "MESH"]
    for item in keyed:
        scene.frame_set(item["frame"])
        item["keypoints"] = {side: keypoints(arm) for side, arm in hands.items()}
        if item["preset"] in spec["render"]:
            frame_hands(cam, meshes)
            scene.render.filepath = str(out / f"hands_{item['frame']:03d}_{item['preset']}.png")
            bpy.ops.render.render(write_still=True)
            item["render"] = Path(scene.render.filepath).name
    timings["render_s"] = time.perf_counter() - t
    # the rigs' poses as MANO parameters (the add-on's own reading), for the check against the backend
    bpy.ops.handforge.export_motion(filepath=str(out / "keyed_poses.npz"), frame_start=1, frame_end=keyed[-1]["frame"])
    scene.frame_set(1)
    blend = out / "hands.blend"
    bpy.context.preferences.filepaths.save_version = 0  # no hands.blend1 backups
    bpy.ops.wm.save_as_mainfile(filepath=str(blend), compress=True)
    report = {"blender": bpy.app.version_string, "blend": blend.name, "keyed": keyed, "poses": "keyed_poses.npz",
              "fps": scene.render.fps / scene.render.fps_base, "timings": timings,
              "camera_fov_deg": math.degrees(cam.data.angle)}
    (out / "blender.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
