"""Where objects stand over frames: whether one moves as an object (its keys, drivers, constraints, or a
parent's), and its ``matrix_world`` on given frames, the frames evaluated only for those that move. Evaluating
a frame puts every animated value of the scene back on its keys: ``evaluating_frames`` puts back after it the
artist's changes not keyed yet (a bone or object moved, not keyed), else lost unsaid."""

from __future__ import annotations

import contextlib
from typing import Any, Iterable

import numpy as np

from . import fcurves

# an object's own transform channels (a rig's action also holds its bones' keys, which move no object)
_TRANSFORM_PATHS = frozenset(f"{delta}{prop}" for delta in ("", "delta_") for prop in (
    "location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale"))


def _moving_path(path: str) -> bool:
    return path in _TRANSFORM_PATHS or path.startswith("constraints[")


def _varies(fc) -> bool:
    """Whether the F-curve's value changes with the frame: its keys (and their handles), or its samples (a curve
    baked, Keys to Samples: no keys left), hold more than one value, or a modifier (noise, cycles of a slope)
    changes it. All keys on one value do not move anything."""
    if any(not mod.mute for mod in fc.modifiers):
        return True
    values = {v for kp in fc.keyframe_points for v in (kp.co[1], kp.handle_left[1], kp.handle_right[1])}
    values.update(point.co[1] for point in fc.sampled_points)
    return len(values) > 1


def _moves_itself(obj) -> bool:
    """Whether ``obj``'s own transform changes with the frame: constraints (their influence may be keyed: 0 now is
    no answer), drivers on its transform or constraints, NLA strips that hold such keys, or its action's keys
    of more than one value on them. Its bones' keys do not count: they move no object."""
    if any(not con.mute for con in obj.constraints):
        return True
    ad = obj.animation_data
    if ad is None:
        return False
    if any(not d.mute and _moving_path(d.data_path) for d in ad.drivers):
        return True
    for track in ad.nla_tracks:
        for strip in () if track.mute else track.strips:
            bag = fcurves.slot_channelbag(strip.action, getattr(strip, "action_slot", None)) if strip.action else None
            if bag is not None and any(_moving_path(fc.data_path) for fc in bag.fcurves):
                return True
    bag = fcurves.find_channelbag(obj)
    return bag is not None and any(fcurves.plays(fc) and _moving_path(fc.data_path) and _varies(fc) for fc in bag.fcurves)


def _carries(parent, child) -> bool:
    """Whether ``parent`` moves ``child`` through what it hangs from: a bone of an animated armature, or
    vertices that may move (animated, deformed by modifiers, or shape keys)."""
    if child.parent_type in ("BONE", "BONE_RELATIVE"):
        return parent.animation_data is not None
    if child.parent_type in ("VERTEX", "VERTEX_3"):
        return (parent.animation_data is not None or len(parent.modifiers) > 0
                or getattr(getattr(parent.data, "shape_keys", None), "animation_data", None) is not None)
    return False


def movers(obj) -> list:
    """The objects that move ``obj`` as an object, itself first, then its parents: those whose transform changes
    with the frame (``_moves_itself``) and those carrying it on an animated bone or moving vertices (a hand
    carried by a character). Its own bone keys do not count: a keyed hand took any still target for a moving
    one, its wrist pinned there."""
    out, child = [], None
    while obj is not None:
        if _moves_itself(obj) or (child is not None and _carries(obj, child)):
            out.append(obj)
        child, obj = obj, obj.parent
    return out


def moves_as_object(obj) -> bool:
    """Whether ``obj``'s ``matrix_world`` may change with the frame (``movers``)."""
    return bool(movers(obj))


def _animated_ids(scene) -> list:
    """The scene, its world, and its objects with their data, shape keys and materials, and the node trees of
    these (a material's, a world's or a light's node values are animated on its tree, an ID of its own): what a
    frame change evaluates animation on (the IDs of this scene's view)."""
    ids = {scene, scene.world} if scene.world else {scene}
    for obj in scene.objects:
        data = obj.data
        ids.update(x for x in (obj, data, getattr(data, "shape_keys", None)) if x is not None)
        ids.update(slot.material for slot in obj.material_slots if slot.material is not None)
    ids.update(tree for tree in (getattr(i, "node_tree", None) for i in list(ids)) if tree is not None)
    return [i for i in ids if getattr(i, "animation_data", None) is not None]


def _keyed(id_block, frame: float) -> dict[tuple[str, int], tuple[float, ...]]:
    """(data path, index) of what the ID's action and NLA strips animate -> what their F-curves hold on ``frame``
    (a change of these is a change of its keys there)."""
    ad = id_block.animation_data
    bags = [fcurves.find_channelbag(id_block)] + [
        fcurves.slot_channelbag(strip.action, getattr(strip, "action_slot", None))
        for track in ad.nla_tracks for strip in track.strips if strip.action is not None]
    out: dict[tuple[str, int], tuple[float, ...]] = {}
    for fc in (fc for bag in bags if bag is not None for fc in bag.fcurves):
        key = (fc.data_path, fc.array_index)
        out[key] = out.get(key, ()) + (fc.evaluate(frame),)
    return out


