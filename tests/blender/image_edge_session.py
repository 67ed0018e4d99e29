"""Blender session: Generate Image and Transfer Pose at the edges of what an artist may set, through a real backend
on tiny random SD weights: seeds at the top of the Seed field with variants, and the image plane in Edit Mode when
a result comes (Run Job's too)."""

from __future__ import annotations

import os

import bpy
import numpy as np
from session import Session, add_camera, as_user

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
SIZE = {"steps": 1, "resolution_x": a["size"], "resolution_y": a["size"]}
TOP = 2**31 - 1  # the Seed field's largest


def build_scene():
    os.environ.pop("HANDFORGE_CONTROLNETS", None)  # (the developer's: the guidance module is the engine here)
    os.environ.update({"HANDFORGE_SD_MODEL": a["sd"], "HANDFORGE_IMAGE_GUIDANCE": a["guidance"]})
    s.start_backend()
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.paste_pose(text=a["pose"], sides="BOTH") == {"FINISHED"}
    scene.camera = add_camera("Cam", (0.0, -0.5, 0.15))
    scene.handforge_image_prompt = "two hands waving"
    source = bpy.data.images.new("Source", 32, 32, alpha=False)
    source.pixels.foreach_set(np.random.default_rng(0).uniform(0, 1, 32 * 32 * 4).astype(np.float32))
    scene.handforge_transfer_source = source


s.check("scene", build_scene)


def results() -> list[str]:
    return sorted(i.name for i in bpy.data.images if "handforge_seed" in i)


def seeds_at_the_top():
    """Variants past the Seed field's top: before, the job ran and its images were all dropped once made
    (OverflowError: each image keeps its seed in a property Blender holds as a 32-bit integer)."""
    found = {}
    for name, op in (("generate", bpy.ops.handforge.generate_image), ("transfer", bpy.ops.handforge.transfer_pose)):
        before = results()
        found[name] = {"refused": as_user(op, seed=TOP, variants=2, **SIZE)}
        found[name]["made"] = sorted(set(results()) - set(before))
    before = results()
    found["below"] = {"ran": as_user(bpy.ops.handforge.generate_image, seed=TOP - 1, variants=2, **SIZE)[0]}
    found["below"]["made"] = {n: bpy.data.images[n]["handforge_seed"] for n in sorted(set(results()) - set(before))}
    return found


s.check("seeds_at_the_top", seeds_at_the_top)


def plane_state(plane) -> dict:
    nodes = plane.data.materials[0].node_tree.nodes
    return {"vertices": len(plane.data.vertices), "image": next(n.image.name for n in nodes if n.type == "TEX_IMAGE")}


def plane_in_edit_mode():
    """The Image Plane in Edit Mode when the result comes: before, Blender refused the plane's new vertices and the
    whole result was dropped ("Cannot add vertices in edit mode"); now the images are kept, the plane left as it
    is, and the report says why it shows the older image."""
    assert bpy.ops.handforge.generate_image(seed=11, variants=1, add_plane=True, **SIZE) == {"FINISHED"}
    plane = bpy.data.objects["HandForge image"]
    first = plane_state(plane)
    bpy.context.view_layer.objects.active = plane
    bpy.ops.object.mode_set(mode="EDIT")
    before = results()
    ran, said = as_user(bpy.ops.handforge.generate_image, seed=12, variants=1, add_plane=True, **SIZE)
    made = sorted(set(results()) - set(before))
    bpy.ops.object.mode_set(mode="OBJECT")
    background = scene.camera.data.background_images[0].image.name
    return {"first": first, "ran": ran, "said": said, "made": made, "after": plane_state(plane),
            "background": background}


s.check("plane_in_edit_mode", plane_in_edit_mode)


def run_job_plane_in_edit_mode():
    """Run Job's Textured Plane in Edit Mode when the result comes: before, the job failed ("HandForge failed
    (RuntimeError: Error: Cannot add vertices in edit mode)") and its images were left in the file all the same."""
    kept = {"inputs": a["two_images"], "image_target": "PLANE"}
    assert bpy.ops.handforge.run_job(kind="echo", **kept) == {"FINISHED"}
    plane = next(o for o in scene.objects if o.get("handforge_plane") == "echo image")
    first = plane_state(plane)
    bpy.context.view_layer.objects.active = plane
    bpy.ops.object.mode_set(mode="EDIT")
    before = {i.name for i in bpy.data.images}
    ran, said = as_user(bpy.ops.handforge.run_job, kind="echo", **kept)
    made = sorted({i.name for i in bpy.data.images} - before)
    bpy.ops.object.mode_set(mode="OBJECT")
    return {"first": first, "ran": ran, "said": said, "made": made, "after": plane_state(plane)}


s.check("run_job_plane_in_edit_mode", run_job_plane_in_edit_mode)
s.finish()
