"""Backend results into the scene: motion → generated keyframes, images → image datablocks
(optionally a camera background or a textured plane), hand rigs → hands, vertices → meshes.

A motion result is a ``MotionClip`` as it travels on the wire: the arrays of ``to_arrays()``
(``<side>.<field>``, ``shared.poses.hand_array_name``) and ``metadata()`` in ``data["motion"]``.
Images are (H, W, 3|4) uint8 or float arrays named ``image``, ``images`` ((N, H, W, C)) or
``<name>.image``; per-hand vertices are ``<side>.vertices``.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any, Mapping

import bpy
import numpy as np

from . import connection, hands, keys
from .cameras import background_problem, no_camera
from handforge_shared.poses import MotionClip, PoseFormatError
from handforge_shared.skeleton import MODEL_TO_BLENDER


# ---------------------------------------------------------------------- motion
def motion_from_arrays(data: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> MotionClip | None:
    """The clip of a motion result (``data["motion"]`` + its arrays), or None if it holds none."""
    meta = data.get("motion")
    if meta is None:
        return None
    if not isinstance(meta, Mapping):
        raise PoseFormatError("the result's 'motion' entry is not a motion's metadata")
    return MotionClip.from_arrays(meta, arrays, strict=False)


def key_motion(context, clip: MotionClip, rigs: dict[str, object], frame_start: float, what: str,
               **options) -> tuple[dict, str]:
    """Key ``clip`` on ``rigs`` (``keys.import_clip``, ``options`` its ``blend`` and ``replace``), the way every
    motion is keyed: its refusals first, then a browse of interaction candidates on a rig it keys ends
    (``ops_interaction.end_browse_for_keys``, ``what`` naming the keys), so that a refused clip leaves the browse
    as it was. The summary and that browse's note ('' when none ended)."""
    from . import ops_interaction  # (an engine's module: not needed to read a result otherwise)

    keys.check_import(context.scene, clip, rigs, frame_start)
    hands.check_other_not_in_edit_mode(context)  # (the keys could not be undone there; Tab pressed while a job ran)
    browse_ended = ops_interaction.end_browse_for_keys(
        context, [rig for side, rig in rigs.items() if side in clip.hands], what)
    return keys.import_clip(context, clip, rigs, frame_start, **options), browse_ended


def import_motion(context, clip: MotionClip, frame_start: float | None = None) -> str:
    found = hands.scene_hands(context.scene, "BOTH", edit=True)
    start = context.scene.frame_current if frame_start is None else frame_start
    summary, browse_ended = key_motion(context, clip, found, start, "the motion")
    text = (f"{clip.num_frames} frames of motion keyed at {keys.range_text(summary['frame_start'], summary['frame_end'])}"
            f"{keys.placing_note(clip, keys.scene_fps(context.scene), summary['frame_start'])}")
    notes = summary["warnings"] + summary["range"] + ([browse_ended] if browse_ended else [])
    return text + "".join(f"; {w}" for w in notes)


# ---------------------------------------------------------------------- images
def image_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name → (H, W, C) image arrays found in a result."""
    out = {}
    for name, arr in arrays.items():
        if name == "images" and arr.ndim == 4:
            out.update({f"image_{i:03d}": a for i, a in enumerate(arr)})
        elif (name == "image" or name.endswith(".image")) and arr.ndim == 3 and arr.shape[2] in (1, 3, 4):
            out[name] = arr
    return out


def check_image_shape(name: str, pixels: np.ndarray) -> None:
    """Refuse pixels that are not (H, W, 1|3|4) with at least one pixel: no image datablock can hold them."""
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3, 4) or min(pixels.shape[:2]) < 1:
        raise PoseFormatError(f"image {name!r} must be (H, W, 1|3|4), got {pixels.shape}")


def image_datablock(name: str, pixels: np.ndarray) -> bpy.types.Image:
    """A new image datablock, packed into the .blend, from (H, W, C) pixels, top row first (uint8 0..255 or
    float 0..1)."""
    arr = np.asarray(pixels)
    check_image_shape(name, arr)
    rgba = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if not np.all(np.isfinite(rgba)):
        raise PoseFormatError(f"image {name!r} has non-finite pixels")
    if rgba.shape[2] == 1:
        rgba = np.repeat(rgba, 3, axis=2)
    if rgba.shape[2] == 3:
        rgba = np.concatenate([rgba, np.ones(rgba.shape[:2] + (1,), np.float32)], axis=2)
    height, width = rgba.shape[:2]
    image = bpy.data.images.new(name, width=width, height=height, alpha=arr.shape[2] == 4)
    image.pixels.foreach_set(np.ascontiguousarray(rgba[::-1]).ravel())  # Blender stores the bottom row first
    image.pack()  # kept inside the .blend: the result has no file of its own
    return image


# An image a job made says so: Generate Image's and Transfer Pose's carry their seed, Run Job's its job kind. A
# camera background showing one is HandForge's, replaced by the next result; any other is the artist's, never touched.
RESULT_PROPS = ("handforge_seed", "handforge_job")


def is_result(image) -> bool:
    """Whether ``image`` is one a job's result made (``RESULT_PROPS``)."""
    return image is not None and any(key in image for key in RESULT_PROPS)


