#!/usr/bin/env python3
"""Importing a two-hand motion clip into Blender: HandForge's importer vs the fastest pure-bpy writer.

    .venv/bin/python benchmarks/blender_import.py [--frames 600] [--repeats 7] [--zip dist/handforge-X.zip]

Builds the extension (unless --zip is given), installs it into a temporary Blender user directory
(real bpy), adds both hands and imports a random smooth clip with ``handforge.import_motion``
(pose parameters → bone channels → keys). The floor, in the same process, writes the very
same keys (read back from HandForge's result) with nothing but bpy: per channel ``fcurves.new`` +
``keyframe_points.add`` + ``foreach_set`` of ``co`` and ``type`` + ``update``. The two are run
interleaved (alternating which goes first), each on cleared rigs, and checked to give equal keys.
A third, the ``import_motion`` operator, adds reading the file; the last two are the floor and
HandForge's import each followed by ``view_layer.update()``, the depsgraph update of Blender's next
redraw, after which the rigs show the new keys (and the finger sliders follow). Prints min and
median of each and the ratio of HandForge's import to the floor (the target: at most 1.3x), and
of the two followed by that update.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from handforge.scratch import scratch_folder

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


def channelbag(id_block, create: bool = False):
    import bpy

    ad = id_block.animation_data
    if create:
        ad = ad or id_block.animation_data_create()
        ad.action = bpy.data.actions.new(f"{id_block.name} Floor")
        ad.action_slot = ad.action.slots.new(id_type=id_block.id_type, name=id_block.name)
        strip = ad.action.layers.new("Layer").strips.new(type="KEYFRAME")
        return strip.channelbag(ad.action_slot, ensure=True)
    return ad.action.layers[0].strips[0].channelbag(ad.action_slot)


def animated_ids(arms) -> list:
    """The ID blocks HandForge animates: the armatures and, where there are correctives, their shape keys."""
    out = []
    for arm in arms:
        out.append(arm)
        for child in arm.children:
            keys = getattr(child.data, "shape_keys", None)
            if keys is not None and keys.animation_data is not None:
                out.append(keys)
    return out


def fcurve_keys(id_block) -> dict[tuple[str, int, str], tuple[np.ndarray, np.ndarray]]:
    """(path, index, group) → (co (n, 2), type (n,)) of every F-curve of the ID's action."""
    out = {}
    for fc in channelbag(id_block).fcurves:
        n = len(fc.keyframe_points)
        co, kind = np.empty(2 * n, np.float32), np.empty(n, np.int32)
        fc.keyframe_points.foreach_get("co", co)
        fc.keyframe_points.foreach_get("type", kind)
        out[(fc.data_path, fc.array_index, fc.group.name if fc.group else "")] = (co.reshape(-1, 2), kind)
    return out


def floor_writer(ids, keys) -> None:
    """The fastest pure-bpy writer of given keys: one F-curve per channel, filled in bulk."""
    for id_block in ids:
        bag = channelbag(id_block, create=True)
        for (path, index, group), (co, kind) in keys[id_block.name].items():
            fc = bag.fcurves.new(path, index=index)
            fc.group = bag.groups.get(group) or bag.groups.new(group)
            kps = fc.keyframe_points
            kps.add(len(kind))
            kps.foreach_set("co", co.ravel())
            kps.foreach_set("type", kind)
            fc.update()


