"""Where objects stand over frames: whether one moves as an object (its keys, drivers, constraints, or a
parent's), and its ``matrix_world`` on given frames, the frames evaluated only for those that move (each
evaluation puts every animated value of the scene back on its keys: an artist's change not keyed yet is lost)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from . import fcurves

# an object's own transform channels (a rig's action also holds its bones' keys, which move no object)
_TRANSFORM_PATHS = frozenset(f"{delta}{prop}" for delta in ("", "delta_") for prop in (
    "location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale"))


def moves_as_object(obj) -> bool:
    """Whether ``obj``'s own transform may change with the frame: it or a parent has keys or drivers on its
    transform or its constraints, NLA strips or constraints, or it hangs from a parent's bone or vertices
    that are animated or deformed (a hand carried by a character). Its own bone keys do not count: a keyed
    hand took any still target for a moving one, its wrist pinned there."""
    child = None
    while obj is not None:
        ad = obj.animation_data
        if ad is not None:
            bag = fcurves.find_channelbag(obj)
            paths = [d.data_path for d in ad.drivers] + [fc.data_path for fc in (bag.fcurves if bag else ()) if not fc.mute]
            if len(ad.nla_tracks) or any(p in _TRANSFORM_PATHS or p.startswith("constraints[") for p in paths):
                return True
        if child is not None and child.parent_type in ("BONE", "BONE_RELATIVE") and ad is not None:
            return True  # carried by a bone of an animated armature
        if child is not None and child.parent_type in ("VERTEX", "VERTEX_3") and (
                ad is not None or len(obj.modifiers) or getattr(getattr(obj.data, "shape_keys", None),
                                                                "animation_data", None) is not None):
            return True  # carried by vertices that may move
        if any(not con.mute for con in obj.constraints):  # (its influence may be keyed: 0 now is no answer)
            return True
        child, obj = obj, obj.parent
    return False


def worlds_over(scene, objects: dict[Any, Any], frames: Iterable[float]) -> dict[Any, np.ndarray]:
    """(T, 4, 4) ``matrix_world`` of each of ``objects`` on each of ``frames`` (subframes allowed) as Blender
    evaluates the scene there, the frames evaluated once for all that move, the others read where they stand;
    the scene's frame and subframe as they were after."""
    frames = list(frames)
    out = {key: np.repeat(np.array(obj.matrix_world, np.float64)[None], len(frames), axis=0)
           for key, obj in objects.items()}
    moving = {key: obj for key, obj in objects.items() if moves_as_object(obj)}
    if not moving:
        return out
    current, subframe = scene.frame_current, scene.frame_subframe
    try:
        for i, frame in enumerate(frames):
            whole = int(np.floor(frame))
            scene.frame_set(whole, subframe=float(frame - whole))
            for key, obj in moving.items():
                out[key][i] = np.array(obj.matrix_world, np.float64)
    finally:
        scene.frame_set(current, subframe=subframe)
    return out


__all__ = ["moves_as_object", "worlds_over"]