# Run Job's images before they were marked (``handforge_job``, 2026-12-04) were named "<job kind> <array>", the array
# "image", "image_NNN" (of an ``images`` batch) or "<name>.image", Blender numbering a taken name ("echo image.001"),
# and packed from pixels: no file of their own. Each got a background of its own, at Blender's half opacity.
_OLDER_RESULT_NAME = re.compile(r"(?P<kind>\S+) (image|image_\d{3}|\S+\.image)(\.\d{3})?")


def is_older_result(image) -> bool:
    """Whether ``image`` is one Run Job made before its results were marked: unmarked, packed with no file path of
    its own, named as it named them after a job kind the connected backend runs. An artist's image of a similar name
    is not: opened from a file (a path, packed or not), or named after no job kind ("reference image")."""
    if image is None or is_result(image) or image.packed_file is None or image.filepath_raw:
        return False
    match = _OLDER_RESULT_NAME.fullmatch(image.name)
    kinds = (connection.BACKEND.capabilities or {}).get("kinds") or {}
    return match is not None and match["kind"] in kinds


def show_behind(camera, image) -> dict[str, Any]:
    """The image as the camera's background: the one HandForge set before is replaced, the artist's settings of it
    kept (opacity, front or back), the artist's own backgrounds untouched. Every button's results show this one
    way: one HandForge background a camera, the newest result's. Backgrounds older versions of Run Job left (a
    background per image per run, unmarked: ``is_older_result``) are HandForge's too: the first takes the image
    where no marked one is, the others are taken off, their images kept in the file (a fake user, as results have).
    Returns the background (``background``) and what it changed on the camera, to be said: ``replaced``, the name
    of the last result's image it took the place of (None: a new background); ``taken_off``, the older results'
    images whose backgrounds went; and ``shown_again``, the artist's own backgrounds that show again because the
    camera's Background Images were off and are turned on (its one switch for all of them)."""
    data = camera.data
    older = [b for b in data.background_images if is_older_result(b.image)]
    for b in older:  # (a background was their one user: taken off, or given another image, a save dropped them)
        b.image.use_fake_user = True
    background = next((b for b in data.background_images if is_result(b.image)), None) or next(iter(older), None)
    replaced = background.image.name if background is not None else None
    doomed = [b for b in older if b != background]
    taken_off = [b.image.name for b in doomed]
    for b in doomed:
        data.background_images.remove(b)
    background = background or data.background_images.new()
    background.image = image
    # shown, though the artist hid the one it replaces (its eye): they asked for this one behind the camera
    background.show_background_image = True
    shown_again = [] if data.show_background_images else [
        _shows(b).name for b in data.background_images
        if b != background and b.show_background_image and _shows(b) is not None]
    data.show_background_images = True
    return {"replaced": replaced, "taken_off": taken_off, "shown_again": shown_again, "background": background}


def _fits(own, shown, frame_aspect) -> bool:
    """Whether an image of shape ``own`` (width, height) fits a frame shown ``shown`` of pixels ``frame_aspect``."""
    # (within half a frame pixel: the image at its own shape across the frame misses the other side by the cross
    # product over its side; the frame's size alone let a 16 × 8 image 5 px short of a 160 × 85 frame fit. The
    # resolutions alone said a square-pixel image of the render's size fitted a frame of 2:1 pixels, stretched to
    # twice its width, and one of the shape shown did not)
    return abs(own[0] * shown[1] - own[1] * shown[0]) <= 0.5 * max(own[0] * frame_aspect[1], own[1] * frame_aspect[0])


def moved_behind(background) -> str:
    """What of camera background ``background``'s own Offset, Rotation and Scale moves its image off the camera's
    frame, with the fix, "" when they are as Blender makes them (0, 0, 1). Flips keep it on the frame."""
    moved = []
    if any(abs(v) > 1e-6 for v in background.offset):
        moved.append(f"Offset {background.offset[0]:.3g}, {background.offset[1]:.3g}")
    if abs(background.rotation) > 1e-6:
        moved.append(f"Rotation {math.degrees(background.rotation):.3g}°")
    if abs(background.scale - 1.0) > 1e-6:
        moved.append(f"Scale {background.scale:.3g}")
    if not moved:
        return ""
    width, height = background.image.size
    return (f"behind the camera the {width} × {height} image does not line up with the render's frame: its "
            f"background is moved off it ({'; '.join(moved)}); set Offset 0, 0, Rotation 0 and Scale 1 (the camera's "
            "Background Images) to line it up")


