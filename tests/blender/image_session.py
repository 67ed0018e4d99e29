"""Blender session: Generate Image through real backends the add-on starts — first one without
image weights (the button is greyed out with the missing-weights reason), then one pointed at tiny
random SD weights (the operator makes image datablocks of the requested size)."""

from __future__ import annotations

import contextlib
import importlib
import json
import os

import bpy
import numpy as np
from session import (ADDON_MODULE, Session, add_camera, as_in_a_window, error_of, images_through_a_save,
                     init_undo, pixels_of, printed_by, ui_context, while_a_job_runs)

s = Session()
s.install()
a = s.args
scene = bpy.context.scene
WEIGHTS = ("HANDFORGE_SD_MODEL", "HANDFORGE_IMAGE_GUIDANCE")


def start(env: dict[str, str]):
    for key in WEIGHTS:  # the backend the add-on starts inherits this process's environment
        os.environ.pop(key, None)
    os.environ.update(env)
    s.start_backend()


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


def prompts_too_long():
    """Prompts longer than the backend takes, as written or once JSON-escaped as the header carries them: refused
    before sending, in the panel's words (before: the backend's "params.prompt: is 24000 characters long as the
    message header carries it, JSON-escaped ..."), nothing made."""
    before, found = generated_images(), {}
    size = dict(steps=1, resolution_x=a["size"], resolution_y=a["size"], set_background=False)
    found["ascii"] = error_of(lambda: bpy.ops.handforge.generate_image(prompt="x" * 9000, **size))
    found["emoji"] = error_of(lambda: bpy.ops.handforge.generate_image(prompt="\U0001F590" * 2000, **size))
    found["negative"] = error_of(lambda: bpy.ops.handforge.generate_image(prompt="two hands",
                                                                           negative_prompt='"' * 5000, **size))
    found["made"] = generated_images() != before
    return found


