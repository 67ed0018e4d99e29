#!/usr/bin/env python3
"""Importing a two-hand motion clip into Blender: HandForge's bulk importer vs a keyframe_insert loop.

    .venv/bin/python benchmarks/blender_import.py [--frames 600] [--repeats 3] [--zip dist/handforge-X.zip]

Builds the extension (unless --zip is given), installs it into a temporary Blender user directory
(real bpy), adds both hands and imports a random smooth clip with ``handforge.import_motion``
(parameters → bone channels → ``keyframe_points.add`` + ``foreach_set``). The baseline, in the same
process, writes the same channel values the usual way: per frame, set each bone's channels and call
``keyframe_insert`` (as the SMPL-X add-ons do for AMASS). Both results are checked to be equal.
Prints both times (best of --repeats) and the ratio.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def smooth_clip(num_frames: int, seed: int = 0):
    from handforge_shared.poses import HandPose, MotionClip
    from handforge_shared.skeleton import SIDES

    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, num_frames)[:, None]
    hands = {}
    for side in SIDES:  # a few sine waves per parameter: smooth, like real motion
        def wave(dim, scale):
            a, f, p = rng.normal(0, scale, (3, dim)), rng.uniform(0.5, 3, (3, dim)), rng.uniform(0, 6.3, (3, dim))
            return sum(a[i] * np.sin(2 * np.pi * f[i] * t + p[i]) for i in range(3))
        hands[side] = HandPose(global_orient=wave(3, 0.3), hand_pose=wave(45, 0.25), betas=np.zeros((num_frames, 10)),
                               transl=wave(3, 0.03))
    return MotionClip(hands=hands, fps=30.0)


def fcurve_values(arm_obj) -> dict[tuple[str, int], np.ndarray]:
    ad = arm_obj.animation_data
    bag = ad.action.layers[0].strips[0].channelbag(ad.action_slot)
    out = {}
    for fc in bag.fcurves:
        co = np.empty(2 * len(fc.keyframe_points), np.float32)
        fc.keyframe_points.foreach_get("co", co)
        out[(fc.data_path, fc.array_index)] = co.reshape(-1, 2)
    return out


def keyframe_insert_loop(arms, channels, frame_start: int) -> None:
    """The baseline: per frame, set every channel's value and insert a key for it."""
    for arm_obj in arms:
        by_bone = {}
        for (path, index), co in channels[arm_obj.name].items():
            bone, prop = path.split('"')[1], path.rsplit(".", 1)[1]
            by_bone.setdefault((bone, prop), {})[index] = co[:, 1]
        num_frames = len(next(iter(channels[arm_obj.name].values())))
        pbones = arm_obj.pose.bones
        for f in range(num_frames):
            frame = frame_start + f
            for (bone, prop), comps in by_bone.items():
                pb = pbones[bone]
                getattr(pb, prop)[:] = [comps[i][f] for i in range(len(comps))]
                pb.keyframe_insert(prop, frame=frame, group=bone)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--zip", type=Path, help="an extension zip (default: build one)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="handforge-bench-"))
    zip_path = args.zip
    if zip_path is None:
        sys.path.insert(0, str(ROOT))
        import build_addon

        zip_path = tmp / "handforge.zip"
        if build_addon.main(["--out", str(zip_path)]) != 0:
            return 1
    os.environ["BLENDER_USER_RESOURCES"] = str(tmp / "blender_user")  # before bpy is imported
    import bpy

    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    bpy.ops.handforge.add_hands()
    arms = [scene.handforge.left, scene.handforge.right]
    clip = smooth_clip(args.frames)
    clip_path = tmp / "clip.npz"
    clip.save(clip_path)
    num_channels = None

    ours, baseline = [], []
    for _ in range(args.repeats):
        for arm in arms:
            arm.animation_data_clear()
        start = time.perf_counter()
        bpy.ops.handforge.import_motion(filepath=str(clip_path), frame_start=1)
        ours.append(time.perf_counter() - start)
        channels = {arm.name: fcurve_values(arm) for arm in arms}
        num_channels = sum(len(c) for c in channels.values())
        for arm in arms:
            arm.animation_data_clear()
        start = time.perf_counter()
        keyframe_insert_loop(arms, channels, frame_start=1)
        baseline.append(time.perf_counter() - start)
        for arm in arms:  # the same keys, either way
            for key, co in fcurve_values(arm).items():
                np.testing.assert_allclose(co, channels[arm.name][key], atol=1e-6)

    best_ours, best_base = min(ours), min(baseline)
    print(f"clip: 2 hands x {args.frames} frames, {num_channels} animated channels, "
          f"{num_channels * args.frames} keys (bpy {bpy.app.version_string})")
    print(f"HandForge import (params -> channels -> keyframe_points.add + foreach_set): {best_ours * 1000:8.1f} ms")
    print(f"keyframe_insert loop (same channel values):                              {best_base * 1000:8.1f} ms")
    print(f"speed-up: {best_base / best_ours:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
