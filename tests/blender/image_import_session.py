"""Blender session, no backend: Generate Image's and Transfer Pose's result handler (``ops_image.import_images``) fed
results directly, good and malformed (no camera intrinsics, bad ones, a property that cannot be kept): what it
leaves in the file."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import bpy
import numpy as np
from session import ADDON_MODULE, Session

s = Session()
s.install()
scene = bpy.context.scene
ops_image = importlib.import_module(f"{ADDON_MODULE}.ops_image")

camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(camera)
scene.camera = camera
scene.render.resolution_x = scene.render.resolution_y = 16
MADE_IN = {"scene": scene.session_uid, "camera": camera.session_uid, "render": None}
K = [[20.0, 0.0, 8.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]]


def result(data: dict):
    pixels = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    return SimpleNamespace(arrays={"images": pixels}, data={"hands": {}, "hand_model": "open", **data})


def state() -> dict:
    return {"images": sorted(i.name for i in bpy.data.images),
            "backgrounds": [b.image.name if b.image else None for b in camera.data.background_images],
            "objects": sorted(o.name for o in bpy.data.objects)}


def imported(data: dict, seed: int, plane: bool = True, **properties) -> dict:
    before = state()
    try:
        made, note = ops_image.import_images(bpy.context, result(data), "HandForge", seed, MADE_IN, True,
                                             plane and "HandForge image", **properties)
        outcome = {"made": [i.name for i in made], "error": None,
                   "kept": [[i["handforge_seed"], i["handforge_variant"]] for i in made]}
    except Exception as exc:  # noqa: BLE001 - what the job reports
        outcome = {"made": None, "error": f"{type(exc).__name__}: {exc}"}
    return {**outcome, "before": before, "after": state()}


s.check("no_camera", lambda: imported({}, 1))
s.check("bad_intrinsics", lambda: imported({"camera": {"K": [[0.0]]}}, 2))
s.check("property_not_kept", lambda: imported({"camera": {"K": K}}, 3, plane=False, prompt=object()))
s.check("good", lambda: imported({"camera": {"K": K}}, 4, prompt="two hands"))


def failed_once_shown():
    """A failure after the first image went behind the camera, in place of the last result's (the plane breaking):
    the last result's image shows there again."""
    importers = importlib.import_module(f"{ADDON_MODULE}.importers")
    add_plane = importers.add_plane

    def broken(*args, **kwargs):
        raise RuntimeError("plane broke")

    importers.add_plane = broken
    try:
        return imported({"camera": {"K": K}}, 5)
    finally:
        importers.add_plane = add_plane


s.check("failed_once_shown", failed_once_shown)
# Generate Image: image k drawn from its own generator at seed + k, the seed that reproduces it alone
s.check("seed_per_image", lambda: imported({"camera": {"K": K}}, 6, plane=False, seed_per_image=True))
# a result that tells each image's seed is read, not worked out
s.check("seeds_told", lambda: imported({"camera": {"K": K}, "seeds": [40, 47]}, 7, plane=False))
s.finish()