def clear(ids) -> None:
    import bpy

    for id_block in ids:
        ad = id_block.animation_data
        if ad is not None and ad.action is not None:
            bpy.data.actions.remove(ad.action)
        id_block.animation_data_clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--zip", type=Path, help="an extension zip (default: build one)")
    args = parser.parse_args(argv)

    tmp = scratch_folder("bench", remove_at_exit=True)
    zip_path = args.zip
    if zip_path is None:
        sys.path.insert(0, str(ROOT))
        import build_addon

        zip_path = tmp / "handforge.zip"
        if build_addon.main(["--out", str(zip_path)]) != 0:
            return 1
    os.environ.setdefault("BLENDER_USER_RESOURCES", str(tmp / "blender_user"))  # before bpy is imported
    import bpy

    bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default", enable_on_install=True)
    for obj in list(bpy.data.objects):
        bpy.data.objects.remove(obj)
    scene = bpy.context.scene
    scene.render.fps, scene.render.fps_base = 30, 1.0
    bpy.ops.handforge.add_hands()
    arms = [scene.handforge.left, scene.handforge.right]
    clip_path = tmp / "clip.npz"
    smooth_clip(args.frames).save(clip_path)

    from importlib import import_module

    from handforge_shared.poses import MotionClip

    keys_module = import_module("bl_ext.user_default.handforge.keys")  # the add-on's own copy
    clip = MotionClip.load(clip_path)

    def ours():  # what import_motion does once the file is read (and what a backend result takes)
        keys_module.import_clip(bpy.context, clip, {"left": arms[0], "right": arms[1]}, 1)

    def operator():
        bpy.ops.handforge.import_motion(filepath=str(clip_path), frame_start=1)

    bpy.ops.handforge.import_motion(filepath=str(clip_path), frame_start=1)  # warm-up; the keys to match
    ids = animated_ids(arms)
    keys = {i.name: fcurve_keys(i) for i in ids}
    num_channels = sum(len(k) for k in keys.values())
    num_keys = sum(len(kind) for per_id in keys.values() for _, kind in per_id.values())
    def floor_shown():  # the floor, then the depsgraph update of a redraw: the rigs show the new keys
        floor_writer(ids, keys)
        bpy.context.view_layer.update()

    def ours_shown():
        ours()
        bpy.context.view_layer.update()

    writers = {"handforge": ours, "floor": lambda: floor_writer(ids, keys), "operator": operator,
               "floor_shown": floor_shown, "handforge_shown": ours_shown}
    times: dict[str, list[float]] = {name: [] for name in writers}
    orders = (("handforge", "floor", "operator", "floor_shown", "handforge_shown"),
              ("floor", "handforge_shown", "floor_shown", "operator", "handforge"),
              ("operator", "handforge", "floor_shown", "handforge_shown", "floor"))
    for r in range(args.repeats):
        for name in orders[r % 3]:
            clear(ids)
            start = time.perf_counter()
            writers[name]()
            times[name].append(time.perf_counter() - start)
            written = {i.name: fcurve_keys(i) for i in ids}  # the same keys, either way
            for id_name, per_id in keys.items():
                assert written[id_name].keys() == per_id.keys(), f"{name}: other channels on {id_name}"
                for channel, (co, kind) in per_id.items():
                    np.testing.assert_allclose(written[id_name][channel][0], co, atol=1e-6)
                    np.testing.assert_array_equal(written[id_name][channel][1], kind)

    print(f"clip: 2 hands x {args.frames} frames, {num_channels} channels, {num_keys} keys, "
          f"{args.repeats} interleaved runs (bpy {bpy.app.version_string})")
    for name, label in (("handforge", "HandForge import (clip -> params -> channels -> keys)"),
                        ("floor", "pure bpy (fcurves.new + add + foreach_set co, type + update)"),
                        ("operator", "import_motion operator (+ reading the .npz file)"),
                        ("floor_shown", "pure bpy + view_layer.update (the rigs show the keys)"),
                        ("handforge_shown", "HandForge import + view_layer.update")):
        print(f"{label:62s} min {min(times[name]) * 1000:7.1f} ms   median {statistics.median(times[name]) * 1000:7.1f} ms")
    ratio = min(times["handforge"]) / min(times["floor"])
    print(f"ratio (min/min): {ratio:.2f}x   (median/median: "
          f"{statistics.median(times['handforge']) / statistics.median(times['floor']):.2f}x)")
    shown = min(times["handforge_shown"]) / min(times["floor_shown"])
    print(f"ratio, both followed by the depsgraph update that shows the keys (min/min): {shown:.2f}x   "
          f"(median/median: {statistics.median(times['handforge_shown']) / statistics.median(times['floor_shown']):.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
