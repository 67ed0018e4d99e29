"""Blender session: Import Motion onto rigs whose channels hold huge but finite angles (a script's) or NaN before."""

from __future__ import annotations

import importlib

import bpy
import numpy as np

from session import ADDON_MODULE, Session, as_user, hand

s = Session()
s.install()
pose = importlib.import_module(f"{ADDON_MODULE}.pose")

# per rotation mode, a finite rotation far out of any range an artist types, and NaN
FAR = {"YZX": ("rotation_euler", (1e6, -3e5, 7e4)),
       "XYZ": ("rotation_euler", (2.5e7, 0.0, 1e6)),
       "QUATERNION": ("rotation_quaternion", (1e6, -2e6, 3e5, 5e6)),
       "AXIS_ANGLE": ("rotation_axis_angle", (1e6, 0.3, -0.2, 0.9))}
NAN = {mode: (prop, tuple(np.nan for _ in value)) for mode, (prop, value) in FAR.items()}


def hold(side: str, values: dict) -> None:
    """Give each of the rig's bones one of ``values``, cycling through the rotation modes."""
    from handforge_shared.skeleton import JOINT_NAMES  # (the add-on's copy, installed above)

    for bone, (mode, (prop, value)) in zip(JOINT_NAMES, list(values.items()) * len(JOINT_NAMES)):
        pb = hand(side).pose.bones[bone]
        pb.rotation_mode = mode
        setattr(pb, prop, value)


def imported_over_far_angles():
    from handforge_shared import pose_library
    from handforge_shared.poses import MotionClip, stack_poses

    assert bpy.ops.handforge.add_hands() == {"FINISHED"}
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    names = ("fist", "spread", "fist")
    clip = MotionClip(hands={side: stack_poses([pose_library.get(name, side=side) for name in names])
                             for side in ("left", "right")}, fps=30.0)
    path = str(s.work / "clip.npz")
    clip.save(path)
    hold("right", FAR)
    hold("left", NAN)
    out = {"import": as_user(bpy.ops.handforge.import_motion, filepath=path, frame_start=1)}
    for side in ("left", "right"):
        arm_obj = hand(side)
        poses = clip.hands[side]
        wanted, _ = pose.params_to_local(pose.bone_frames(arm_obj), poses.global_orient, poses.hand_pose, poses.transl)
        errors = []
        for frame in range(3):
            scene.frame_set(1 + frame)
            local, _ = pose.read_local(arm_obj)
            errors.append(float(np.abs(local - wanted[frame]).max()))  # (NaN where a key is)
        out[side] = errors
    return out


s.check("import", imported_over_far_angles)
s.finish()