def with_weights():
    start({"HANDFORGE_SD_MODEL": a["sd"], "HANDFORGE_IMAGE_GUIDANCE": a["guidance"]})
    poll = bpy.ops.handforge.generate_image.poll()
    previews = importlib.import_module(f"{ADDON_MODULE}.job_previews")
    drop, last = previews.drop, []

    def keep_then_drop(job_id):  # the job's last preview, as the Jobs panel drew it, before it goes
        last.append(previews.pixels(job_id))
        drop(job_id)

    previews.drop = keep_then_drop
    try:
        result = bpy.ops.handforge.generate_image(seed=5, steps=2, variants=2, resolution_x=a["size"],
                                                  resolution_y=a["size"], add_plane=True)
    finally:
        previews.drop = drop
    if last and last[0] is not None:
        s.arrays["preview"] = last[0]
    # rows bottom to top, as Blender holds pixels; the first image of a batch
    flipped = previews.preview_pixels({"preview": np.arange(2 * 2 * 3, dtype=np.uint8).reshape(1, 2, 2, 3) * 20})
    conversions = {"flipped": flipped.tolist(), "malformed": [previews.preview_pixels(bad) is None for bad in (
        {}, {"preview": np.zeros((4, 4), np.uint8)}, {"preview": np.zeros((4, 4, 2), np.uint8)},
        {"preview": np.full((4, 4, 3), np.nan, np.float32)}, {"preview": np.zeros((2000, 4, 3), np.uint8)},
        {"preview": np.zeros((4, 4, 3), np.int64)})], "left": previews.pixels("") is None and not previews._shown}
    plane = bpy.data.objects.get("HandForge image")
    made = sorted((i for i in bpy.data.images if "handforge_seed" in i), key=lambda i: i.name)
    for image in made:
        s.arrays[image.name] = pixels_of(image).reshape(image.size[1], image.size[0], 4)
    background = scene.camera.data.background_images
    shown = {"background": background[0].image.name if len(background) else ""}
    # the artist's own image with the name a one-variant run takes, then that run: nothing is overwritten
    own = bpy.data.images.new("HandForge seed 9", 4, 4)
    own["mine"] = True
    again = bpy.ops.handforge.generate_image(seed=9, steps=2, variants=1, resolution_x=a["size"],
                                             resolution_y=a["size"], add_plane=False)
    kept = {}
    for image in made:
        kept[image.name] = bool(np.array_equal(pixels_of(image).reshape(image.size[1], image.size[0], 4),
                                               s.arrays[image.name]))
    second = {"result": sorted(again), "own": {"size": list(own.size), "mine": own.get("mine")}, "kept": kept,
              "new": sorted(i.name for i in bpy.data.images if "handforge_seed" in i and i not in made)}
    # the batch's second image run again alone, at the seed it is named and kept by
    before = set(bpy.data.images)
    bpy.ops.handforge.generate_image(seed=6, steps=2, variants=1, resolution_x=a["size"], resolution_y=a["size"],
                                     add_plane=False)
    alone = next(i for i in bpy.data.images if i not in before)
    second["alone"] = {"name": alone.name, "seed": alone["handforge_seed"],
                       "largest_difference": float(np.abs(pixels_of(alone).reshape(alone.size[1], alone.size[0], 4)
                                                          - s.arrays["HandForge seed 6"]).max())}
    return {"poll": poll, "result": sorted(result), "second": second, **shown, "previews": conversions,
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




def generated_images() -> list[str]:
    return sorted(i.name for i in bpy.data.images if "handforge_seed" in i)


def refused_under_a_scaled_parent():
    """A rig, then the camera, under a scaled parent, then the rig under a mirrored one: refused before anything
    is sent, naming the parent whose scale to clear (before: sent, and the backend said to clear the rig's
    scale: it has none), nothing made."""
    before, found = generated_images(), {}
    carrier = bpy.data.objects.new("Carrier", None)  # e.g. a character's empty the hands hang from, scaled
    scene.collection.objects.link(carrier)
    try:
        for name, obj, scale in (("hand", scene.handforge.right, (2.0, 2.0, 2.0)),
                                 ("camera_mirrored", scene.camera, (-1.0, 1.0, 1.0)),
                                 ("mirrored", scene.handforge.right, (-1.0, 1.0, 1.0))):
            carrier.scale = scale
            world = obj.matrix_world.copy()
            obj.parent = carrier
            try:
                found[name] = error_of(lambda: bpy.ops.handforge.generate_image(seed=40, steps=1))
            finally:
                obj.parent = None
                obj.matrix_world = world
        # the scale not the parent's own (its scale 1: clearing it, as said before, changed nothing): the parent
        # inverse of a rig parented while the carrier was scaled, a character's forearm bone scaled in Pose Mode,
        # the rig's Delta Scale
        rig = scene.handforge.right
        world = rig.matrix_world.copy()
        carrier.scale = (2.0, 2.0, 2.0)
        bpy.context.view_layer.update()
        rig.parent = carrier
        rig.matrix_parent_inverse = carrier.matrix_world.inverted()
        carrier.scale = (1.0, 1.0, 1.0)
        found["parent_inverse"] = error_of(lambda: bpy.ops.handforge.generate_image(seed=40, steps=1))
        rig.parent = None
        character = bpy.data.objects.new("Character", bpy.data.armatures.new("Character"))
        scene.collection.objects.link(character)
        bpy.context.view_layer.objects.active = character
        bpy.ops.object.mode_set(mode="EDIT")
        character.data.edit_bones.new("forearm").tail = (0.0, 0.3, 0.0)
        bpy.ops.object.mode_set(mode="OBJECT")
        rig.parent, rig.parent_type, rig.parent_bone = character, "BONE", "forearm"
        character.pose.bones["forearm"].scale = (1.5, 1.5, 1.5)
        found["bone"] = error_of(lambda: bpy.ops.handforge.generate_image(seed=40, steps=1))
        rig.parent = None
        bpy.data.objects.remove(character)
        rig.matrix_world = world
        rig.delta_scale = (0.5, 0.5, 0.5)
        found["delta"] = error_of(lambda: bpy.ops.handforge.generate_image(seed=40, steps=1))
        rig.delta_scale = (1.0, 1.0, 1.0)
        rig.matrix_world = world
    finally:
        bpy.data.objects.remove(carrier)
    found["made"] = generated_images() != before
    return found


s.check("scaled_parent", refused_under_a_scaled_parent)


def scaled_camera_sent_as_blender_renders_it():
    """A camera scaled by itself (0.3) and by a parent (2, 3, 0.5 along its own axes): sent with its axes
    normalised (before: refused, "clear the scale"), and the sent camera sees what Blender's
    ``world_to_camera_view`` says the scaled one does."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix

    ops_image = importlib.import_module(f"{ADDON_MODULE}.ops_image")
    camera, found = scene.camera, {}
    world = camera.matrix_world.copy()
    carrier = bpy.data.objects.new("Rig carrier", None)
    scene.collection.objects.link(carrier)
    probe = bpy.data.objects.new("Probe camera", camera.data)  # the same lens, sensor and shift
    scene.collection.objects.link(probe)
    points = [scene.handforge.right.matrix_world @ b.head for b in scene.handforge.right.pose.bones]
    try:
        for name, own, parent in (("own", (0.3, 0.3, 0.3), None), ("parent", (1.0, 1.0, 1.0), (2.0, 3.0, 0.5))):
            camera.scale = own
            if parent is not None:  # the carrier's axes along the camera's: a non-uniform scale, not sheared
                carrier.matrix_world = world @ Matrix.Diagonal((*parent, 1.0))
                camera.parent = carrier
                camera.matrix_parent_inverse = Matrix.Identity(4)
                camera.matrix_basis = Matrix.Identity(4)
            bpy.context.view_layer.update()
            arrays, _, _ = ops_image.read_request(bpy.context, camera)
            sent = arrays["camera.matrix_world"]
            probe.matrix_world = Matrix(sent.tolist())  # rows
            bpy.context.view_layer.update()
            found[name] = {
                "scale": list(np.linalg.norm(np.array(camera.matrix_world)[:3, :3], axis=0)),
                "sent_scale": list(np.linalg.norm(sent[:3, :3], axis=0)),
                "error": max(abs(a - b) for p in points for a, b in zip(world_to_camera_view(scene, camera, p),
                                                                           world_to_camera_view(scene, probe, p)))}
            camera.parent = None
            camera.scale = (1.0, 1.0, 1.0)
            camera.matrix_world = world
    finally:
        bpy.data.objects.remove(probe)
        bpy.data.objects.remove(carrier)
        camera.matrix_world = world
    return found


s.check("scaled_camera", scaled_camera_sent_as_blender_renders_it)


def plane_under_scaled_cameras():
    """Generate Image's plane under a camera scaled 0.01 by its parent (an imported rig's) and under one scaled
    (1, 1, 0.5): 1 m in front of the camera in world units and filling its view, as under an unscaled one (before:
    hung in the camera's scaled axes, 1 cm away inside its 10 cm clip start, unseen; and twice the frame)."""
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Matrix

    scene = bpy.context.scene  # (the module's was removed by a check before)
    camera, found = scene.camera, {}
    world = camera.matrix_world.copy()
    carrier = bpy.data.objects.new("Scaled carrier", None)
    scene.collection.objects.link(carrier)
    try:
        for name, parent, own in (("imported", (0.01, 0.01, 0.01), (1.0, 1.0, 1.0)),
                                  ("squashed", None, (1.0, 1.0, 0.5)), ("unscaled", None, (1.0, 1.0, 1.0))):
            camera.parent = None
            camera.matrix_world = world
            if parent is not None:
                carrier.matrix_world = world @ Matrix.Diagonal((*parent, 1.0))
                camera.parent = carrier
                camera.matrix_parent_inverse = Matrix.Identity(4)
                camera.matrix_basis = Matrix.Identity(4)
            camera.scale = own
            bpy.context.view_layer.update()
            result = bpy.ops.handforge.generate_image(prompt="two hands", seed=81, steps=1, add_plane=True,
                                                      set_background=False, resolution_x=a["size"],
                                                      resolution_y=a["size"])
            plane = next(o for o in scene.objects if o.get("handforge_plane") == "HandForge image"
                         and o.get("handforge_plane_name") == o.name)  # (the scene's own, not a copy the artist kept)
            bpy.context.view_layer.update()
            seen = [world_to_camera_view(scene, camera, plane.matrix_world @ v.co) for v in plane.data.vertices]
            found[name] = {"result": sorted(result),
                           "scale": list(np.linalg.norm(np.array(camera.matrix_world)[:3, :3], axis=0)),
                           "corners": sorted([round(p.x, 4), round(p.y, 4)] for p in seen),
                           "depth": [p.z for p in seen], "clip_start": camera.data.clip_start,
                           # each face corner's texture coordinate beside where the camera sees that corner (Blender's
                           # images are stored bottom row first: UV (0, 0) is the image's bottom left)
                           "uv_seen": [[*plane.data.uv_layers.active.data[loop].uv,
                                        seen[plane.data.loops[loop].vertex_index].x,
                                        seen[plane.data.loops[loop].vertex_index].y]
                                       for loop in range(len(plane.data.loops))]}
    finally:
        camera.parent = None
        camera.scale = (1.0, 1.0, 1.0)
        camera.matrix_world = world
        bpy.data.objects.remove(carrier)
    return found


s.check("prompts_too_long", prompts_too_long)


def hand_left_out_of_renders():
    """The right hand's mesh disabled in renders: the image shows and labels the left hand alone, and says why
    (before: both hands drawn and labelled, unsaid); both disabled: refused, each named, nothing made."""
    right, left = bpy.data.objects["Hand.R Mesh"], bpy.data.objects["Hand.L Mesh"]
    before = set(bpy.data.images)
    size = dict(seed=41, steps=1, resolution_x=a["size"], resolution_y=a["size"], set_background=False)
    right.hide_render = True
    try:
        result, printed = printed_by(lambda: bpy.ops.handforge.generate_image(**size))
        made = [i for i in bpy.data.images if i not in before]
        left.hide_render = True
        refused = error_of(lambda: bpy.ops.handforge.generate_image(**{**size, "seed": 42}))
    finally:
        right.hide_render = left.hide_render = False
    # a rig linked to another scene without its mesh, and a rig whose mesh is gone (a copy of the object alone):
    # left out, each said (the first was called disabled in renders; the second drawn and labelled unseen)
    cameras = importlib.import_module(f"{ADDON_MODULE}.cameras")
    hands_module = importlib.import_module(f"{ADDON_MODULE}.hands")
    rig, other = scene.handforge.right, bpy.data.scenes.new("Rig Alone")
    other.collection.objects.link(rig)
    bare = rig.copy()  # (no children: no hand mesh)
    notes = {}
    try:
        for name, (where, found) in {"not_in_scene": (other, {"right": rig}),
                                     "no_mesh": (scene, {"right": bare, "left": scene.handforge.left})}.items():
            try:
                notes[name] = cameras.rendered_hands(where, found, "draw")[1]
            except hands_module.NoHandsError as exc:
                notes[name] = str(exc)
    finally:
        bpy.data.scenes.remove(other)
        bpy.data.objects.remove(bare)
    return {"result": result, "printed": printed, "refused": refused, "notes": notes,
            "sides": [sorted(json.loads(i["handforge_labels"])["hands"]) for i in made],
            "made_after_refusal": len([i for i in bpy.data.images if i not in before]) != len(made)}


s.check("hand_left_out", hand_left_out_of_renders)


def refused_at_a_render_percentage():
    """The render resolution (1920×1080) at 1000% and at 1%: refused before anything is sent, naming the
    percentage (before: 1000% was sent and the backend refused "params.width" out of range), nothing made."""
    before, found = generated_images(), {}
    render = scene.render
    size = render.resolution_x, render.resolution_y, render.resolution_percentage
    render.resolution_x, render.resolution_y = 1920, 1080
    try:
        for pct in (1000, 1):
            render.resolution_percentage = pct
            found[pct] = error_of(lambda: bpy.ops.handforge.generate_image(seed=40, steps=1))
    finally:
        render.resolution_x, render.resolution_y, render.resolution_percentage = size
    found["made"] = generated_images() != before
    return found


s.check("render_percentage", refused_at_a_render_percentage)


def pixels_wider_than_the_jobs_bound():
    """Pixels 150 and 200 times as wide as tall (Blender takes 1-200 each), and 150:150: generated (they were refused
    in the backend's words, "params.pixel_aspect[0]: must be between 0.01 and 100.0"; the fuzzing of 2026-12-07)."""
    render, found = scene.render, {}
    kept = render.pixel_aspect_x, render.pixel_aspect_y
    try:
        for x, y in ((150.0, 1.0), (200.0, 1.0), (150.0, 150.0)):
            render.pixel_aspect_x, render.pixel_aspect_y = x, y
            found[f"{x:g}:{y:g}"] = error_of(lambda: bpy.ops.handforge.generate_image(
                seed=41, steps=1, resolution_x=a["size"], resolution_y=a["size"]))
    finally:
        render.pixel_aspect_x, render.pixel_aspect_y = kept
    return found


s.check("wide_pixels", pixels_wider_than_the_jobs_bound)


def camera_deleted_mid_job():
    """The active camera deleted while the image is made: the image comes, and the report says why it is shown
    neither behind the camera nor on a plane (before: "1 image(s)", nothing said of the background asked for)."""
    first = scene.camera
    doomed = scene.camera = add_camera("Doomed Cam", (0.0, -0.5, 0.15))

    def delete():
        if "Doomed Cam" in bpy.data.objects:
            bpy.data.objects.remove(doomed)

    try:
        with while_a_job_runs(delete):
            result, printed = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=41, steps=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=True))
    finally:
        scene.camera = first
    return {"result": result, "printed": printed, "deleted": "Doomed Cam" not in bpy.data.objects,
            "image": "HandForge seed 41" in bpy.data.images,
            "planes": [o.name for o in scene.objects if o.get("handforge_plane") and o.parent is None]}


