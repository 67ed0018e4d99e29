"""The demo's Blender part: two hands posed with presets, keyed, saved as a .blend and rendered.

Blender runs as the ``bpy`` module in a subprocess (its state is process-global, and whatever
happens there cannot take the demo down), with a temporary Blender user folder into which the
HandForge extension is installed like a user would. The keypoints read from the Blender rigs are
checked against the backend's hand model for the parameters the add-on reads from the rigs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handforge.hands import load_hand_model
from handforge_shared.poses import MotionClip

PRESETS = ("flat", "fist", "point", "pinch", "ok", "victory")
RENDERED = ("fist", "point", "ok", "victory")
FRAME_STEP = 12
REPO = Path(__file__).resolve().parents[2]  # the checkout: backend/handforge/this file


class BlenderDemoError(RuntimeError):
    pass


def unavailable_reason() -> str:
    """'' when the Blender part can run here, else why not."""
    if importlib.util.find_spec("bpy") is None:
        from handforge.render.blender import BLENDER_PIN

        return f"the bpy module is not installed (pip install {BLENDER_PIN}, on Python 3.11)"
    if not (REPO / "build_addon.py").is_file():
        return "the add-on is built from a HandForge checkout (build_addon.py not found)"
    return ""


def build_addon_zip(work: Path) -> Path:
    """The extension zip, without wheels: the demo's Blender (bpy) already has pyzmq."""
    zip_path = work / "handforge.zip"
    proc = subprocess.run([sys.executable, str(REPO / "build_addon.py"), "--no-wheels", "--out", str(zip_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BlenderDemoError(f"building the add-on failed: {proc.stderr.strip()}")
    return zip_path


def backend_keypoints(model, clip: MotionClip, side: str, frame_index: int) -> np.ndarray:
    with torch.no_grad():
        return model.forward_pose(side, clip.hands[side][frame_index]).keypoints[0].double().numpy()


def run_blender_demo(out_dir: str | os.PathLike, pasted: dict[str, dict[str, Any]] | None = None, width: int = 640,
                     height: int = 400, timeout: float = 300.0) -> dict[str, Any]:
    """Run the Blender session; returns its report with the keypoint check against the backend.

    ``pasted``: extra two-hand poses keyed (and rendered) after the presets, name → {side: pose
    parameters as ``HandPose.to_dict()``}, e.g. the demo's interaction."""
    out = Path(out_dir).resolve()  # Blender runs in a temporary folder: a relative path would land there
    with tempfile.TemporaryDirectory(prefix="handforge-blender-demo-") as tmp:
        work = Path(tmp)
        pasted = dict(pasted or {})
        spec = {"zip": str(build_addon_zip(work)), "out": str(out), "presets": list(PRESETS), "pasted": pasted,
                "render": list(RENDERED) + list(pasted),
                "frame_step": FRAME_STEP, "width": width, "height": height}
        (work / "spec.json").write_text(json.dumps(spec))
        env = {**os.environ, "BLENDER_USER_RESOURCES": str(work / "blender_user")}
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "handforge.blender_demo_scene", str(work / "spec.json")],
                                  capture_output=True, text=True, env=env, timeout=timeout, cwd=work)
        except subprocess.TimeoutExpired:
            raise BlenderDemoError(f"the Blender session took longer than {timeout:g} s and was stopped") from None
        if proc.returncode != 0 or not (out / "blender.json").is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            raise BlenderDemoError(f"the Blender session failed (exit {proc.returncode}):\n{tail}")
    report = json.loads((out / "blender.json").read_text())
    report["seconds"] = time.perf_counter() - start
    model = load_hand_model("open")
    clip = MotionClip.load(out / report["poses"])  # frame 1 is clip frame 0
    worst = 0.0
    for item in report["keyed"]:
        for side, points in item["keypoints"].items():
            expected = backend_keypoints(model, clip, side, item["frame"] - 1)
            worst = max(worst, float(np.abs(np.array(points) - expected).max()))
    report["max_keypoint_deviation_mm"] = worst * 1000.0
    (out / "blender.json").write_text(json.dumps(report, indent=1) + "\n")
    return report