def misfit_behind(scene, background, pixel_aspect=(1.0, 1.0)) -> str:
    """How the image of camera background ``background`` shows behind ``scene``'s camera when it does not line
    up with the render's frame, "" when it does or shows whole at its own shape: moved off it by the background's
    own Offset, Rotation or Scale (``moved_behind``, said alone: the fix of its shape would not line it up), or
    of another shape than the render's. Blender shows it by the background's Frame Method:
    Stretch (its default) stretches it to the camera's frame (a square image behind a 16:9 render's camera was 87 px
    off the rigs at 1080p, unsaid); Crop scales it to fill the frame, cutting off what is outside; Fit scales it to
    fit inside, the rest of the frame empty. The frame is the render's resolution in its pixel aspect (a 160 × 90
    render of 2:1 pixels is 320 wide to 90 high, as the camera shows it); the image is its size in ``pixel_aspect``
    (x, y) as it was drawn: square for a job's image (as its Textured Plane shows it), the render's for one drawn
    through the camera at it. Fit and Crop keep the shape Blender gives it, its size in the image's Display Aspect
    (1:1 unless set), not the one it was drawn in. Every button that shows a result behind a camera says it in
    these words."""
    moved = moved_behind(background)
    if moved:
        return moved
    image = background.image
    width, height = image.size
    render = scene.render
    frame = (render.resolution_x, render.resolution_y)
    frame_aspect = (render.pixel_aspect_x, render.pixel_aspect_y)
    shown = (frame[0] * frame_aspect[0], frame[1] * frame_aspect[1])
    drawn = (width * pixel_aspect[0], height * pixel_aspect[1])
    drawn_fits = _fits(drawn, shown, frame_aspect)

    def pixels(aspect):  # (the frame's pixel aspect, said where it is not the image's)
        return "" if abs(frame_aspect[0] * aspect[1] - frame_aspect[1] * aspect[0]) <= 1e-6 * max(
            frame_aspect) * max(aspect) else f" of pixel aspect {frame_aspect[0]:g}:{frame_aspect[1]:g}"

    stretched = f"behind the camera the {width} × {height} image is stretched to the render's {frame[0]} × " \
                f"{frame[1]} frame{pixels(pixel_aspect)}"
    method = background.frame_method
    if method == "STRETCH":
        return "" if drawn_fits else stretched
    display = tuple(image.display_aspect)
    own = (width * display[0], height * display[1])
    if _fits(own, shown, frame_aspect):
        return "" if drawn_fits else stretched  # (filling the frame at its shape: as Stretch shows it)
    where = f"the render's {frame[0]} × {frame[1]} frame{pixels(display)} (the background's Frame Method is " \
            f"{method.title()})"
    if method == "CROP":
        cut = "left and right" if own[0] * shown[1] > own[1] * shown[0] else "top and bottom"
        return f"behind the camera the {width} × {height} image is cropped to fill {where}: its {cut} are cut off"
    # Fit: whole at its own shape, the rest of the frame empty, as the artist chose; said when it was drawn for the
    # frame (in the render's pixels, shown in its own: not the shape it was drawn at, nor filling the frame)
    if not drawn_fits:
        return ""
    return f"behind the camera the {width} × {height} image is fitted into {where} at its Display Aspect " \
           f"{display[0]:g}:{display[1]:g}: it does not fill the frame it was drawn for (Frame Method Stretch, or " \
           f"a Display Aspect of the render's pixels, fills it)"


def _shows(background):
    """What a camera background shows (its image or movie clip), or None."""
    return background.image if background.source == "IMAGE" else background.clip


def background_said(camera, shown: dict[str, Any]) -> tuple[str, list[str]]:
    """What ``show_behind`` did to ``camera`` (its return ``shown``), for a report: (a note, warnings)."""
    where = (f"in place of the last result's {shown['replaced']!r}" if shown["replaced"] is not None
             else "(a new background)")
    warnings = []
    if shown["taken_off"]:
        count = len(shown["taken_off"])
        warnings.append(f"took {count} background{'s' if count > 1 else ''} of older Run Job results off camera "
                        f"{camera.name!r} ({', '.join(repr(name) for name in shown['taken_off'])}): one HandForge "
                        f"background a camera ({'their images are' if count > 1 else 'its image is'} kept in the file)")
    if shown["shown_again"]:
        names = ", ".join(repr(name) for name in shown["shown_again"])
        one = len(shown["shown_again"]) == 1
        warnings.append(f"turned on the Background Images of camera {camera.name!r} (they were off) to show the "
                        f"result: its own background{'' if one else 's'} {names} show{'s' if one else ''} again too "
                        f"(hide {'it' if one else 'each'} with its eye in Camera properties › Background Images)")
    return f"shown behind camera {camera.name!r} {where}", warnings