s.check("camera_deleted", camera_deleted_mid_job)



def image_of(plane) -> str:
    return plane.data.materials[0].node_tree.nodes["Image Texture"].image.name


def image_planes(scene) -> list[list[str]]:
    """The scene's image planes: name, camera and the image shown, sorted."""
    return sorted([o.name, o.parent.name, image_of(o)] for o in scene.objects
                  if o.type == "MESH" and o.name.startswith("HandForge image"))


def run(seed: int) -> list[str]:
    """Generate Image with a plane, not behind the camera."""
    return sorted(bpy.ops.handforge.generate_image(prompt="two hands", seed=seed, steps=1, add_plane=True,
                                                   set_background=False, resolution_x=a["size"],
                                                   resolution_y=a["size"]))


def link_hands(scene, rigs) -> None:
    """Link the rigs and their hand meshes to ``scene`` (a rig alone is left out of the images: a render of the
    scene would not show its hand)."""
    for rig in rigs:
        scene.collection.objects.link(rig)
        scene.collection.objects.link(next(c for c in rig.children if c.handforge.is_hand_mesh))


def planes_per_scene():
    """Image planes in a second scene, then in a third where an empty of the artist's holds the plane's name:
    each scene gets its own plane, reused by its next run (before: looked up by name in the whole file, the
    second scene took the first's plane away from its camera, and the empty's name made a new plane per run)."""
    window = bpy.context.window_manager.windows[0]
    first = window.scene
    first_plane = bpy.data.objects["HandForge image"]  # with_weights's, in front of "Cam"
    rigs = [o for o in first.objects if o.type == "ARMATURE"]

    def in_scene(name: str, seeds: tuple[int, int], before=None) -> dict:
        window.scene = other = bpy.data.scenes.new(name)
        link_hands(other, rigs)
        other.camera = add_camera(f"{name} Cam", (0.0, -0.5, 0.15))
        if before is not None:
            before(other)
        results = [run(seed) for seed in seeds]
        planes = sorted((o for o in other.objects if o.name.startswith("HandForge image")), key=lambda o: o.name)
        return {"results": results, "planes": [[o.type, o.parent.name if o.parent else None,
                                               image_of(o) if o.type == "MESH" else None] for o in planes]}

    def artists_empty(scene):
        first_plane.name = "Kept image"  # the artist keeps the first scene's plane; an empty takes the name
        empty = bpy.data.objects.new("HandForge image", None)
        scene.collection.objects.link(empty)

    try:
        second = in_scene("Second", (11, 12))
        first_kept = [first_plane.parent.name, image_of(first_plane), first_plane.users_scene[0].name,
                      len(first_plane.users_scene)]
        third = in_scene("Third", (13, 14), before=artists_empty)
    finally:
        window.scene = first
    return {"second": second, "first": first_kept, "third": third}


