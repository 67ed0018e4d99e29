"""Blender session: Transfer Pose through a real backend the add-on starts, on tiny random SD and
ControlNet weights: from an image datablock carrying HandForge labels and from a file; results as
image datablocks, the camera's background and a plane; a missing file is refused, scene intact."""

from __future__ import annotations

import importlib
import json
import os
import pathlib

import bpy
import numpy as np
from session import (ADDON_MODULE, Session, add_camera, error_of, images_through_a_save, init_undo,
                     printed_by, ui_context, while_a_job_runs)

s = Session()
s.install()
a = s.args
scene = bpy.context.scene


def build_scene():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    assert bpy.ops.handforge.paste_pose(text=a["pose"], sides="BOTH") == {"FINISHED"}
    scene.camera = add_camera("Cam", (0.0, -0.5, 0.15))
    source = bpy.data.images.new("Source", 96, 80, alpha=False)
    pixels = np.random.default_rng(0).uniform(0, 1, (80, 96, 4)).astype(np.float32)
    pixels[..., 3] = 1
    source.pixels.foreach_set(pixels.ravel())
    source["handforge_labels"] = a["labels"]
    scene.handforge_transfer_source = source
    os.environ.update({"HANDFORGE_SD_MODEL": a["sd"], "HANDFORGE_CONTROLNETS": a["controlnets"]})
    s.start_backend()


s.check("scene", build_scene)


def from_datablock():
    poll = bpy.ops.handforge.transfer_pose.poll()
    result = bpy.ops.handforge.transfer_pose(seed=3, steps=2, variants=2, resolution_x=a["size"],
                                             resolution_y=a["size"], add_plane=True)
    made = sorted((i for i in bpy.data.images if "handforge_transfer_source" in i), key=lambda i: i.name)
    plane = bpy.data.objects.get("HandForge transfer")
    return {"poll": poll, "result": sorted(result),
            "images": {i.name: {"size": list(i.size), "source": i["handforge_transfer_source"],
                                "labels": i["handforge_labels"]} for i in made},
            "background": scene.camera.data.background_images[0].image.name,
            "plane": None if plane is None else {"parent": plane.parent.name,
                                                 "image": plane.data.materials[0].node_tree.nodes[0].image.name}}


s.check("from_datablock", from_datablock)


def png_file(name: str) -> str:
    """A 64 × 64 PNG written to the work folder, its path: a file of the artist's, loaded afresh (no datablock)."""
    path = str(s.work / name)
    image = bpy.data.images.new("ToSave", 64, 64, alpha=False)
    image.filepath_raw, image.file_format = path, "PNG"
    image.save()
    bpy.data.images.remove(image)
    return path


