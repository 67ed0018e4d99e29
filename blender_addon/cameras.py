"""The scene's cameras and placed objects as the backend's one camera model takes them: which cameras can
render, the active one, rigid world matrices, and the image size from the render settings. Export
Labelled Renders, Generate Image and Transfer Pose read them this one way."""

from __future__ import annotations

import bpy
import numpy as np

from . import hands, rig


LENS_TYPES = {"ORTHO": "orthographic", "PANO": "panoramic"}  # as the Lens › Type menu names them


def not_perspective(cam) -> str:
    """Why ``cam`` cannot be used (not perspective: the backend's camera model), or ""."""
    kind = LENS_TYPES.get(cam.data.type, cam.data.type.lower())
    return "" if cam.data.type == "PERSP" else (f"is {kind}: only perspective cameras can be used "
                                                "(Camera properties › Lens › Type)")


def check_perspective(cam):
    """``cam``, refused unless perspective."""
    why = not_perspective(cam)
    if why:
        raise ValueError(f"camera {cam.name!r} {why}")
    return cam


def no_camera(scene) -> str:
    """Why ``scene`` has no active camera to see through, or "": none, or an object that is not a camera (Set Active
    Object as Camera takes any: an Empty there was said to be no active camera, the artist seeing one set)."""
    camera = scene.camera
    if camera is None:
        return "the scene has no active camera"
    if camera.type != "CAMERA":
        kind = camera.type.lower()
        return f"the scene's camera {camera.name!r} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a camera object"
    return ""


def active_camera(scene, otherwise: str = " or export from All Cameras"):
    """The scene's active camera to export from (or see the hands through), checked: perspective.
    ``otherwise``: the other way out, said after a missing active camera."""
    why = no_camera(scene)
    if why:
        fix = "set one" if scene.camera is None else "set a camera object there"
        raise ValueError(f"{why}: {fix} (Scene properties › Camera){otherwise}")
    return check_perspective(scene.camera)


def sharing_data(camera) -> list[str]:
    """The other objects that use ``camera``'s camera data (linked duplicates, Alt-D), by name."""
    return sorted(o.name for o in bpy.data.objects if o.data == camera.data and o != camera)


def background_problem(camera, otherwise: str) -> str:
    """Why an image of ``camera``'s view cannot be its background (said after its name), or "": its camera data,
    which holds the backgrounds, is shared (the image would show behind the other cameras too, off their rigs), or
    linked from another .blend (Blender ignores the change, the image shown nowhere). ``otherwise``: what else to
    do, said last."""
    data = camera.data
    if not data.is_editable:
        source = data.library.filepath if data.library is not None else "a library"
        return (f"uses camera data {data.name!r} linked from {source}, which this file cannot change: make it local "
                f"(Object › Relations › Make Local › Selected Objects and Data){otherwise}")
    others = sharing_data(camera)
    if not others:
        return ""
    return (f"shares its camera data {data.name!r} with {', '.join(repr(name) for name in others)} (a linked "
            f"duplicate, Alt-D), and a background shows behind every camera of its data: give {camera.name!r} data "
            f"of its own (select it alone, Object › Relations › Make Single User › Object & Data){otherwise}")


def render_disabled(scene, obj) -> bool:
    """Whether renders of ``scene`` leave ``obj`` out: it, or every collection it is in, disabled in renders
    (the camera icon; a collection's hides what is inside it)."""
    if obj.hide_render:
        return True
    rendered, todo = set(), [scene.collection]
    while todo:
        collection = todo.pop()
        rendered.add(collection.session_uid)
        todo.extend(c for c in collection.children if not c.hide_render and c.session_uid not in rendered)
    return not any(c.session_uid in rendered for c in obj.users_collection)