s.check("planes_per_scene", planes_per_scene)


@contextlib.contextmanager
def scene_copy(kind: str):
    """New Scene › Linked Copy ("LINK_COPY") or Full Copy ("FULL_COPY") of the shown scene, shown while the
    block runs: yields (the first scene, the copy); afterwards the first is shown again and the copy removed."""
    window = bpy.context.window_manager.windows[0]
    first = window.scene
    with bpy.context.temp_override(window=window):
        assert bpy.ops.scene.new(type=kind) == {"FINISHED"}
    copy = window.scene
    try:
        yield first, copy
    finally:
        window.scene = first
        bpy.data.scenes.remove(copy)


def planes_of_a_linked_copy():
    """A scene made by New Scene › Linked Copy (the first scene's plane linked in it too), given its own camera:
    where each scene's plane is after runs in both (before: the second scene took the shared plane to its camera,
    moving it in the first scene too)."""
    results = [run(15)]
    with scene_copy("LINK_COPY") as (first, linked):
        shared = image_planes(linked)
        linked.camera = add_camera("Linked Cam", (0.0, -0.6, 0.2))
        results += [run(16), run(17)]
        return {"results": results, "shared": shared, "first": image_planes(first), "linked": image_planes(linked)}


s.check("linked_copy", planes_of_a_linked_copy)


