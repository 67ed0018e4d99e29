"""A new rest skeleton (Set Shape) under existing keys: each key re-keyed to show the same pose on it."""

from __future__ import annotations

import bpy
import numpy as np

from . import pose as pose_conv
from . import rig as rig_build
from .fcurves import FRAME_EPS, FCurves, enum_value, new_points, read_points, shown, slot_channelbag, write_points
from handforge_shared.skeleton import JOINT_NAMES


def reframe_keys(arm_obj, q: np.ndarray) -> int:
    """Re-key the rig's action after its rest bones turned by ``q`` (``pose.rest_change``; bone channels
    are relative to them): each key of the joints' rotations and the wrist's location gets the value that
    shows the same joint rotation and translation on the new rest, on its own frame, keeping its key type,
    interpolation and handle types. A frame where a bone keys only some channels of its rotation gets keys
    on the others too (a rotation mixes them). Frames between keys show what the new keys interpolate to.
    Every action the rig plays is re-keyed: the active one and those of its NLA strips (``rig.animation_slots``).
    Read from the curves, no frame visited. Returns how many key values were written."""
    bags = (slot_channelbag(action, slot) for action, slot in rig_build.animation_slots(arm_obj))
    return sum(_reframe_bag(arm_obj, bag, q) for bag in bags if bag is not None)


def _reframe_bag(arm_obj, bag, q: np.ndarray) -> int:
    """``reframe_keys`` on the channels of one action slot."""
    curves = FCurves(bag)
    count = 0
    for k, name in enumerate(JOINT_NAMES):
        pb = arm_obj.pose.bones[name]
        path = f'pose.bones["{name}"].{pose_conv.channel_prop(pb.rotation_mode)}'
        count += _reframe(curves, path, name, pose_conv.channel_values(pb),
                          lambda v, mode=pb.rotation_mode, qk=q[k]: pose_conv.reframed_channels(v, mode, qk))
    wrist = arm_obj.pose.bones[JOINT_NAMES[0]]
    return count + _reframe(curves, f'pose.bones["{wrist.name}"].location', wrist.name,
                            np.array(wrist.location, dtype=np.float64), lambda v: v @ q[0])


def _reframe(curves: FCurves, path: str, group: str, current: np.ndarray, convert) -> int:
    """Re-key the channels of one property together: ``convert`` maps their values (T, C) on the frames
    any of them keys; a channel without a curve there holds ``current``."""
    fcs = [curves.curves.get((path, c)) for c in range(len(current))]
    if not any(fc is not None and len(fc.keyframe_points) for fc in fcs):
        return 0
    points = [read_points(fc.keyframe_points) if fc is not None else None for fc in fcs]
    frames = _merged_frames(np.concatenate([p["co"][:, 0] for p in points if p is not None]))
    values = np.stack([_values_at(fc, p, frames, v) for fc, p, v in zip(fcs, points, current)], axis=1)
    new = convert(values)
    slopes = {side: _turned_slopes(convert, values, new, np.stack(
        [_slopes_at(fc, p, frames, side) for fc, p in zip(fcs, points)], axis=1)) for side in _HANDLES}
    kinds = np.full(len(frames), enum_value(bpy.types.Keyframe, "type", "KEYFRAME"), np.int32)
    for p in points:  # a key added beside others gets their type (a generated frame stays generated)
        if p is not None:
            kinds[_frame_index(frames, p["co"][:, 0])] = p["type"]
    for c, fc in enumerate(fcs):
        _rekey(fc or curves.ensure(path, c, group), points[c], frames, new[:, c], kinds,
               {side: slope[:, c] for side, slope in slopes.items()})
    return new.size


_HANDLES = ("handle_left", "handle_right")


