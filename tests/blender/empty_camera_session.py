"""Blender session: a scene whose camera is an Empty (Set Active Object as Camera takes any object): what the
buttons that see the hands through the active camera say."""

from __future__ import annotations

import bpy

from session import Session, error_of, printed_by

s = Session()
s.install()
a = s.args


def empty_as_camera():
    s.start_backend()
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    scene = bpy.context.scene
    empty = bpy.data.objects.new("Empty Cam", None)
    scene.collection.objects.link(empty)
    scene.camera = empty
    scene.render.resolution_x = scene.render.resolution_y = 32
    return {"export": error_of(lambda: bpy.ops.handforge.export_renders(directory=a["renders"], engine="none",
                                                                        cameras="ACTIVE", frame_start=1, frame_end=1)),
            "plane": printed_by(lambda: bpy.ops.handforge.run_job(kind="echo", inputs=a["image"],
                                                                 image_target="PLANE"))}


s.check("empty", empty_as_camera)
s.finish()