def planes_of_a_linked_copy_sharing_the_camera():
    """A Linked Copy that keeps the first scene's camera: its run shows its image on the shared plane (a second
    plane at the very same place would fight it for the pixels), and deleting the copy leaves the plane usable."""
    before = image_planes(bpy.context.window_manager.windows[0].scene)
    with scene_copy("LINK_COPY") as (first, linked):
        results = [run(18)]
        shared = image_planes(linked)
    results.append(run(19))
    return {"results": results, "before": before, "shared": shared, "after": image_planes(first)}


s.check("linked_copy_shared_camera", planes_of_a_linked_copy_sharing_the_camera)


def planes_of_a_full_copy():
    """A scene made by New Scene › Full Copy (its plane and camera copied under numbered names): two runs there
    show their images on the copied plane, and the first scene's plane is left as it was (before: the copy
    counted as a plane the artist renamed, and each run in the copy made a new plane on top of it)."""
    before = image_planes(bpy.context.window_manager.windows[0].scene)
    with scene_copy("FULL_COPY") as (first, copy):
        copied = image_planes(copy)
        results = [run(60), run(61)]
        return {"results": results, "before": before, "copied": copied, "copy": image_planes(copy),
                "first": image_planes(first), "camera": copy.camera.name}


s.check("full_copy", planes_of_a_full_copy)


def plane_copied_by_the_artist():
    """The artist copies the plane (Shift-D: same camera, same properties) and renames the original: both are
    theirs to keep, and the next run makes a new plane (a copy on the same camera is no Full Copy's)."""
    first = bpy.context.window_manager.windows[0].scene
    original = next(o for o in first.objects if o.type == "MESH" and o.get("handforge_plane") == "HandForge image"
                    and o.get("handforge_plane_name") == o.name)
    copy = original.copy()
    copy.data = original.data.copy()
    copy.data.materials[0] = original.data.materials[0].copy()
    first.collection.objects.link(copy)
    original.name = "Kept image"
    kept = {o.name: image_of(o) for o in (original, copy)}
    planes = lambda: {o.name: image_of(o) for o in first.objects if o.type == "MESH" and "handforge_plane" in o}
    before = planes()
    result = run(62)
    return {"result": result, "kept": kept, "before": sorted(before), "planes": planes(), "copy": copy.name}


s.check("artists_copy", plane_copied_by_the_artist)


def undone_mid_job():
    """Ctrl-Z while an image is made (the artist's last edit, a pose pasted, taken away): the image still
    comes (a new datablock with the pose it was made from in its labels), behind the camera found after the
    undo, and one more undo takes it away."""
    window = bpy.context.window_manager.windows[0]
    window.scene = bpy.data.scenes["Scene"]  # (the first scene: planes_per_scene showed others)
    ui = ui_context()
    init_undo()
    with bpy.context.temp_override(**ui):
        assert bpy.ops.handforge.paste_pose("EXEC_DEFAULT", True, text=a["pose"], sides="BOTH") == {"FINISHED"}
    done = []

    def undo():
        if not done:
            with bpy.context.temp_override(**ui):
                done.append(sorted(bpy.ops.ed.undo()))

    with while_a_job_runs(undo), bpy.context.temp_override(**ui):
        result = bpy.ops.handforge.generate_image("EXEC_DEFAULT", True, seed=21, steps=1, variants=1,
                                                  resolution_x=a["size"], resolution_y=a["size"], add_plane=False)
    here = bpy.context.scene  # (the undo replaced the scene datablock)
    background = here.camera.data.background_images
    found = {"result": sorted(result), "undone": done, "image": "HandForge seed 21" in bpy.data.images,
             "background": background[0].image.name if len(background) else "",
             "running": len(importlib.import_module(f"{ADDON_MODULE}.jobs").RUNNING)}
    with bpy.context.temp_override(**ui):
        bpy.ops.ed.undo()
    found["undone_again"] = "HandForge seed 21" in bpy.data.images
    return found


