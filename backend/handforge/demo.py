"""The demo (main job): two open hands in named poses, written as glTF meshes + a JSON of labels,
and a small labelled export.

Needs no licensed file and no weights. Each scene is one ``TwoHandPose``; we write
``<scene>.glb`` (both hands, coloured, model frame) and ``demo.json`` with, per scene and hand,
the pose parameters and the 21 keypoints (InterHand2.6M order, metres). ``export_labelled`` writes
a few labelled samples (GL images only, a few seconds) with ``handforge.export`` and its contact
sheet, the keypoints drawn over the mesh images.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh

from handforge.export.folder import CONTACT_SHEET
from handforge.hands import HandModel, load_hand_model
from handforge_shared import pose_library
from handforge_shared.files import write_atomic
from handforge_shared.poses import HandPose, TwoHandPose, side_by_side
from handforge_shared.anatomy import anatomical_to_hand_pose
from handforge_shared.skeleton import KEYPOINT_NAMES, MODEL_FRAME_DESCRIPTION, SIDES

log = logging.getLogger(__name__)

SINGLE_HAND_SCENES = ("flat", "fist", "point", "pinch")
# The labelled set: pairs of these poses, random cameras; GL only (no Blender), so a few seconds.
LABELLED_SPEC = {"seed": 0, "samples": 8, "width": 256, "height": 256, "render": {"engine": "none"},
                 "outputs": ["mesh", "masks", "skeleton", "depth"], "camera": {"distance": [0.45, 0.7]},
                 "poses": {"names": [*SINGLE_HAND_SCENES, "ok", "victory"]}}
CLASP_TEMPLATE = "interlocked"
COLOURS = {"left": (0.87, 0.63, 0.52, 1.0), "right": (0.80, 0.55, 0.45, 1.0)}


@dataclass
class DemoScene:
    name: str
    pose: TwoHandPose
    description: str


def clasp(model: HandModel, seed: int = 0) -> DemoScene:
    """Both hands clasped with interlocked fingers: a corpus template, penetration resolved."""
    from handforge.corpus.resolver import Instance, Resolver
    from handforge.corpus.templates import draw, get_template

    template = get_template(CLASP_TEMPLATE)
    resolver = Resolver(model)
    instance = Instance(template, draw(template, np.random.default_rng(seed)),
                        betas={side: np.zeros(10) for side in SIDES})
    resolved = resolver.resolve([instance])[0]
    hands = {
        side: HandPose(global_orient=resolved.global_orient[side],
                       hand_pose=anatomical_to_hand_pose(resolved.angles[side], resolver.frames[side], side),
                       betas=resolved.betas[side], transl=resolved.transl[side])
        for side in SIDES
    }
    # The exact depth, as `handforge eval` reports it: the resolver's own ``max_depth`` is its loss's
    # nearest-vertex estimate (1.9 mm here against the exact 1.4 mm).
    depth_mm = clasp_depth(model, hands) * 1000
    return DemoScene("clasp", TwoHandPose(**hands),
                     f"{template.description} (penetration resolved: deepest vertex {depth_mm:.1f} mm, exact)")


def clasp_depth(model: HandModel, hands: dict[str, HandPose]) -> float:
    """m, how deep the deepest vertex of either hand lies inside the other (``penetration_metrics``' max_depth)."""
    from handforge.evaluation.penetration import max_depths

    with torch.no_grad():
        verts = {side: model.forward_pose(side, hands[side]).vertices for side in SIDES}
    return float(max_depths(verts["left"], verts["right"], model.faces("left"), model.faces("right"))[0])


def scenes(model: HandModel) -> list[DemoScene]:
    result = [DemoScene(name, side_by_side(pose_library.get(name, side="right")), pose_library.describe(name))
              for name in SINGLE_HAND_SCENES]
    result.append(clasp(model))
    return result


def hand_mesh(model: HandModel, side: str, pose: HandPose) -> tuple[trimesh.Trimesh, np.ndarray]:
    with torch.no_grad():
        out = model.forward_pose(side, pose)
    mesh = trimesh.Trimesh(out.vertices[0].numpy(), model.faces(side).numpy(), process=False)
    mesh.visual.face_colors = np.array(COLOURS[side]) * 255
    return mesh, out.keypoints[0].numpy()


MARK = ".handforge-demo"  # written first into a demo's folder: a rerun may refresh it, even one cut short


def check_folder(out_dir: str | os.PathLike) -> None:
    """``out_dir`` new, empty (hidden files aside) or an earlier demo's (its mark, or the ``demo.json`` of a
    demo from before the mark), which a rerun refreshes; else ``ValueError``: the demo would have replaced
    files of the same names (fist.glb, demo.json, labelled/, …) without a word."""
    out = Path(out_dir)
    if not out.is_dir() or not any(not entry.name.startswith(".") for entry in out.iterdir()):
        return
    if (out / MARK).is_file():
        return
    try:
        earlier = json.loads((out / "demo.json").read_text(encoding="utf-8"))
        if isinstance(earlier, dict) and {"scenes", "keypoint_names"} <= set(earlier):
            return
    except (OSError, ValueError):
        pass
    raise ValueError(f"{out} holds other files and no earlier demo: choose a new or an empty folder (the demo "
                     "writes files of fixed names there)")


def run_demo(out_dir: str | os.PathLike) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # (atomic, and named in a failure: a full disk's write_text said "No space left on device" of no file)
    write_atomic(out / MARK, "a HandForge demo's folder: handforge demo --out may write here again\n")
    model = load_hand_model("open")
    report: dict[str, Any] = {
        "hand_model": "open",
        "units": "m",
        "frame": MODEL_FRAME_DESCRIPTION,
        "keypoint_names": list(KEYPOINT_NAMES),
        "scenes": {},
    }
    for scene in scenes(model):
        gltf = trimesh.Scene()
        hands = {}
        for side, pose in scene.pose.hands.items():
            mesh, keypoints = hand_mesh(model, side, pose)
            gltf.add_geometry(mesh, node_name=f"{side}_hand", geom_name=f"{side}_hand")
            hands[side] = {"params": pose.to_dict(), "keypoints": keypoints.round(6).tolist()}
        path = out / f"{scene.name}.glb"
        write_atomic(path, gltf.export(file_type="glb"))
        report["scenes"][scene.name] = {"description": scene.description, "mesh": path.name, "hands": hands}
        log.debug("wrote %s", path)  # (the command prints them in its table; -v logs them too)
    json_path = out / "demo.json"
    write_atomic(json_path, (json.dumps(report, indent=1) + "\n").encode())
    report["json"] = str(json_path)
    return report


def export_labelled(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The demo's labelled set (``LABELLED_SPEC``) in ``out_dir``: samples, COCO and InterHand2.6M-style
    files, the dataset card and ``contact_sheet.png``. ``{"unavailable": why}`` when there is no GL here."""
    from handforge.export.run import export
    from handforge.export.spec import parse_spec
    from handforge.render.gl import GLUnavailable

    out = Path(out_dir)
    try:
        summary = export(parse_spec(LABELLED_SPEC), out, command="handforge demo", progress=False)
    except GLUnavailable as exc:
        return {"unavailable": str(exc)}
    return {**summary, "folder": str(out), "contact_sheet": str(out / CONTACT_SHEET)}
