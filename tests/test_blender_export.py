"""Labelled export with Blender RGB: one bpy worker for the module; its renders against the GL path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from handforge.export.run import _hands, export, with_forearms
from handforge.export.sampler import sample_camera, sample_look, sample_scene
from handforge.export.spec import parse_spec
from handforge.hands import load_hand_model
from handforge.render.blender import BlenderRGB
from handforge.render.gl import renderer

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SPEC = {"seed": 2, "samples": 3, "width": 128, "height": 96, "render": {"engine": "workbench"},
        "camera": {"distance": [0.3, 0.45]}}


@pytest.fixture(scope="module")
def blender():
    with BlenderRGB("workbench") as rgb:
        yield rgb


def test_blender_render_and_gl_masks_overlap(blender):
    spec = parse_spec(SPEC)
    model, gl = load_hand_model("open"), renderer()
    for index in range(spec.samples):
        scene = sample_scene(spec, index)
        hands = _hands(model, scene)
        camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
        sample_look(spec, scene)
        rgba = blender(scene, camera, hands)
        images = gl.render(camera, [(h["vertices"], h["faces"]) for h in hands.values()])
        theirs, ours = rgba[..., 3] > 0.5, images.instance > 0
        iou = (theirs & ours).sum() / (theirs | ours).sum()
        assert ours.sum() > 200 and iou > 0.9, (index, iou)


def test_the_forearm_is_drawn_in_rgb_and_stays_out_of_the_hand_masks(blender):
    spec = parse_spec({**SPEC, "camera": {"distance": [0.5, 0.6]}})
    model, gl = load_hand_model("open"), renderer()
    scene = sample_scene(spec, 0)
    hands = _hands(model, scene)
    camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
    sample_look(spec, scene)
    bare = blender(scene, camera, with_forearms(hands, "none"))[..., 3] > 0.5
    arm = blender(scene, camera, with_forearms(hands, "sleeve"))[..., 3] > 0.5  # a new topology: rebuilt
    again = blender(scene, camera, with_forearms(hands, "none"))[..., 3] > 0.5  # and back
    hand = gl.render(camera, [(h["vertices"], h["faces"]) for h in hands.values()]).instance > 0
    assert np.array_equal(bare, again)
    assert arm.sum() > bare.sum() + 100, (arm.sum(), bare.sum())  # the arms add pixels...
    assert (arm & ~hand).sum() > (bare & ~hand).sum() + 100       # ...outside the hands' masks


def test_the_rgbs_forearms_hide_what_they_cover_in_the_labels(blender, tmp_path):
    """Egocentric views, where the forearms cross the hands: with forearms in the RGB, each hand's mask
    is its mask without them less what a forearm covers, and a keypoint under a forearm is not visible."""
    ego = {**SPEC, "samples": 4, "camera": {"preset": "egocentric"}}
    for forearm in ("skin", "none"):
        export(parse_spec({**ego, "render": {"engine": "workbench", "forearm": forearm}}), tmp_path / forearm,
               progress=False, rgb=blender)
    covered = hidden = 0
    for index in range(4):
        folder = {f: tmp_path / f / "samples" / f"{index:06d}" for f in ("skin", "none")}
        labels = {f: json.loads((folder[f] / "labels.json").read_text()) for f in folder}
        for side in labels["none"]["hands"]:
            with_arm, bare = (np.asarray(Image.open(folder[f] / f"mask_{side}.png")) > 127 for f in ("skin", "none"))
            assert not (with_arm & ~bare).any()  # never more than the bare hand
            covered += (bare & ~with_arm).sum()
            seen = {f: np.array(labels[f]["hands"][side]["visible"], bool) for f in folder}
            assert not (seen["skin"] & ~seen["none"]).any()
            hidden += (seen["none"] & ~seen["skin"]).sum()
    assert covered > 100 and hidden > 0, (covered, hidden)


def test_export_writes_composited_rgb_with_labels(blender, tmp_path):
    summary = export(parse_spec(SPEC), tmp_path, command="test", progress=False, rgb=blender)
    assert summary["written"] == 3
    for folder in sorted((tmp_path / "samples").iterdir()):
        labels = json.loads((folder / "labels.json").read_text())
        rgb = np.asarray(Image.open(folder / labels["files"]["rgb"]))
        assert rgb.shape == (96, 128, 3)
        hands = np.zeros((96, 128), bool)
        for side in labels["hands"]:
            hands |= np.asarray(Image.open(folder / f"mask_{side}.png")) > 127
        background = rgb[~hands].reshape(-1, 3).astype(float)
        # The background is most of where the hands are not (the forearms take some of it: the median)
        if labels["background"]["kind"] == "solid":
            assert np.abs(np.median(background, 0) - np.array(labels["background"]["colour"]) * 255).max() < 3
        assert np.abs(rgb[hands].astype(float).mean(0) - np.median(background, 0)).max() > 5  # hands drawn on it
    assert (tmp_path / "contact_sheet.png").is_file() and (tmp_path / "coco.json").is_file()


def test_a_blender_process_that_died_is_started_again_and_the_render_done(blender):
    """Killed (out of memory, kill -9) before a render or during one, the Blender process is started
    again and the render done there: before 2026-12-02 each later sample of that export worker failed
    with BrokenPipeError, and the worker was never replaced."""
    import os
    import signal

    spec = parse_spec(SPEC)
    model = load_hand_model("open")
    scene = sample_scene(spec, 0)
    hands = _hands(model, scene)
    camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
    sample_look(spec, scene)
    first = blender(scene, camera, hands)
    for _ in range(2):  # reaped before the next render, then killed without waiting (found mid-render or before)
        old = blender._proc.pid
        os.kill(old, signal.SIGKILL)
        if _ == 0:
            blender._proc.wait()
        again = blender(scene, camera, hands)
        assert blender._proc.pid != old and blender._proc.poll() is None
        np.testing.assert_allclose(again, first, atol=1 / 255)


def test_a_render_submitted_and_never_collected_does_not_answer_the_next_one(blender):
    """The export sends Blender its request before the GL pass and collects the image after it: a
    sample whose labels failed in between leaves a reply unread, which the next submit drops rather
    than hand it to the next sample."""
    spec = parse_spec(SPEC)
    model = load_hand_model("open")
    shots = []
    for index in (0, 1):
        scene = sample_scene(spec, index)
        hands = _hands(model, scene)
        camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
        sample_look(spec, scene)
        shots.append((scene, camera, hands))
    second = blender(*shots[1])
    dropped = blender.submit_sample(*shots[0])  # never collected
    collect = blender.submit_sample(*shots[1])
    with pytest.raises(RuntimeError, match="dropped by a later submit"):
        dropped()  # (it must not take the second render's reply)
    np.testing.assert_array_equal(collect(), second)
    with pytest.raises(RuntimeError, match="collected already"):
        collect()