s.check("undone_mid_job", undone_mid_job)


def scene_switched_mid_job():
    """Another scene shown while the image is made, then a scene deleted while it is made: the images come all
    the same, shown in the scene they were made from (before: "the scene changed while it ran ... not
    applied", the finished images thrown away)."""
    window = bpy.context.window_manager.windows[0]
    first, other = window.scene, bpy.data.scenes.new("Looked At")
    run = lambda seed: printed_by(lambda: bpy.ops.handforge.generate_image(  # noqa: E731
        prompt="two hands", seed=seed, steps=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=True))
    try:
        with while_a_job_runs(lambda: setattr(window, "scene", other)):
            result, printed = run(42)
        shown = bpy.context.scene.name
    finally:
        window.scene = first
    plane = next(o for o in first.objects if o.get("handforge_plane") == "HandForge image"
                 and o.get("handforge_plane_name") == o.name)  # (not the one planes_per_scene's artist kept)
    found = {"result": result, "printed": printed, "shown": shown, "image": "HandForge seed 42" in bpy.data.images,
             "plane": plane.data.materials[0].node_tree.nodes["Image Texture"].image.name,
             "background": [b.image.name for b in first.camera.data.background_images if b.image],
             "planes_elsewhere": [o.name for o in other.objects]}
    doomed = bpy.data.scenes.new("Doomed Scene")
    doomed.camera = add_camera("Doomed Scene Cam", (0.0, -0.5, 0.15))
    doomed.collection.objects.link(doomed.camera)
    bpy.context.scene.collection.objects.unlink(doomed.camera)  # (add_camera linked it to the shown scene)
    link_hands(doomed, [o for o in first.objects if o.type == "ARMATURE"])
    window.scene = doomed

    def delete():
        if window.scene == doomed:
            window.scene = first
            bpy.data.scenes.remove(doomed)

    try:
        with while_a_job_runs(delete):
            found["deleted"] = run(43)
    finally:
        window.scene = first
        bpy.data.scenes.remove(other)
    found["deleted_image"] = "HandForge seed 43" in bpy.data.images
    return found


s.check("scene_switched", scene_switched_mid_job)


def said_where_it_shows():
    """Two things shown without a word: an image of another shape than the render's stretched behind the camera
    (off the rigs: 87 px at 1080p for a square image of a 16:9 render), and a camera no longer the active one."""
    scene = bpy.context.scene  # (the module's: replaced by an undo above)
    camera, render = scene.camera, scene.render
    size = (render.resolution_x, render.resolution_y, render.resolution_percentage)
    render.resolution_x, render.resolution_y, render.resolution_percentage = 160, 90, 100
    try:
        shape = printed_by(lambda: bpy.ops.handforge.generate_image(
            seed=89, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=False))
        # the artist's Frame Method Crop on HandForge's background, kept by the next: the square's top and bottom
        # are cut off, not stretched
        behind = next(b for b in camera.data.background_images if b.image and "handforge_seed" in b.image)
        behind.frame_method = "CROP"
        try:
            crop = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=88, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=False))
        finally:
            behind.frame_method = "STRETCH"
    finally:
        render.resolution_x, render.resolution_y, render.resolution_percentage = size
    other = add_camera("Other Cam", (0.3, -0.5, 0.15))

    def switch():
        scene.camera = other

    try:
        with while_a_job_runs(switch):
            switched = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=90, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=False))
        # the image plane, one a scene: from the first camera to the second (the first's went, unsaid)
        scene.camera = camera
        assert bpy.ops.handforge.generate_image(seed=91, steps=1, variants=1, resolution_x=a["size"],
                                                resolution_y=a["size"], add_plane=True) == {"FINISHED"}
        scene.camera = other
        moved = printed_by(lambda: bpy.ops.handforge.generate_image(
            seed=92, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=True))
    finally:
        scene.camera = camera
        plane = next((o for o in scene.objects if o.parent == other), None)
        if plane is not None:  # (back on the first camera, for the checks after)
            plane.parent = camera
        bpy.data.objects.remove(other)
    return {"shape": shape, "crop": crop, "switched": switched, "moved": moved}


s.check("said_where", said_where_it_shows)