def rendered_hands(scene, found: dict, verb: str) -> tuple[dict, list[str]]:
    """The hands a render of ``scene`` shows, and a note per hand left out: its mesh disabled in renders (the
    artist's way to render one hand; the backend drew and labelled it all the same), not in the scene, or deleted.
    Refused when none is left.
    ``verb``: what is done with them ("export", "draw")."""
    shown, skipped = {}, []
    for side, obj in found.items():
        mesh = rig.hand_mesh(obj)
        if mesh is None:  # (deleted: it was drawn and labelled all the same)
            skipped.append(f"the {side} hand: its rig {obj.name!r} has no hand mesh (deleted?): add the hands again "
                           f"(HandForge › Add Hands) to {verb} it")
        elif scene.objects.get(mesh.name) != mesh:  # (a rig linked to another scene alone)
            skipped.append(f"the {side} hand: {mesh.name!r} is not in scene {scene.name!r}, only its rig is: link it "
                           f"(Object › Link/Transfer Data › Link Objects to Scene) to {verb} it")
        elif render_disabled(scene, mesh):
            skipped.append(f"the {side} hand: {mesh.name!r} is disabled in renders (its own or its collection's "
                           f"camera icon in the Outliner): enable it there to {verb} it")
        else:
            shown[side] = obj
    if not shown:
        raise hands.NoHandsError(f"no hand to {verb}: {'; '.join(skipped)}")
    return shown, skipped


def render_cameras(scene, view_layer) -> tuple[list, list[str]]:
    """All Cameras: the scene's perspective cameras that can render, and a note per camera skipped: disabled
    in renders, one Blender does not evaluate in ``view_layer`` (it would stand still over the frames, and
    the labels with it), or not perspective. Refused only when that leaves none."""
    every = sorted((o for o in scene.objects if o.type == "CAMERA"), key=lambda o: o.name)
    if not every:
        raise ValueError("the scene has no camera: add one (Add › Camera) and aim it at the hands")
    cameras, skipped = [], []
    for cam in every:
        why = ("is disabled in renders (its own or its collection's camera icon in the Outliner): enable it there first"
               if render_disabled(scene, cam) else hands.not_evaluated(view_layer, cam) or not_perspective(cam))
        if why:
            skipped.append(f"{cam.name!r} {why}")
        else:
            cameras.append(cam)
    if not cameras:
        raise ValueError(f"none of the scene's cameras can be exported from: {'; '.join(skipped)}")
    return cameras, skipped


def _rigid(matrix) -> bool:
    m = np.asarray(matrix, np.float64)[:3, :3]
    return np.allclose(np.linalg.norm(m, axis=0), 1.0, atol=1e-4) and np.linalg.det(m) > 0


def _scale_source(obj) -> tuple[str, str]:
    """(where, how to clear it) of the transform that scales ``obj``: its own scale, the parent inverse of it or
    a parent (parented while that one was scaled), a parent bone's pose scale, or else a constraint or driver.
    Where a parent's own scale was said for all of these, clearing it (already 1) changed nothing."""
    child = None
    while obj is not None:
        if not _rigid(obj.matrix_basis):  # (its scale and delta scale)
            through = f" through its parent {obj.name!r}" if child else ""
            if np.allclose(obj.scale, 1.0, atol=1e-4):
                return through, (f"set the Delta Scale of {obj.name!r} to 1 (Object properties › Transform › Delta "
                                 "Transform)")
            return through, f"clear the scale of {obj.name!r} (Object › Clear › Scale, Alt-S)"
        parent = obj.parent
        if parent is None:
            break
        if not _rigid(obj.matrix_parent_inverse):
            return (f" by the parent inverse of {obj.name!r} (parented to {parent.name!r} while that was scaled)",
                    f"parent {obj.name!r} to {parent.name!r} again (Ctrl-P, with {parent.name!r} unscaled), or clear "
                    "its parent inverse (Alt-P › Clear Parent Inverse)")
        bone = parent.pose.bones.get(obj.parent_bone) if parent.type == "ARMATURE" and obj.parent_type == "BONE" else None
        if bone is not None and not _rigid(bone.matrix):
            return (f" through the bone {bone.name!r} of {parent.name!r}",
                    f"clear the pose scale of {bone.name!r} and of the bones above it (Pose Mode: Alt-S)")
        child, obj = obj, parent
    return (" by a constraint or driver (of it or a parent)", "remove the scale it gives")