def _slopes_at(fc, points, frames: np.ndarray, side: str) -> np.ndarray:
    """A channel's slopes (value per frame) on ``frames`` towards ``side``: its keys' handles', else its curve's."""
    out = np.zeros(len(frames))
    if fc is None or not len(points["co"]):
        return out
    co, handle = points["co"].astype(np.float64), points[side].astype(np.float64)
    dx = handle[:, 0] - co[:, 0]
    out[:] = np.nan
    out[_frame_index(frames, co[:, 0])] = np.where(np.abs(dx) > 1e-6, (handle[:, 1] - co[:, 1]) / np.where(
        np.abs(dx) > 1e-6, dx, 1.0), np.nan)
    for i in np.flatnonzero(np.isnan(out)):  # no key there, or a handle of no length
        out[i] = (fc.evaluate(frames[i] + 0.01) - fc.evaluate(frames[i] - 0.01)) / 0.02
    return out


def _turned_slopes(convert, values: np.ndarray, new: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """The slopes (T, C) of the re-keyed channels where the old ones had ``slopes``: ``convert``'s derivative
    along them (exact for quaternions, axis-angles and locations, which it maps linearly)."""
    step = 1e-5 / np.maximum(np.abs(slopes).max(axis=1, keepdims=True), 1e-12)
    return (convert(values + step * slopes) - new) / step


def _merged_frames(frames: np.ndarray) -> np.ndarray:
    """The sorted distinct frames of ``frames``, those within ``FRAME_EPS`` taken as one."""
    f = np.sort(frames.astype(np.float64))
    return f[np.concatenate([[True], np.diff(f) > FRAME_EPS])] if len(f) else f


def _frame_index(frames: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Where each of ``at`` is in ``frames`` (sorted, from ``_merged_frames``)."""
    return np.clip(np.searchsorted(frames, at - FRAME_EPS), 0, len(frames) - 1)


def _values_at(fc, points, frames: np.ndarray, current: float) -> np.ndarray:
    """A channel's values on ``frames``: its keys' own values (an F-curve modifier is no key), else what it shows."""
    if fc is None or not (len(points["co"]) or shown(fc)):
        return np.full(len(frames), current)
    out = np.full(len(frames), np.nan)
    out[_frame_index(frames, points["co"][:, 0])] = points["co"][:, 1]
    for i in np.flatnonzero(np.isnan(out)):  # only where another channel of the property has a key
        out[i] = fc.evaluate(frames[i])
    return out


def _rekey(fc, points, frames: np.ndarray, values: np.ndarray, kinds: np.ndarray, slopes: dict) -> None:
    """Give ``fc``'s keys their new ``values`` (one per frame) and add keys on the frames it lacks. Free and
    aligned handles keep their length and take the new ``slopes`` (per side, per frame): moved with their key
    alone, the curve between keys bent up to 1.6 degrees from the old one (quaternions); update() sets the others."""
    kps = fc.keyframe_points
    pts = points if points is not None else read_points(kps)
    at = _frame_index(frames, pts["co"][:, 0])
    delta = values[at] - pts["co"][:, 1]
    pts["co"][:, 1] = values[at]
    kf = bpy.types.Keyframe
    for name in _HANDLES:
        kept = np.isin(pts[f"{name}_type"], [enum_value(kf, f"{name}_type", t) for t in ("FREE", "ALIGNED")])
        dx = pts[name][:, 0] - pts["co"][:, 0]
        pts[name][:, 1] = np.where(kept, values[at] + slopes[name][at] * dx, pts[name][:, 1] + delta)
    missing = np.setdiff1d(np.arange(len(frames)), at)
    if len(missing):
        new = new_points(np.stack([frames[missing], values[missing]], axis=1).astype(np.float32))
        new["type"] = kinds[missing]
        if len(at):  # the interpolation of the segment the key splits
            before = np.clip(np.searchsorted(pts["co"][:, 0], frames[missing]) - 1, 0, len(at) - 1)
            new["interpolation"], new["easing"] = pts["interpolation"][before], pts["easing"][before]
        pts = {k: np.concatenate([pts[k], new[k]]) for k in pts}
        kps.clear()
        kps.add(len(pts["co"]))
        write_points(kps, pts)
    else:
        write_points(kps, {name: pts[name] for name in ("co", "handle_left", "handle_right")})
    fc.update()  # sorts the keys and recalculates the automatic handles


__all__ = ["reframe_keys"]