def render_changed_mid_job():
    """An image made at the render's size (Width and Height 0) whose render resolution changed shape while the job
    ran is stretched behind the camera: the note says that and to run it again (before: "generate at the render's
    shape (Width and Height 0)", what the artist had done); one asked for at another shape is still told to use 0."""
    scene = bpy.context.scene  # (the module's: replaced by an undo above)
    render = scene.render
    size = (render.resolution_x, render.resolution_y, render.resolution_percentage)
    render.resolution_x, render.resolution_y, render.resolution_percentage = 128, 64, 100

    def reshape():
        render.resolution_y = 128

    try:
        with while_a_job_runs(reshape):
            changed = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=93, steps=1, variants=1, resolution_x=0, resolution_y=0, add_plane=False))
        render.resolution_y = 64
        with while_a_job_runs(reshape):
            asked = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=94, steps=1, variants=1, resolution_x=128, resolution_y=64, add_plane=False))
        # drawn through the camera in the render's pixel aspect: of its resolution, it fits a frame of 2:1 pixels;
        # the pixel aspect changed while it ran, it is stretched (resolutions alone said the opposite of both)
        render.resolution_y, render.pixel_aspect_x = 64, 2.0
        pixels_fit = printed_by(lambda: bpy.ops.handforge.generate_image(
            seed=95, steps=1, variants=1, resolution_x=0, resolution_y=0, add_plane=False))
        # Frame Method Fit shows it in its own square pixels (its Display Aspect): 2:1 in the 4:1 frame it was drawn for
        behind = next(b for b in scene.camera.data.background_images if b.image and "handforge_seed" in b.image)
        behind.frame_method = "FIT"
        try:
            pixels_fitted = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=97, steps=1, variants=1, resolution_x=0, resolution_y=0, add_plane=False))
        finally:
            behind.frame_method = "STRETCH"
        behind.scale = 0.8  # the artist's, kept: the image of the frame's shape no longer lines up with it
        try:
            pixels_scaled = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=98, steps=1, variants=1, resolution_x=0, resolution_y=0, add_plane=False))
        finally:
            behind.scale = 1.0
        render.pixel_aspect_x = 1.0

        def reshape_pixels():
            render.pixel_aspect_x = 2.0

        with while_a_job_runs(reshape_pixels):
            pixels_changed = printed_by(lambda: bpy.ops.handforge.generate_image(
                seed=96, steps=1, variants=1, resolution_x=0, resolution_y=0, add_plane=False))
    finally:
        render.resolution_x, render.resolution_y, render.resolution_percentage = size
        render.pixel_aspect_x = 1.0
    return {"changed": changed, "asked": asked, "pixels_fit": pixels_fit, "pixels_fitted": pixels_fitted,
            "pixels_scaled": pixels_scaled, "pixels_changed": pixels_changed}


s.check("render_changed", render_changed_mid_job)


def backgrounds_of(camera) -> list[str]:
    return [b.image.name for b in camera.data.background_images if b.image is not None]


def linked_duplicate_camera():
    """A linked duplicate of the camera (Alt-D: another object, the same camera data), before the job and made
    while it runs: the image of one camera's view is shown behind neither (a background belongs to the camera
    data: before, it showed behind both), the data stays shared, and a plane, on the object, still shows it."""
    scene = bpy.context.scene  # (the module's: replaced by an undo above)
    camera = scene.camera
    data, before = camera.data, backgrounds_of(camera)
    twin = camera.copy()  # what Alt-D makes
    scene.collection.objects.link(twin)
    run = lambda seed, **kw: printed_by(lambda: bpy.ops.handforge.generate_image(  # noqa: E731
        seed=seed, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], **kw))
    try:
        found = {"refused": error_of(lambda: bpy.ops.handforge.generate_image(
                     seed=50, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=False)),
                 "made": "HandForge seed 50" in bpy.data.images, "twins": [twin.name]}
        result, _ = run(51, set_background=False, add_plane=True)
        plane = next(o for o in scene.objects if o.get("handforge_plane") == "HandForge image" and o.parent == camera
                     and o.get("handforge_plane_name") == o.name)  # (not one an earlier check's artist kept)
        found["plane"] = [result, plane.data.materials[0].node_tree.nodes["Image Texture"].image.name]
        bpy.data.objects.remove(twin)
        twin = None

        def duplicate():
            nonlocal twin
            if twin is None:
                twin = camera.copy()
                scene.collection.objects.link(twin)

        with while_a_job_runs(duplicate):
            found["mid_job"] = run(52, add_plane=False)
        found["mid_job_image"] = "HandForge seed 52" in bpy.data.images
        found["twins"].append(twin.name)
        found["backgrounds"] = [before, backgrounds_of(camera), backgrounds_of(twin)]
        found["shared"] = camera.data == twin.data == data
    finally:
        if twin is not None:
            bpy.data.objects.remove(twin)
    return found


s.check("linked_duplicate", linked_duplicate_camera)


def hidden_background_shown_again():
    """The artist hides the last result's background (its eye in Camera properties › Background Images), then
    makes another with Camera Background: the new image is shown (before: it took the hidden entry's place, and
    stayed hidden, unsaid)."""
    camera = bpy.context.scene.camera
    ours = next(b for b in camera.data.background_images if b.image is not None and "handforge_seed" in b.image)
    ours.show_background_image = False
    result = bpy.ops.handforge.generate_image(seed=53, steps=1, variants=1, resolution_x=a["size"],
                                              resolution_y=a["size"], add_plane=False)
    return {"result": sorted(result), "backgrounds": [[b.image.name, b.show_background_image]
                                                      for b in camera.data.background_images if b.image is not None]}


s.check("hidden_background", hidden_background_shown_again)


def backgrounds_turned_on_said():
    """The camera's Background Images turned off by the artist, one of their own on it: Camera Background turns
    them on to show the image, and the artist's shows again with it, said (before: unsaid)."""
    camera = bpy.context.scene.camera
    own = camera.data.background_images.new()
    own.image = bpy.data.images.new("Artist Sketch", 4, 4)
    camera.data.show_background_images = False
    try:
        result, printed = printed_by(lambda: bpy.ops.handforge.generate_image(
            seed=63, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=False))
        return {"result": result, "printed": printed, "shows": camera.data.show_background_images,
                "camera": camera.name}
    finally:
        camera.data.background_images.remove(own)