PLANE_DISTANCE = 1.0  # metres: the result's plane sits this far in front of the camera, filling its view


# A result plane carries its kind (the name asked for) and the name it was made with: another scene's plane
# or an artist's object may hold the bare name, and one the artist renamed or copied (Shift-D copies the
# properties, not the name) is theirs to keep.
PLANE_KIND_PROP, PLANE_NAME_PROP = "handforge_plane", "handforge_plane_name"
PLANE_CAMERA_PROP = "handforge_plane_camera"  # the camera's name when the plane was made or last adopted


def scene_plane(scene, name: str, camera):
    """The plane of kind ``name`` that HandForge made in ``scene`` and the artist has not renamed, or None;
    one that other scenes hold too (New Scene › Linked Copy links the same object) only if it already hangs
    from ``camera`` (not None): re-parented to this scene's camera, it would move in the others. (No record of its
    scene on the plane: a pointer would drag the scene along when the plane is appended or pasted.)
    New Scene › Full Copy copies the plane and its camera under numbered names: where the scene holds no
    plane of its made name, a numbered copy hanging from ``camera``, itself a numbered copy of the plane's
    camera, is the scene's (it takes the new names as its own); a second plane would fight it for the same
    pixels. A copy the artist made of the plane alone (Shift-D: the same camera) stays theirs."""
    planes = [o for o in scene.objects if o.type == "MESH" and o.get(PLANE_KIND_PROP) == name
              and (len(o.users_scene) == 1 or (camera is not None and o.parent == camera))]
    made = next((o for o in planes if o.get(PLANE_NAME_PROP) == o.name), None)
    if made is None and camera is not None:
        made = next((o for o in planes if o.parent == camera and _numbered_copy(o.name, o.get(PLANE_NAME_PROP))
                     and _numbered_copy(camera.name, o.get(PLANE_CAMERA_PROP))), None)
        if made is not None:
            made[PLANE_NAME_PROP], made[PLANE_CAMERA_PROP] = made.name, camera.name
    return made


def edited_plane(scene, name: str, camera) -> str:
    """Why ``scene``'s plane of kind ``name`` cannot show a new result now, "" when it can: it is in Edit Mode, where
    Blender adds no vertices to its mesh (the refill failed: "Cannot add vertices in edit mode", the result lost) and
    leaving it writes the edited copy back. Left as it is; every button says it in these words."""
    plane = scene_plane(scene, name, camera)
    if plane is None or plane.mode != "EDIT":
        return ""
    return (f"not shown on plane {plane.name!r}: it is in Edit Mode (back in Object Mode, run it again, or pick the "
            "image in the plane's material)")


def _numbered_copy(name: str, of) -> bool:
    """Whether ``name`` is a name Blender gives a copy of an object called ``of``: the same name with
    another number ("HandForge image.003" copied is "HandForge image.004" or the next one free)."""
    def stem(text: str) -> str:
        base, dot, number = text.rpartition(".")
        return base if dot and number.isdigit() else text

    return isinstance(of, str) and name != of and stem(name) == stem(of)