def unscaled(obj, matrix: np.ndarray) -> np.ndarray:
    """``obj``'s world ``matrix``, refused when scaled or mirrored (by it or a parent, named with what scales
    it, ``_scale_source``): the backend's camera model and labels take rigid objects only, and the artist must
    know which scale to clear."""
    scale = np.linalg.norm(matrix[:3, :3], axis=0)
    mirrored = np.linalg.det(matrix[:3, :3]) < 0  # a negative scale: unit axis lengths, and still not rigid
    if mirrored or not np.allclose(scale, 1.0, atol=1e-4):
        through, fix = _scale_source(obj)
        how = "mirrored (a negative scale)" if mirrored else f"scaled ({', '.join(f'{s:.3g}' for s in scale)})"
        raise ValueError(f"{obj.name!r} is {how}{through}: {fix} first (applying it to a hand rig would resize its "
                         "bones, which the labels would not follow)")
    return matrix


def camera_matrix(camera, matrix: np.ndarray) -> np.ndarray:
    """A camera's world ``matrix`` as Blender renders through it: its scale taken out (Blender's render and
    ``world_to_camera_view`` normalise a camera's axes, so artists scale cameras freely, e.g. to see them in
    the viewport; refusing one said to clear a scale that changes nothing). A mirrored or sheared camera
    (a negative or non-uniform scale under a rotated parent) is refused as ``unscaled`` refuses it."""
    axes = matrix[:3, :3]
    lengths = np.linalg.norm(axes, axis=0)
    if lengths.min() > 1e-9:
        rotation = axes / lengths
        if np.linalg.det(rotation) > 0 and np.allclose(rotation.T @ rotation, np.eye(3), atol=1e-6):
            rigid = np.array(matrix, np.float64)
            rigid[:3, :3] = rotation
            return rigid
    return unscaled(camera, matrix)


# the jobs' bound on each of the pixel aspect's x and y (export_renders, image.generate, image.transfer);
# Blender's own is 1-200
JOB_PIXEL_ASPECT_MAX = 100.0


def job_pixel_aspect(aspect_x: float, aspect_y: float) -> list[float]:
    """The scene's pixel aspect as the jobs take it: only x / y makes the camera, so both are divided alike where one
    is above the jobs' 100 (Blender allows 200: it was refused as "params.pixel_aspect[0]: must be between 0.01 and
    100.0"); as they are otherwise (a dataset's record keeps them)."""
    scale = max(aspect_x, aspect_y) / JOB_PIXEL_ASPECT_MAX
    return [aspect_x / scale, aspect_y / scale] if scale > 1 else [aspect_x, aspect_y]


def render_size(scene, width: int, height: int, what: str, least: int, most: int,
                multiple: int = 1) -> tuple[int, int]:
    """``width`` × ``height`` where given (0: the scene's render resolution at its percentage), refused unless
    each side is ``least``..``most`` pixels and a multiple of ``multiple``. The refusal names the render
    resolution and percentage it came from: a percentage left at 1% or 1000% is easy to miss."""
    render, pct = scene.render, scene.render.resolution_percentage
    # Blender's own size at a percentage truncates (BKE_render_resolution: x * pct / 100 in integers): rounded,
    # 1003 at 50% was exported 502 pixels wide where Blender renders 501
    size = (width or max(1, render.resolution_x * pct // 100),
            height or max(1, render.resolution_y * pct // 100))
    if least <= min(size) and max(size) <= most and not (size[0] % multiple or size[1] % multiple):
        return size
    origin = ("" if width and height else
              f" (the scene's render resolution {render.resolution_x}×{render.resolution_y} at {pct}%)")
    sides = f"{least} to {most} pixels a side" + (f", multiples of {multiple}" if multiple > 1 else "")
    raise ValueError(f"{what} would be {size[0]}×{size[1]} pixels{origin}: they need {sides}; set Width/Height, or "
                     "the render resolution and its % (Output properties › Format)")