def _owner(id_block, path: str):
    """(struct, property name or custom property key, whether a custom property) of an F-curve's data path."""
    if path.endswith('"]'):  # a custom property: ...["key"]
        at = path.rindex('["')
        where, key, custom = path[:at], path[at + 2:-2].replace('\\"', '"').replace("\\\\", "\\"), True
    else:
        where, _, key = path.rpartition(".")
        custom = False
    return (id_block.path_resolve(where) if where else id_block), key, custom


def _value(id_block, path: str, index: int):
    """The property's value at ``index`` now, or None for a path to nothing (a bone renamed since)."""
    try:
        value = id_block.path_resolve(path)
        return value if isinstance(value, (bool, int, float, str)) else value[index]
    except (ValueError, TypeError, IndexError):
        return None


def _put(id_block, path: str, index: int, value) -> None:
    owner, key, custom = _owner(id_block, path)
    current = owner[key] if custom else getattr(owner, key)
    if isinstance(current, (bool, int, float, str)):
        if custom:
            owner[key] = value
        else:
            setattr(owner, key, value)
    else:
        current[index] = value  # (a vector or array of the struct: written through)


# An object's own transform channels: where the artist put it, not what its pose or sliders animate.
OBJECT_PLACEMENT = frozenset({"location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale",
                              "delta_location", "delta_rotation_euler", "delta_rotation_quaternion", "delta_scale"})


@contextlib.contextmanager
def evaluating_frames(scene, showing=()):
    """Around evaluating frames (``scene.frame_set``): after, the scene's frame and subframe as they were,
    and each animated value the artist changed without keying it (a bone or an object moved, a slider
    dragged, not keyed yet) too, exactly: evaluating a frame puts every animated value back on its keys, and
    Blender's own frame change loses such a change the same way, but a button that only reads other frames
    must not. Found as the animated values that setting the frame back did not bring back as they were, their
    keys on this frame as they were: keys written meanwhile (a job's result landing between a modal export's
    steps) are shown, as Blender shows new keys. Keys written since the last evaluation (a job's result keyed,
    no frame set) are evaluated first: their values stand for the ones the scene had, else the values from
    before them were put back over them. The IDs ``showing`` are left as the frame's evaluation shows them, but for
    an object's own placement (``OBJECT_PLACEMENT``), which a hand's animation does not set."""
    for layer in scene.view_layers:  # (as frame_set evaluates them; an artist's change not keyed yet stays)
        layer.update()
    current, subframe = scene.frame_current, scene.frame_subframe
    ids = _animated_ids(scene)
    keyed = [_keyed(i, current + subframe) for i in ids]
    before = [{key: _value(i, *key) for key in paths} for i, paths in zip(ids, keyed)]
    try:
        yield
    finally:
        scene.frame_set(current, subframe=subframe)
        for id_block, was_keyed, values in zip(ids, keyed, before):
            try:  # (keys written meanwhile, a job's result landing between a modal export's steps: theirs shown)
                now_keyed = _keyed(id_block, current + subframe) if id_block.animation_data is not None else {}
            except ReferenceError:  # (removed meanwhile)
                continue
            if id_block in showing:  # an object's own placement stays the artist's (a rig moved by hand, not keyed)
                values = {key: value for key, value in values.items()
                          if id_block.id_type == "OBJECT" and key[0] in OBJECT_PLACEMENT}
            for key, value in values.items():
                if value is not None and now_keyed.get(key) == was_keyed[key] and _value(id_block, *key) != value:
                    _put(id_block, *key, value)


def show_animation(scene, ids) -> None:
    """Put on the animated values of ``ids`` what the scene's animation gives them on its current frame, as Blender's
    frame change does (keys, NLA, drivers, the frame handlers: keyed finger sliders, corrective shape keys), the
    artist's changes not keyed yet elsewhere kept (``evaluating_frames``)."""
    with evaluating_frames(scene, showing=ids):
        pass  # (setting the frame back evaluates it)


def worlds_over(scene, objects: dict[Any, Any], frames: Iterable[float]) -> dict[Any, np.ndarray]:
    """(T, 4, 4) ``matrix_world`` of each of ``objects`` on each of ``frames`` (subframes allowed) as Blender
    evaluates the scene there, the frames evaluated once for all that move, the others read where they stand;
    the scene as it was after (``evaluating_frames``)."""
    frames = list(frames)
    out = {key: np.repeat(np.array(obj.matrix_world, np.float64)[None], len(frames), axis=0)
           for key, obj in objects.items()}
    moving = {key: obj for key, obj in objects.items() if moves_as_object(obj)}
    if not moving:
        return out
    with evaluating_frames(scene):
        for i, frame in enumerate(frames):
            whole = int(np.floor(frame))
            scene.frame_set(whole, subframe=float(frame - whole))
            for key, obj in moving.items():
                out[key][i] = np.array(obj.matrix_world, np.float64)
    return out


__all__ = ["evaluating_frames", "movers", "moves_as_object", "show_animation", "worlds_over"]