def from_file():
    path = png_file("source.png")
    objects = len(bpy.data.objects)
    missing = error_of(lambda: bpy.ops.handforge.transfer_pose(source_file=path + ".nope", steps=1,
                                                               resolution_x=a["size"], resolution_y=a["size"]))
    (s.work / "notes.png").write_text("not an image")  # a file with an image's name, not its contents
    images = len(bpy.data.images)
    not_image = error_of(lambda: bpy.ops.handforge.transfer_pose(source_file=str(s.work / "notes.png"), steps=1,
                                                                 resolution_x=a["size"], resolution_y=a["size"]))
    whole = pathlib.Path(path).read_bytes()  # a PNG cut short (a download stopped part way)
    (s.work / "cut.png").write_bytes(whole[:len(whole) // 3])
    cut = error_of(lambda: bpy.ops.handforge.transfer_pose(source_file=str(s.work / "cut.png"), steps=1,
                                                           resolution_x=a["size"], resolution_y=a["size"]))
    # refused after loading (IHPT, no labels in a plain file): the loaded file stayed as a datablock
    unlabelled = error_of(lambda: bpy.ops.handforge.transfer_pose(source_file=path, engine="ihpt", steps=1,
                                                                  resolution_x=a["size"], resolution_y=a["size"]))
    images_kept = len(bpy.data.images) == images
    result = bpy.ops.handforge.transfer_pose(source_file=path, seed=9, steps=1, resolution_x=a["size"],
                                             resolution_y=a["size"], set_background=False)
    made = bpy.data.images.get("HandForge transfer seed 9")
    # a folder given as the file (said not to exist), and an image under the backend's 16 pixels a side (refused
    # in the backend's words)
    folder = error_of(lambda: bpy.ops.handforge.transfer_pose(source_file=str(s.work), steps=1,
                                                              resolution_x=a["size"], resolution_y=a["size"]))
    picked, scene.handforge_transfer_source = scene.handforge_transfer_source, bpy.data.images.new("Tiny", 8, 8)
    tiny = error_of(lambda: bpy.ops.handforge.transfer_pose(steps=1, resolution_x=a["size"], resolution_y=a["size"]))
    scene.handforge_transfer_source = picked
    return {"missing": missing, "objects_kept": len(bpy.data.objects) == objects, "result": sorted(result),
            "folder": folder, "tiny": tiny,
            "not_image": not_image, "cut": cut, "unlabelled": unlabelled, "images_kept": images_kept,
            "source": made["handforge_transfer_source"] if made else None,
            "labels": json.loads(made["handforge_labels"])["hands"] is not None if made else False}


s.check("from_file", from_file)


def write_png16(path, rgb16: np.ndarray) -> None:
    """A 16-bit RGB or RGBA PNG (Blender writes none from a script): what a photo editor exports."""
    import struct
    import zlib

    height, width = rgb16.shape[:2]
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2 if rgb16.shape[2] == 3 else 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def sixteen_bit_source():
    """The pixels sent for a 16-bit PNG are the file's sRGB values, as for an 8-bit one."""

    ops_transfer = importlib.import_module(f"{ADDON_MODULE}.ops_transfer")
    levels = np.arange(0, 256, 8, dtype=np.uint16)
    rgb16 = np.stack([np.tile(levels, (4, 1)) * 257] * 3, axis=-1)  # 4 rows of 32 grey levels
    write_png16(s.work / "grey16.png", rgb16)
    image = bpy.data.images.load(str(s.work / "grey16.png"))
    sent = ops_transfer.image_pixels(image)
    return {"sent": sent[0, :, 0].tolist(), "expected": levels.tolist(), "is_float": image.is_float}


s.check("sixteen_bit", sixteen_bit_source)


def transparent_source():
    """A cut-out (an RGBA image, some pixels transparent) goes with its alpha; an opaque one as RGB."""

    ops_transfer = importlib.import_module(f"{ADDON_MODULE}.ops_transfer")
    image = bpy.data.images.new("CutOut", 8, 4, alpha=True)
    pixels = np.ones((4, 8, 4), np.float32)
    pixels[..., :3] = 0.0  # black under the transparent half, as an editor may keep it
    pixels[:, 4:, 3] = 0.0
    image.pixels.foreach_set(pixels.ravel())
    sent = ops_transfer.image_pixels(image)
    opaque = ops_transfer.image_pixels(bpy.data.images.new("Opaque", 8, 4, alpha=True))
    levels = np.arange(0, 256, 8, dtype=np.uint16)  # a 16-bit cut-out: Blender holds its float buffer premultiplied
    rgba16 = np.stack([np.tile(levels, (4, 1)) * 257] * 3 + [np.full((4, 32), 128 * 257, np.uint16)], axis=-1)
    write_png16(s.work / "grey16_alpha.png", rgba16)
    float_cut = ops_transfer.image_pixels(bpy.data.images.load(str(s.work / "grey16_alpha.png")))
    return {"shape": list(sent.shape), "alpha": sent[0, :, 3].tolist(), "opaque": list(opaque.shape),
            "reduced": list(ops_transfer.reduced(np.repeat(np.repeat(sent, 2, 0), 2, 1), 8, 4).shape),
            "float_rgb": float_cut[0, :, 0].tolist(), "float_alpha": float_cut[0, :, 3].tolist(),
            "levels": levels.tolist(),
            # a photo wider than the backend takes, for a target it exceeds by less than twice: brought within
            # 4096 a side (sent whole before, and refused in the backend's words); one too small, said so
            "large_for_2048": list(ops_transfer.reduced(np.zeros((2200, 4400, 3), np.uint8), 2048, 2048).shape)}


s.check("transparent", transparent_source)


def channel_packed_source():
    """A 16-bit RGBA PNG whose Alpha is Channel Packed (a game texture: its alpha a mask, not coverage): sent as
    its RGB values, alpha dropped, whatever the alpha holds."""
    ops_transfer = importlib.import_module(f"{ADDON_MODULE}.ops_transfer")
    levels = np.arange(0, 256, 8, dtype=np.uint16)
    alpha = np.tile(np.array([0, 64, 128, 255], np.uint16).repeat(8), (4, 1)) * 257
    write_png16(s.work / "packed16.png", np.stack([np.tile(levels, (4, 1)) * 257] * 3 + [alpha], axis=-1))
    image = bpy.data.images.load(str(s.work / "packed16.png"))
    image.alpha_mode = "CHANNEL_PACKED"
    sent = ops_transfer.image_pixels(image)
    data = bpy.data.images.load(str(s.work / "packed16.png"), check_existing=False)
    data.colorspace_settings.name = "Non-Color"  # held as read too, its alpha straight coverage
    as_data = ops_transfer.image_pixels(data)
    return {"shape": list(sent.shape), "rgb": sent[0, :, 0].tolist(), "levels": levels.tolist(),
            "data_shape": list(as_data.shape), "data_rgb": as_data[0, :, 0].tolist()}


s.check("channel_packed", channel_packed_source)


def photo_source():
    """A camera photo's size (larger than the backend takes per side) as the source."""
    photo = bpy.data.images.new("Photo", 4160, 2080, alpha=False)
    scene.handforge_transfer_source = photo
    result = bpy.ops.handforge.transfer_pose(seed=4, steps=1, resolution_x=a["size"], resolution_y=a["size"],
                                             set_background=False)
    return {"result": sorted(result), "made": "HandForge transfer seed 4" in bpy.data.images}


s.check("photo_source", photo_source)


def render_result_source():
    """The Render Result picked as the source (it is in the image list): what the artist is told."""
    kept, scene.handforge_transfer_source = scene.handforge_transfer_source, bpy.data.images["Render Result"]
    message = error_of(lambda: bpy.ops.handforge.transfer_pose(steps=1, resolution_x=a["size"], resolution_y=a["size"]))
    scene.handforge_transfer_source = kept  # the next checks transfer from it
    return {"message": message}


s.check("render_result", render_result_source)


def relative_source_unsaved():
    """A "//" source file while the .blend is unsaved: refused, not read from Blender's working folder."""
    image = bpy.data.images.new("Elsewhere", 64, 64, alpha=False)  # a file of that name in the working folder
    image.filepath_raw, image.file_format = os.path.join(os.getcwd(), "elsewhere.png"), "PNG"
    image.save()
    bpy.data.images.remove(image)
    images = len(bpy.data.images)
    message = error_of(lambda: bpy.ops.handforge.transfer_pose(source_file="//elsewhere.png", steps=1,
                                                               resolution_x=a["size"], resolution_y=a["size"],
                                                               set_background=False))
    return {"unsaved": not bpy.data.filepath, "message": message, "images_kept": len(bpy.data.images) == images}


s.check("relative_source", relative_source_unsaved)


def sequence_source():
    """An image sequence as the source (its frames' files all there): said to be a sequence, not a missing file
    (before: "has no pixels (is its file missing?)")."""
    for frame in (1, 2):
        png_file(f"frames_{frame:04d}.png")
    image = bpy.data.images.load(str(s.work / "frames_0001.png"))
    image.source = "SEQUENCE"
    chosen, scene.handforge_transfer_source = scene.handforge_transfer_source, image
    try:
        return {"message": error_of(lambda: bpy.ops.handforge.transfer_pose(steps=1, resolution_x=a["size"],
                                                                             resolution_y=a["size"]))}
    finally:
        scene.handforge_transfer_source = chosen
        bpy.data.images.remove(image)


s.check("sequence_source", sequence_source)


def damaged_labels():
    """A source whose handforge_labels the artist edited into something else (Custom Properties): refused naming
    the image and the property (before: the backend's "params.source_labels: must be a string, got 5", or "the
    submit header is not plain JSON: Object of type IDPropertyGroup ...", or "... is 40025 characters long")."""
    chosen = scene.handforge_transfer_source
    source = scene.handforge_transfer_source = bpy.data.images.new("Edited Labels", 64, 64, alpha=False)
    found = {}
    try:
        # valid JSON longer than the backend takes (before: its "params.source_labels: is N characters long"), and
        # JSON within its limit as written but not as the header carries it, its quotes escaped (before: the
        # backend's "params.source_labels: is N characters long as the message header carries it")
        too_long = json.dumps({"hands": {}, "note": "x" * 40_000})
        quotes = json.dumps({"hands": {}, "note": '"' * 12_000})
        for name, value in (("text", '{"hands": '), ("number", 5), ("group", {"hands": {}}), ("too_long", too_long),
                            ("quotes", quotes), ("deep", "[" * 100_000)):
            source["handforge_labels"] = value
            found[name] = error_of(lambda: bpy.ops.handforge.transfer_pose(steps=1, resolution_x=a["size"],
                                                                            resolution_y=a["size"],
                                                                            set_background=False))
    finally:
        scene.handforge_transfer_source = chosen
        bpy.data.images.remove(source)
    return found


s.check("damaged_labels", damaged_labels)


def refused_in_the_artists_words():
    """A source made with other rigs than these (its labels' hand_model) and a prompt longer than the backend takes:
    refused before sending, naming the image and a fix the add-on has (before: the backend's "params.source_labels:
    ... (set hand_model to 'mano' ...)", a setting the add-on has none of, and "params.prompt: is N characters
    long as the message header carries it")."""
    chosen = scene.handforge_transfer_source
    source = scene.handforge_transfer_source = bpy.data.images.new("Made With MANO", 64, 64, alpha=False)
    size = dict(steps=1, resolution_x=a["size"], resolution_y=a["size"], set_background=False)
    found = {}
    try:
        labels = json.loads(a["labels"])
        source["handforge_labels"] = json.dumps({**labels, "hand_model": "mano"})
        found["mano"] = error_of(lambda: bpy.ops.handforge.transfer_pose(**size))
        source["handforge_labels"] = json.dumps({**labels, "hand_model": "Open"})  # (edited by hand)
        found["unknown"] = error_of(lambda: bpy.ops.handforge.transfer_pose(**size))
    finally:
        scene.handforge_transfer_source = chosen
        bpy.data.images.remove(source)
    found["prompt"] = error_of(lambda: bpy.ops.handforge.transfer_pose(prompt="x" * 9000, **size))
    return found


s.check("artists_words", refused_in_the_artists_words)


def planes_of_both_kinds():
    """Generate Image, Transfer Pose, Generate Image again, each with its plane: the newest result's plane shows,
    the other kind's (at the same distance, over the same frame) is hidden and said so (before: both shown, the
    older transfer's in front of the newer image in the render, unsaid)."""
    size = dict(steps=1, resolution_x=a["size"], resolution_y=a["size"], set_background=False, add_plane=True)
    kinds = ("HandForge image", "HandForge transfer")

    def shown() -> dict:
        planes = {o.get("handforge_plane"): o for o in scene.objects  # (the scene's own, not ones the artist kept)
                  if o.get("handforge_plane") in kinds and o.get("handforge_plane_name") == o.name}
        return {kind: [not plane.hide_render, plane.visible_get()] for kind, plane in planes.items()}

    said = {}
    said["first"] = printed_by(lambda: bpy.ops.handforge.generate_image(prompt="two hands", seed=71, **size))
    said["transfer"] = printed_by(lambda: bpy.ops.handforge.transfer_pose(seed=72, **size))
    after_transfer = shown()
    said["image"] = printed_by(lambda: bpy.ops.handforge.generate_image(prompt="two hands", seed=73, **size))
    image = bpy.data.objects["HandForge image"]
    return {"said": said, "after_transfer": after_transfer, "after_image": shown(),
            "image_shown": image.data.materials[0].node_tree.nodes["Image Texture"].image.name}


s.check("planes_of_both_kinds", planes_of_both_kinds)


def file_source_of_a_result_not_applied():
    """A source file loaded for a transfer whose result is not applied (cancelled while it ran) leaves no image
    datablock behind, as a refused request does; one the artist used meanwhile stays."""
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    path = png_file("not_applied.png")
    images = sorted(i.name for i in bpy.data.images)

    def cancel():
        for job in jobs.RUNNING.values():
            job.handle.cancel()

    with while_a_job_runs(cancel):
        result, printed = printed_by(lambda: bpy.ops.handforge.transfer_pose(
            source_file=path, steps=50, resolution_x=a["size"], resolution_y=a["size"], set_background=False))
    return {"result": result, "printed": printed, "images_kept": sorted(i.name for i in bpy.data.images) == images,
            "left": sorted(set(i.name for i in bpy.data.images) - set(images))}


s.check("file_not_applied", file_source_of_a_result_not_applied)


def camera_problems():
    """No active camera, or an orthographic one: the message speaks of Transfer Pose, not of exporting
    ("or export from All Cameras", which Transfer Pose and Generate Image do not have)."""
    camera = scene.camera
    run = lambda: error_of(lambda: bpy.ops.handforge.transfer_pose(steps=1, resolution_x=a["size"],
                                                                   resolution_y=a["size"]))
    try:
        scene.camera = None
        found = {"none": run()}
        scene.camera = camera
        camera.data.type = "ORTHO"
        found["ortho"] = run()
        camera.data.type = "PERSP"
        twin = camera.copy()  # a linked duplicate (Alt-D): Camera Background would show behind it too
        scene.collection.objects.link(twin)
        try:
            found["shared"] = run()
        finally:
            bpy.data.objects.remove(twin)
    finally:
        scene.camera, camera.data.type = camera, "PERSP"
    return found


s.check("camera_problems", camera_problems)


def hidden_rig():
    """A rig in a collection excluded from the view layer: refused (its pose and placement would be stale)."""
    collection = bpy.data.collections.new("Hidden Hands")
    scene.collection.children.link(collection)
    moved = [scene.handforge.right, *scene.handforge.right.children]  # the rig and its mesh
    users = {obj: list(obj.users_collection) for obj in moved}
    for obj in moved:
        collection.objects.link(obj)
        for c in users[obj]:
            c.objects.unlink(obj)
    bpy.context.view_layer.layer_collection.children[collection.name].exclude = True
    try:
        return {"message": error_of(lambda: bpy.ops.handforge.transfer_pose(steps=1, resolution_x=a["size"],
                                                                            resolution_y=a["size"]))}
    finally:
        for obj in moved:
            for c in users[obj]:
                c.objects.link(obj)
        bpy.data.collections.remove(collection)


s.check("hidden_rig", hidden_rig)


def portrait_plane():
    """The result's plane fills the camera's view for a portrait image and a shifted camera (AUTO fit)."""
    from bpy_extras.object_utils import world_to_camera_view

    scene.camera.data.shift_x, scene.camera.data.shift_y = 0.1, -0.05
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = 64, 128, 100
    result = bpy.ops.handforge.transfer_pose(seed=2, steps=1, add_plane=True, set_background=False)
    plane = bpy.data.objects["HandForge transfer"]
    bpy.context.view_layer.update()
    corners = [world_to_camera_view(scene, scene.camera, plane.matrix_world @ v.co)[:2] for v in plane.data.vertices]
    return {"result": sorted(result), "corners": sorted([round(x, 3), round(y, 3)] for x, y in corners)}


s.check("portrait_plane", portrait_plane)
def kept_plane():
    """A result plane the artist kept (renamed, or a copy of it) still shows its image after the next run with
    a plane: the next run refilled the plane's mesh and material by name, which the kept one shares."""
    run = lambda seed: bpy.ops.handforge.transfer_pose(seed=seed, steps=1, add_plane=True, set_background=False,
                                                       resolution_x=a["size"], resolution_y=a["size"])
    image_of = lambda obj: obj.data.materials[0].node_tree.nodes["Image Texture"].image.name
    assert run(21) == {"FINISHED"}
    kept = bpy.data.objects["HandForge transfer"]
    kept.name = "My Favourite"
    shown = image_of(kept)
    second = sorted(run(22))
    copy = bpy.data.objects["HandForge transfer"].copy()  # a copy (Shift-D: its own mesh, the same material)
    copy.data = copy.data.copy()
    scene.collection.objects.link(copy)
    copied = image_of(copy)
    third = sorted(run(23))
    return {"second": second, "third": third, "renamed": [shown, image_of(kept)], "copy": [copied, image_of(copy)],
            "new": image_of(bpy.data.objects["HandForge transfer"])}


s.check("kept_plane", kept_plane)
def file_source_undone_mid_job():
    """Ctrl-Z while a transfer from a file runs (the artist's last edit, an empty added, taken away): the
    source file's image datablock is there when the result comes, and after a redo of the undo it came with."""
    path = png_file("undone_source.png")
    ui, done = ui_context(), []
    init_undo()
    with bpy.context.temp_override(**ui):
        assert bpy.ops.object.empty_add("EXEC_DEFAULT", True) == {"FINISHED"}

    def undo():
        if not done:
            with bpy.context.temp_override(**ui):
                done.append(sorted(bpy.ops.ed.undo()))

    with while_a_job_runs(undo), bpy.context.temp_override(**ui):
        result = bpy.ops.handforge.transfer_pose("EXEC_DEFAULT", True, source_file=path, seed=31, steps=1,
                                                 resolution_x=a["size"], resolution_y=a["size"], set_background=False)
    made = bpy.data.images.get("HandForge transfer seed 31")
    source = made["handforge_transfer_source"] if made else ""
    found = {"result": sorted(result), "undone": done, "source": source, "there": source in bpy.data.images}
    with bpy.context.temp_override(**ui):  # the transfer undone and redone: its source comes back with it
        bpy.ops.ed.undo()
        bpy.ops.ed.redo()
    found["redone"] = source in bpy.data.images and "HandForge transfer seed 31" in bpy.data.images
    return found


s.check("file_undone", file_source_undone_mid_job)


def source_renamed_mid_job():
    """The source renamed while the job ran, another image then given its old name: the results named that other
    image as their source and its fake user went there (the source, unused, went at the next save)."""
    source, here = bpy.data.images.new("Renamed Source", 32, 32), bpy.context.scene  # (``scene``: gone with an undo)
    picked, here.handforge_transfer_source = here.handforge_transfer_source, source
    done = []

    def rename():
        if not done:
            source.name = "Source Now"
            done.append(bpy.data.images.new("Renamed Source", 4, 4).name)

    with while_a_job_runs(rename):
        result = bpy.ops.handforge.transfer_pose(seed=37, steps=1, resolution_x=a["size"], resolution_y=a["size"],
                                                 set_background=False)
    here.handforge_transfer_source = picked
    made = bpy.data.images.get("HandForge transfer seed 37")
    return {"result": sorted(result), "impostor": done, "named": made["handforge_transfer_source"] if made else None,
            "kept": source.use_fake_user, "impostor_kept": bpy.data.images[done[0]].use_fake_user if done else None}


s.check("renamed_source", source_renamed_mid_job)


def source_deleted_mid_job():
    """The source deleted while the job ran, another image then given its name: that image got the fake user, and
    the report named it as the source (the fuzzing of 2026-12-07)."""
    source, here = bpy.data.images.new("Deleted Source", 32, 32), bpy.context.scene
    picked, here.handforge_transfer_source = here.handforge_transfer_source, source
    done = []

    def delete():
        if not done:
            bpy.data.images.remove(source)
            done.append(bpy.data.images.new("Deleted Source", 4, 4).name)

    with while_a_job_runs(delete):
        result, printed = printed_by(lambda: bpy.ops.handforge.transfer_pose(
            seed=38, steps=1, resolution_x=a["size"], resolution_y=a["size"], set_background=False))
    here.handforge_transfer_source = picked
    made = bpy.data.images.get("HandForge transfer seed 38")
    return {"result": sorted(result), "printed": printed,
            "impostor_kept": bpy.data.images[done[0]].use_fake_user if done else None,
            "named": made.get("handforge_transfer_source") if made else "no result"}


s.check("deleted_source", source_deleted_mid_job)


def scene_switched_mid_transfer():
    """Another scene shown while the transfer runs: its image lands in the scene it was made from (before: "the
    scene changed while it ran ... not applied", the finished image thrown away)."""
    window = bpy.context.window_manager.windows[0]
    first, other = window.scene, bpy.data.scenes.new("Looked At")
    try:
        with while_a_job_runs(lambda: setattr(window, "scene", other)):
            result, printed = printed_by(lambda: bpy.ops.handforge.transfer_pose(
                seed=44, steps=1, resolution_x=a["size"], resolution_y=a["size"], set_background=False,
                add_plane=True))
    finally:
        window.scene = first
        bpy.data.scenes.remove(other)
    return {"result": result, "printed": printed, "image": "HandForge transfer seed 44" in bpy.data.images,
            "scene": first.name}


s.check("scene_switched", scene_switched_mid_transfer)


def sources_kept_in_the_saved_file():
    """A result of the panel's image (another picked there since; the artist kept the result) and one of a
    file: saved and reopened, the .blend still holds the images the results name as their source."""
    run = lambda **options: bpy.ops.handforge.transfer_pose(**options, steps=1, resolution_x=a["size"],
                                                            resolution_y=a["size"])
    here = bpy.context.scene  # (file_undone's undo replaced the scene datablock)
    picked, here.handforge_transfer_source = here.handforge_transfer_source, bpy.data.images.new("Panel", 64, 64)
    results = [sorted(run(seed=41))]  # behind the camera until the next run's result takes its place
    here.handforge_transfer_source = picked
    results.append(sorted(run(seed=42, source_file=png_file("saved_source.png"))))  # shown behind the camera
    results.append(sorted(run(seed=43, variants=2, set_background=False, add_plane=False)))  # shown nowhere
    found, reopened = images_through_a_save(str(s.work / "saved.blend"), "handforge_transfer_source")
    named = {i["handforge_transfer_source"] for i in reopened.values()}
    return {"results": results, "named": sorted(named), "missing": sorted(named - set(bpy.data.images.keys())),
            **found}


s.check("saved_sources", sources_kept_in_the_saved_file)  # (last: the file reopened, ``scene`` is gone)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
