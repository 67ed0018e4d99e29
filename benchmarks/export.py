#!/usr/bin/env python3
"""Labelled export throughput: HandForge's loop vs a naive one, interleaved in the same run.

    .venv/bin/python benchmarks/export.py [--samples 4] [--rounds 2] [--cycles-samples 4] [--antialiasing 8]
                                          [--sizes 256 512]

Ours: one Blender worker for the whole run (scene built once; per sample a vertex update, camera,
lights and a render), labels, masks, depth and the mesh image from one GL pass. Naive: the same
samples with the Blender scene rebuilt from factory settings for every image, as a script that
builds a scene per sample does, one step after the other (render, label, write: ours overlaps the
render with the GL pass, the labels and the next sample's scene, and the writing with the next sample). Both produce the
same files: each round checks it (labels equal, every image and array identical), outside the timing. Prints samples
per second per size and engine, the fastest round (min time) and the median of the rounds, and their ratios, plus the
GL mesh image time (512², this machine's GL) and the GL-only (no RGB) export rate. Each round runs both, the one going
first alternating, so machine load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def gl_mesh_image_ms(size: int = 512, repeats: int = 50) -> float:
    import torch

    from handforge.hands import load_hand_model
    from handforge.render.camera import Camera, look_at
    from handforge.render.gl import renderer
    from handforge_shared import pose_library
    from handforge_shared.poses import side_by_side

    model = load_hand_model("open")
    meshes = []
    for side, pose in side_by_side(pose_library.get("fist"), separation=0.12).hands.items():
        with torch.no_grad():
            meshes.append((model.forward_pose(side, pose).vertices[0].numpy(), model.faces(side).numpy()))
    centre = np.concatenate([v for v, _ in meshes]).mean(0)
    R, t = look_at(centre + np.array([0.0, 0.45, 0.2]), centre, up=(0, 1, 0))
    camera = Camera.from_fov(R, t, size, size, 1.4 * size)
    gl = renderer()
    gl.render(camera, meshes)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gl.render(camera, meshes)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def same_files(ours: Path, naive: Path) -> None:
    """Both loops wrote the same samples: the same files, labels equal, images and arrays identical."""
    from PIL import Image

    names = sorted(p.relative_to(ours) for p in ours.rglob("*") if p.is_file())
    assert names == sorted(p.relative_to(naive) for p in naive.rglob("*") if p.is_file()), (
        f"the loops wrote different files: {ours} against {naive}")
    for name in names:
        a, b = ours / name, naive / name
        if name.suffix == ".json":
            assert json.loads(a.read_text()) == json.loads(b.read_text()), f"labels differ: {name}"
        elif name.suffix == ".npy":
            assert np.array_equal(np.load(a), np.load(b)), f"arrays differ: {name}"
        elif name.suffix == ".png":
            assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), f"images differ: {name}"
        else:
            assert a.read_bytes() == b.read_bytes(), f"files differ: {name}"


def rate(spec, rgb, count: int, offset: int, naive: bool = False, out: Path | None = None) -> float:
    """Samples per second making and writing ``count`` samples starting at ``offset`` (into ``out`` when
    given, kept there; else a temporary folder): as the export loop does (Blender renders while the GL pass
    and labels are made and the next scene is sampled and sent, files written while the next sample is
    made), or ``naive``ly, one step after the other (render, then label, then write)."""
    from handforge.export.samples import SampleWriter, write_sample
    from handforge.export.run import begin_sample, make_sample
    from handforge.hands import load_hand_model
    from handforge.render.gl import renderer

    model, gl = load_hand_model("open"), renderer()
    if naive and rgb is not None:
        rgb = (lambda plain: lambda scene, camera, hands: plain(scene, camera, hands))(rgb)  # no submit_sample
    with tempfile.TemporaryDirectory() as tmp:
        tmp = out or Path(tmp)
        start = time.perf_counter()
        if naive:
            for index in range(offset, offset + count):
                record, files = make_sample(spec, index, model, gl, rgb)
                write_sample(Path(tmp), index, record, files)
        else:
            with SampleWriter(Path(tmp)) as writer:
                for index in range(offset, offset + count):
                    writer.write_or_fail(index, lambda: begin_sample(spec, index, model, gl, rgb))
            if writer.errors:
                raise RuntimeError(f"samples failed: {writer.errors}")
        return count / (time.perf_counter() - start)


def main() -> int:
    from handforge.render.blender import ANTIALIASING

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4, help="samples per method, size, engine and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cycles-samples", type=int, default=4, help="Cycles samples per pixel")
    parser.add_argument("--antialiasing", default="8", choices=ANTIALIASING,
                        help="Workbench's anti-aliasing (the spec's render.antialiasing)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()

    from handforge.export.spec import parse_spec
    from handforge.render.blender import BlenderRGB
    from handforge.render.gl import renderer

    print(f"GL ({renderer().renderer_name}): mesh image + masks + depth, 512²: "
          f"{gl_mesh_image_ms():.1f} ms (median of 50)")
    for size in args.sizes:
        spec = parse_spec({"samples": 1000, "width": size, "height": size, "render": {"engine": "none"}})
        print(f"GL-only export (labels, mesh, masks, skeleton, depth, normals, files) {size}²: "
              f"{rate(spec, None, 3 * args.samples, 0):.1f} samples/s")
    for engine in ("workbench", "cycles"):
        settings = {"samples": args.cycles_samples, "antialiasing": args.antialiasing}
        with BlenderRGB(engine, **settings) as ours, BlenderRGB(engine, **settings, rebuild=True) as naive:
            for size in args.sizes:
                spec = parse_spec({"samples": 1000, "width": size, "height": size,
                                   "render": {"engine": engine, **settings}})
                rate(spec, ours, 1, 999)  # warm-up: the first render compiles shaders / builds the scene
                rate(spec, naive, 1, 999, naive=True)
                results = {"ours": [], "naive": []}
                for r in range(args.rounds):
                    offset = r * args.samples
                    sides = [("ours", ours, False), ("naive", naive, True)]
                    with tempfile.TemporaryDirectory() as tmp:
                        for name, worker, plain in sides if r % 2 == 0 else sides[::-1]:  # (who goes first alternates)
                            results[name].append(rate(spec, worker, args.samples, offset, naive=plain,
                                                      out=Path(tmp) / name))
                        same_files(Path(tmp) / "ours", Path(tmp) / "naive")
                (a_best, a), (b_best, b) = ((max(results[k]), statistics.median(results[k])) for k in ("ours", "naive"))
                label = engine + (f" ({args.cycles_samples} spp)" if engine == "cycles"
                                  else f" (AA {args.antialiasing})")
                print(f"{label:18s} {size}², fastest round / median of {args.rounds}: ours {a_best:.2f} / {a:.2f} "
                      f"samples/s ({60 * a:.0f}/min), naive {b_best:.2f} / {b:.2f} samples/s -> {a_best / b_best:.2f}× / "
                      f"{a / b:.2f}× (same files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
