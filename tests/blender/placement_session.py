"""Blender session: ``placement.evaluating_frames`` around frames evaluated to read other frames, and Export
Labelled Renders' reading of the scene (``ops_export.read_scene``) through it: what the scene held before is
what it holds after."""

from __future__ import annotations

import importlib

import bpy

from session import ADDON_MODULE, Session, add_camera

s = Session()
s.install()
scene = bpy.context.scene
placement = importlib.import_module(f"{ADDON_MODULE}.placement")
ops_export = importlib.import_module(f"{ADDON_MODULE}.ops_export")
fcurves = importlib.import_module(f"{ADDON_MODULE}.fcurves")


def keyed_empty(name: str):
    """An empty with location.x keyed 0 on frame 1 and 1 on frame 10, shown on frame 5."""
    obj = bpy.data.objects.new(name, None)
    scene.collection.objects.link(obj)
    for frame, x in ((1, 0.0), (10, 1.0)):
        obj.location.x = x
        obj.keyframe_insert("location", index=0, frame=frame)
    scene.frame_set(5)
    return obj


def evaluate_frames() -> None:
    with placement.evaluating_frames(scene):
        for frame in range(1, 11):
            scene.frame_set(frame)


def keys_written_since():
    """A job's result keyed through the F-curve API (as keys.import_clip writes: no frame set) just before: the
    scene shows those keys, not the values from before them (put back over them as the artist's change)."""
    obj = keyed_empty("Rekeyed")
    fc = fcurves.find_channelbag(obj).fcurves.find("location", index=0)
    for kp in fc.keyframe_points:
        for point in (kp.co, kp.handle_left, kp.handle_right):
            point[1] += 10.0
    fc.update()
    evaluate_frames()
    out = {"x": obj.location.x, "keys": fc.evaluate(5)}
    bpy.data.objects.remove(obj)
    return out


def keys_written_meanwhile():
    """A job's result keyed while the frames are evaluated (landing between a modal export's steps): the scene
    shows the new keys after, as Blender does, not the value from before them."""
    obj = keyed_empty("Landed")
    fc = fcurves.find_channelbag(obj).fcurves.find("location", index=0)
    with placement.evaluating_frames(scene):
        for frame in range(1, 11):
            scene.frame_set(frame)
            if frame == 3:
                for kp in fc.keyframe_points:
                    for point in (kp.co, kp.handle_left, kp.handle_right):
                        point[1] += 10.0
                fc.update()
    out = {"x": obj.location.x, "keys": fc.evaluate(5)}
    bpy.data.objects.remove(obj)
    return out


def node_value_kept():
    """A material's node value keyed (on its node tree, an ID of its own), dragged on frame 5, not keyed."""
    material = bpy.data.materials.new("Keyed")
    material.use_nodes = True
    obj = bpy.data.objects.new("Shaded", bpy.data.meshes.new("Shaded"))
    scene.collection.objects.link(obj)
    obj.data.materials.append(material)
    socket = material.node_tree.nodes["Principled BSDF"].inputs["Roughness"]
    for frame, value in ((1, 0.0), (10, 1.0)):
        socket.default_value = value
        socket.keyframe_insert("default_value", frame=frame)
    scene.frame_set(5)
    socket.default_value = 0.75
    evaluate_frames()
    out = {"roughness": socket.default_value}
    bpy.data.objects.remove(obj)
    return out


def export_renders_reading():
    """Export Labelled Renders reads the hands and cameras frame by frame: a prop moved, not keyed, stays."""
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    camera = add_camera("Cam", (0.0, -0.6, 0.3))
    prop = keyed_empty("Prop")
    prop.location.x = 0.25  # the artist's change, not keyed
    found = {side: getattr(scene.handforge, side) for side in ("left", "right")}
    ops_export.read_scene(bpy.context, found, [camera], range(1, 8, 3))
    return {"x": prop.location.x, "frame": scene.frame_current}


def baked_curve_moves():
    """An object moved by a transform curve baked to samples (Keys to Samples: no keys left) moves as an object."""
    obj = keyed_empty("Baked")
    fcurves.find_channelbag(obj).fcurves.find("location", index=0).convert_to_samples(1, 10)
    out = {"moves": placement.moves_as_object(obj),
           "x": placement.worlds_over(scene, {"": obj}, [1, 10])[""][:, 0, 3].tolist()}
    bpy.data.objects.remove(obj)
    return out


s.check("baked", baked_curve_moves)
s.check("rekeyed", keys_written_since)
s.check("meanwhile", keys_written_meanwhile)
s.check("node", node_value_kept)
s.check("export_renders", export_renders_reading)
s.finish()
