"""Quick shaded previews of hand meshes with matplotlib, for the corpus summary's contact sheet.

An orthographic painter's-algorithm render: faces sorted back to front, flat Lambert shading.
Good enough to recognise a pose at thumbnail size, and runs under the headless Agg backend: the
corpus command's figures need neither a GPU nor the EGL libraries that ``handforge.render.gl``
(every image of a dataset) needs.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

HAND_COLOURS = {"left": (0.85, 0.55, 0.45), "right": (0.45, 0.6, 0.85)}


def scene_rotation(azimuth_deg: float = 0.0, elevation_deg: float = 0.0) -> np.ndarray:
    """Rotation taking scene coordinates (x right, y up, z towards the person's body) to view
    coordinates; the default is the person's own view of their hands (from behind and above when
    ``elevation_deg`` > 0), azimuth turns the viewer about the vertical."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    ry = np.array([[np.cos(az), 0, np.sin(az)], [0, 1, 0], [-np.sin(az), 0, np.cos(az)]])
    rx = np.array([[1, 0, 0], [0, np.cos(el), -np.sin(el)], [0, np.sin(el), np.cos(el)]])
    return rx @ ry


def draw_hands(ax, meshes: Sequence[tuple[np.ndarray, np.ndarray, tuple[float, float, float]]],
               rotation: np.ndarray | None = None, title: str | None = None) -> None:
    """Draw (vertices (V,3), faces (F,3), rgb) meshes on a 2-D matplotlib Axes."""
    from matplotlib.collections import PolyCollection

    rot = scene_rotation() if rotation is None else rotation
    polys, depths, colours = [], [], []
    light = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])
    for verts, faces, rgb in meshes:
        v = np.asarray(verts, dtype=np.float64) @ rot.T
        tri = v[np.asarray(faces)]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal /= np.linalg.norm(normal, axis=1, keepdims=True).clip(1e-12)
        shade = 0.35 + 0.65 * np.abs(normal @ light)
        polys.append(tri[:, :, :2])
        depths.append(tri[:, :, 2].mean(1))
        colours.append(np.clip(np.outer(shade, rgb), 0, 1))
    tri2d = np.concatenate(polys)
    order = np.argsort(np.concatenate(depths))
    ax.add_collection(PolyCollection(tri2d[order], facecolors=np.concatenate(colours)[order],
                                     edgecolors="none", antialiaseds=False))
    lo, hi = tri2d.reshape(-1, 2).min(0), tri2d.reshape(-1, 2).max(0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2 * 1.05 + 1e-6
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=7)
