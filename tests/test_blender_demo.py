"""The demo's Blender part: hands added, posed with presets and keyed through the add-on in a bpy
subprocess, saved as a .blend and rendered with Workbench; Blender's keypoints match the backend's."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from handforge.blender_demo import PRESETS, RENDERED, run_blender_demo, unavailable_reason
from handforge_shared.poses import HandPose

pytestmark = [pytest.mark.blender, pytest.mark.slow,
              pytest.mark.skipif(bool(unavailable_reason()), reason=unavailable_reason() or "available")]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("blender_demo")
    rng = np.random.default_rng(2)
    pasted = {"random_pair": {side: HandPose(global_orient=rng.normal(0, 0.4, 3), hand_pose=rng.normal(0, 0.3, 45),
                                             betas=np.zeros(10), transl=rng.uniform(-0.1, 0.1, 3)).to_dict()
                              for side in ("left", "right")}}
    cwd = os.getcwd()
    os.chdir(out.parent)  # a relative output folder, as `handforge demo` passes by default
    try:
        return out, run_blender_demo(out.name, pasted=pasted, width=320, height=200)
    finally:
        os.chdir(cwd)


def test_every_preset_is_keyed_on_both_hands(demo):
    out, report = demo
    assert [k["preset"] for k in report["keyed"]] == list(PRESETS) + ["random_pair"]
    frames = [k["frame"] for k in report["keyed"]]
    assert frames == sorted(set(frames))
    assert all(set(k["keypoints"]) == {"left", "right"} for k in report["keyed"])
    assert json.loads((out / "blender.json").read_text())["keyed"] == report["keyed"]


def test_blender_keypoints_match_the_backend(demo):
    _, report = demo
    assert report["max_keypoint_deviation_mm"] < 0.1


def test_blend_file_and_renders_are_written(demo):
    out, report = demo
    blend = out / report["blend"]
    assert blend.is_file() and blend.stat().st_size > 100_000
    renders = [k["render"] for k in report["keyed"] if "render" in k]
    assert len(renders) == len(RENDERED) + 1
    assert not list(out.glob("*.blend1"))
    for name in renders[:-1]:  # the presets: hands side by side
        pixels = np.asarray(Image.open(out / name).convert("RGB"), dtype=np.float64)
        assert pixels.shape == (200, 320, 3)
        background = np.median(pixels.reshape(-1, 3), axis=0)
        hand_pixels = np.abs(pixels - background).sum(-1) > 30
        assert 0.03 < hand_pixels.mean() < 0.6, (name, hand_pixels.mean())  # both hands in view, not filling it
        # one hand on each side of the picture
        assert hand_pixels[:, :160].mean() > 0.01 and hand_pixels[:, 160:].mean() > 0.01