def add_plane(scene, camera, image, name: str, corners):
    """``scene``'s own plane of kind ``name`` (made the first time) showing ``image`` unlit (emission: its pixels as
    made, whatever the scene's lights) over ``corners`` (its local axes), hung ``PLANE_DISTANCE`` in front of
    ``camera``; with no camera (None), standing in the scene: at the world origin facing the front view when new,
    else where the artist put it. Returns the plane and the names of the planes of other kinds hung from ``camera``
    that it hid (``show_alone``)."""
    plane = scene_plane(scene, name, camera)
    # its own mesh and material are refilled; ones it shares with a plane the artist kept (renamed or
    # copied, by name they were this one's) stay as they are, showing their image: new ones instead
    mesh = plane.data if plane is not None and plane.data.users == 1 else bpy.data.meshes.new(name)
    mesh.clear_geometry()
    mesh.from_pydata(corners, [], [(0, 1, 2, 3)])
    mesh.uv_layers.new().data.foreach_set("uv", [0, 0, 1, 0, 1, 1, 0, 1])
    material = mesh.materials[0] if len(mesh.materials) else None
    material = material if material is not None and material.users == 1 else bpy.data.materials.new(name)
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    texture, emission, out = (nodes.new(t) for t in ("ShaderNodeTexImage", "ShaderNodeEmission",
                                                     "ShaderNodeOutputMaterial"))
    texture.image = image
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], out.inputs["Surface"])
    mesh.materials.clear()
    mesh.materials.append(material)
    new = plane is None
    if new:
        plane = bpy.data.objects.new(name, mesh)  # "<name>.001" where another scene's plane or an object has it
        plane[PLANE_KIND_PROP], plane[PLANE_NAME_PROP] = name, plane.name
        scene.collection.objects.link(plane)
    plane.data = mesh
    if camera is None:
        if new:
            plane.rotation_euler = (np.pi / 2, 0.0, 0.0)  # stood up, facing the front view
        elif plane.parent is not None:  # (hung from a camera no longer the active one: left where it shows)
            world = plane.matrix_world.copy()
            plane.parent = None
            plane.matrix_world = world
        plane.pop(PLANE_CAMERA_PROP, None)
        _show(scene, plane)  # (hidden by a result hung from a camera since: it holds the newest now)
        return plane, []
    plane[PLANE_CAMERA_PROP] = camera.name
    plane.parent = camera
    # hung in the camera's axes as Blender renders through it (its scale taken out, as ``cameras.camera_matrix``
    # does): under a camera scaled 0.01 (an imported rig's) the plane sat 1 cm away, inside the clip start, unseen,
    # and under a non-uniform scale it was stretched off the frame
    plane.matrix_parent_inverse = camera.matrix_world.inverted_safe() @ _unit_axes(camera.matrix_world)
    plane.location = (0.0, 0.0, -PLANE_DISTANCE)
    plane.rotation_euler = (0.0, 0.0, 0.0)
    return plane, show_alone(scene, camera, plane)


def _unit_axes(matrix):
    """``matrix`` (a world matrix) with each of its three axes scaled to unit length, its location kept."""
    out = matrix.copy()
    for column in range(3):
        length = sum(out[row][column] ** 2 for row in range(3)) ** 0.5
        if length > 0.0:
            for row in range(3):
                out[row][column] /= length
    return out


def show_alone(scene, camera, plane) -> list[str]:
    """Show ``plane`` (in the viewport and the render) and hide the other HandForge planes hung from ``camera`` (other
    kinds', and ones the artist kept), which sit at the same distance over the same frame: a Transfer Pose plane
    left there hid the newer Generate Image one in the render (and they flickered through each other in the
    viewport). Returns the names of those hidden now (they are kept, with their images: the Outliner's eye and
    camera icons show them again)."""
    hidden = []
    for other in scene.objects:
        if other == plane or other.parent != camera or not other.get(PLANE_KIND_PROP):
            continue
        if not other.hide_render:  # (one hidden before, by the artist or a result before this one: not said again)
            hidden.append(other.name)
        other.hide_render = True
        _hide_in_views(scene, other, True)
    _show(scene, plane)
    return hidden


def _show(scene, plane) -> None:
    plane.hide_render = False
    _hide_in_views(scene, plane, False)


def hidden_said(hidden: list[str]) -> str:
    """What a report says of the planes ``show_alone`` hid."""
    many = len(hidden) > 1
    return (f"hid the plane{'s' if many else ''} {', '.join(repr(n) for n in hidden)} in front of the same camera, "
            f"over the same frame, so that this result shows (the Outliner's eye and camera icons show "
            f"{'them' if many else 'it'} again)")


def _hide_in_views(scene, obj, hide: bool) -> None:
    """``obj`` hidden (the Outliner's eye) in every view layer of ``scene`` that holds it."""
    for layer in scene.view_layers:
        with contextlib.suppress(RuntimeError):  # (not in that view layer: an excluded collection)
            obj.hide_set(hide, view_layer=layer)


def frame_corners(scene, camera, width: int, height: int, distance: float) -> list[tuple[float, float, float]]:
    """An image of ``width`` × ``height`` pixels as large as it fits in ``camera``'s view of ``scene`` (Blender's own
    frame: render shape, sensor fit, shift), centred, ``distance`` in front of it in its local axes (-Z forward):
    for an image that came without the intrinsics it was drawn with; one of the render's shape fills the view."""
    frame = [tuple(corner) for corner in camera.data.view_frame(scene=scene)]
    depth = -frame[0][2]
    # (the frame is drawn at some depth: a perspective view grows with the distance, an orthographic one does not)
    scale = distance / depth if camera.data.type != "ORTHO" and depth > 0 else 1.0
    xs, ys = [x * scale for x, _, _ in frame], [y * scale for _, y, _ in frame]
    fit = min((max(xs) - min(xs)) / width, (max(ys) - min(ys)) / height)
    cx, cy, half_w, half_h = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2, width * fit / 2, height * fit / 2
    return [(cx - half_w, cy - half_h, 0.0), (cx + half_w, cy - half_h, 0.0), (cx + half_w, cy + half_h, 0.0),
            (cx - half_w, cy + half_h, 0.0)]


