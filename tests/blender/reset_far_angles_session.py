"""Blender session: Reset Pose on bones whose channels hold huge but finite angles (a script's, a driver's)."""

from __future__ import annotations

import bpy

from session import Session, as_user, channels, hand

s = Session()
s.install()

# a channel value per rotation mode, each a finite rotation far out of any range an artist types
FAR = {"YZX": ("rotation_euler", (1e6, -3e5, 7e4)),
       "XYZ": ("rotation_euler", (2.5e7, 0.0, 1e6)),
       "QUATERNION": ("rotation_quaternion", (1e6, -2e6, 3e5, 5e6)),
       "AXIS_ANGLE": ("rotation_axis_angle", (1e6, 0.3, -0.2, 0.9))}


def far(side: str, bones: list[str]) -> None:
    """Give each of ``bones`` a far value, cycling through the rotation modes (and a far wrist location)."""
    for bone, (mode, (prop, value)) in zip(bones, list(FAR.items()) * len(bones)):
        pb = hand(side).pose.bones[bone]
        pb.rotation_mode = mode
        setattr(pb, prop, value)


def reset_far_angles():
    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    at_rest = {side: channels(side) for side in ("left", "right")}  # as Add Hands placed them
    from handforge_shared.skeleton import JOINT_NAMES  # (the add-on's copy, installed above)

    fingers = list(JOINT_NAMES[1:])
    out = {}
    far("right", fingers)
    out["fingers"] = as_user(bpy.ops.handforge.reset_pose, sides="RIGHT")
    s.arrays["fingers_right"] = channels("right")
    far("left", ["wrist"] + fingers)
    hand("left").pose.bones["wrist"].location = (1e6, -2e6, 3e5)
    out["placement"] = as_user(bpy.ops.handforge.reset_pose, sides="LEFT", include_placement=True)
    s.arrays["placement_left"] = channels("left")
    for side, rest in at_rest.items():
        s.arrays[f"rest_{side}"] = rest
    return out


s.check("reset", reset_far_angles)
s.finish()