s.check("backgrounds_turned_on", backgrounds_turned_on_said)


def linked_camera():
    """A camera linked from another .blend (a layout file's, as studios link them): its camera data cannot be changed
    here, so Camera Background is refused before anything is sent, saying how (before: the image made, and silently
    shown behind nothing: Blender ignores the change to linked data)."""
    scene = bpy.context.scene
    library = str(s.work / "layout.blend")
    layout_cam = add_camera("Layout Cam", (0.0, -0.5, 0.15))
    bpy.data.libraries.write(library, {layout_cam})
    bpy.data.objects.remove(layout_cam)
    with bpy.data.libraries.load(library, link=True) as (_, linked):
        linked.objects = ["Layout Cam"]
    camera, first = linked.objects[0], scene.camera
    scene.collection.objects.link(camera)
    scene.camera = camera
    try:
        refused = error_of(lambda: bpy.ops.handforge.generate_image(
            seed=54, steps=1, variants=1, resolution_x=a["size"], resolution_y=a["size"], add_plane=False))
    finally:
        scene.camera = first
        scene.collection.objects.unlink(camera)
    return {"refused": refused, "made": "HandForge seed 54" in bpy.data.images, "linked": camera.library is not None}


s.check("linked_camera", linked_camera)
s.check("plane_under_scaled_cameras", plane_under_scaled_cameras)  # (after the plane checks: it refills Cam's)


def plane_shown_again_without_a_camera():
    """Run Job's Textured Plane hung from the camera, hidden when Generate Image's plane came in front of it
    (``show_alone``); the next Run Job result with no active camera goes on it, standing in the scene: shown again
    (before: still hidden, the report saying where it stands)."""
    importers = importlib.import_module(f"{ADDON_MODULE}.importers")
    scene = bpy.context.scene
    camera, image = scene.camera, bpy.data.images.new("Job result", 64, 48)
    importers.show_on_plane(scene, image, "probe image")
    job = next(o for o in scene.objects if o.get("handforge_plane") == "probe image")
    _, hidden = importers.add_plane(scene, camera, image, "HandForge image",
                                    importers.frame_corners(scene, camera, 64, 48, importers.PLANE_DISTANCE))
    found = {"hidden": hidden, "hidden_then": [job.hide_render, job.visible_get()]}
    scene.camera = None
    try:
        found["said"] = importers.show_on_plane(scene, image, "probe image")[0]
    finally:
        scene.camera = camera
    found["shown_now"] = [not job.hide_render, job.visible_get()]
    return found


s.check("plane_without_camera", plane_shown_again_without_a_camera)


def results_kept_in_the_saved_file():
    """Variants with neither the camera's background nor a plane (nothing uses them), saved and reopened: every
    result of the session is still there, with its pixels and its properties (before: a result nothing used had
    no user and the .blend dropped it; only images shown behind a camera or on a plane came back)."""
    before = set(bpy.data.images.keys())
    result = bpy.ops.handforge.generate_image(seed=31, steps=1, variants=3, resolution_x=a["size"],
                                              resolution_y=a["size"], set_background=False, add_plane=False)
    made = sorted(set(bpy.data.images.keys()) - before)
    found, reopened = images_through_a_save(str(s.work / "saved.blend"), "handforge_seed")
    return {"result": sorted(result), "made": made, **found,
            "variants": [reopened[n].get("handforge_variant") if n in reopened else None for n in made]}


s.check("saved_results", results_kept_in_the_saved_file)  # (last: the file reopened, ``scene`` is gone)


def file_opened_mid_job_drops_its_preview():
    """Another file opened while an image is made modally: Blender ends the modal (the job is cancelled and
    forgotten); its live preview went with it (before: the preview and its arrays stayed, one per such job,
    for the rest of the session)."""
    jobs = importlib.import_module(f"{ADDON_MODULE}.jobs")
    previews = importlib.import_module(f"{ADDON_MODULE}.job_previews")
    connection = importlib.import_module(f"{ADDON_MODULE}.connection")

    with as_in_a_window("jobs"), bpy.context.temp_override(**ui_context()):  # (modal, as a window runs it)
        started = sorted(bpy.ops.handforge.generate_image("INVOKE_DEFAULT", seed=3, steps=50, variants=1,
                                                          resolution_x=a["size"], resolution_y=a["size"]))
    job = jobs.running()[0]
    while not job.handle.preview and not job.handle.done:  # no event loop ticks the modal here: as its tick does
        connection.pump(0.1)
    shown = previews.show(job.handle.id, job.handle.preview)
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"started": started, "shown": shown, "running": len(jobs.running()),
            "preview_left": previews.icon(job.handle.id) != 0 or previews.pixels(job.handle.id) is not None,
            "held": len(previews._shown)}


s.check("file_opened_mid_job", file_opened_mid_job_drops_its_preview)
s.check("stop", lambda: bpy.ops.handforge.stop_backend() and None)
s.finish()