# Run Job's Textured Plane before its planes were marked (``PLANE_KIND_PROP``, 2026-12-04) made a plane per image per
# run, each as its own: object, mesh and material named after the image (an older result, ``is_older_result``), a
# 1 m wide quad at the image's shape, a Principled material showing it through an Image Texture, standing at the world
# origin facing the front view, unparented, all on one spot.
_OLDER_PLANE_TURN = np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def is_older_plane(obj, name: str) -> bool:
    """Whether ``obj`` is a plane of kind ``name`` ("<job kind> image") that Run Job made before its planes were
    marked, as it made it (above), in one scene. An object the artist made, renamed, copied (Shift-D: another name
    than its image's), moved, reshaped, gave other materials, parented or hung things from is theirs: not one."""
    return _made_as_older_plane(obj, name) and np.allclose(np.array(obj.matrix_world), _OLDER_PLANE_TURN, atol=1e-6)


def is_moved_older_plane(obj, name: str) -> bool:
    """Whether ``obj`` is a plane of kind ``name`` an older Run Job made (``is_older_plane``) that the artist moved,
    turned or scaled since, and nothing else: theirs, placed where they want that result (kept, and said)."""
    return _made_as_older_plane(obj, name) and not np.allclose(np.array(obj.matrix_world), _OLDER_PLANE_TURN,
                                                               atol=1e-6)


def _made_as_older_plane(obj, name: str) -> bool:
    """``is_older_plane`` but for where it stands."""
    if obj.type != "MESH" or PLANE_KIND_PROP in obj or len(obj.users_scene) != 1 or obj.parent is not None \
            or obj.children or len(obj.material_slots) != 1:
        return False
    material = obj.material_slots[0].material
    if material is None or material.node_tree is None:
        return False
    shown = [node.image for node in material.node_tree.nodes if node.type == "TEX_IMAGE"]
    image = shown[0] if len(shown) == 1 else None
    if not is_older_result(image) or image.name != obj.name \
            or f"{_OLDER_RESULT_NAME.fullmatch(image.name)['kind']} image" != name:
        return False
    mesh = obj.data
    if len(mesh.vertices) != 4 or len(mesh.polygons) != 1:
        return False
    corners = np.empty(12, np.float64)
    mesh.vertices.foreach_get("co", corners)
    half = 0.5 * image.size[1] / max(image.size[0], 1)
    made = [(-0.5, -half, 0.0), (0.5, -half, 0.0), (0.5, half, 0.0), (-0.5, half, 0.0)]
    return np.allclose(corners.reshape(4, 3), made, atol=1e-6)


def take_up_older_planes(scene, name: str, camera) -> tuple[str | None, list[str]]:
    """The planes of kind ``name`` older versions of Run Job left in ``scene`` (``is_older_plane``) give way to one
    HandForge plane a scene: where the scene has no marked plane, the first (the one named ``name`` if any) is
    marked to be refilled; the others are taken out of the scene. Their images stay in the file (a fake user, as
    results have). Returns (the plane taken up, or None; the names of the planes taken out), to be said."""
    older = [obj for obj in scene.objects if is_older_plane(obj, name)]
    if not older:
        return None, []
    taken_up = None
    if scene_plane(scene, name, camera) is None:
        taken_up = next((obj for obj in older if obj.name == name), older[0])
        taken_up[PLANE_KIND_PROP], taken_up[PLANE_NAME_PROP] = name, taken_up.name
    gone = []
    for obj in older:  # (its image: shown nowhere once refilled or gone, kept by a save all the same)
        next(node.image for node in obj.material_slots[0].material.node_tree.nodes
             if node.type == "TEX_IMAGE").use_fake_user = True
        if obj != taken_up:
            gone.append(obj.name)
            bpy.data.objects.remove(obj)
    return (taken_up.name if taken_up is not None else None), gone


