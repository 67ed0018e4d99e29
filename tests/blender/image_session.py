"""Blender session: Generate Image through real backends the add-on starts — first one without
image weights (the button is greyed out with the missing-weights reason), then one pointed at tiny
random SD weights (the operator makes image datablocks of the requested size)."""

from __future__ import annotations

import os

import bpy
import numpy as np
from session import ADDON_MODULE, Session, add_camera, error_of, while_a_job_runs

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
prefs = bpy.context.preferences.addons[ADDON_MODULE].preferences
WEIGHTS = ("HANDFORGE_SD_MODEL", "HANDFORGE_IMAGE_GUIDANCE")


def start(env: dict[str, str]):
    for key in WEIGHTS:  # the backend the add-on starts inherits this process's environment
        os.environ.pop(key, None)
    os.environ.update(env)
    prefs.address = f"tcp://127.0.0.1:{a['port']}"
    prefs.server_command = a["command"]
    prefs.connect_timeout = 90.0
    assert bpy.ops.handforge.start_backend() == {"FINISHED"}


def build_scene():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.paste_pose(text=a["pose"], sides="BOTH") == {"FINISHED"}
    scene.camera = add_camera("Cam", (0.0, -0.5, 0.15))
    scene.handforge_image_prompt = "two hands waving"


s.check("scene", build_scene)


def without_weights():
    start({})
    engines = {e.name: [e.available, e.reason] for e in bpy.context.window_manager.handforge.engines}
    result = {"poll": bpy.ops.handforge.generate_image.poll(), "engines": engines,
              "message": error_of(lambda: bpy.ops.handforge.generate_image())}
    assert bpy.ops.handforge.stop_backend() == {"FINISHED"}
    return result


s.check("without_weights", without_weights)


def with_weights():
    start({"HANDFORGE_SD_MODEL": a["sd"], "HANDFORGE_IMAGE_GUIDANCE": a["guidance"]})
    poll = bpy.ops.handforge.generate_image.poll()
    result = bpy.ops.handforge.generate_image(seed=5, steps=2, variants=2, resolution_x=a["size"],
                                              resolution_y=a["size"], add_plane=True)
    plane = bpy.data.objects.get("HandForge image")
    made = sorted((i for i in bpy.data.images if "handforge_seed" in i), key=lambda i: i.name)
    for image in made:
        pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
        image.pixels.foreach_get(pixels)
        s.arrays[image.name] = pixels.reshape(image.size[1], image.size[0], 4)
    background = scene.camera.data.background_images
    shown = {"background": background[0].image.name if len(background) else ""}
    # the artist's own image with the name a one-variant run takes, then that run: nothing is overwritten
    own = bpy.data.images.new("HandForge seed 5", 4, 4)
    own["mine"] = True
    again = bpy.ops.handforge.generate_image(seed=5, steps=2, variants=1, resolution_x=a["size"],
                                             resolution_y=a["size"], add_plane=False)
    kept = {}
    for image in made:
        pixels = np.empty(image.size[0] * image.size[1] * 4, np.float32)
        image.pixels.foreach_get(pixels)
        kept[image.name] = bool(np.array_equal(pixels.reshape(image.size[1], image.size[0], 4), s.arrays[image.name]))
    second = {"result": sorted(again), "own": {"size": list(own.size), "mine": own.get("mine")}, "kept": kept,
              "new": sorted(i.name for i in bpy.data.images if "handforge_seed" in i and i not in made)}
    return {"poll": poll, "result": sorted(result), "second": second, **shown,
            "images": {i.name: {"size": list(i.size), "seed": i["handforge_seed"], "prompt": i["handforge_prompt"],
                                "labels": i["handforge_labels"], "packed": i.packed_file is not None} for i in made},
            "show_background": scene.camera.data.show_background_images,
            "plane": None if plane is None else {"parent": plane.parent.name,
                                                 "image": plane.data.materials[0].node_tree.nodes[0].image.name}}


s.check("with_weights", with_weights)


def camera_renamed_mid_job():
    """The camera renamed while the image is made still gets it as its background (it was looked up by
    name: skipped unsaid, and an object that took the name raised after the images were made)."""
    camera = scene.camera
    impostor = bpy.data.objects.new("Cam", None)  # an empty that takes the camera's old name
    scene.collection.objects.link(impostor)
    camera.name = "Cam"  # (the empty was named "Cam.001")

    def rename():
        if camera.name == "Cam":
            camera.name, impostor.name = "Renamed Cam", "Cam"

    try:
        with while_a_job_runs(rename):
            result = bpy.ops.handforge.generate_image(seed=8, steps=2, variants=1, resolution_x=a["size"],
                                                      resolution_y=a["size"], add_plane=False)
    finally:
        bpy.data.objects.remove(impostor)
        camera.name = "Cam"
    background = camera.data.background_images
    return {"result": sorted(result), "renamed": True, "background": background[0].image.name if len(background) else ""}


s.check("camera_renamed", camera_renamed_mid_job)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
