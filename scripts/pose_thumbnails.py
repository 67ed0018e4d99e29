#!/usr/bin/env python3
"""Render the pose browser's thumbnails: every pose of the pose library on the open right hand.

    .venv/bin/python scripts/pose_thumbnails.py [--out blender_addon/thumbnails] [--size 96]

(the default --out is the shipped thumbnails' folder: they are overwritten)

One PNG per pose (``<name>.png``, RGBA, transparent background), drawn by the backend's GL path
(``handforge.render.gl``: flat-shaded mesh image and instance mask) from one fixed view of the
palm, framed on each pose. The add-on ships them (``build_addon.py``) and shows them with
``bpy.utils.previews``. Run it again after the library or the open hand changes; a test checks
that every library pose has its thumbnail.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# Towards the viewer from the hand: in front of the palm (-Y), a little towards the thumb (+Z)
# and the fingertips (-X), so that curled fingers and the thumb both show.
VIEW_DIRECTION = np.array([-0.35, -1.0, 0.45])
FILL = 0.9  # share of the image the hand's larger extent spans


def framed_camera(vertices: np.ndarray, size: int):
    from handforge.render.camera import Camera, look_at

    centre = 0.5 * (vertices.min(0) + vertices.max(0))
    eye = centre + 0.5 * VIEW_DIRECTION / np.linalg.norm(VIEW_DIRECTION)
    R, t = look_at(eye, centre, up=(-1.0, 0.0, 0.0))  # fingers up in the image
    cam = vertices @ R.T + t
    xy = cam[:, :2] / cam[:, 2:3]
    lo, hi = xy.min(0), xy.max(0)
    focal = FILL * size / float((hi - lo).max())
    principal = tuple(size / 2 - focal * (lo + hi) / 2)
    return Camera.from_fov(R, t, size, size, focal, principal=principal)


def render_thumbnails(out: Path, size: int) -> list[Path]:
    import torch
    from PIL import Image

    from handforge.hands import load_hand_model
    from handforge.render.gl import renderer
    from handforge_shared import pose_library

    model = load_hand_model("open")
    faces = model.faces("right").cpu().numpy()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in pose_library.names():
        with torch.no_grad():
            verts = model.forward_pose("right", pose_library.get(name, "right")).vertices[0].cpu().numpy()
        verts = verts.astype(np.float64)
        images = renderer().render(framed_camera(verts, size), [(verts, faces)])
        alpha = np.where(images.instance > 0, 255, 0).astype(np.uint8)
        path = out / f"{name}.png"
        Image.fromarray(np.dstack([images.mesh, alpha]), "RGBA").save(path, optimize=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "blender_addon" / "thumbnails",
                        help="folder for the PNGs (default: the add-on's thumbnails folder)")
    parser.add_argument("--size", type=int, default=96, help="width and height in pixels (default 96)")
    args = parser.parse_args(argv)
    if not 16 <= args.size <= 512:
        parser.error(f"--size must be between 16 and 512 pixels, got {args.size}")
    written = render_thumbnails(args.out, args.size)
    total = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} thumbnails ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