def show_on_plane(scene, image, name: str) -> tuple[str, list[str]]:
    """Run Job's Textured Plane: ``image`` on ``scene``'s plane of kind ``name``, one a scene as Generate Image's
    (the next result refills it), hung in front of the active camera at the image's own shape (a job's image need not
    be of the camera's view: none of its intrinsics come with it); without an active camera, 1 m wide, standing in
    the scene (``add_plane``). Returns what it did, for a report: (a note for the summary, warnings): the plane is
    the camera's child now, or was moved off another object (a camera) it hung from."""
    camera = scene.camera if scene.camera is not None and scene.camera.type == "CAMERA" else None
    edited = edited_plane(scene, name, camera)
    if edited:  # (the image kept, in the Image editor)
        return "", [edited]
    width, height = image.size
    if camera is not None:
        corners = frame_corners(scene, camera, width, height, PLANE_DISTANCE)
    else:
        half = 0.5 * height / max(width, 1)
        corners = [(-0.5, -half, 0.0), (0.5, -half, 0.0), (0.5, half, 0.0), (-0.5, half, 0.0)]
    first = scene_plane(scene, name, camera) is None  # (the scene's plane made or taken up now)
    taken_up, taken_out = take_up_older_planes(scene, name, camera)
    before = scene_plane(scene, name, camera)
    hung_from = before.parent if before is not None and before.parent not in (None, camera) else None
    plane, hidden = add_plane(scene, camera, image, name, corners)
    warnings = [hidden_said(hidden)] if hidden else []
    if first:  # (said once: the next results refill this plane)
        warnings.extend(_beside_first_plane(scene, plane, name, new=taken_up is None))
    if taken_up is not None or taken_out:  # (one a scene: the older ones stood at one spot, through each other)
        names = ", ".join(repr(n) for n in taken_out)
        many = len(taken_out) + (taken_up is not None) > 1
        said = (f"the plane {taken_up!r} an older Run Job left (unmarked, at the world origin) shows the result now"
                + (f", and {len(taken_out)} more it left there were taken out of the scene ({names})" if taken_out else "")
                if taken_up is not None else
                f"took {len(taken_out)} plane{'s' if many else ''} older Run Jobs left (unmarked, at the world origin) "
                f"out of the scene ({names})")
        warnings.append(f"{said}: one HandForge plane a scene ({'their images are' if many else 'its image is'} kept "
                        "in the file)")
    if hung_from is not None:  # (one plane a scene: it left what it hung from, as Generate Image says)
        what = f"{'camera' if hung_from.type == 'CAMERA' else 'object'} {hung_from.name!r}"
        warnings.append(f"the image plane {plane.name!r} moved from {what} to {camera.name!r} (one a scene: rename "
                        "the plane to keep it where it was)" if camera is not None else
                        f"the image plane {plane.name!r} was taken off {what} ({no_camera(scene)}) and "
                        "stands where it was")
    if camera is not None:
        return (f"on plane {plane.name!r}, hung {PLANE_DISTANCE:g} m in front of camera {camera.name!r} (its child: it "
                "moves with it)"), warnings
    return f"on plane {plane.name!r}, standing in the scene ({no_camera(scene)})", warnings


def _beside_first_plane(scene, plane, name: str, new: bool) -> list[str]:
    """What stays beside the scene's first plane of kind ``name`` (``new``, or one an older Run Job left, taken up),
    to be said: the planes older Run Jobs left that the artist moved (``is_moved_older_plane``: kept as theirs, each
    showing its older result where they put it; taken up, it would hang in front of the camera, their placement
    lost), and what holds the name ``name`` when the plane is numbered. The next results refill this plane: one
    more plane, not one a run."""
    kept = [obj.name for obj in scene.objects if is_moved_older_plane(obj, name)]
    holder = bpy.data.objects.get(name) if plane.name != name else None
    if not kept and holder is None:
        return []
    said = f"the result is on {'a new' if new else 'the'} plane {plane.name!r}"
    if holder is not None and holder.name not in kept:
        whose = "your object" if scene in holder.users_scene else "an object of another scene"
        said += f" ({name!r} is the name of {whose})"
    if kept:
        many = len(kept) > 1
        them = "them" if many else "it"
        said += (f"; the plane{'s' if many else ''} {', '.join(repr(n) for n in kept)} older Run Jobs left, moved "
                 f"since, {'are' if many else 'is'} kept as yours, showing {'their' if many else 'its'} older result "
                 f"where you put {them} (delete {them} if no longer wanted)")
    return [f"{said}; the next results refill {plane.name!r}"]


def camera_problem(scene) -> str:
    """Why images cannot be shown behind ``scene``'s active camera, "" when they can."""
    camera = scene.camera
    if camera is None:
        return "the scene has no active camera to show the image behind: add one, or import it as a plane"
    if camera.type != "CAMERA":  # (Set Active Object as Camera takes any object: it has no background)
        kind = camera.type.lower()
        return (f"the scene's active camera {camera.name!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a "
                "camera: set a camera (Scene properties › Camera), or import it as a plane")
    # (as Generate Image's Camera Background: its camera data is not changed unasked)
    why = background_problem(camera, ", or import it as a plane")
    return f"camera {camera.name!r} {why}" if why else ""


