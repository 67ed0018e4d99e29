"""The demo (the README's main job) through the real command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import trimesh

from handforge.hands import load_hand_model
from handforge_shared.poses import HandPose
from handforge_shared.skeleton import KEYPOINT_NAMES


def test_demo_writes_meshes_and_labels_that_agree(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "handforge", "demo", "--out", str(out), "--no-blender"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout
    assert "wrote" not in proc.stderr, proc.stderr  # the meshes are in the table: not logged too (unless -v)
    assert "motion: two keyed poses" in proc.stdout and (out / "inbetween.npz").is_file()  # tests/test_demo_motion.py
    # no weights in the tests' config: one line says what to configure (the generate path: test_export_generated)
    assert "image generation: skipped (no weights configured): set image.sd_model (HANDFORGE_SD_MODEL)" in proc.stdout
    report = json.loads((out / "demo.json").read_text())
    assert report["keypoint_names"] == list(KEYPOINT_NAMES)
    assert set(report["scenes"]) == {"flat", "fist", "point", "pinch", "clasp"}
    model = load_hand_model("open")
    for name, scene in report["scenes"].items():
        glb = trimesh.load(out / scene["mesh"])
        assert len(glb.geometry) == 2, name
        for side, hand in scene["hands"].items():
            pose = HandPose.from_dict(hand["params"])
            expected = model.forward_pose(side, pose)
            np.testing.assert_allclose(np.array(hand["keypoints"]), expected.keypoints[0].detach().numpy(), atol=2e-6)
            mesh = glb.geometry[f"{side}_hand"]
            np.testing.assert_allclose(mesh.vertices, expected.vertices[0].detach().numpy(), atol=1e-5)
    tips = {n: np.array(report["scenes"][n]["hands"]["right"]["keypoints"]) for n in ("flat", "fist")}
    wrist, middle_tip = KEYPOINT_NAMES.index("wrist"), KEYPOINT_NAMES.index("middle4")
    assert (np.linalg.norm(tips["fist"][middle_tip] - tips["fist"][wrist])
            < np.linalg.norm(tips["flat"][middle_tip] - tips["flat"][wrist]) - 0.05)
    assert not list(out.glob(".*.tmp")), "no partial files left"
    _check_labelled_export(out / "labelled", proc.stdout)
    _check_interaction(out / "interaction.npz", proc.stdout)
    # its folder again, its labelled/ made by an older demo (another spec: a new HandForge, a re-baked open
    # hand): made again (before: refused, "choose a new or an empty folder")
    from handforge.export.folder import SPEC_RECORD

    record = json.loads((out / "labelled" / SPEC_RECORD).read_text())
    (out / "labelled" / SPEC_RECORD).write_text(json.dumps({**record, "seed": record["seed"] + 1}))
    # an earlier demo's Blender part and image, which this rerun does not make: said (they stayed unsaid, beside
    # "image generation: skipped")
    (out / "blender").mkdir()
    (out / "generated").mkdir()
    rerun = subprocess.run([sys.executable, "-m", "handforge", "demo", "--out", str(out), "--no-blender"],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and "made again" in rerun.stdout, rerun.stderr
    assert f"{out / 'generated'} holds an earlier demo's image, not made by this run" in rerun.stdout, rerun.stdout
    assert f"{out / 'blender'} holds an earlier demo's, not made by this run" in rerun.stdout, rerun.stdout
    shutil.rmtree(out / "blender")
    shutil.rmtree(out / "generated")
    assert json.loads((out / "labelled" / SPEC_RECORD).read_text()) == record
    # the same, with a file of the user's in labelled/: kept, and said (before: deleted with the old export)
    (out / "labelled" / SPEC_RECORD).write_text(json.dumps({**record, "seed": record["seed"] + 1}))
    (out / "labelled" / "notes").mkdir()
    (out / "labelled" / "notes" / "keep.txt").write_text("mine")
    kept = subprocess.run([sys.executable, "-m", "handforge", "demo", "--out", str(out), "--no-blender"],
                          capture_output=True, text=True, timeout=600)
    assert kept.returncode == 2 and "files not of it (notes): move them out" in kept.stderr, kept.stderr
    assert (out / "labelled" / "notes" / "keep.txt").read_text() == "mine"
    shutil.rmtree(out / "labelled" / "notes")
    # a second demo into a folder a demo is writing: one line, nothing written (before: a traceback after it
    # had written its meshes beside the first one's)
    from handforge_shared.files import folder_lock

    with folder_lock(out):
        busy = subprocess.run([sys.executable, "-m", "handforge", "demo", "--out", str(out), "--no-blender"],
                              capture_output=True, text=True, timeout=600)
    assert busy.returncode == 2 and busy.stderr.strip() == (f"handforge demo: another handforge command is writing into "
                                                           f"{out}: wait for it, or choose another --out"), busy.stderr
    # its folder again, its labelled/ replaced by a file: one line (before: a FolderTaken traceback)
    shutil.rmtree(out / "labelled")
    (out / "labelled").write_text("x")
    again = subprocess.run([sys.executable, "-m", "handforge", "demo", "--out", str(out), "--no-blender"],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "Traceback" not in again.stderr, again.stderr
    assert again.stderr.splitlines()[-1].startswith(f"handforge demo: cannot write into {out / 'labelled'}"), \
        again.stderr


def _check_interaction(path, stdout):
    """The other hand sampled around a posed hand: the anchor kept, candidates best first, reported."""
    from handforge.engines.interaction.demo import INTERACTION_ANCHOR, INTERACTION_COUNT
    from handforge_shared import pose_library

    found = np.load(path)
    anchor = pose_library.get(INTERACTION_ANCHOR, side="left")
    np.testing.assert_array_equal(found["left.hand_pose"][0], np.asarray(anchor.hand_pose, np.float32))
    score = found["score"]
    assert score.shape == (INTERACTION_COUNT,) and np.all(np.diff(score) <= 0) and score[0] > 0
    assert f"interaction: {INTERACTION_COUNT} candidates" in stdout and f"best score {score[0]:.3f}" in stdout


def _check_labelled_export(folder, stdout):
    """The demo's small labelled set: COCO that pycocotools reads, labels that agree with their own
    camera, and a contact sheet with the keypoints drawn over the images."""
    from PIL import Image
    from pycocotools.coco import COCO

    from handforge.demo import LABELLED_SPEC
    from handforge.render.camera import Camera
    from handforge.render.overlay import FINGER_COLOURS

    assert "contact_sheet.png" in stdout
    coco = COCO(str(folder / "coco.json"))
    assert len(coco.getImgIds()) == LABELLED_SPEC["samples"] and len(coco.getAnnIds()) >= LABELLED_SPEC["samples"]
    for path in sorted(folder.glob("samples/*/labels.json")):
        sample = json.loads(path.read_text())
        camera = Camera.from_dict(sample["camera"])
        for hand in sample["hands"].values():
            uv, _ = camera.project(np.array(hand["keypoints_world"]))
            np.testing.assert_allclose(uv, np.array(hand["keypoints_2d"]), atol=1e-6)
    sheet = np.asarray(Image.open(folder / "contact_sheet.png").convert("RGB")).astype(int)
    drawn = {finger: int((np.abs(sheet - colour).sum(-1) < 6).sum()) for finger, colour in FINGER_COLOURS.items()
             if finger != "wrist"}
    assert all(count > 20 for count in drawn.values()), drawn  # every finger's bones drawn over the images


def test_the_meshes_written_are_logged_only_at_debug(tmp_path, caplog):
    """`handforge demo` printed five "INFO handforge.demo: wrote .../flat.glb" lines above the table that
    names the same files; `handforge -v demo` still logs them."""
    import logging

    from handforge.demo import run_demo

    with caplog.at_level(logging.DEBUG, logger="handforge.demo"):
        report = run_demo(tmp_path / "demo")
    wrote = [(r.levelno, r.getMessage()) for r in caplog.records if r.getMessage().startswith("wrote ")]
    assert wrote == [(logging.DEBUG, f"wrote {tmp_path / 'demo' / s['mesh']}") for s in report["scenes"].values()]


def test_a_folder_of_other_files_is_refused_before_anything_is_written(tmp_path):
    # before: the demo replaced a demo.json or fist.glb of the user's without a word, and a labelled/ holding
    # other files ended in a FolderTaken traceback after the meshes were written
    cases = {"notes": {"demo.json": "my notes", "fist.glb": "mine"}, "photos": {"labelled/photo.jpg": "x"}}
    for name, files in cases.items():
        out = tmp_path / name
        for path, text in files.items():
            (out / path).parent.mkdir(parents=True, exist_ok=True)
            (out / path).write_text(text)
        proc = subprocess.run([sys.executable, "-m", "handforge", "demo", "--out", str(out), "--no-blender"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == f"handforge demo: {out} holds other files and no earlier demo: choose a new " \
                                      "or an empty folder (the demo writes files of fixed names there)"
        assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(files)
        assert all((out / path).read_text() == text for path, text in files.items())


def test_the_demo_prints_the_exact_penetration_depth_as_eval_does():
    """The clasp's depth (and the interaction step's) is ``penetration_metrics``' max_depth, what `handforge eval`
    reports; before, the demo printed the resolver loss's nearest-vertex estimate: 1.9 mm for an exact 1.45 mm."""
    import torch

    from handforge.demo import clasp
    from handforge.evaluation.penetration import penetration_depths, penetration_metrics

    model = load_hand_model("open")
    scene = clasp(model)
    hands = scene.pose.hands
    with torch.no_grad():
        verts = {side: model.forward_pose(side, hands[side]).vertices for side in hands}
    exact = float(penetration_metrics(verts["left"], verts["right"], model.faces("left"),
                                      model.faces("right")).max_depth[0])
    estimate = float(max(d.max() for d in penetration_depths(verts["left"], verts["right"], model.faces("left"),
                                                             model.faces("right"))))
    assert f"{exact * 1000:.1f}" != f"{estimate * 1000:.1f}"  # the case tells the two apart
    assert f"deepest vertex {exact * 1000:.1f} mm, exact" in scene.description, scene.description
    # the interaction step's line measures its best candidate the same way (those hands as the candidate)
    from handforge.engines.interaction.demo import best_depth
    from handforge.engines.interaction.pipeline import Candidates

    found = Candidates(hands={side: {f: np.asarray(getattr(hands[side], f), np.float32)[None]
                                     for f in ("global_orient", "hand_pose", "betas", "transl")} for side in hands},
                       score=np.ones(1), max_depth=np.array([estimate]), gap=np.zeros(1), limit=np.zeros(1),
                       anchor_side="left")
    assert best_depth(model, found) == pytest.approx(exact, abs=1e-6)