def check_images(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The images of a result, checked before anything is written (a bad one changes nothing)."""
    found = image_arrays(arrays)
    for name, pixels in found.items():
        # (an ``images`` batch of 2 channels, or an image of no rows: refused here, not after the images before it
        # and the motion were written, which the refusal left in the scene outside any undo step)
        check_image_shape(name, pixels)
        if not (np.issubdtype(pixels.dtype, np.floating) or pixels.dtype == np.uint8):
            raise PoseFormatError(f"image {name!r} must be uint8 or float (H, W, C), got {pixels.dtype}")
        if np.issubdtype(pixels.dtype, np.floating) and not np.all(np.isfinite(pixels)):
            raise PoseFormatError(f"image {name!r} has non-finite pixels")
    return found


def import_images(context, found: Mapping[str, np.ndarray], label: str, target: str = "IMAGE",
                  warnings: list[str] | None = None) -> tuple[list[str], str]:
    """Image datablocks for checked images (``check_images``), each marked with the job kind ``label``; CAMERA or
    PLANE also shows the first (as Generate Image shows its first variant), the others in the Image editor. Returns
    the images' names and where the first is shown ("" for IMAGE); what that changed on a camera the artist did not
    ask for is added to ``warnings``."""
    made = []
    for name, pixels in found.items():
        image = image_datablock(f"{label} {name}", pixels)
        # a fake user: an image nothing shows has no user, and saving the .blend would drop it (as Generate Image's)
        image.use_fake_user = True
        image["handforge_job"] = label
        made.append(image)
    # the first alone (each image of each run had a background at half opacity, blended into the ones before, and
    # a plane, all at one spot), the newest result in place of the last
    shown, said = "", []
    if made and target == "CAMERA":
        camera = context.scene.camera
        behind = show_behind(camera, made[0])
        shown, said = background_said(camera, behind)
        misfit = misfit_behind(context.scene, behind["background"])
        if misfit and moved_behind(behind["background"]):  # (its fix said: the shape's would not line it up)
            said.append(misfit)
        elif misfit:  # (a job's image need not be of the camera's view: a plane shows it at its own shape)
            said.append(f"{misfit}: Images › Textured Plane shows it at its own shape, or make it at the render's")
    elif made and target == "PLANE":
        shown, said = show_on_plane(context.scene, made[0], f"{label} image")
    if warnings is not None:
        warnings.extend(said)
    return [image.name for image in made], shown


# ---------------------------------------------------------------------- meshes
def vertices_object(context, name: str, vertices_model: np.ndarray, faces: np.ndarray) -> bpy.types.Object:
    """A mesh object (replaced if it exists) with model-frame vertices shown in Blender's frame."""
    old = bpy.data.objects.get(name)
    if old is not None:
        bpy.data.objects.remove(old)
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata((np.asarray(vertices_model, dtype=np.float64) @ MODEL_TO_BLENDER.T).tolist(), [],
                     np.asarray(faces).tolist())
    obj = bpy.data.objects.new(name, mesh)
    obj.display_type = "WIRE"
    context.scene.collection.objects.link(obj)
    return obj


def apply_result(context, data: Mapping[str, Any], arrays: Mapping[str, np.ndarray], label: str,
                 image_target: str = "IMAGE", warnings: list[str] | None = None) -> str:
    """Whatever a generic job returned: motion → keys, images → datablocks; a summary otherwise (where the first
    image is shown included, the backend's ``data["warning"]`` last), and in ``warnings`` what that changed on a
    camera unasked.
    Everything is checked first, so a result that cannot be used leaves the scene as it was."""
    clip = motion_from_arrays(data, arrays)
    if clip is not None and clip.num_frames > 1:
        hands.scene_hands(context.scene, "BOTH", edit=True)  # raises (before any change) if there are none
    else:
        clip = None
    images = check_images(arrays)
    # refused before the job (``HANDFORGE_OT_run_job``): a camera gone or changed while it ran leaves the result
    # kept, the images in the Image editor (before: all of it refused once it came, the job run for nothing)
    unshown = camera_problem(context.scene) if image_target == "CAMERA" and images else ""
    parts = []
    if clip is not None:
        parts.append(import_motion(context, clip))
    if images:
        made, shown = import_images(context, images, label, "IMAGE" if unshown else image_target, warnings)
        why = f"; not shown behind a camera, the active one changed while the job ran: {unshown}" if unshown else ""
        where = f"; the first {shown}" if shown else ""
        parts.append(f"{len(made)} image(s): {', '.join(made)}{where}{why}")
    if parts and data.get("warning"):  # (the backend's: what did not happen as asked; the job reports it as a warning)
        parts.append(str(data["warning"]))
    if not parts:  # (data["warning"] among them)
        shown = {k: v for k, v in data.items() if isinstance(v, (str, int, float, bool))}
        parts.append(f"result {shown}" + (f", arrays {sorted(arrays)}" if arrays else ""))
    return f"{label}: " + "; ".join(parts)
