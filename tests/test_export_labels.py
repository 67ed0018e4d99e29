"""Labelled export without Blender (GL images and labels): formats, visibility, resume, determinism."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from handforge.datasets.interhand_files import read_cameras, read_mano_annotations
from handforge.export.run import export
from handforge.export.spec import CAMERA_PRESETS, SpecError, load_spec, parse_spec
from handforge.export.folder import finished_indices
from handforge.export.interhand_format import interhand_paths
from handforge.hands import load_hand_model
from tests.support.images import png_claiming

SPEC = {"seed": 5, "samples": 6, "width": 160, "height": 120, "render": {"engine": "none"},
        "camera": {"distance": [0.3, 0.5]}}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "full"
    export(parse_spec(SPEC), out, command="test", progress=False)
    return out


def labels(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("samples/*/labels.json"))]


def test_pycocotools_reads_what_the_samples_say(exported):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    coco = COCO(str(exported / "coco.json"))
    samples = {s["index"] + 1: s for s in labels(exported)}
    assert sorted(coco.getImgIds()) == sorted(samples)
    assert len(coco.cats) == 2 and all(len(c["keypoints"]) == 21 and len(c["skeleton"]) == 20 for c in coco.cats.values())
    annotations = coco.loadAnns(coco.getAnnIds())
    assert len(annotations) >= len(samples)
    for ann in annotations:
        sample = samples[ann["image_id"]]
        side = coco.cats[ann["category_id"]]["name"].split("_")[0]
        hand = sample["hands"][side]
        folder = exported / "samples" / f"{sample['index']:06d}"
        mask = np.asarray(Image.open(folder / f"mask_{side}.png")) > 127
        assert np.array_equal(coco.annToMask(ann).astype(bool), mask)
        assert ann["bbox"] == hand["bbox"] == mask_utils.toBbox(coco.annToRLE(ann)).tolist()
        kp = np.array(ann["keypoints"]).reshape(21, 3)
        visible = kp[:, 2] == 2
        assert np.array_equal(visible, np.array(hand["visible"], bool))
        assert np.allclose(kp[visible, :2], np.array(hand["keypoints_2d"])[visible], atol=1e-3)


def test_cocoeval_scores_keypoints_with_the_hand_sigmas(exported, tmp_path):
    """pycocotools' keypoint AP assumes COCO's 17 body keypoints and failed on our 21 ("shapes (21,) (17,)"):
    with ``HAND_OKS_SIGMAS`` the labels scored against themselves give AP 1, keypoints moved by a pixel
    less, by four pixels less still."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from handforge.export.coco import HAND_OKS_SIGMAS

    truth = COCO(str(exported / "coco.json"))
    rng = np.random.default_rng(0)

    def average_precision(shift_px: float) -> float:
        found = []
        for ann in truth.loadAnns(truth.getAnnIds()):
            kp = np.array(ann["keypoints"], float).reshape(21, 3)
            kp[:, :2] += rng.normal(0, shift_px, (21, 2)) * (kp[:, 2:] > 0)
            found.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "score": 1.0,
                          "keypoints": kp.ravel().tolist()})
        path = tmp_path / f"found_{shift_px}.json"
        path.write_text(json.dumps(found))
        with contextlib.redirect_stdout(io.StringIO()):
            evaluation = COCOeval(truth, truth.loadRes(str(path)), "keypoints")
            evaluation.params.kpt_oks_sigmas = HAND_OKS_SIGMAS
            evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
        return float(evaluation.stats[0])

    assert len(HAND_OKS_SIGMAS) == 21
    assert average_precision(0.0) == pytest.approx(1.0)
    assert 0.95 > average_precision(1.0) > average_precision(4.0)  # (0.65 and 0.003: hands of a few hundred px²)


def test_masks_hold_visible_keypoints_and_visibility_matches_depth(exported):
    from scipy.ndimage import binary_dilation

    fractions, on_outline = [], 0
    for sample in labels(exported):
        folder = exported / "samples" / f"{sample['index']:06d}"
        depth = np.load(folder / "depth.npy")
        masks = {side: np.asarray(Image.open(folder / f"mask_{side}.png")) > 127 for side in sample["hands"]}
        any_hand = np.any(list(masks.values()), axis=0)
        for side, hand in sample["hands"].items():
            mask = masks[side]
            uv = np.array(hand["keypoints_2d"])
            z = np.array(hand["keypoints_camera"])[:, 2]
            visible = np.array(hand["visible"], bool)
            col, row = np.floor(uv).astype(int).T
            inside = (col >= 0) & (col < 160) & (row >= 0) & (row < 120)
            # on or right beside its mask: a fingertip is a vertex of the tip's outline
            assert binary_dilation(mask, np.ones((3, 3), bool))[row[visible], col[visible]].all()
            c, r = np.clip(col, 0, 159), np.clip(row, 0, 119)
            # an independent depth test: in the image, own mask, surface no more than 2 cm in front ...
            expected = inside & mask[r, c] & (depth[r, c] >= z - 0.02)
            # ... or nothing in front at its pixel and its hand, near enough, in the 3 × 3 pixels around it
            for k in np.flatnonzero(inside & ~expected):
                clear = not any_hand[r[k], c[k]] or (not mask[r[k], c[k]] and depth[r[k], c[k]] > z[k])
                window = (slice(max(r[k] - 1, 0), r[k] + 2), slice(max(c[k] - 1, 0), c[k] + 2))
                near = mask[window] & (depth[window] >= z[k] - 0.02)
                expected[k] = clear and near.any()
                on_outline += bool(expected[k])
            assert np.array_equal(visible, expected)
            fractions.append(visible.mean())
    assert 0.1 < np.mean(fractions) < 0.99  # some keypoints hidden, most seen
    assert on_outline > 0  # (fingertips on the outline, labelled hidden before: the rule is exercised)


def test_camera_parameters_give_the_camera_frame_keypoints(exported):
    model = load_hand_model("open")
    for sample in labels(exported)[:3]:
        for side, hand in sample["hands"].items():
            p = hand["params_camera"]
            with torch.no_grad():
                out = model(side, p["global_orient"], p["hand_pose"], p["betas"], p["transl"])
            assert np.allclose(out.keypoints[0].numpy(), hand["keypoints_camera"], atol=1e-5)


def test_interhand_files_round_trip_through_the_reader(exported):
    paths = interhand_paths(exported, "open")
    # the open hand's parameters are not in a file named MANO (code reading one would pose MANO with them)
    assert paths["params"].name == "InterHand2.6M_export_HandForge_open_hand_params.json"
    assert sorted(p.name for p in paths["params"].parent.iterdir()) == sorted(p.name for p in paths.values())
    annotations = read_mano_annotations(paths["params"])["0"]
    cameras = read_cameras(paths["camera"])["0"]
    joints = json.loads(paths["joint_3d"].read_text())["0"]
    data = json.loads(paths["data"].read_text())
    assert len(data["images"]) == len(data["annotations"]) == len(annotations) == 6
    for sample in labels(exported):
        i = sample["index"]
        for side, hand in sample["hands"].items():
            pose = annotations[i][side]
            params = hand["params_world"]
            assert np.allclose(pose.global_orient, params["global_orient"]) and np.allclose(pose.transl, params["transl"])
            assert np.allclose(pose.hand_pose, params["hand_pose"]) and np.allclose(pose.betas, params["betas"])
            uv = cameras[str(i)].project(np.array(hand["keypoints_world"]))
            assert np.allclose(uv, np.array(hand["keypoints_2d"]) - 0.5, atol=1e-6)  # their pixel-centre convention
            slot = 0 if side == "right" else 21
            assert np.allclose(np.array(joints[str(i)]["world_coord"])[slot:slot + 21] / 1000, hand["keypoints_world"])
            # a loader crops with the data file's box and projects with the camera's princpt: the keypoints sit
            # in the crop where the labels' keypoints sit in the labels' box (the box was 0.5 px off: our convention)
            box = next(a["bbox"] for a in data["annotations"] if a["image_id"] == i)
            assert np.allclose(uv - box[:2], np.array(hand["keypoints_2d"]) - sample["bbox"][:2], atol=1e-6)
            assert box[2:] == sample["bbox"][2:]
        assert joints[str(i)]["hand_type"] == sample["hand_type"]


def test_interhands_own_loader_projects_the_joints_onto_the_keypoints(exported):
    """As InterHand2.6M's loader (facebookresearch/InterHand2.6M, data/InterHand2.6M/dataset.py) reads the files,
    not through our reader: the data file through pycocotools, each image's capture, camera and frame_idx as
    keys of the other files (as text), joints world → camera as camrot @ (X - campos) in mm, then
    x / z * focal + princpt, in float32; the roots it takes, 20 and 41, are the wrists."""
    import contextlib
    import io

    from pycocotools.coco import COCO

    from handforge_shared.skeleton import KEYPOINT_NAMES

    assert KEYPOINT_NAMES.index("wrist") == 20  # (its root_joint_idx: right 20, left 41)
    paths = interhand_paths(exported, "open")
    with contextlib.redirect_stdout(io.StringIO()):
        db = COCO(str(paths["data"]))
    cameras = json.loads(paths["camera"].read_text())
    joints = json.loads(paths["joint_3d"].read_text())
    samples = {s["index"]: s for s in labels(exported)}
    assert db.anns
    for ann in db.anns.values():
        image = db.loadImgs(ann["image_id"])[0]
        capture, camera, frame = str(image["capture"]), str(image["camera"]), str(image["frame_idx"])
        table = {key: np.array(cameras[capture][key][camera], np.float32)
                 for key in ("campos", "camrot", "focal", "princpt")}
        world = np.array(joints[capture][frame]["world_coord"], np.float32)
        cam = (table["camrot"] @ (world.T - table["campos"].reshape(3, 1))).T
        pixels = cam[:, :2] / cam[:, 2:] * table["focal"] + table["princpt"]
        sample = samples[image["frame_idx"]]
        assert ann["hand_type"] == sample["hand_type"] and ann["hand_type_valid"] == 1
        for slot, side in ((0, "right"), (21, "left")):
            if side not in sample["hands"]:
                continue
            hand = sample["hands"][side]
            assert np.allclose(cam[slot:slot + 21], np.array(hand["keypoints_camera"]) * 1000, atol=0.01)
            # (their pixel centres are on integers: ours − 0.5, as the README says)
            assert np.allclose(pixels[slot:slot + 21], np.array(hand["keypoints_2d"]) - 0.5, atol=1e-3)


def test_interhands_own_loader_finds_the_skeleton_file(exported):
    """InterHand2.6M's loader reads annotations/skeleton.txt (beside the split folders; the release ships one)
    before any annotation, each line "name id parent_id" split on single spaces, '#' lines skipped: there was
    none, so it stopped with FileNotFoundError before reading a sample. It names the 42 joints in the
    joint file's order (right 0–20, left 21–41; roots 20 and 41, parent -1)."""
    from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS

    path = exported / "interhand" / "annotations" / "skeleton.txt"
    assert path.is_file(), "no interhand/annotations/skeleton.txt for InterHand2.6M's loader"
    joints = {}
    with path.open() as fh:
        for line in fh:
            if line[0] == "#":
                continue
            name, joint, parent = line.split(" ")  # (exactly three fields, as its loader unpacks them)
            joints[int(joint)] = (name, int(parent))
    assert sorted(joints) == list(range(42))
    for slot, prefix in ((0, "r_"), (21, "l_")):
        for k, (name, parent) in enumerate(zip(KEYPOINT_NAMES, KEYPOINT_PARENTS)):
            assert joints[slot + k] == (prefix + name, parent if parent < 0 else slot + parent)
    assert joints[20] == ("r_wrist", -1) and joints[41] == ("l_wrist", -1)


def test_a_datasets_record_is_its_spec(exported, tmp_path):
    """export_spec.json holds the spec and the identities a resume checks: read as a spec (a dataset
    received without its spec file) its extra keys were refused as unknown, so it could not be extended."""
    import shutil

    from handforge.cli import main
    from handforge.export.folder import RECORD_ONLY, SPEC_RECORD

    assert load_spec(exported / SPEC_RECORD, RECORD_ONLY) == parse_spec(SPEC)
    (tmp_path / "spec.json").write_text((exported / SPEC_RECORD).read_text())  # under another name: keys checked
    with pytest.raises(SpecError, match="unknown keys \\['hand_model_identity'\\]"):
        load_spec(tmp_path / "spec.json")
    copy = tmp_path / "data"  # the command reads a dataset's record as its spec: a resume with all there
    shutil.copytree(exported, copy)
    assert main(["export", str(copy / SPEC_RECORD), "--out", str(copy), "--quiet"]) == 0


def test_a_rerun_with_nothing_left_shows_no_empty_progress_bar(exported, tmp_path, capsys):
    """Without --quiet, an export already finished printed 'export: 0sample [00:00, ?sample/s]' (twice, at the
    bar's start and close) before the summary."""
    import shutil

    from handforge.cli import main
    from handforge.export.folder import SPEC_RECORD

    copy = tmp_path / "data"
    shutil.copytree(exported, copy)
    assert main(["export", str(copy / SPEC_RECORD), "--out", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert f"(0 new, {SPEC['samples']} already there)" in out and "sample/s" not in err, (out, err)


def test_the_card_says_how_interhands_loaders_find_the_images(exported, tmp_path):
    """The data file names images from the dataset folder, and InterHand2.6M's loaders read
    <root>/images/<split>/<file_name>: with interhand/ as their root they found none, unsaid. The card's
    command, run in the dataset folder, makes them find every one (in a copy: the link loops back)."""
    import re
    import shutil
    import subprocess

    out = tmp_path / "data"
    shutil.copytree(exported, out)
    command = re.search(r"run `([^`]+)` in this folder", (out / "dataset_card.md").read_text())
    assert command, "the card does not say how InterHand2.6M's loaders find the images"
    subprocess.run(command.group(1), shell=True, cwd=out, check=True)
    data = json.loads(interhand_paths(out, "open")["data"].read_text())
    root = out / "interhand"
    assert data["images"] and all((root / "images" / "export" / image["file_name"]).is_file() for image in data["images"])


def test_the_open_hands_interhand_params_read_as_clips_are_flat_open_hand_poses(exported):
    """capture_clips tagged the open hand's parameters file MANO and mean-relative: a reader that then made them
    flat with MANO's hands_mean (as InterHand2.6M's clips need) posed the open hand off its labels, unsaid."""
    from handforge.datasets.interhand_files import capture_clips

    mano_mean = {side: np.full(45, 0.1, np.float32) for side in ("left", "right")}  # (any mean: not applied)
    clip = capture_clips(interhand_paths(exported, "open")["params"], hands_mean=mano_mean)["0"]
    assert clip.hand_model == "open" and clip.extra["pose_convention"] == "flat"
    for sample in labels(exported):
        frame = clip.extra["frame_indices"].index(sample["index"])
        for side, hand in sample["hands"].items():
            assert np.allclose(clip.hands[side].hand_pose[frame], hand["params_world"]["hand_pose"], atol=1e-6)


def test_a_mano_exports_interhand_params_read_back_as_its_labels_poses(tmp_path, monkeypatch):
    """Mutation I1 (interhand_format.py:45, MANO's hands_mean added to the pose instead of taken off) survived:
    nothing read a MANO export's InterHand2.6M params back. The file holds mean-relative poses (as the release
    does) of the synthetic MANO, whose hands_mean is not zero: the project's InterHand2.6M reader, given that
    mean, gives each sample's flat hand pose as its labels say."""
    from handforge.datasets.interhand_files import capture_clips
    from tests.support.synthetic_mano import synthetic_mano, write_synthetic_mano

    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(write_synthetic_mano(tmp_path / "mano")))
    hands_mean = {side: np.asarray(data["hands_mean"], np.float64) for side, data in synthetic_mano().items()}
    assert all(np.abs(mean).max() > 0.1 for mean in hands_mean.values())  # (else + and − are the same)
    model_mean = load_hand_model("mano").hands_mean_arrays()
    assert all(np.allclose(model_mean[side], hands_mean[side]) for side in hands_mean)
    out = tmp_path / "data"
    export(parse_spec({**SPEC, "samples": 3, "width": 64, "height": 48, "outputs": ["mesh"], "hand_model": "mano"}),
           out, command="test", progress=False)
    params = interhand_paths(out, "mano")["params"]
    assert params.name == "InterHand2.6M_export_MANO_NeuralAnnot.json"
    stored = read_mano_annotations(params)["0"]
    clip = capture_clips(params, hands_mean=hands_mean)["0"]
    assert clip.hand_model == "mano" and clip.extra["pose_convention"] == "flat"
    samples = labels(out)
    assert len(samples) == 3 and sum(len(s["hands"]) for s in samples) >= 3
    for sample in samples:
        frame = clip.extra["frame_indices"].index(sample["index"])
        for side, hand in sample["hands"].items():
            flat = np.asarray(hand["params_world"]["hand_pose"])
            assert np.abs(flat - hands_mean[side]).max() > 0.1
            assert np.allclose(stored[sample["index"]][side].hand_pose, flat - hands_mean[side], atol=1e-5)
            assert np.allclose(clip.hands[side].hand_pose[frame], flat, atol=1e-5)
            assert np.allclose(clip.hands[side].global_orient[frame], hand["params_world"]["global_orient"], atol=1e-5)
    # as InterHand2.6M's own tools pose MANO: smplx with its default flat_hand_mean=False, the file's pose[:3] /
    # pose[3:], shape and trans, the joints (+ smplx's fingertip vertices) in mm are the joint file's world_coord
    import smplx

    from handforge_shared.skeleton import KEYPOINT_FROM_EXTENDED, MANO_TIP_VERTEX_IDS

    plain = write_synthetic_mano(tmp_path / "plain", chumpy_shapedirs=False)  # (smplx cannot read chumpy)
    mano_file = json.loads(params.read_text())["0"]
    joint_file = json.loads(interhand_paths(out, "mano")["joint_3d"].read_text())["0"]
    for slot, side in ((0, "right"), (21, "left")):
        layer = smplx.MANO(str(plain / f"MANO_{side.upper()}.pkl"), is_rhand=side == "right", use_pca=False,
                           dtype=torch.float64)
        for frame, hands in mano_file.items():
            if hands[side] is None:
                continue
            pose, shape, trans = (torch.tensor(hands[side][k], dtype=torch.float64)[None]
                                  for k in ("pose", "shape", "trans"))
            with torch.no_grad():
                posed = layer(global_orient=pose[:, :3], hand_pose=pose[:, 3:], betas=shape, transl=trans)
            extended = torch.cat([posed.joints[0, :16], posed.vertices[0, list(MANO_TIP_VERTEX_IDS)]]).numpy()
            world = np.array(joint_file[frame]["world_coord"])[slot:slot + 21]
            assert np.allclose(extended[list(KEYPOINT_FROM_EXTENDED)] * 1000, world, atol=1e-3), (frame, side)


def test_interrupted_and_resumed_run_is_byte_identical(exported, tmp_path):
    spec = parse_spec(SPEC)
    out = tmp_path / "resumed"
    first = export(spec, out, command="test", progress=False, limit=2)
    assert first["written"] == 2
    stale = out / "samples" / ".partial-000003"  # what a kill in the middle of a sample leaves
    stale.mkdir()
    (stale / "mesh.png").write_bytes(b"half")
    second = export(spec, out, command="test", progress=False)
    assert (second["written"], second["skipped"], second["removed_partial"]) == (4, 2, 1)
    files = sorted(p.relative_to(exported) for p in exported.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    for rel in files:
        assert (exported / rel).read_bytes() == (out / rel).read_bytes(), rel
    assert export(spec, out, command="test", progress=False)["written"] == 0


def test_a_folder_whose_run_finished_no_sample_takes_a_corrected_spec(tmp_path, caplog):
    """A run that failed every sample (a wrong spec, a full disk) leaves its record and no sample: rerunning with
    a corrected spec was refused ("holds an export of another spec"), though nothing could be mixed. Now the record
    is replaced, said in one line; once a sample is finished, another spec is refused as ever."""
    import shutil

    from handforge.export.folder import SPEC_RECORD, FolderTaken

    out = tmp_path / "data"
    export(parse_spec({**SPEC, "seed": 9, "samples": 1}), out, progress=False)
    shutil.rmtree(out / "samples" / "000000")  # as a run whose every sample failed leaves it: record, card, no sample
    with caplog.at_level("WARNING", logger="handforge.export"):
        export(parse_spec({**SPEC, "samples": 1}), out, progress=False)
    said = [r.getMessage() for r in caplog.records if "finished no sample" in r.getMessage()]
    assert said == [f"{out}: the export of another spec recorded there finished no sample: this one replaces it"]
    assert json.loads((out / SPEC_RECORD).read_text())["seed"] == 5 and (out / "samples/000000/labels.json").is_file()
    with pytest.raises(FolderTaken, match="another spec \\(differing: seed: 5 → 9\\)"):
        export(parse_spec({**SPEC, "seed": 9, "samples": 1}), out, progress=False)


def test_another_seed_gives_another_dataset(exported, tmp_path):
    export(parse_spec({**SPEC, "seed": 6, "samples": 1}), tmp_path, progress=False)
    ours = json.loads((tmp_path / "samples/000000/labels.json").read_text())
    assert ours["hands"]["right"]["keypoints_2d"] != labels(exported)[0]["hands"]["right"]["keypoints_2d"]


def test_a_folder_holds_one_specs_export(exported, tmp_path):
    """Another spec, more samples than asked for, or someone else's files: refused, nothing written;
    the same spec with more samples extends the dataset. Dataset files are readable by others."""
    from handforge.export.folder import ExportBusy, run_lock
    from handforge.export.folder import FolderTaken

    before = {p: p.stat().st_mtime_ns for p in exported.rglob("*")}
    with pytest.raises(FolderTaken, match="another spec \\(differing: seed: 5 → 9\\)"):
        export(parse_spec({**SPEC, "seed": 9}), exported, progress=False)
    # a setting the record lacks (an older HandForge's) named as absent, not "differing: " with nothing
    from handforge.export.folder import _differences

    assert _differences({"a": {"b": 1}}, {"a": {"b": 1, "c": None}}) == ["a.c: (absent) → null"]
    assert _differences({"p": "/data/" + "x" * 60 + "/one"}, {"p": "/data/" + "x" * 60 + "/two"}) == \
        ['p: …xxxxxxxxx/one" → …xxxxxxxxx/two"']
    # a nested key is named: "differing: render" said nothing of which of its settings
    with pytest.raises(FolderTaken, match="another spec \\(differing: camera.distance: \\[0.3, 0.5\\] → \\[0.3, "
                                          "0.6\\]\\)"):
        export(parse_spec({**SPEC, "camera": {"distance": [0.3, 0.6]}}), exported, progress=False)
    with pytest.raises(FolderTaken, match="5 finished sample\\(s\\) beyond the 1 asked for \\(up to index 5\\): "
                                          "ask for at least 6 samples"):
        export(parse_spec({**SPEC, "samples": 1}), exported, progress=False)
    assert {p: p.stat().st_mtime_ns for p in exported.rglob("*")} == before
    # a damaged record: said so (it was "another spec (differing: all)", to be rerun "with that spec")
    import shutil

    from handforge.export.folder import SPEC_RECORD

    damaged = tmp_path / "damaged"
    shutil.copytree(exported, damaged)
    for text, why in (("garbage", "JSONDecodeError: Expecting value"), ("[1, 2]", "it holds a JSON list, not an object"),
                      ("[" * 100_000, "nested too deeply: lists")):  # (nested thousands deep: a traceback)
        (damaged / SPEC_RECORD).write_text(text)
        with pytest.raises(FolderTaken) as taken:
            export(parse_spec(SPEC), damaged, progress=False)
        assert str(taken.value).startswith(f"{damaged / SPEC_RECORD} cannot be read as the record of the export this "
                                           f"folder holds ({why}")
        assert "restore the file, or choose a new or an empty folder" in str(taken.value)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("keep")
    with pytest.raises(FolderTaken, match=r"holds no HandForge export \(thesis.txt\)"):  # (what blocks it, named)
        export(parse_spec(SPEC), mine, progress=False)
    assert [p.name for p in mine.iterdir()] == ["thesis.txt"]
    finder = tmp_path / "finder"  # a Mac's Finder adds .DS_Store to a new folder; an empty samples/ holds nothing
    (finder / "samples").mkdir(parents=True)
    (finder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    assert export(parse_spec({**SPEC, "samples": 1}), finder, progress=False)["written"] == 1
    grown = tmp_path / "grown"
    export(parse_spec({**SPEC, "samples": 1}), grown, progress=False)
    assert export(parse_spec({**SPEC, "samples": 2}), grown, progress=False)["written"] == 1
    assert (grown / "coco.json").stat().st_mode & 0o044 == 0o044  # (tempfile's are 0600)
    with run_lock(grown), pytest.raises(ExportBusy, match="another handforge export is writing"):
        export(parse_spec({**SPEC, "samples": 2}), grown, progress=False)  # one run per folder, one process too


def test_a_folder_resumes_only_from_the_input_files_it_was_made_from(exported, tmp_path):
    """A background image or clip changed, added or removed since the folder's samples were written:
    the resume mixed two datasets without a word (its samples drew from another image list, another
    clip). Refused in one line saying which file and what to do, with workers too; the same files resume."""
    from handforge.export.folder import SPEC_RECORD
    from handforge_shared.files import write_atomic
    from handforge.export.shards import export_sharded
    from handforge.export.spec import ExportSpec, input_files
    from handforge.export.folder import FolderTaken
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    (tmp_path / "bg").mkdir()
    for name, value in (("a.png", 10), ("b.png", 200)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / "bg" / name)
    pair, clip = side_by_side(), tmp_path / "clip.npz"
    MotionClip(hands={"right": stack_poses([pair.right] * 3), "left": stack_poses([pair.left] * 3)}).save(clip)
    spec = parse_spec({**SPEC, "samples": 4, "width": 32, "height": 32, "outputs": ["mesh"],
                       "background": {"kinds": ["images"], "folder": str(tmp_path / "bg")},
                       "poses": {"source": "files", "files": [str(clip)]}})
    out, image, first = tmp_path / "data", (tmp_path / "bg" / "b.png"), (tmp_path / "bg" / "b.png").read_bytes()
    export(spec, out, progress=False, limit=1)
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(image)
    with pytest.raises(FolderTaken, match=f"^{out} holds samples made from other input files \\({image} changed "
                       "\\(.*\\) since\\): resuming would mix two datasets; restore the file\\(s\\) to resume, or "
                       "choose a new folder$"):
        export(spec, out, progress=False)
    image.write_bytes(first)
    assert export(spec, out, progress=False, limit=1)["written"] == 1  # restored: resumed
    (tmp_path / "bg" / "c.png").write_bytes(first)
    frames = clip.read_bytes()
    clip.write_bytes(frames[:100] + bytes([frames[100] ^ 1]) + frames[101:])  # its size unchanged
    added_and_changed = f"input files \\({tmp_path}/bg/c.png added, {clip} changed \\(same size\\) since"
    with pytest.raises(FolderTaken, match=added_and_changed):
        export_sharded(spec, out, lambda: pytest.fail("refused before any worker"), 2, command="test", progress=False)
    (tmp_path / "bg" / "c.png").unlink()
    clip.write_bytes(frames)
    summary = export(spec, out, progress=False)
    assert (summary["skipped"], summary["written"], summary["finished"]) == (2, 2, 4)
    record = json.loads((out / SPEC_RECORD).read_text())
    write_atomic(out / SPEC_RECORD, json.dumps({k: v for k, v in record.items() if k != "inputs"}))
    assert export(spec, out, progress=False)["skipped"] == 4  # recorded before inputs were: resumed, recorded now
    assert json.loads((out / SPEC_RECORD).read_text()) == record
    # the library: nothing, its folders' record as before
    assert input_files(ExportSpec()) == {} and "inputs" not in json.loads((exported / SPEC_RECORD).read_text())


def test_an_input_edited_while_the_export_runs_takes_the_runs_samples_away(tmp_path):
    """A background image overwritten, or one added to the folder, while an export ran: the run ended in exit
    status 0 with some samples drawing the image as it was and some as it is (the record, hashed as the run
    began, refused only a later resume). Now the run's own samples are removed, an earlier run's are kept, and
    the error says which file and what to do; the file put back, the export resumes into the very dataset an
    uninterrupted run writes."""
    import os

    from handforge.export.folder import InputsEdited

    (tmp_path / "bg").mkdir()
    for name, value in (("a.png", 10), ("b.png", 200)):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(tmp_path / "bg" / name)
    spec = parse_spec({**SPEC, "samples": 4, "width": 32, "height": 32, "outputs": ["mesh"],
                       "background": {"kinds": ["images"], "folder": str(tmp_path / "bg")}})
    out, image = tmp_path / "data", tmp_path / "bg" / "b.png"
    first = image.read_bytes()
    export(spec, out, progress=False, limit=1)  # an earlier run's sample: made before the edit, kept

    def edit_after_first(change):
        def progress(done, total):
            if done == 1:
                change()
        return progress

    def overwrite():
        Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(image)
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**10))  # a coarse clock's tick on

    for change, named in ((overwrite, image), (lambda: (tmp_path / "bg" / "c.png").write_bytes(first),
                                               tmp_path / "bg" / "c.png")):
        with pytest.raises(InputsEdited, match=f"^{named} changed while this export ran \\(added, removed, or new "
                           "contents\\): the 3 sample\\(s\\) it made were removed, .* put the files "
                           "back as they were and export again to make them anew, or export into a new folder"):
            export(spec, out, progress=edit_after_first(change))
        assert finished_indices(out, 4) == [0]
        assert not [p.name for p in (out / "samples").iterdir() if p.name != "000000"]  # no half-removed sample
        image.write_bytes(first)
        (tmp_path / "bg" / "c.png").unlink(missing_ok=True)
    assert export(spec, out, progress=False)["written"] == 3
    export(spec, tmp_path / "uninterrupted", progress=False)
    assert ([p.read_bytes() for p in sorted(out.glob("samples/*/labels.json"))]
            == [p.read_bytes() for p in sorted((tmp_path / "uninterrupted").glob("samples/*/labels.json"))])


def test_an_input_touched_is_no_edit_and_an_edit_before_a_stop_or_a_cut_short_removal_still_removes(tmp_path,
                                                                                                   caplog):
    """Review of the check above: a file touched (its time moved, its bytes the same: a sync tool, a checkout)
    removed every sample of the run; an edit followed by a Ctrl-C kept the run's samples, taken as finished after
    the file was put back; a removal cut short left the rest. Now a touch is no edit, a stopped run removes its
    samples too (said in a warning, the stop's error following), and the list written before a removal lets the
    next run finish it."""
    import logging
    import os

    from handforge.export.folder import REMOVING, clean_partial

    (tmp_path / "bg").mkdir()
    image = tmp_path / "bg" / "a.png"
    Image.fromarray(np.full((8, 8, 3), 10, np.uint8)).save(image)
    first = image.read_bytes()
    spec = parse_spec({**SPEC, "samples": 4, "width": 32, "height": 32, "outputs": ["mesh"],
                       "background": {"kinds": ["images"], "folder": str(tmp_path / "bg")}})
    out = tmp_path / "data"

    def after_first(change, stop=False):
        def progress(done, total):
            if done == 1:
                change()
            if stop and done == 3:
                raise KeyboardInterrupt
        return progress

    def touch():
        os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 10**10))

    def edit():
        Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(image)
        touch()

    assert export(spec, out, progress=after_first(touch))["written"] == 4  # touched: the same contents
    other = tmp_path / "stopped"
    with caplog.at_level(logging.WARNING, logger="handforge.export"), pytest.raises(KeyboardInterrupt):
        export(spec, other, progress=after_first(edit, stop=True))
    assert any("changed while this export ran" in r.getMessage() for r in caplog.records)
    assert finished_indices(other, 4) == []
    image.write_bytes(first)
    assert export(spec, other, progress=False)["written"] == 4
    # a removal cut short: its list names what is left, which the next run's sweep removes
    (other / REMOVING).write_text(json.dumps([1, 3]))
    assert clean_partial(other) == 2 and finished_indices(other, 4) == [0, 2] and not (other / REMOVING).exists()


def test_a_sample_folder_copied_in_from_another_export_is_named_not_taken(exported, tmp_path):
    """Sample folders of another seed or image size copied into a dataset were taken as finished: "6 samples
    (0 new, 6 already there)", a COCO file of 160×120 and 80×60 images under a card saying 160×120. Each is
    named with what differs and what to do; the aggregate files are left as they were."""
    import shutil

    other = tmp_path / "other"
    export(parse_spec({**SPEC, "samples": 2, "width": 80, "height": 60}), other, progress=False)
    export(parse_spec({**SPEC, "samples": 2, "seed": 7}), tmp_path / "seed7", progress=False)
    for source, differs in ((other, "its image size is \\(80, 60\\), this export's \\(160, 120\\)"),
                            (tmp_path / "seed7", "its seed is 7, this export's 5")):
        out = tmp_path / f"copy-{source.name}"
        shutil.copytree(exported, out)
        coco = (out / "coco.json").read_bytes()
        shutil.rmtree(out / "samples" / "000001")
        shutil.copytree(source / "samples" / "000001", out / "samples" / "000001")
        with pytest.raises(ValueError, match=f"^{out}/samples/000001/labels.json is another export's sample "
                           f"\\({differs}\\): delete its sample folder and run again to write it anew$"):
            export(parse_spec(SPEC), out, progress=False)
        assert (out / "coco.json").read_bytes() == coco
        shutil.rmtree(out / "samples" / "000001")
        assert export(parse_spec(SPEC), out, progress=False)["written"] == 1
        assert (out / "samples" / "000001" / "labels.json").read_bytes() == (
            exported / "samples" / "000001" / "labels.json").read_bytes()


def test_an_output_folder_that_is_a_dangling_link_is_said_to_be_one(tmp_path):
    """``--out`` a link to a missing folder said "cannot write into ...: File exists"."""
    from handforge.export.folder import FolderTaken

    (tmp_path / "dang").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FolderTaken, match=f"^{tmp_path}/dang is a link to {tmp_path}/nowhere, which does not exist: "
                                          "make that folder, or choose another$"):
        export(parse_spec(SPEC), tmp_path / "dang", progress=False)
    (tmp_path / "nowhere").mkdir()
    assert export(parse_spec({**SPEC, "samples": 1}), tmp_path / "dang", progress=False)["finished"] == 1
    # a relative link is said from where it lies (its target as written named a folder beside the command's);
    # a loop of links is refused in one line (resolving it raised a RuntimeError traceback)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rel").symlink_to("../missing")
    with pytest.raises(FolderTaken, match=f"^{tmp_path}/sub/rel is a link to {tmp_path}/sub/../missing, which"):
        export(parse_spec(SPEC), tmp_path / "sub" / "rel", progress=False)
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(FolderTaken, match=f"^cannot write into {tmp_path}/loop: .*; choose a folder you can write to$"):
        export(parse_spec(SPEC), tmp_path / "loop", progress=False)


def test_an_output_folder_inside_a_dataset_is_refused(exported, tmp_path):
    """``--out data/sub`` wrote a whole dataset inside another, whose resume then said nothing of it."""
    from handforge.export.folder import FolderTaken

    with pytest.raises(FolderTaken, match=f"^{exported}/samples/inner is inside the dataset {exported}: choose a "
                                          "folder outside it$"):
        export(parse_spec(SPEC), exported / "samples" / "inner", progress=False)
    assert not (exported / "samples" / "inner").exists()


def test_a_dataset_without_its_record_says_the_card_holds_its_spec(exported, tmp_path):
    """A dataset whose export_spec.json was deleted was "not empty and holds no HandForge export"; the card's spec,
    written into the record as it says, resumes it."""
    import shutil

    from handforge.export.folder import FolderTaken

    out = tmp_path / "data"
    shutil.copytree(exported, out)
    (out / "export_spec.json").unlink()
    with pytest.raises(FolderTaken, match=f"^{out} holds an export's samples and card but not its record, "
                       "export_spec.json: the card's 'spec' \\(dataset_card.json\\) is the spec it was made from; "
                       "write it into export_spec.json to resume, or choose a new or an empty folder$"):
        export(parse_spec(SPEC), out, progress=False)
    # a Blender export's record is its request's digest, which no card gives back
    from handforge.export.blender_scene import RECORD_OF
    from handforge.export.folder import claim_folder

    with pytest.raises(FolderTaken, match="export_spec.json: restore export_spec.json from a copy to resume, or "
                                          "choose a new or an empty folder$"):
        claim_folder(out, {}, RECORD_OF, write=False)
    (out / "export_spec.json").write_text(json.dumps(json.loads((out / "dataset_card.json").read_text())["spec"]))
    assert export(parse_spec(SPEC), out, progress=False)["skipped"] == SPEC["samples"]


def test_a_corpus_clip_edited_in_place_is_an_input_that_changed(tmp_path, monkeypatch):
    """A corpus clip rewritten in place between two runs: the resume mixed samples of the old and the
    new clip unsaid (only splits.json, the list of clips, was recorded). Refused naming the clip; the
    clip restored, resumed. A resume reads no clip whose size and time are as recorded (a 20,000-clip
    corpus is stat'ed, not hashed), and a clip only touched is the same input."""
    import hashlib
    import os

    from handforge.export.folder import recorded_inputs
    from handforge.export.spec import input_files
    from handforge.export.folder import FolderTaken
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    corpus, pair = tmp_path / "corpus", side_by_side()
    (corpus / "clips").mkdir(parents=True)
    for name, frames in (("a", 3), ("b", 4)):
        MotionClip(hands={"right": stack_poses([pair.right] * frames),
                          "left": stack_poses([pair.left] * frames)}).save(corpus / "clips" / f"{name}.npz")
    (corpus / "splits.json").write_text(json.dumps({"format": "handforge.corpus-splits", "train": ["a"],
                                                    "validation": [], "test": ["b"]}))
    spec = parse_spec({**SPEC, "samples": 3, "width": 32, "height": 32, "outputs": ["mesh"],
                       "poses": {"source": "corpus", "corpus": str(corpus)}})
    clip = corpus / "clips" / "b.npz"
    out, first = tmp_path / "data", clip.read_bytes()
    export(spec, out, progress=False, limit=1)
    MotionClip(hands={"right": stack_poses([pair.left] * 4), "left": stack_poses([pair.right] * 4)}).save(clip)
    with pytest.raises(FolderTaken, match=f"^{out} holds samples made from other input files \\({clip} changed "
                       ".* since\\): resuming would mix two datasets; restore the file\\(s\\) to resume, or "
                       "choose a new folder$"):
        export(spec, out, progress=False)
    clip.write_bytes(first)
    old = (1_600_000_000, 1_600_000_000)
    for path in corpus.rglob("*.*"):
        os.utime(path, old)  # settled files: their times are recorded
    assert export(spec, out, progress=False, limit=1)["written"] == 1  # restored: resumed
    read = []
    digest = hashlib.file_digest
    monkeypatch.setattr(hashlib, "file_digest", lambda fh, make: read.append(fh.name) or digest(fh, make))
    os.utime(corpus / "splits.json", (old[0] + 5, old[1] + 5))  # touched, not changed
    assert export(spec, out, progress=False)["written"] == 1
    # the clip's hash came from the record (the hand model's files are hashed for the card: a few MB)
    assert [name for name in read if name.startswith(str(corpus))] == [str(corpus / "splits.json")]
    inputs = recorded_inputs(out)
    assert inputs[str(clip)]["mtime_ns"] == old[1] * 10**9 and inputs[str(corpus / "splits.json")]["bytes"] > 0
    assert sorted(input_files(spec)) == [str(clip), str(corpus / "splits.json")]  # the split's clips only


def test_a_corpus_clip_too_far_fails_its_samples_saying_so(tmp_path):
    """A corpus clip with a hand at 1e30 m (a corpus's clips are not read when the spec is, unlike motion
    files): its samples failed as "look_at: eye and target coincide"; now they say which clip and how far,
    and the samples drawn from the other clip are written."""
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    corpus, pair = tmp_path / "corpus", side_by_side()
    (corpus / "clips").mkdir(parents=True)
    MotionClip(hands={"right": stack_poses([pair.right.replace(transl=pair.right.transl + 1e30)] * 3)}).save(
        corpus / "clips" / "far.npz")
    MotionClip(hands={"right": stack_poses([pair.right] * 3), "left": stack_poses([pair.left] * 3)}).save(
        corpus / "clips" / "near.npz")
    (corpus / "splits.json").write_text(json.dumps({"format": "handforge.corpus-splits", "train": ["far", "near"],
                                                    "validation": [], "test": []}))
    spec = parse_spec({**SPEC, "samples": 8, "width": 32, "height": 32, "outputs": ["mesh"],
                       "poses": {"source": "corpus", "corpus": str(corpus), "split": "train"}})
    summary = export(spec, tmp_path / "data", progress=False)
    assert summary["failed"] and summary["written"] == 8 - len(summary["failed"]) > 0
    for reason in summary["failed"].values():
        assert re.match(r"ValueError: poses.corpus: '.*far.npz' places a hand 1.7\d*e\+30 m from the origin "
                        r"\(frame 0\), beyond the 10000 m .*nearer the origin", reason), reason


def test_a_run_that_writes_no_sample_leaves_the_folder_as_it_found_it(tmp_path, monkeypatch):
    """Failed before its first sample, a run takes back its claim (an empty folder stays empty and free,
    a new one goes); refused because another run holds the folder, it touches nothing of it (it removed
    the other run's record and folder when that run had made the folder in the meantime)."""
    import contextlib

    from handforge.export.folder import SPEC_RECORD, ExportBusy, run_lock
    from handforge_shared.files import write_atomic
    from handforge.export import run

    def no_renderer():
        raise RuntimeError("no renderer today")

    with monkeypatch.context() as patched:
        patched.setattr(run, "renderer", no_renderer)
        for folder in (tmp_path / "empty", tmp_path / "new"):
            if folder.name == "empty":
                folder.mkdir()
            with pytest.raises(RuntimeError, match="no renderer today"):
                export(parse_spec(SPEC), folder, progress=False)
            assert (list(folder.iterdir()) == []) if folder.name == "empty" else not folder.exists()
    export(parse_spec(SPEC), tmp_path / "empty", progress=False)  # free for any spec

    race = tmp_path / "race"
    real_lock = run_lock

    @contextlib.contextmanager
    def taken_meanwhile(out):  # another driver made the folder's claim between our mkdir and our lock
        write_atomic(out / SPEC_RECORD, "{}")
        with real_lock(out):
            with real_lock(out):
                yield

    monkeypatch.setattr("handforge.export.folder.run_lock", taken_meanwhile)
    with pytest.raises(ExportBusy):
        export(parse_spec(SPEC), race, progress=False)
    assert (race / SPEC_RECORD).is_file()


def test_temporary_files_of_an_interrupted_finish_are_cleared_on_resume(exported, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(exported, out)
    (out / ".coco.json.x1y2z3.tmp").write_text("{half")  # killed while writing an aggregate file
    interhand = next((out / "interhand").rglob("*.json")).parent
    (interhand / ".InterHand2.6M_export_data.json.a1b2.tmp").write_text("{half")
    export(parse_spec(SPEC), out, progress=False)
    assert not list(out.rglob(".*.tmp"))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in exported.iterdir())


def test_a_run_killed_while_it_claimed_a_new_folder_resumes(tmp_path):
    """Killed while it wrote export_spec.json, a first run left only that file's temporary beside it: the
    rerun was refused ("not empty and holds no HandForge export") until the hidden file was found."""
    out = tmp_path / "new"
    out.mkdir()
    (out / ".export_spec.json.k1ll3d.tmp").write_text('{"se')
    export(parse_spec({**SPEC, "samples": 1}), out, progress=False)
    assert not list(out.rglob(".*.tmp")) and (out / "export_spec.json").is_file()
    assert finished_indices(out, 1) == [0] and [sample["index"] for sample in labels(out)] == [0]  # and it exported


@pytest.mark.parametrize("hand_model", ["open", "mano"])
def test_the_card_names_the_hand_model_files_and_an_export_made_before_resumes(tmp_path, monkeypatch, hand_model):
    """The card said "mano", not which MANO files (or which open hand rig) made the dataset: now each
    file's name, size and BLAKE2b hash (its path, recorded at first, put the maker's home or install folder
    in a shared dataset, and identified nothing the hash does not). The folder's record (export_spec.json) is unchanged, so an
    export written before (its card without them) resumes, and its card gains them."""
    import hashlib

    from handforge_shared.rig import OPEN_HAND_RIG
    from tests.support.synthetic_mano import write_synthetic_mano

    files = {"rig": OPEN_HAND_RIG}
    if hand_model == "mano":
        folder = write_synthetic_mano(tmp_path / "mano")
        monkeypatch.setenv("HANDFORGE_MANO_DIR", str(folder))
        files = {side: folder / f"MANO_{side.upper()}.pkl" for side in ("left", "right")}
    spec = parse_spec({**SPEC, "samples": 3, "width": 64, "height": 48, "hand_model": hand_model})
    out = tmp_path / "data"
    export(spec, out, command="test", progress=False, limit=1)
    card_path = out / "dataset_card.json"
    before = {k: v for k, v in json.loads(card_path.read_text()).items() if k != "hand_model_files"}
    card_path.write_text(json.dumps(before))  # as an export made before wrote it
    assert "hand_model_files" not in (out / "export_spec.json").read_text()
    assert export(spec, out, command="test", progress=False)["written"] == 2
    card = json.loads(card_path.read_text())
    assert card["hand_model_files"] == {
        key: {"file": path.name, "bytes": path.stat().st_size,
              "blake2b": hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()} for key, path in files.items()}
    markdown = (out / "dataset_card.md").read_text()
    assert all(f"- hand model file {key}: {path.name} (" in markdown for key, path in files.items())
    # a shared dataset names its model's files, not the folders they were in on its maker's machine
    folders = {str(path.resolve().parent) for path in files.values()} | {str(path.parent) for path in files.values()}
    for written in ("dataset_card.json", "dataset_card.md", "export_spec.json"):
        text = (out / written).read_text()
        assert not [folder for folder in folders if folder in text], written


def test_a_folder_resumes_only_with_the_hand_model_it_was_made_with(tmp_path, monkeypatch):
    """The MANO files of mano.model_dir changed between a run and its resume: the resumed samples were
    posed with another model, unsaid. The record holds a digest of the model's arrays as loaded: other
    files are refused in one line, with workers too; the same model converted .pkl → .npz (convert-mano)
    resumes; a folder recorded before the digest was resumes and gets it."""
    from handforge.cli import main
    from handforge.export.folder import HAND_MODEL, SPEC_RECORD
    from handforge_shared.files import write_atomic
    from handforge.export.shards import export_sharded
    from handforge.export.folder import FolderTaken
    from tests.support.synthetic_mano import synthetic_mano, write_mano_pickle, write_synthetic_mano

    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(write_synthetic_mano(tmp_path / "pkl")))
    spec = parse_spec({**SPEC, "samples": 4, "width": 32, "height": 32, "outputs": ["mesh"], "hand_model": "mano"})
    out = tmp_path / "data"
    export(spec, out, progress=False, limit=1)
    record = json.loads((out / SPEC_RECORD).read_text())
    assert record[HAND_MODEL]["name"] == "mano"
    for side, data in synthetic_mano().items():  # other MANO files: one array moved by 0.1 mm
        moved = {**data, "v_template": data["v_template"] + 1e-4} if side == "right" else data
        write_mano_pickle(moved, tmp_path / "other" / f"MANO_{side.upper()}.pkl")
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "other"))
    refused = (f"^{out} holds samples made with another mano hand model \\(.*mano.model_dir\\): resuming would "
               "mix two datasets; restore the hand model's files to resume, or choose a new folder$")
    with pytest.raises(FolderTaken, match=refused):
        export(spec, out, progress=False)
    with pytest.raises(FolderTaken, match=refused):
        export_sharded(spec, out, lambda: pytest.fail("refused before any worker"), 2, command="test", progress=False)
    assert json.loads((out / SPEC_RECORD).read_text()) == record and len(finished_indices(out, 4)) == 1
    assert main(["convert-mano", "--model-dir", str(tmp_path / "pkl"), "--out", str(tmp_path / "npz")]) == 0
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "npz"))
    assert export(spec, out, progress=False, limit=1)["written"] == 1  # the same model: resumed
    card = json.loads((out / "dataset_card.json").read_text())
    assert {Path(f["file"]).suffix for f in card["hand_model_files"].values()} == {".npz"}
    write_atomic(out / SPEC_RECORD,
                         json.dumps({k: v for k, v in record.items() if k != HAND_MODEL}))
    assert export(spec, out, progress=False, limit=1)["written"] == 1  # recorded before it was: resumed
    assert json.loads((out / SPEC_RECORD).read_text()) == record  # and recorded now


def test_cameras_inside_or_beside_the_hands_give_loadable_labels(tmp_path):
    """A camera among the hands (keypoints behind it), hands out of the picture or none in view:
    COCO marks a keypoint behind the camera not labelled (its projection is a mirrored pixel that can
    land in the image), as InterHand2.6M's joint_valid does, a hand wholly outside has no projected box (as no box), and the
    InterHand2.6M-style data file leaves out samples without a hand, whose type and box its loaders need."""
    from handforge.export.interhand_format import interhand_paths

    among = tmp_path / "among"
    export(parse_spec({"seed": 5, "samples": 12, "width": 160, "height": 160, "render": {"engine": "none"},
                       "camera": {"distance": [0.05, 0.06], "elevation": [-20, 20], "azimuth": [60, 120],
                                  "focal": [4, 8], "roll": [0, 0]}}), among, progress=False)
    coco = json.loads((among / "coco.json").read_text())
    image_ids = {image["file_name"].split("/")[1]: image["id"] for image in coco["images"]}
    behind = 0
    for sample in labels(among):
        image_id = image_ids[f"{sample['index']:06d}"]
        for ann in (a for a in coco["annotations"] if a["image_id"] == image_id):
            hand = sample["hands"]["right" if ann["category_id"] == 1 else "left"]
            for k, z in enumerate(np.asarray(hand["keypoints_camera"])[:, 2]):
                if z <= 0:
                    behind += 1
                    assert ann["keypoints"][3 * k:3 * k + 3] == [0, 0, 0]
    assert behind > 0  # the spec puts the camera among the hands
    # InterHand2.6M's loaders project joints with cam2pixel: a joint behind the camera is not valid there either
    # (it was, as every joint of a present hand, with a mirrored pixel)
    paths = interhand_paths(among)
    joint_valid = {i: entry["joint_valid"] for i, entry in json.loads(paths["joint_3d"].read_text())["0"].items()}
    data_valid = {a["image_id"]: a["joint_valid"] for a in json.loads(paths["data"].read_text())["annotations"]}
    assert any(i in data_valid for i in (s["index"] for s in labels(among)
                                         if any(np.asarray(h["keypoints_camera"])[:, 2].min() <= 0
                                                for h in s["hands"].values())))  # (the data file has such a sample)
    for sample in labels(among):
        expected = np.zeros(42)
        for slot, side in enumerate(("right", "left")):
            if side in sample["hands"]:
                expected[21 * slot:21 * slot + 21] = np.asarray(sample["hands"][side]["keypoints_camera"])[:, 2] > 0
        assert joint_valid[str(sample["index"])] == expected.tolist()
        assert data_valid.get(sample["index"], expected.tolist()) == expected.tolist()
    beside = tmp_path / "beside"
    export(parse_spec({"seed": 3, "samples": 12, "width": 200, "height": 120, "render": {"engine": "none"},
                       "camera": {"distance": [0.08, 0.2], "elevation": [-90, 90], "azimuth": [-360, 360],
                                  "focal": [50, 200], "roll": [-180, 180]}}), beside, progress=False)
    samples = labels(beside)
    hands = [h for s in samples for h in s["hands"].values()]
    assert any(h["bbox"] is None for h in hands)
    for hand in hands:
        box = hand["bbox_projected"]
        assert box is None or (box[2] > 0 and box[3] > 0), box
    data = json.loads(interhand_paths(beside)["data"].read_text())
    kept = {a["image_id"] for a in data["annotations"]}
    assert kept == {s["index"] for s in samples if s["hand_type"] != "none"} and len(kept) < len(samples)
    assert all(a["bbox"] is not None and a["hand_type"] in ("right", "left", "interacting")
               for a in data["annotations"])
    # (mutation E4, coco.py:39, every keypoint in front of the camera labelled v = 1 in the image or not, survived:)
    # a keypoint in front of the camera but outside [0, W) × [0, H) is not labelled, one in the image but hidden
    # is v = 1 at its pixel, read with pycocotools
    from pycocotools.coco import COCO

    coco = COCO(str(beside / "coco.json"))
    counts = {"outside": 0, "hidden": 0}
    for sample in samples:
        anns = {coco.cats[a["category_id"]]["name"].split("_")[0]: a
                for a in coco.loadAnns(coco.getAnnIds(imgIds=[sample["index"] + 1]))}
        assert sorted(anns) == sorted(side for side, h in sample["hands"].items() if h["bbox"] is not None)
        for side, ann in anns.items():
            hand = sample["hands"][side]
            kp = np.array(ann["keypoints"], np.float64).reshape(21, 3)
            depths = np.asarray(hand["keypoints_camera"])[:, 2]
            for k, ((x, y), seen, z) in enumerate(zip(hand["keypoints_2d"], hand["visible"], depths)):
                if z > 0 and not (0 <= x < 200 and 0 <= y < 120):
                    counts["outside"] += 1
                    assert kp[k].tolist() == [0, 0, 0], (sample["index"], side, k, x, y)
                elif z > 0 and not seen:
                    counts["hidden"] += 1
                    assert kp[k, 2] == 1 and np.allclose(kp[k, :2], (x, y), atol=1e-3), (sample["index"], side, k)
            assert ann["num_keypoints"] == int((kp[:, 2] > 0).sum())
    assert counts["outside"] > 0 and counts["hidden"] > 0, counts  # (the spec gives both)
    # (mutation I2, interhand_format.py:80, hand_type_valid = 1 for every sample, survived:) the joint file keeps
    # the samples with no hand in view, and says their hand type ("none") is not valid
    joint_file = json.loads(interhand_paths(beside)["joint_3d"].read_text())["0"]
    assert sorted(joint_file, key=int) == [str(s["index"]) for s in samples]
    for sample in samples:
        entry = joint_file[str(sample["index"])]
        assert entry["hand_type"] == sample["hand_type"]
        assert entry["hand_type_valid"] == (0 if sample["hand_type"] == "none" else 1), sample["index"]
    assert {s["hand_type"] == "none" for s in samples} == {True, False}  # (the spec gives both)


def test_bad_specs_say_what_is_wrong(tmp_path):
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    pair = side_by_side()
    clip = tmp_path / "x.npz"
    MotionClip(hands={"right": stack_poses([pair.right] * 3), "left": stack_poses([pair.left] * 3)}).save(clip)
    # clips that cannot be posed are refused when the spec is read, before any folder is claimed (they
    # were found per sample; another hand model's clip was posed on the open hand, unsaid)
    MotionClip(hands={"right": stack_poses([pair.right] * 3)}, hand_model="mano").save(tmp_path / "mano.npz")
    empty = MotionClip(hands={"right": stack_poses([pair.right] * 3)})
    MotionClip(hands=empty.hands, present={"right": np.zeros(3, bool)}).save(tmp_path / "nohands.npz")
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    MotionClip(hands={"right": stack_poses([pair.right] * 3)}, hand_model="open",
               extra={"pose_convention": "mean_relative"}).save(tmp_path / "raw.npz")  # raw InterHand2.6M poses
    # a hand at 1e30 m failed every sample ("look_at: eye and target coincide"), on every rerun
    MotionClip(hands={"right": stack_poses([pair.right.replace(transl=pair.right.transl + 1e30)] * 3)}).save(
        tmp_path / "far.npz")
    # 7 km along each axis is 12 km away: the check took the largest coordinate for the distance
    MotionClip(hands={"right": stack_poses([pair.right.replace(transl=pair.right.transl + 7000.0)] * 3)}).save(
        tmp_path / "diagonal.npz")
    for name, needle in (("mano.npz", "clips are of the mano hand model, this run is for the open hand: set the spec's hand_model = 'mano'"),
                         ("nohands.npz", "has no frame with a hand"), ("broken.npz", "is not a readable motion clip"),
                         ("raw.npz", "hold mean-relative hand poses"),
                         ("far.npz", "far.npz' places a hand 1.7\\d*e\\+30 m from the origin \\(frame 0\\), beyond the "
                                     "10000 m .*nearer the origin"),
                         ("diagonal.npz", "diagonal.npz' places a hand 1212\\d.\\d m from the origin")):
        with pytest.raises(SpecError, match=needle):
            parse_spec({"poses": {"source": "files", "files": [str(tmp_path / name)]}})
    with pytest.raises(SpecError, match="outputs: give 'rgb' or 'mesh'"):  # (the files named the image 'None')
        parse_spec({"outputs": ["masks"]})
    with pytest.raises(SpecError, match="outputs: give 'rgb' or 'mesh'.*'none' draws no RGB"):
        parse_spec({"outputs": ["rgb", "masks"], "render": {"engine": "none"}})
    assert "rgb" not in parse_spec({"render": {"engine": "none"}}).outputs  # the default list: without it
    # the dataset's size written under [render], where samples is Cycles': 100 samples (the default) were made
    with pytest.raises(SpecError, match=r"render.samples = 8 is Cycles' samples per pixel \(unused with engine "
                                        r"'workbench'\), not the dataset's size.*none given: 100.*write samples = 8 "
                                        r"above the first \[table\]"):
        parse_spec({"render": {"engine": "workbench", "samples": 8}})
    assert parse_spec({"samples": 2, "render": {"engine": "workbench", "samples": 8}}).samples == 2  # said: unused
    assert parse_spec({"render": {"engine": "cycles", "samples": 8}}).render.samples == 8
    for key, table in (("outputs", {"outputs": []}), ("background.kinds", {"background": {"kinds": []}})):
        with pytest.raises(SpecError, match=rf"{key}: the list is empty; give at least one of .*leave {key} out"):
            parse_spec(table)
    with pytest.raises(SpecError, match=r"background.folder: not given; background.kinds has 'images'.*set folder"):
        parse_spec({"background": {"kinds": ["images"]}})
    with pytest.raises(SpecError, match=r"unknown keys.*camra.*\(camra: did you mean camera\?\)"):
        parse_spec({"camra": {}})
    with pytest.raises(SpecError, match=r"camera: unknown keys \['distnce'\].*\(distnce: did you mean distance\?\)"):
        parse_spec({"camera": {"distnce": [0.3, 0.5]}})
    with pytest.raises(SpecError) as far_off:  # nothing near: no guess
        parse_spec({"colour": 1})
    assert "did you mean" not in str(far_off.value)
    # Blender renders at least 4 × 4: a 1 × 1 spec got 4 × 4 images for 1 × 1 labels, 2 × 300 failed every sample
    for engine in ("workbench", "cycles"):
        with pytest.raises(SpecError, match="Blender renders images of at least 4×4 pixels"):
            parse_spec({"width": 2, "height": 300, "render": {"engine": engine}})
    assert parse_spec({"width": 1, "height": 1, "render": {"engine": "none"}}).width == 1  # GL images only
    # TOML: a top-level key below a [table] is that table's; a table's key above them is the top level's
    (tmp_path / "late.toml").write_text('[camera]\npreset = "egocentric"\nwidth = 512\nlighting = ["soft"]\n')
    with pytest.raises(SpecError, match=r"camera: unknown keys \['lighting', 'width'\].*\(lighting, width: top-level "
                                        r"key\(s\), which in TOML go above the first \[table\]\)"):
        load_spec(tmp_path / "late.toml")
    with pytest.raises(SpecError, match=r"spec: unknown keys \['focal'\].*\(focal: a key of \[camera\]\)"):
        parse_spec({"focal": [20, 30]})
    for name, text in (("bom.toml", 'samples = 3\n[render]\nengine = "none"\n'),  # saved by Windows Notepad
                       ("bom.json", '{"samples": 3, "render": {"engine": "none"}}')):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + text.encode())
        assert load_spec(tmp_path / name).samples == 3
    # a key twice in JSON kept its last value unseen (TOML refuses it); an output twice was recorded so, and
    # the same export with it once was another spec on resume
    (tmp_path / "twice.json").write_text('{"samples": 2, "render": {"engine": "none"}, "samples": 3}')
    with pytest.raises(SpecError, match=r"twice.json: duplicate key 'samples': give each key once"):
        load_spec(tmp_path / "twice.json")
    # a number of 5,000 digits: not said as a duplicate key, nor with Python's advice to programmers
    # (sys.set_int_max_str_digits), nor a TOML file as JSON
    (tmp_path / "long.json").write_text('{"samples": ' + "1" * 5000 + "}")
    (tmp_path / "long.toml").write_text("samples = " + "9" * 5000)
    for name, form in (("long.json", "JSON"), ("long.toml", "TOML")):
        with pytest.raises(SpecError, match=rf"^\S*{name}: not valid {form}: a number of more than [\d,]+ digits, "
                                            "more than any setting takes$"):
            load_spec(tmp_path / name)
    with pytest.raises(SpecError, match=r"outputs: mesh given more than once; give each once"):
        parse_spec({"outputs": ["mesh", "masks", "mesh"]})
    # a pose, clip or skin tone given twice was drawn twice as often, unsaid (no list weights its entries)
    for section, key, values, said in (("poses", "names", ["fist", "flat", "fist"], "fist"),
                                       ("poses", "files", ["a.npz", "a.npz"], "a.npz"),
                                       ("hands", "skin_tones", ["#ABCDEF", "abcdef"], "abcdef")):
        with pytest.raises(SpecError, match=rf"{section}.{key}.*: {said} given more than once; give each once"):
            parse_spec({section: {key: values, **({"source": "files"} if key == "files" else {})}})
    with pytest.raises(SpecError, match="camera.distance"):
        parse_spec({"camera": {"distance": [2, 1]}})
    # a string's characters ("12" → [1, 2]), a table's keys or booleans were read as the range
    for value in ("12", {"0.4": 1, "0.8": 2}, [True, 2], [0.4], [0.4, 0.6, 0.8]):
        with pytest.raises(SpecError, match=r"camera.distance: expected \[min, max\], two numbers"):
            parse_spec({"camera": {"distance": value}})
    with pytest.raises(SpecError, match="render.engine.*eevee"):
        parse_spec({"render": {"engine": "eevee"}})
    # Workbench's anti-aliasing: Blender's own values, named when another is given
    for bad in ("4", 4, "x8", True, ["8"], 8.0):
        with pytest.raises(SpecError, match=r"render.antialiasing: .* is not one of Workbench's anti-aliasing "
                                            r"settings; choose one of 'OFF', 'FXAA', '5', '8', '11', '16', '32'"):
            parse_spec({"render": {"antialiasing": bad}})
    # (as TOML invites: a number; "off" as the other values are written; recorded as Blender names them)
    assert [parse_spec({"render": {"antialiasing": v}}).render.antialiasing for v in (8, "off", "Fxaa", "32")] == \
        ["8", "OFF", "FXAA", "32"]
    assert parse_spec({}).render.antialiasing == "8"  # Blender's default: what exports rendered with before
    with pytest.raises(SpecError, match="render.forearm.*'arm'.*skin, sleeve, none"):
        parse_spec({"render": {"forearm": "arm"}})
    assert parse_spec({}).render.forearm == "skin"  # realistic renders get a forearm by default
    with pytest.raises(SpecError, match="background.folder"):
        parse_spec({"background": {"kinds": ["images"]}})
    (tmp_path / "backgrounds" / "folder.png").mkdir(parents=True)  # a folder, not an image
    (tmp_path / "backgrounds" / "readme.txt").write_text("x")
    with pytest.raises(SpecError, match="backgrounds' has no .png or .jpg images"):  # (every sample failed)
        parse_spec({"background": {"kinds": ["images"], "folder": str(tmp_path / "backgrounds")}})
    for data, needle in (({"outputs": 5}, "outputs: expected one of"), ({"lighting": 3}, "lighting: expected"),
                         ({"render": {"engine": 7}}, "render.engine: expected"),
                         # one choice, not a list (read as its first item, the rest ignored)
                         ({"render": {"engine": ["none", "workbench"]}}, "render.engine: expected one of"),
                         ({"poses": {"source": ["library", "files"]}}, "poses.source: expected one of"),
                         ({"camera": {"preset": ["egocentric"]}}, "camera.preset"),
                         ({"poses": {"names": ["nosuchpose"]}}, "poses.names: unknown poses \\['nosuchpose'\\]"),
                         ({"poses": {"names": [1, 2]}}, "poses.names: expected a list of pose names"),
                         ({"poses": {"names": "fist"}}, None), ({"poses": {"files": str(clip), "source": "files"}}, None),
                         ({"poses": {"files": [str(tmp_path / "nox.npz")], "source": "files"}},
                          "poses.files: .*nox.npz' is not a file"),
                         ({"poses": {"corpus": str(tmp_path / "corpus20K"), "source": "corpus"}},
                          "poses.corpus: .*corpus20K' is not a folder"),
                         ({"poses": {"corpus": 5}}, "poses.corpus: expected a string"),
                         ({"hands": {"shape_sigma": True}}, "hands.shape_sigma"),
                         ({"hands": {"skin_tones": [123456]}}, "hands.skin_tones: expected"),
                         ({"hands": {"skin_tones": 0}}, "hands.skin_tones: expected"),
                         # keys of another source, or of images not drawn: never read, yet listed on the card
                         ({"poses": {"files": [str(clip)]}}, "poses.files is given but poses.source is 'library': "
                                                             "set source = 'files' to use it, or remove files"),
                         ({"poses": {"source": "files", "files": [str(clip)], "names": ["fist"]}},
                          "poses.names is given but poses.source is 'files': set source = 'library'"),
                         ({"poses": {"split": "train"}}, "poses.split is given but .* set source = 'corpus'"),
                         ({"background": {"folder": str(tmp_path)}}, "background.folder is given but "
                          "background.kinds has no 'images': add 'images' to kinds to draw from it, or remove folder")):
        if needle is None:  # one name or one file is a list of one
            parsed = parse_spec(data)
            assert parsed.poses.names in ((), ("fist",)) and parsed.poses.files in ((), (str(clip),))
            continue
        with pytest.raises(SpecError, match=needle):
            parse_spec(data)
    # a path of the spec no file can have: "~nosuchuser" was a traceback (RuntimeError), an over-long name was said
    # without its key, the whole path printed (the fuzzing of 2026-12-07)
    long_name = str(tmp_path / ("a" * 300) / "x")
    for data, needle in (({"background": {"kinds": ["images"], "folder": "~nosuchuser_hf/x"}},
                          "^background.folder: there is no home folder for ~nosuchuser_hf: give the full path$"),
                         ({"poses": {"source": "files", "files": ["~nosuchuser_hf/a.npz"]}},
                          "^poses.files: there is no home folder for ~nosuchuser_hf"),
                         ({"poses": {"source": "corpus", "corpus": "~nosuchuser_hf/c"}},
                          "^poses.corpus: there is no home folder for ~nosuchuser_hf"),
                         ({"background": {"kinds": ["images"], "folder": long_name}},
                          "^background.folder: '.{40}….{30}': a name in this path is longer than the file system "
                          "allows: shorten it$"),
                         ({"poses": {"source": "files", "files": [long_name]}}, "^poses.files: .* shorten it$"),
                         ({"poses": {"source": "corpus", "corpus": long_name}}, "^poses.corpus: .* shorten it$")):
        with pytest.raises(SpecError, match=needle):
            parse_spec(data)
    latin = tmp_path / "latin.toml"
    latin.write_bytes("# caf\xe9\nsamples = 3\n".encode("latin-1"))
    with pytest.raises(SpecError, match="latin.toml: not UTF-8 text"):
        load_spec(latin)
    bad = tmp_path / "spec.toml"
    bad.write_text("samples = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
    # a spec saved under the other suffix was only "not valid" (the fuzzing of 2026-12-07)
    (tmp_path / "json.toml").write_text('{"samples": 3}')
    with pytest.raises(SpecError, match=r"json.toml: not valid TOML \(.*\): it is JSON, so name it .json$"):
        load_spec(tmp_path / "json.toml")
    (tmp_path / "toml.json").write_text('samples = 3\n')
    with pytest.raises(SpecError, match=r"toml.json: not valid JSON \(.*\): it is TOML, so name it .toml$"):
        load_spec(tmp_path / "toml.json")
    with pytest.raises(SpecError, match=r"spec.toml: not valid TOML \(.*document\)\)$"):  # neither: no hint
        load_spec(bad)
    good = tmp_path / "good.toml"
    good.write_text('samples = 3\n[camera]\npreset = "egocentric"\n')
    assert load_spec(good).camera.focal == (16.0, 24.0)


def test_a_spec_that_is_a_folder_or_yaml_is_named_so(tmp_path):
    """A folder was "no such file"; a .yaml spec "not valid JSON", without saying which formats are read."""
    with pytest.raises(SpecError, match=r"is a folder: give the export specification file in it \(.toml or .json\)"):
        load_spec(tmp_path)
    yaml = tmp_path / "spec.yaml"
    yaml.write_text("samples: 3\n")
    with pytest.raises(SpecError, match=r"spec.yaml: specifications are read as TOML \(.toml\) or JSON .*: write it "
                                        "as TOML or JSON"):
        load_spec(yaml)


def test_a_spec_that_is_a_device_or_broken_link_is_named_so(tmp_path):
    """/dev/null or a link to nothing was "no such file"; both exist, neither is a specification."""
    with pytest.raises(SpecError, match=r"/dev/null is not a regular file \(a device\): give the export spec"):
        load_spec("/dev/null")
    link = tmp_path / "spec.toml"
    link.symlink_to(tmp_path / "gone.toml")
    with pytest.raises(SpecError, match=r"spec.toml is not a regular file \(a broken link\)"):
        load_spec(link)
    with pytest.raises(SpecError, match=r"missing.toml: no such file"):
        load_spec(tmp_path / "missing.toml")


def test_command_engine_generate_keeps_the_specs_generate_section(tmp_path, monkeypatch):
    """--engine generate over a spec of another engine: its [generate] was dropped (the defaults used)."""
    from handforge.cli import main

    ran = []
    monkeypatch.setattr("handforge.export.run.export", lambda spec, out, **_: ran.append(spec) or {
        "finished": 0, "written": 0, "skipped": 0, "seconds": 0.0})
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "generate": {"steps": 3, "prompts": ["two hands"]}}))
    assert main(["export", str(spec), "--out", str(tmp_path / "out"), "--engine", "generate", "--quiet"]) == 0
    (used,) = ran
    assert used.render.engine == "generate" and (used.generate.steps, used.generate.prompts) == (3, ("two hands",))


def test_command_exports_and_reports_bad_specs(tmp_path, capsys, monkeypatch):
    from handforge.cli import main

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 2}))
    assert main(["export", str(spec), "--out", str(tmp_path / "out"), "--engine", "none", "--quiet"]) == 0
    card = json.loads((tmp_path / "out" / "dataset_card.json").read_text())
    assert card["samples"] == 2 and card["command"].startswith("handforge export") and "open" in card["hand_model"]
    spec.write_text(json.dumps({"samples": 0}))
    assert main(["export", str(spec), "--out", str(tmp_path / "bad")]) == 2
    assert "samples: expected a whole number" in capsys.readouterr().err
    spec.write_text(json.dumps({**SPEC, "samples": 2}))
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(spec), "--out", " ", "--engine", "none", "--quiet"])
    assert exit_.value.code == 2 and "--out: give a folder" in capsys.readouterr().err
    (tmp_path / "no-mano").mkdir()
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "no-mano"))
    spec.write_text(json.dumps({**SPEC, "samples": 2, "hand_model": "mano"}))
    assert main(["export", str(spec), "--out", str(tmp_path / "mano"), "--engine", "none", "--quiet"]) == 2
    assert "hand_model: 'mano' is not available here" in capsys.readouterr().err
    assert not (tmp_path / "mano").exists()
    # a mistyped corpus path is refused before the folder is made (a folder of that spec blocked the fix)
    spec.write_text(json.dumps({**SPEC, "samples": 2, "poses": {"source": "corpus", "corpus": str(tmp_path / "nope")}}))
    assert main(["export", str(spec), "--out", str(tmp_path / "typo"), "--engine", "none", "--quiet"]) == 2
    assert "poses.corpus" in capsys.readouterr().err and not (tmp_path / "typo").exists()


def test_the_card_command_with_relative_paths_runs_from_anywhere(tmp_path, monkeypatch):
    """`handforge export spec.json --out data` recorded just that: run from another folder, the card's
    command found no spec (or read another, and wrote another dataset there)."""
    import os
    import subprocess
    import sys

    from handforge.cli import main

    work, elsewhere = tmp_path / "work dir", tmp_path / "elsewhere"
    work.mkdir()
    elsewhere.mkdir()
    (work / "spec.json").write_text(json.dumps({**SPEC, "samples": 2}))
    monkeypatch.chdir(work)
    argv = ["spec.json", "--out", "data", "--seed", "3", "--quiet"]
    # (sys.argv is pytest's: the card records the words given to main, --seed included; it fell back to
    # 'handforge export SPEC --out OUT', another dataset)
    assert main(["export", *argv]) == 0
    command = json.loads((work / "data" / "dataset_card.json").read_text())["command"]
    assert command == f"cd '{work}' && handforge export spec.json --out data --seed 3", command
    assert f"Made with: `{command}`" in (work / "data" / "dataset_card.md").read_text()
    # run as recorded, from another folder: the same dataset, found finished
    shell = f'handforge() {{ "{sys.executable}" -m handforge "$@"; }}; {command}'
    done = subprocess.run(["bash", "-c", shell], cwd=elsewhere, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0 and "(0 new, 2 already there)" in done.stdout, done
    assert list(elsewhere.iterdir()) == []
    # absolute paths throughout: the command as typed
    monkeypatch.chdir(elsewhere)
    argv = [str(work / "spec.json"), "--out", str(tmp_path / "absolute"), "--quiet"]
    assert main(["-v", "export", *argv]) == 0  # (an option before the command)
    command = json.loads((tmp_path / "absolute" / "dataset_card.json").read_text())["command"]
    assert command.startswith(f"handforge export '{work / 'spec.json'}' --out "), command


def test_the_example_spec_the_command_prints_is_every_default(tmp_path, capsys):
    """`handforge export --example-spec > spec.toml` (before: README sent users to the module's docstring)
    writes a spec that loads as it is (its top-level lighting key once sat under [render], which refused
    it) and holds every key at its default: the example cannot drift from the code."""
    from handforge.cli import main

    with pytest.raises(SystemExit) as done:  # no SPEC, no --out: it prints and exits, as --version does
        main(["export", "--example-spec"])
    assert done.value.code == 0
    (tmp_path / "spec.toml").write_text(capsys.readouterr().out)
    parsed = load_spec(tmp_path / "spec.toml")
    assert parsed == parse_spec({})
    assert parsed.lighting == ("studio", "soft", "rim", "top") and parsed.render.engine == "workbench"
    assert len(parsed.hands.skin_tones) == 10  # skin_tones = [] there: the Monk scale's ten
    # its preset switched: the egocentric ranges (the third-person ones, written out live, stayed: a review found it)
    text = (tmp_path / "spec.toml").read_text()
    (tmp_path / "ego.toml").write_text(text.replace('preset = "third_person"', 'preset = "egocentric"'))
    assert load_spec(tmp_path / "ego.toml").camera == parse_spec({"camera": {"preset": "egocentric"}}).camera
    for name, low_high in CAMERA_PRESETS["egocentric"].items():  # the comments say each preset's range
        assert f"(egocentric: [{low_high[0]:g}, {low_high[1]:g}])" in text.split(f"# {name} = ")[1].splitlines()[0]


def test_a_sample_whose_files_cannot_be_written_leaves_nothing_half_written(tmp_path):
    from handforge.export.folder import SAMPLES
    from handforge.export.samples import SampleWriter, write_sample

    good = np.zeros((4, 4), np.uint8)
    bad = np.zeros((4, 4, 7), np.uint8)  # no image mode has 7 channels: PIL refuses it mid-write
    with pytest.raises(TypeError):
        write_sample(tmp_path, 3, {"index": 3}, {"mask_left.png": good, "rgb.png": bad})
    assert list((tmp_path / SAMPLES).iterdir()) == []  # the hidden folder went too
    with SampleWriter(tmp_path) as writer:
        writer.write_or_fail(3, lambda: ({"index": 3}, {"rgb.png": bad}))
    assert writer.errors[3].startswith("TypeError") and writer.stopped is None


def test_a_file_where_a_sample_goes_is_named_and_leaves_nothing_half_written(tmp_path):
    """A plain file named as a sample's folder: the sample failed with shutil's NotADirectoryError, its path
    shown as PosixPath('...'), and its hidden .partial- folder stayed (left again by every rerun)."""
    from handforge.export.folder import SAMPLES, sample_dir
    from handforge.export.samples import SampleWriter, failure, write_sample

    in_the_way = sample_dir(tmp_path, 1)
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("mine")
    with pytest.raises(FileExistsError) as raised:
        write_sample(tmp_path, 1, {"index": 1}, {"mask_left.png": np.zeros((4, 4), np.uint8)})
    line = failure(raised.value)
    assert line.startswith("FileExistsError") and f"'{in_the_way}'" in line and "PosixPath" not in line
    assert "move it away" in line
    assert sorted(p.name for p in (tmp_path / SAMPLES).iterdir()) == [in_the_way.name]  # no .partial- left
    assert in_the_way.read_text() == "mine"  # not ours to delete
    with SampleWriter(tmp_path) as writer:  # one sample's failure: the run goes on
        writer.write_or_fail(1, lambda: ({"index": 1}, {"mask_left.png": np.zeros((4, 4), np.uint8)}))
        writer.write_or_fail(2, lambda: ({"index": 2}, {"mask_left.png": np.zeros((4, 4), np.uint8)}))
    assert writer.errors[1].startswith("FileExistsError") and writer.stopped is None
    assert (sample_dir(tmp_path, 2) / "mask_left.png").is_file()


def test_a_full_disk_is_said_as_such_and_stops_the_run(tmp_path, monkeypatch):
    """numpy reports a full disk while it writes an array as a short write without an errno: the run's
    summary said "OSError: 196608 requested and 157664 written (format.py:730)"; and the run went on,
    making every later sample to fail each one."""
    from handforge.export.folder import SAMPLES
    from handforge.export.samples import SampleWriter
    from handforge_shared.files import file_error

    def short_write(fh, array, allow_pickle=False):  # what np.save raises when the disk fills mid-array
        fh.write(b"\x93NUMPY")
        raise OSError(f"{array.nbytes} requested and 6 written")

    monkeypatch.setattr(np, "save", short_write)
    made = []

    def make(index):
        made.append(index)
        return {"index": index}, {"depth.npy": np.zeros((8, 8), np.float32)}

    with pytest.raises(OSError) as stopped, SampleWriter(tmp_path) as writer:
        for index in range(20):
            writer.write_or_fail(index, lambda: make(index))
    assert stopped.value.errno == errno.ENOSPC and len(made) <= 3, made  # the one written, one waiting, one made
    assert file_error(stopped.value) == (f"{tmp_path / SAMPLES}: No space left on device (256 requested and 6 "
                                         "written): make room (or choose another folder)")
    assert list((tmp_path / SAMPLES).iterdir()) == []


def test_a_background_image_that_does_not_open_is_refused_with_the_spec(tmp_path, monkeypatch):
    """A file in the background folder that PIL cannot open failed every sample that drew it, on every
    rerun (the dataset never finished): named when the spec is read, before the folder is claimed."""
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(folder / "a.png")
    spec = {"background": {"kinds": ["images"], "folder": str(folder)}}
    assert parse_spec(spec).background.folder == str(folder)
    (folder / "._a.png").write_bytes(b"\x00\x05\x16\x07" * 20)  # a Mac's AppleDouble file
    with pytest.raises(SpecError, match=r"background.folder: .*\._a.png' is not a readable image.*remove it"):
        parse_spec(spec)
    (folder / "._a.png").unlink()
    Image.new("L", (40, 40)).save(folder / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1,600 pixels: above twice the limit
    with pytest.raises(SpecError, match="huge.png' is not a readable image \\(DecompressionBombError"):
        parse_spec(spec)


def test_a_background_image_far_from_the_frames_shape_is_refused_with_the_spec(tmp_path):
    """A 165-byte 1×20000 PNG was scaled to 64×1,280,000 to cover a 64² frame: 0.75 GB more memory and 3.5 s
    for one sample (1×2,000,000: 75 GB). Refused when the spec is read; a 10:1 panorama is not."""
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    Image.new("RGB", (1000, 100), (200, 10, 10)).save(folder / "panorama.png")
    spec = {"width": 64, "height": 64, "background": {"kinds": ["images"], "folder": str(folder)}}
    assert parse_spec(spec).background.folder == str(folder)
    Image.new("RGB", (1, 20000), (200, 10, 10)).save(folder / "strip.png")
    with pytest.raises(SpecError, match=r"background.folder: .*strip.png' is 1×20000 pixels, far from the 64×64 "
                                        r"frame's shape: scaled to cover it, it would be 64×1280000 \(245.8 MB\).*"
                                        r"crop the image nearer the frame's shape \(covering at most 16 frames\)"):
        parse_spec(spec)


def test_reading_the_spec_opens_each_background_image_once(tmp_path, monkeypatch):
    """Its header was opened twice: once to see it opens, once for its size against the frame's shape (every
    parse of the spec, an export worker's too, does it)."""
    folder = tmp_path / "backgrounds"
    folder.mkdir()
    Image.new("RGB", (1000, 100), (200, 10, 10)).save(folder / "panorama.png")
    Image.new("RGB", (80, 60), (10, 200, 10)).save(folder / "small.jpg")
    opened: list[str] = []
    image_open = Image.open

    def counting_open(fp, *args, **kwargs):
        opened.append(Path(fp).name)
        return image_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    spec = {"width": 64, "height": 64, "background": {"kinds": ["images"], "folder": str(folder)}}
    assert parse_spec(spec).background.folder == str(folder)
    assert sorted(opened) == ["panorama.png", "small.jpg"], opened
    Image.new("RGB", (1, 20000), (200, 10, 10)).save(folder / "strip.png")
    opened.clear()
    with pytest.raises(SpecError, match=r"strip.png' is 1×20000 pixels, far from the 64×64 frame's shape"):
        parse_spec(spec)  # the size read by the one opening still refuses it
    assert sorted(opened) == ["panorama.png", "small.jpg", "strip.png"], opened


def test_a_background_image_claiming_too_many_pixels_after_the_run_began_is_named(tmp_path):
    """Pillow's DecompressionBombError (a header claiming 20000 x 20000) is no OSError: it left the sampler as
    a traceback, without the image's name."""
    from handforge.export.sampler import background_image

    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(20_000, 20_000))
    with pytest.raises(OSError, match=r"background image .*huge.png: Image size \(400000000 pixels\).*replace it"):
        background_image({"kind": "image", "image": str(path), "crop": (0.0, 0.0)}, 8, 8)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_background_image_cut_short_is_refused_before_anything_is_written(tmp_path, suffix, monkeypatch):
    """Half an image (an interrupted download) has a whole header: it opened, then failed every sample that
    drew it ("image file is truncated", without its name), on every rerun. Decoded once a run by the driver
    (not at each parse of the spec: every export worker parses it), and not again for images its folder
    recorded unchanged."""
    from handforge.export import spec as spec_module

    folder = tmp_path / "backgrounds"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(folder / f"whole{suffix}")
    data = (folder / f"whole{suffix}").read_bytes()
    (folder / f"cut{suffix}").write_bytes(data[:len(data) // 2])
    spec = parse_spec({**SPEC, "samples": 1, "background": {"kinds": ["images"], "folder": str(folder)}})
    out = tmp_path / "data"
    with pytest.raises(SpecError, match=rf"background.folder: .*cut{suffix}' is not a readable image \(.*runcated"):
        export(spec, out, progress=False)
    assert not out.exists()
    from handforge.export.sampler import background_image  # one cut short after the run began: named

    with pytest.raises(OSError, match=rf"background image .*cut{suffix}: .*runcated.*replace it"):
        background_image({"kind": "image", "image": str(folder / f"cut{suffix}"), "crop": (0.0, 0.0)}, 8, 8)
    (folder / f"cut{suffix}").write_bytes(data)
    decoded = []
    problem = spec_module._image_problem
    monkeypatch.setattr(spec_module, "_image_problem",
                        lambda path, decode=True: (decode and decoded.append(path.name), problem(path, decode))[1])
    monkeypatch.setattr("handforge.export.folder.MTIME_SETTLED_NS", 0)  # the images' times recorded at once
    export(spec, out, progress=False)
    assert sorted(decoded) == [f"cut{suffix}", f"whole{suffix}"]
    decoded.clear()
    export(parse_spec({**spec.to_dict(), "samples": 2}), out, progress=False)  # a resume: nothing decoded again
    assert decoded == [] and len(finished_indices(out, 2)) == 2


def test_a_16_bit_grayscale_background_keeps_its_tones(tmp_path):
    """A 16-bit grayscale PNG background (mode I;16) came out white: convert("RGB") clipped its values at 255."""
    from handforge.export.sampler import background_image

    ramp = np.linspace(0, 65535, 16 * 16).reshape(16, 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as image:
        assert image.mode.startswith("I")  # (what Pillow makes of it)
    rgb = background_image({"kind": "images", "image": str(tmp_path / "g16.png"), "crop": [0.0, 0.0]}, 16, 16)
    np.testing.assert_allclose(rgb, np.repeat(ramp[..., None] / 65535.0, 3, axis=2), atol=0.5 / 255 + 1e-6)


def test_a_background_photo_is_decoded_once_and_each_sample_crops_it(tmp_path, monkeypatch):
    """Each sample decoded and scaled its background photo again (0.3 s for 12 MP at 256², more than the
    render); now once per file and image size, the same pixels, and an edited file is read again."""
    from handforge.export.sampler import background_image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(photo)
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    crops = [[0.0, 0.0], [0.5, 0.25], [1.0, 1.0]]
    got = [background_image({"kind": "images", "image": str(photo), "crop": c}, 48, 40) for c in crops]
    assert len(opened) == 1
    with real_open(photo) as image:  # the oracle: Pillow's own scaling to cover 48 x 40, then the crop
        cover = np.asarray(image.resize((71, 40)), dtype=np.float32) / 255.0
    for (fx, fy), rgb in zip(crops, got):
        x0 = round(fx * (71 - 48))
        assert rgb.dtype == np.float32 and np.array_equal(rgb, cover[:, x0:x0 + 48])
    got[0][:] = 0  # a sample's copy: the next sample's is untouched
    assert np.array_equal(background_image({"kind": "images", "image": str(photo), "crop": crops[0]}, 48, 40),
                          cover[:, :48])
    Image.new("RGB", (160, 90), (255, 0, 0)).save(photo)  # edited in place: read again
    red = background_image({"kind": "images", "image": str(photo), "crop": crops[0]}, 48, 40)
    assert len(opened) == 2 and np.array_equal(red[0, 0], [1.0, 0.0, 0.0])


def test_a_jpeg_background_is_decoded_at_the_smallest_scale_that_covers_the_frame(tmp_path, monkeypatch):
    """A JPEG was decoded whole, then scaled down: 0.2 s for 12 MP, 1.1 GB for 100 MP. Now at 1/1-1/8 of its size
    (its DCT's own scaling), the smallest that covers the frame, and scaled from there: nearly the same pixels."""
    from handforge.export.sampler import background_image

    ys, xs = np.mgrid[0:1200, 0:1600]
    smooth = np.stack([xs / 1600, ys / 1200, (xs + ys) / 2800], axis=-1) * 255
    photo = tmp_path / "photo.jpg"
    Image.fromarray(smooth.astype(np.uint8)).save(photo, quality=95)
    scaled = []
    real_resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda self, size, *a, **k: scaled.append(self.size) or
                        real_resize(self, size, *a, **k))
    rgb = background_image({"kind": "images", "image": str(photo), "crop": [0.0, 0.0]}, 120, 80)
    assert scaled == [(200, 150)]  # 1/8: still over the 120×90 that covers 120×80 at the photo's shape
    with Image.open(photo) as image:  # the oracle: Pillow's scaling of the whole decoded photo
        whole = np.asarray(real_resize(image.convert("RGB"), (120, 90)), dtype=np.float32)[:80] / 255.0
    assert np.abs(rgb - whole).mean() < 1.5 / 255
    background_image({"kind": "images", "image": str(photo), "crop": [0.0, 0.0]}, 300, 200)
    assert scaled[-1] == (400, 300)  # 1/4: 1/8 would not cover 300×225


def test_a_clip_with_a_hand_in_few_frames_poses_every_sample(tmp_path, monkeypatch):
    """Frames without hands are drawn again in a loop: by recursion, a clip with a hand in one frame of
    3,000 failed sample 2 with a RecursionError on every rerun. A draw that never finds a hand is said."""
    from handforge.export import sampler
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    frames, pair = 3000, side_by_side()
    clip = tmp_path / "sparse.npz"
    MotionClip(hands={"right": stack_poses([pair.right] * frames), "left": stack_poses([pair.left] * frames)},
               present={side: np.arange(frames) == 0 for side in ("right", "left")}).save(clip)
    spec = parse_spec({"poses": {"source": "files", "files": [str(clip)]}})
    assert [sampler.sample_scene(spec, index).origin for index in range(3)] == ["files:sparse.npz#0"] * 3
    monkeypatch.setattr(sampler, "MAX_FRAME_DRAWS", 10)
    with pytest.raises(ValueError, match="no frame with a hand in 10 draws"):
        sampler.sample_scene(spec, 2)


def test_the_background_writer_reports_each_samples_failure_and_writes_the_rest(tmp_path):
    """Samples are written by a background thread while the next is made: a sample that fails to be
    made or written is reported under its own index, its neighbours are written, nothing half-written
    stays, and leaving the block (here by an error) first writes every sample already made."""
    from handforge.export.folder import SAMPLES, finished_indices
    from handforge.export.samples import SampleWriter

    good = {"mask_left.png": np.ones((4, 4), bool), "depth.npy": np.zeros((4, 4), np.float32)}
    bad = {"rgb.png": np.zeros((4, 4, 7), np.uint8)}  # refused by PIL mid-write

    def broken():
        raise ValueError("no such background\nsecond line")

    with pytest.raises(KeyboardInterrupt), SampleWriter(tmp_path) as writer:
        writer.write_or_fail(0, lambda: ({"index": 0}, good))
        writer.write_or_fail(1, lambda: ({"index": 1}, bad))
        writer.write_or_fail(2, broken)
        writer.write_or_fail(3, lambda: ({"index": 3}, good))
        raise KeyboardInterrupt  # stopped: sample 3 was made, so it is written
    assert sorted(writer.errors) == [1, 2]
    assert writer.errors[1].startswith("TypeError") and writer.errors[2].startswith("ValueError: no such background (")
    assert finished_indices(tmp_path, 10) == [0, 3]
    assert sorted(p.name for p in (tmp_path / SAMPLES).iterdir()) == ["000000", "000003"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names a file descriptor's file through /proc")
def test_a_sample_is_on_the_disk_before_it_is_renamed_into_place(tmp_path, monkeypatch):
    """Renamed without an fsync, a sample could come back from a power loss with empty files, counted as
    finished. The real fsyncs and rename run; the test records what each was of, in order."""
    import os

    from handforge.export.folder import LABELS, PARTIAL_PREFIX
    from handforge.export.samples import write_sample

    calls, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda src, dst: (calls.append(("rename", str(src))), replace(src, dst))[1])
    images = {"mask_left.png": np.ones((4, 4), bool), "depth.npy": np.zeros((4, 4), np.float32)}
    final = write_sample(tmp_path.resolve(), 3, {"index": 3}, images)
    partial = calls[4][1]  # (the writer's own hidden folder: .partial-000003.<random>)
    assert partial.startswith(str(final.parent / f"{PARTIAL_PREFIX}000003."))
    # the files' and the folder's fsyncs run at once (ext4 commits them together), all before the rename
    assert sorted(calls[:4]) == sorted([*(("fsync", f"{partial}/{name}") for name in
                                          ("mask_left.png", "depth.npy", LABELS)), ("fsync", partial)])
    assert calls[4:] == [("rename", partial), ("fsync", str(final.parent))]
    assert np.load(final / "depth.npy").shape == (4, 4) and np.asarray(Image.open(final / "mask_left.png")).all()


def test_a_copied_sample_folder_is_not_a_sample_and_a_damaged_label_is_named(tmp_path):
    import shutil

    spec = parse_spec({"samples": 2, "width": 32, "height": 32, "render": {"engine": "none"}})
    export(spec, tmp_path / "out", progress=False)
    shutil.copytree(tmp_path / "out" / "samples" / "000001", tmp_path / "out" / "samples" / "000001 copy")
    export(spec, tmp_path / "out", progress=False)  # (the copy was read as a third sample, a duplicate id)
    images = json.loads((tmp_path / "out" / "coco.json").read_text())["images"]
    assert [image["id"] for image in images] == [1, 2]
    (tmp_path / "out" / "samples" / "000001" / "labels.json").write_text('{"index": 1,\x01')
    with pytest.raises(ValueError, match="000001/labels.json is damaged.*delete its sample folder"):
        export(spec, tmp_path / "out", progress=False)
    (tmp_path / "out" / "samples" / "000001" / "labels.json").write_text("[" * 100_000)  # (a RecursionError traceback)
    with pytest.raises(ValueError, match=r"000001/labels.json is damaged \(nested too deeply: .*delete its sample"):
        export(spec, tmp_path / "out", progress=False)


def test_the_labels_check_holds_the_boxes_image_size_and_visible_flags_to_what_their_readers_need(exported):
    """(Mutations S4, S5, S6 and S3 of samples.py's labels_problem, survived: a hand's bbox_projected left
    unchecked, a hand's bbox without its mask file, an image 0 pixels wide taken, a visible flag given as true or
    false refused.) The readers of labels (the aggregates, the engines' datasets) crop with the boxes, read the masks
    and build a camera from its size; a visible flag written as a JSON true or false is a flag, as intended."""
    from handforge.export.samples import labels_problem

    sample = labels(exported)[0]
    index, side = sample["index"], next(s for s, h in sample["hands"].items() if h["bbox"] is not None)
    assert labels_problem(sample, index) == ""

    def edited(change):
        copy = json.loads(json.dumps(sample))
        change(copy)
        return labels_problem(copy, index)

    assert edited(lambda l: l["hands"][side].update(bbox_projected="abc")) == \
        f"hands.{side}.bbox_projected must be null or 4 numbers"
    assert edited(lambda l: l["hands"][side].update(bbox_projected=None)) == ""
    assert edited(lambda l: l["files"].pop(f"mask_{side}")) == \
        f"hands.{side}.bbox must be null or 4 numbers, with files.mask_{side}"
    assert edited(lambda l: l["camera"].update(width=0)) == "camera.width and camera.height must be positive whole numbers"
    assert edited(lambda l: l["hands"][side].update(visible=[bool(v) for v in l["hands"][side]["visible"]])) == ""
    # a file outside the sample's folder: `eval image` evaluated another sample's image, or opened /etc/passwd
    for name in ("../000001/rgb.png", "/etc/passwd", "..", "", "sub\\rgb.png"):
        assert edited(lambda l: l["files"].update(rgb=name)) == \
            f"files.rgb = {name!r} is not the name of a file in the sample's folder"


@pytest.mark.parametrize("edit, problem", [
    (lambda labels: {"a": 1}, "no index: not a sample's labels"),
    (lambda labels: [1, 2], "a JSON list, not an object"),
    (lambda labels: {**labels, "index": 7}, "index 7 in the folder of sample 1"),
    (lambda labels: {k: v for k, v in labels.items() if k != "camera"}, "camera.width and camera.height"),
    (lambda labels: {**labels, "hands": {**labels["hands"], "right": {**labels["hands"]["right"], "keypoints_2d":
                                                                     labels["hands"]["right"]["keypoints_2d"][:20]}}},
     "hands.right.keypoints_2d must be 21×2 numbers"),
    (lambda labels: {**labels, "hands": {**labels["hands"], "left": {**labels["hands"]["left"], "visible": "yes"}}},
     "hands.left.visible must be 21 numbers"),
])
def test_an_edited_label_file_is_named_with_what_is_wrong(tmp_path, edit, problem):
    """A labels.json a clean-up script rewrote ended the aggregates' rebuild in a KeyError, IndexError or
    TypeError traceback naming no file; the aggregate files stay as they were."""
    spec = parse_spec({"samples": 2, "width": 32, "height": 32, "render": {"engine": "none"},
                       "camera": {"distance": [0.3, 0.4]}})
    out = tmp_path / "out"
    export(spec, out, progress=False)
    coco = (out / "coco.json").read_bytes()
    path = out / "samples" / "000001" / "labels.json"
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    with pytest.raises(ValueError, match=f"000001/labels.json is damaged \\({re.escape(problem)}.*\\): delete its "
                                         "sample folder and run again"):
        export(spec, out, progress=False)
    assert (out / "coco.json").read_bytes() == coco


def test_samples_from_index_a_million_on_are_finished_samples(tmp_path):
    """The spec allows 10,000,000 samples; folder 1000000 (seven digits, as ``sample_dir`` names it) was
    left out of the COCO, InterHand2.6M-style files and the card. "0000007" is no sample's folder."""
    for name in ("000007", "0000007", "1000000", "1000001"):
        (tmp_path / "samples" / name).mkdir(parents=True)
        (tmp_path / "samples" / name / "labels.json").write_text("{}")
    assert finished_indices(tmp_path, 1_000_001) == [7, 1_000_000]
    from handforge.export.folder import is_finished, pending_indices

    pending = pending_indices(tmp_path, 1_000_002)  # what a run still has to make: the others
    assert len(pending) == 999_999 and pending[:8] == [0, 1, 2, 3, 4, 5, 6, 8] and pending[-1] == 999_999
    assert pending == [i for i in range(1_000_002) if not is_finished(tmp_path, i)]


def test_keypoints_behind_the_camera_are_not_drawn():
    """A point behind the camera projects to a mirrored pixel that can lie in the image: it was drawn
    there with its bones (COCO already marked it v=0)."""
    from handforge.render.overlay import draw_skeletons, label_keypoints, openpose_hands_image

    points = np.full((21, 2), 40.0)
    points[:, 0] += np.arange(21)  # a row of points across the image
    camera = np.ones((21, 3))
    camera[5:, 2] = -0.1  # all but the first five behind the camera
    hands = label_keypoints({"left": {"keypoints_2d": points.tolist(), "keypoints_camera": camera.tolist(),
                                      "visible": [False] * 21}})
    assert np.isnan(hands["left"][0][5:]).all() and np.isfinite(hands["left"][0][:5]).all()
    drawn = np.asarray(draw_skeletons(Image.new("RGB", (80, 80)), hands)).max(axis=-1)
    assert drawn[:, 52:].max() == 0 and drawn[:, 38:46].max() > 0  # (points 5.. lie at x = 45..60)
    assert openpose_hands_image(80, 80, hands).max(axis=-1)[:, 52:].max() == 0


def test_the_contact_sheet_fits_any_aspect_ratio(tmp_path):
    for width, height in ((1024, 1), (32, 96)):  # 0 px high: a crash (taller than wide: tiles overlapped)
        spec = parse_spec({"samples": 5, "width": width, "height": height, "render": {"engine": "none"}})
        export(spec, tmp_path / f"{width}x{height}", progress=False)
        sheet = Image.open(tmp_path / f"{width}x{height}" / "contact_sheet.png")
        assert sheet.size == (4 * 256, 2 * 256)


def test_the_contact_sheet_draws_skeletons_at_the_tiles_scale(tmp_path):
    """The keypoints were drawn on the sample's image before it was fitted into its 256 px tile: a 32²
    export's 1 px bones and 3 px markers became 8 and 24 px on the sheet, hiding its hands (a 128² one's:
    2 and 6). Drawn on the tile, they take about the same share of it whatever the image's size."""
    covered = {}
    for side in (32, 128):
        out = tmp_path / str(side)
        export(parse_spec({**SPEC, "samples": 1, "width": side, "height": side}), out, progress=False)
        mesh = Image.open(out / "samples" / "000000" / "mesh.png").convert("RGB").resize((256, 256))
        tile = Image.open(out / "contact_sheet.png").convert("RGB").crop((0, 0, 256, 256))
        covered[side] = (np.asarray(tile) != np.asarray(mesh)).any(axis=-1).mean()
    assert 0 < covered[128] and covered[32] < 1.5 * covered[128], covered


def test_a_full_disk_is_one_line_with_what_to_do(tmp_path, capsys, monkeypatch):
    import errno

    from handforge.cli import main
    from handforge.export import run

    def disk_full(out, samples, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "contact_sheet.png"))

    monkeypatch.setattr(run, "contact_sheet", disk_full)  # the disk filling at the aggregate step
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 1, "width": 32, "height": 32}))
    assert main(["export", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "contact_sheet.png: No space left on device: make room (or choose another --out)" in err  # (a traceback)
    assert "finished samples are kept" in err and "Traceback" not in err


def test_an_unreadable_file_is_not_called_a_full_disk(tmp_path, capsys, monkeypatch):
    """A labels.json made unreadable (chmod a-r) was "could not write ...: Permission denied; make room"."""
    import errno

    from handforge.cli import main
    from handforge.export import run

    def unreadable(out, samples, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(out / "samples" / "000000" / "labels.json"))

    monkeypatch.setattr(run, "contact_sheet", unreadable)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 1, "width": 32, "height": 32}))
    assert main(["export", str(spec), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "000000/labels.json: Permission denied: let this user read and write it (or choose another --out)" in err
    assert "make room" not in err and "could not write" not in err and "finished samples are kept" in err


def _drawn(hands, size=(96, 80)):
    from handforge.render.overlay import draw_skeletons, openpose_hands_image

    return (np.asarray(draw_skeletons(Image.new("RGB", size), hands)).max(axis=-1) > 0,
            openpose_hands_image(*size, hands).max(axis=-1) > 0)


def test_a_keypoint_almost_on_the_camera_plane_draws_its_bone_clipped_not_wrapped():
    """A keypoint just in front of the camera projects beyond 2^31 pixels, which Pillow's C int casts
    wrapped around: the bone went the wrong way across the image. It must look like the bone towards a
    nearer point in the same direction that also leaves the image."""
    from scipy import ndimage

    from handforge.render.camera import Camera, look_at
    from handforge.render.overlay import label_keypoints
    from handforge_shared.rig import load_open_hand_rig
    from handforge_shared.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS, keypoints_from_extended

    world = keypoints_from_extended(load_open_hand_rig("right").rest_extended_joints())
    camera = Camera.from_fov(*look_at(world.mean(0) + [0.0, -0.4, 0.05], world.mean(0)), 96, 80, 120.0)
    tip, base = KEYPOINT_NAMES.index("index4"), KEYPOINT_PARENTS[KEYPOINT_NAMES.index("index4")]
    in_camera = camera.to_camera(world)
    in_camera[tip] = in_camera[base] + [0.3, 0.2, 0.0]
    in_camera[tip, 2] = 1e-9  # almost on the camera plane, still in front of it
    pixels = in_camera @ camera.K.T
    pixels = pixels[:, :2] / pixels[:, 2:]
    assert np.abs(pixels[tip]).max() > 2.0**31 and (0 < pixels[base]).all() and (pixels[base] < 80).all()
    labels = {"right": {"keypoints_2d": pixels.tolist(), "keypoints_camera": in_camera.tolist(), "visible": [True] * 21}}
    nearer = pixels.copy()
    nearer[tip] = pixels[base] + 500 * (pixels[tip] - pixels[base]) / np.linalg.norm(pixels[tip] - pixels[base])
    near_labels = {"right": {**labels["right"], "keypoints_2d": nearer.tolist()}}
    for got, expected in zip(_drawn(label_keypoints(labels)), _drawn(label_keypoints(near_labels))):
        # the same pixels, up to Pillow's rounding of the (different) far ends: never more than a pixel off
        assert (got ^ expected).sum() <= 0.02 * expected.sum()
        assert not (got & ~ndimage.binary_dilation(expected)).any() and not (expected & ~ndimage.binary_dilation(got)).any()
    # along a row, the drawing is exact: towards 3e9 px as towards 1000 px (and a point far off the image is no dot)
    row = np.full((21, 2), np.nan)
    row[KEYPOINT_PARENTS[tip]], row[tip] = (30.0, 40.0), (3e9, 40.0)
    far = {"right": (row, np.ones(21, bool))}
    near = {"right": (np.where(np.arange(21)[:, None] == tip, [1000.0, 40.0], row), np.ones(21, bool))}
    for got, expected in zip(_drawn(far), _drawn(near)):
        np.testing.assert_array_equal(got, expected)
        assert got[40, 95] and not got[:, :25].any()


def test_the_card_names_the_monk_scale_only_for_its_colours(tmp_path):
    """A spec's own skin tones were called "Monk Skin Tone scale" on the card too."""
    for tones, scale in (([], True), (["ffffff", "101010"], False)):
        out = tmp_path / str(scale)
        export(parse_spec({**SPEC, "samples": 2, "hands": {"skin_tones": tones}}), out, progress=False)
        line = next(x for x in (out / "dataset_card.md").read_text().splitlines() if x.startswith("- skin tones:"))
        line = line.removesuffix(" (recorded in the labels; no image shows them)")  # engine none
        assert ("Monk Skin Tone scale" in line) == scale and (scale or line.endswith("(sRGB)")), line


def test_a_keypoint_under_an_occluder_is_hidden_even_beside_its_hands_outline():
    """Occluders (the forearms) become background in the images: the outline rule read a point under a
    forearm's edge, its hand showing in the next pixel, as a visible fingertip on its hand's outline; and a
    point on the outline with a forearm behind it is in view."""
    from handforge.export.labels import keypoint_visibility
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer

    def quad(x0, x1, z):
        vertices = np.array([[x0, -0.2, z], [x1, -0.2, z], [x1, 0.2, z], [x0, 0.2, z]])
        return vertices, np.array([[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]])

    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 64)
    point = np.array([[0.001, 0.0, 1.0]])  # pixel column 32; the occluder's edge between columns 32 and 33
    for occluder, expected in ((quad(-0.2, 0.005, 0.5), False), (quad(-0.2, -0.1, 0.5), True)):
        images = renderer().render(camera, [quad(-0.2, 0.2, 1.0), occluder]).first(1)
        assert keypoint_visibility(camera, point, 0, images).tolist() == [expected]
    # on its hand's outline (the hand ends at column 32's left edge) with a forearm behind it, in view: a forearm's
    # pixel counted as covering at any depth, so the point was hidden
    for occluder, expected in ((quad(-0.2, 0.2, 1.5), True), (quad(0.0, 0.2, 0.9), False)):
        images = renderer().render(camera, [quad(-0.2, 0.0, 1.0), occluder]).first(1)
        assert images.instance[32, 31] == 1 and images.instance[32, 32] == 0  # the outline runs as said
        assert keypoint_visibility(camera, point, 0, images).tolist() == [expected]


def _flat_quad(x0, x1, z, y0=-0.2, y1=0.2):
    """A rectangle facing the camera at depth z (both windings: drawn from either side)."""
    vertices = np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])
    return vertices, np.array([[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]])


def test_a_keypoint_just_past_the_images_edge_is_not_visible_though_its_hand_fills_the_edge():
    """(Mutation L7, labels.py: a column equal to the width counted as in the image, survived.) A keypoint whose
    pixel coordinate lies in [W, W + 1) or [H, H + 1) is outside the image (pixel i covers [i, i + 1)), even where
    its hand fills the last column and row; one just inside is seen, one just before 0 is not."""
    from handforge.export.labels import keypoint_visibility
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer

    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 48)
    images = renderer().render(camera, [_flat_quad(-1.0, 1.0, 1.0, -1.0, 1.0)]).first(1)
    assert (images.instance == 1).all()
    # pixel coordinates (u, v) at depth 1: u = 100 x + 32, v = 100 y + 24
    uv = np.array([[64.3, 10.5], [10.5, 48.3], [-0.3, 10.5], [10.5, -0.3], [63.7, 47.7], [0.3, 0.3]])
    points = np.c_[(uv - [32, 24]) / 100.0, np.ones(len(uv))]
    assert np.allclose(camera.project(points)[0], uv)
    assert keypoint_visibility(camera, points, 0, images).tolist() == [False] * 4 + [True] * 2


def test_a_keypoint_beside_its_hands_outline_is_seen_only_where_that_hand_is_near_its_depth():
    """(Mutation L10, labels.py: the outline rule taking any pixel of its hand beside the point, at any depth,
    survived.) A point whose own pixel is background is on its hand's outline, and in view, when a pixel beside it
    shows its hand no more than the tolerance in front of it; its hand's edge far in front of it (another part of
    the hand, its silhouette passing in front) does not make it seen."""
    from handforge.export.labels import VISIBILITY_TOLERANCE_M, keypoint_visibility
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer

    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 64)
    point = np.array([[0.001, 0.0, 1.0]])  # pixel column 32; the hand ends at column 32's left edge
    for depth, expected in ((1.0 - VISIBILITY_TOLERANCE_M / 2, True), (1.0 - 2 * VISIBILITY_TOLERANCE_M, False),
                            (0.5, False)):
        x0 = -0.2 * depth  # (the edge x = 0 projects onto u = 32 at any depth)
        images = renderer().render(camera, [_flat_quad(x0, 0.0, depth)]).first(1)
        assert images.instance[32, 31] == 1 and images.instance[32, 32] == 0  # the outline runs as said
        assert keypoint_visibility(camera, point, 0, images).tolist() == [expected], depth


def test_a_keypoint_on_its_hands_outline_is_hidden_by_the_other_hand_in_front_only():
    """(Mutation L33, labels.py: the outline rule taking the other hand at its pixel as nothing in front, at any
    depth, survived.) A point on its hand's outline whose pixel shows the other hand is in view when that hand lies
    behind it, and hidden when it lies in front."""
    from handforge.export.labels import keypoint_visibility
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer

    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 64)
    point = np.array([[0.001, 0.0, 1.0]])  # pixel column 32; its hand ends at column 32's left edge
    for other, expected in ((_flat_quad(0.0, 0.3, 1.5), True), (_flat_quad(0.0, 0.1, 0.9), False)):
        images = renderer().render(camera, [_flat_quad(-0.2, 0.0, 1.0), other]).first(2)
        assert images.instance[32, 31] == 1 and images.instance[32, 32] == 2  # the outline and the other hand
        assert keypoint_visibility(camera, point, 0, images).tolist() == [expected]


def test_the_projected_box_is_clipped_to_the_image_and_holds_the_hands_pixels():
    """(Mutation L17, labels.py: the projected box's far corner left unclipped, survived.) ``bbox_projected`` is the
    whole hand's projection clipped to the image: inside [0, W] × [0, H] for a hand past the right and bottom
    edges, and holding every pixel centre of the hand's mask."""
    from handforge.export.labels import hand_labels
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer
    from handforge_shared.poses import HandPose

    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 24], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 48)
    vertices, faces = _flat_quad(-0.1, 0.5, 1.0, -0.05, 0.4)  # u from 22 to 82 > 64, v from 19 to 64 > 48
    images = renderer().render(camera, [(vertices, faces)]).first(1)
    pose = HandPose(global_orient=np.zeros(3), hand_pose=np.zeros(45), betas=np.zeros(10), transl=np.zeros(3))
    keypoints = np.repeat(vertices[:1], 21, axis=0)
    hand = hand_labels("right", 0, pose, keypoints, np.zeros(3), vertices, camera, images)
    x, y, w, h = hand["bbox_projected"]
    assert (x, y) == pytest.approx((22.0, 19.0)) and (x + w, y + h) == pytest.approx((64.0, 48.0))
    rows, cols = np.nonzero(images.mask(0))
    assert x <= cols.min() + 0.5 and cols.max() + 0.5 <= x + w and y <= rows.min() + 0.5 and rows.max() + 0.5 <= y + h
    assert hand["bbox"] == [22.0, 19.0, 42.0, 29.0]  # (the mask's whole pixels: its box, reaching the edges too)


def test_the_projected_box_of_a_hand_through_the_camera_plane_holds_its_visible_pixels():
    """A hand reaching from behind the camera into view (a camera among the hands) shows its part just in front of
    the camera plane far out in the image, where no vertex in front projects: its projected box, the box of those
    vertices, left out what its mask shows (here None, the two vertices in front on one image row, while 86 pixels
    showed the hand). The whole hand's box holds at least its visible pixels."""
    from handforge.export.labels import hand_labels
    from handforge.render.camera import Camera
    from handforge.render.gl import renderer
    from handforge_shared.poses import HandPose

    camera = Camera(np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]]), np.eye(3), np.zeros(3), 64, 64)
    vertices = np.array([[0.05, -0.05, -0.5], [0.1, -0.05, -0.5], [0.1, 0.05, 1.0], [0.05, 0.05, 1.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 2, 1], [0, 3, 2]])
    images = renderer().render(camera, [(vertices, faces)]).first(1)
    pose = HandPose(global_orient=np.zeros(3), hand_pose=np.zeros(45), betas=np.zeros(10), transl=np.zeros(3))
    hand = hand_labels("right", 0, pose, np.repeat(vertices[2:3], 21, axis=0), np.zeros(3), vertices, camera,
                       images)
    rows, cols = np.nonzero(images.mask(0))
    assert cols.max() == 63  # the strip runs out of the image's right edge
    assert hand["bbox_projected"] is not None, hand["bbox"]
    x, y, w, h = hand["bbox_projected"]
    assert x <= cols.min() and cols.max() + 1 <= x + w and y <= rows.min() and rows.max() + 1 <= y + h
    assert x + w <= 64 and y + h <= 64


def test_samples_that_show_no_hand_are_warned_of(tmp_path, capsys):
    """Hands 100 m apart (the camera aims between them): every image empty, exit status 0, said only by
    "none: 3" in the card's counts."""
    from handforge.cli import main
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    pair = side_by_side()
    apart = {side: stack_poses([pose.replace(transl=np.asarray(pose.transl) + [x, 0.0, 0.0])] * 2)
             for side, pose, x in (("right", pair.right, 50.0), ("left", pair.left, -50.0))}
    MotionClip(hands=apart).save(tmp_path / "apart.npz")
    (tmp_path / "spec.json").write_text(json.dumps({"samples": 3, "width": 48, "height": 48, "render": {"engine": "none"},
                                                    "poses": {"source": "files", "files": [str(tmp_path / "apart.npz")]}}))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    assert ("warning: 3 of 3 samples show no hand (not one pixel: outside the image, or too small to cover a pixel): "
            "bring the camera ranges closer to the hands" in capsys.readouterr().err)
    # in view but far too small (100 m, a 4 mm lens): it was said to be "outside the image", focal not named
    (tmp_path / "far.json").write_text(json.dumps({"samples": 2, "width": 32, "height": 32, "render": {"engine": "none"},
                                                   "camera": {"distance": [100, 100], "focal": [4, 4]}}))
    assert main(["export", str(tmp_path / "far.json"), "--out", str(tmp_path / "far"), "--quiet"]) == 0
    assert "too small to cover a pixel" in capsys.readouterr().err
    (tmp_path / "seen.json").write_text(json.dumps({"samples": 3, "width": 48, "height": 48,
                                                    "render": {"engine": "none"}}))  # the library's pairs: in view
    assert main(["export", str(tmp_path / "seen.json"), "--out", str(tmp_path / "seen"), "--quiet"]) == 0
    assert "warning" not in capsys.readouterr().err


def test_an_option_out_of_the_specs_range_is_named_as_the_option(tmp_path, capsys):
    """--samples 99999999999 was said as the spec's key ("samples: expected ..."), which the spec did not hold."""
    from handforge.cli import main

    (tmp_path / "spec.json").write_text(json.dumps({"render": {"engine": "none"}}))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--samples",
                 "99999999999"]) == 2
    assert capsys.readouterr().err == ("handforge export: --samples: expected a whole number from 1 to 10000000, got "
                                       "99999999999\n")
    assert not (tmp_path / "data").exists()


def test_a_folder_recorded_with_a_key_its_source_did_not_use_resumes_without_it(tmp_path, capsys):
    """Such keys were accepted unread (and recorded); refused now, the folder's spec could be rerun neither
    with the key (refused) nor without it (another spec): the review of that change found it."""
    from handforge.cli import main

    spec = {"samples": 2, "width": 32, "height": 32, "render": {"engine": "none"}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    record = tmp_path / "data" / "export_spec.json"
    held = json.loads(record.read_text())
    held["poses"]["files"], held["background"]["folder"] = ["/old/clip.npz"], "/old/backgrounds"  # as recorded then
    record.write_text(json.dumps(held))
    (tmp_path / "spec.json").write_text(json.dumps({**spec, "samples": 3}))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    assert "3 samples in" in capsys.readouterr().out
    (tmp_path / "other.json").write_text(json.dumps({**spec, "samples": 3, "seed": 4}))  # still another spec
    assert main(["export", str(tmp_path / "other.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 2


def test_render_settings_the_engine_does_not_read_make_no_other_dataset(tmp_path, capsys):
    """Cycles' samples under Workbench or none, a forearm under none: the same images, so a rerun with them
    changed resumes (before: "holds an export of another spec (differing: render.samples: 16 → 64)")."""
    from handforge.cli import main

    spec = {"samples": 2, "width": 32, "height": 32, "render": {"engine": "none"}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    capsys.readouterr()
    unread = {**spec, "samples": 3, "render": {"engine": "none", "samples": 64, "forearm": "sleeve",
                                               "antialiasing": "OFF"}}
    (tmp_path / "spec.json").write_text(json.dumps(unread))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0, \
        capsys.readouterr().err
    assert "3 samples in" in capsys.readouterr().out
    read = {**spec, "samples": 3, "render": {"engine": "cycles", "samples": 64}, "outputs": ["mesh", "masks"]}
    (tmp_path / "other.json").write_text(json.dumps(read))  # another engine: another spec, its samples named
    assert main(["export", str(tmp_path / "other.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 2
    assert "render.engine: \"none\" → \"cycles\", render.samples: 16 → 64" in capsys.readouterr().err


def test_render_settings_the_engine_does_not_read_are_warned_of(tmp_path, caplog):
    """A forearm style under engine "none" (GL images only: no forearm is drawn anywhere) was accepted without a
    word, as were Cycles' samples under another engine: still accepted (a rerun with them resumes), but said."""
    import logging

    spec = {"samples": 1, "width": 32, "height": 32, "render": {"engine": "none", "forearm": "sleeve", "samples": 64,
                                                                "antialiasing": "FXAA"}}
    with caplog.at_level(logging.WARNING, logger="handforge.export"):
        export(parse_spec(spec), tmp_path / "data", progress=False)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [w.split(" has no effect")[0] for w in warned] == ["render.forearm = 'sleeve'", "render.samples = 64",
                                                              "render.antialiasing = 'FXAA'"]
    assert "engine 'none'" in warned[0] and "Workbench's anti-aliasing (this spec: engine 'none')" in warned[2]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="handforge.export"):  # the defaults given: nothing to say
        export(parse_spec({**spec, "render": {"engine": "none", "forearm": "skin"}}), tmp_path / "other",
               progress=False)
    assert not [r for r in caplog.records if "has no effect" in r.getMessage()]


def test_looks_no_image_shows_are_said_so_in_the_card_and_warned_of_when_given(exported, tmp_path, caplog):
    """Under engine "none" (flat grey GL images) the card listed lighting presets, backgrounds and skin tones as
    if the images showed them; a spec giving its own was accepted without a word. The card says they are only
    recorded, and looks given where no image shows them are warned of (a rerun with them resumes, as ever)."""
    import logging

    from handforge.export.card import write_card

    card_md = (exported / "dataset_card.md").read_text()
    unshown = " (recorded in the labels; no image shows them)"
    assert card_md.count(unshown) == 2
    assert [line.endswith(unshown) for line in card_md.splitlines() if line.startswith(("- lighting", "- skin"))] \
        == [True, True]
    card = json.loads((exported / "dataset_card.json").read_text())
    assert card["looks_rendered"] is False
    write_card(tmp_path, {k: card[k] for k in ("samples", "hand_types", "visible_keypoint_fraction", "ranges",
                                               "lighting", "backgrounds", "skin_tones")},
               {**card, "looks_rendered": True})
    assert unshown not in (tmp_path / "dataset_card.md").read_text()  # rendered: listed plainly

    spec = {"samples": 1, "width": 32, "height": 32, "render": {"engine": "none"}, "lighting": ["rim"],
            "hands": {"skin_tones": ["a0a0a0"]}}
    with caplog.at_level(logging.WARNING, logger="handforge.export"):
        export(parse_spec(spec), tmp_path / "data", progress=False)
    warned = [r.getMessage() for r in caplog.records if "no effect on the images" in r.getMessage()]
    assert warned == ["lighting, hands.skin_tones have no effect on the images: each sample's is drawn and recorded "
                      "in its labels, and shown in the RGB of engines 'workbench' and 'cycles' only (this spec: "
                      "engine 'none')"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="handforge.export"):  # the defaults: nothing to say
        export(parse_spec({**spec, "lighting": list(parse_spec({}).lighting), "hands": {}}), tmp_path / "other",
               progress=False)
    assert not [r for r in caplog.records if "no effect on the images" in r.getMessage()]


def test_workbench_antialiasing_is_part_of_the_spec_and_older_folders_resume_at_its_default(tmp_path):
    """A Workbench dataset rendered with one anti-aliasing is refused to a rerun with another (its images would
    mix two edge qualities), named; a folder recorded before the setting existed (no such key: rendered at
    Blender's 8 samples) resumes with the default, and is refused to another value; under Cycles it renders
    nothing, so either resumes."""
    from handforge.export.folder import FolderTaken, claim_folder

    def record(**render):
        return parse_spec({"samples": 2, "render": {"engine": "workbench", **render}}).to_dict()

    def claimed_with_a_sample(folder, record):  # (a folder without a finished sample takes another spec)
        claim_folder(folder, record)
        (folder / "samples" / "000000").mkdir(parents=True)
        (folder / "samples" / "000000" / "labels.json").write_text("{}")

    claimed_with_a_sample(tmp_path / "off", record(antialiasing="OFF"))
    claim_folder(tmp_path / "off", record(antialiasing="off"))  # (the same setting, recorded as Blender's name)
    with pytest.raises(FolderTaken, match='another spec \\(differing: render.antialiasing: "OFF" → "8"\\)'):
        claim_folder(tmp_path / "off", record())
    older = record()
    del older["render"]["antialiasing"]
    claimed_with_a_sample(tmp_path / "older", older)
    claim_folder(tmp_path / "older", record(antialiasing=8))
    with pytest.raises(FolderTaken, match='differing: render.antialiasing: "8" → "FXAA"'):
        claim_folder(tmp_path / "older", record(antialiasing="FXAA"))
    claimed_with_a_sample(tmp_path / "cycles", record(engine="cycles", antialiasing="OFF"))
    claim_folder(tmp_path / "cycles", record(engine="cycles"))


def test_the_same_outputs_in_another_order_resume(tmp_path, capsys):
    """The outputs' order changes no file (each sample's are named in sorted order): ``--engine workbench``
    on a spec without rgb records ["rgb", ...], and that spec with "rgb" written last was refused as
    another spec (differing: outputs: ["rgb", "mesh", "masks"] → ["mesh", "masks", "rgb"])."""
    from handforge.cli import main

    spec = {"samples": 1, "width": 32, "height": 32, "outputs": ["mesh", "masks"], "render": {"engine": "none"}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0
    (tmp_path / "spec.json").write_text(json.dumps({**spec, "samples": 2, "outputs": ["masks", "mesh"]}))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 0, \
        capsys.readouterr().err
    assert "2 samples in" in capsys.readouterr().out
    (tmp_path / "other.json").write_text(json.dumps({**spec, "samples": 2, "outputs": ["mesh", "depth"]}))
    assert main(["export", str(tmp_path / "other.json"), "--out", str(tmp_path / "data"), "--quiet"]) == 2
    assert 'outputs: ["mesh", "masks"] → ["mesh", "depth"]' in capsys.readouterr().err


def test_a_relative_path_that_names_nothing_says_where_it_was_looked_for(tmp_path, monkeypatch, capsys):
    """Relative spec paths are read from the folder the command runs in (not the spec's): run from another
    folder, the refusal named only '../clip.npz', which is there beside the spec."""
    from handforge.cli import main

    (tmp_path / "specs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    for name, spec in (("clips", {"poses": {"source": "files", "files": ["../clip.npz"]}}),
                       ("corpus", {"poses": {"source": "corpus", "corpus": "corpus"}}),
                       ("backgrounds", {"background": {"kinds": ["images"], "folder": "bg"}})):
        (tmp_path / "specs" / f"{name}.json").write_text(json.dumps({"samples": 1, "render": {"engine": "none"},
                                                                     **spec}))
    monkeypatch.chdir(tmp_path / "elsewhere")
    for name, path in (("clips", "../clip.npz"), ("corpus", "corpus"), ("backgrounds", "bg")):
        assert main(["export", f"../specs/{name}.json", "--out", str(tmp_path / "data"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"(read from the folder the command runs in: {tmp_path / 'elsewhere' / path})" in err, err
    assert not (tmp_path / "data").exists()


def test_a_background_folder_under_home_is_recorded_as_the_spec_writes_it(tmp_path, monkeypatch):
    """A spec's background folder "~/photos" was expanded into every label ("/home/<maker>/photos/x.png"): a
    shared dataset carried its maker's home folder, which the spec and the folder's record (its inputs)
    name as written. The label names the image as the spec does; the RGB still composites that image."""
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    Image.new("RGB", (40, 40), (10, 200, 30)).save(home / "photos" / "green.png")
    monkeypatch.setenv("HOME", str(home))
    out = tmp_path / "data"
    spec = parse_spec({**SPEC, "samples": 2, "width": 32, "height": 32, "outputs": ["rgb", "mesh"],
                       "render": {"engine": "workbench"}, "background": {"kinds": ["images"], "folder": "~/photos"}})
    export(spec, out, progress=False)
    for sample in labels(out):
        assert sample["background"]["image"] == "~/photos/green.png"
        rgb = np.asarray(Image.open(out / "samples" / f"{sample['index']:06d}" / "rgb.png"))
        hands = np.asarray(Image.open(out / "samples" / f"{sample['index']:06d}" / "mesh.png")).any(axis=-1)
        assert (rgb[~hands] == (10, 200, 30)).all(axis=-1).mean() > 0.5  # the photo around the hands (and forearms)
    for path in out.rglob("*"):
        assert not path.is_file() or str(home) not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("limit, named", [(20_000, None), (120_000, "contact_sheet.png")])
def test_a_write_of_the_dataset_files_that_fails_names_the_file(tmp_path, limit, named):
    """A disk that filled while the COCO, InterHand2.6M-style or card files or the contact sheet were
    written was said as "No space left on device: make room", no file or folder named (the write's error
    names none; the test of it had raised one with a name). A real process under a file-size limit
    (RLIMIT_FSIZE: the samples fit, a dataset file does not) fails its writes as a full disk does, unnamed."""
    import resource
    import subprocess
    import sys

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 12, "width": 32, "height": 32}))
    root = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ,
           "PYTHONPATH": __import__("os").pathsep.join([str(root / "backend"), str(root / "shared")])}
    run = subprocess.run([sys.executable, "-m", "handforge", "export", str(spec), "--out", str(tmp_path / "data"),
                          "--quiet"], env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    said = re.search(rf"^handforge export: {re.escape(str(tmp_path / 'data'))}/(\S+): File too large: ", run.stderr,
                     re.MULTILINE)
    assert said, run.stderr
    assert not Path(said.group(1)).name.startswith("."), said.group(1)  # the file, not its temporary beside it
    assert said.group(1) == named if named else said.group(1).endswith(".json")
    assert len(finished_indices(tmp_path / "data", 12)) == 12


@pytest.mark.parametrize("outputs", [["mesh", "masks"], ["mesh", "depth"]])
def test_a_file_size_limit_while_samples_are_written_stops_the_run(tmp_path, outputs):
    """A file-size limit (EFBIG) that a sample's files pass did not stop the run as a full disk does: every
    sample failed on its own ("12 sample(s) failed: OSError: [Errno 27] File too large"); and numpy's short
    write of a .npy under the limit was said as a full disk ("No space left on device: make room"). It names the
    file that passed the limit, by its name in the sample (it had named the samples' folder)."""
    import resource
    import subprocess
    import sys

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 12, "width": 32, "height": 32, "outputs": outputs}))
    root = Path(__file__).resolve().parents[1]
    env = {**__import__("os").environ,
           "PYTHONPATH": __import__("os").pathsep.join([str(root / "backend"), str(root / "shared")])}
    limit = 3_000  # the folder's record fits; a sample's labels.json (or depth.npy) does not
    run = subprocess.run([sys.executable, "-m", "handforge", "export", str(spec), "--out", str(tmp_path / "data"),
                          "--quiet"], env=env, capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert run.returncode == 1 and "Traceback" not in run.stderr and "failed" not in run.stderr, run.stderr
    said = re.search(rf"^handforge export: {re.escape(str(tmp_path / 'data'))}/samples/(\d+)/(\S+): File too large: "
                     r"over this process's file-size limit \(`ulimit -f`\)", run.stderr, re.MULTILINE)
    assert said and said.group(2) == ("depth.npy" if "depth" in outputs else "labels.json"), run.stderr


def test_another_specs_lists_name_what_was_added_and_removed(exported):
    """A list cut around its first difference lost the item that differed ("poses.files: …_02/b.npz"] →
    …_02/b.npz", "/data/clips/session_03/c.np…"): a long list's refusal names what was added and removed,
    bounded; a short one still reads whole."""
    from handforge.export.folder import FolderTaken, _differences

    clips = ["/data/clips/session_01/a.npz", "/data/clips/session_02/b.npz"]
    assert _differences({"files": clips}, {"files": [*clips, "/data/clips/session_03/c.npz"]}) == \
        ['files: "/data/clips/session_03/c.npz" added']
    outputs = ["mesh", "masks", "skeleton", "depth", "normals"]
    assert _differences({"outputs": outputs}, {"outputs": ["rgb", *outputs[:-1]]}) == \
        ['outputs: "rgb" added; "normals" removed']
    many = _differences({"files": []}, {"files": [f"/data/clips/{'x' * 70}/{i}.npz" for i in range(500)]})[0]
    assert len(many) < 200 and many.endswith('/0.npz" and 499 more added'), many
    assert _differences({"c": [0.3, 0.5]}, {"c": [0.3, 0.6]}) == ["c: [0.3, 0.5] → [0.3, 0.6]"]
    # counted as a multiset: a clip listed twice and now once is one removed, whatever the order
    twice = [f"/data/clips/{'x' * 70}/{i}.npz" for i in (0, 1, 1)]
    assert _differences({"files": twice}, {"files": twice[:0:-1]})[0].endswith('/0.npz" removed')
    with pytest.raises(FolderTaken, match='another spec \\(differing: outputs: "depth" removed\\)'):
        export(parse_spec({**SPEC, "outputs": ["mesh", "masks", "skeleton", "normals"]}), exported, progress=False)


def test_a_motion_clip_under_home_poses_the_samples(tmp_path, monkeypatch, capsys):
    """poses.files = ["~/clips/a.npz"] passed the spec's check (which expands "~") and claimed the folder, then
    every sample failed, on every rerun: "~/clips/a.npz: no such file" (the sampler opened it unexpanded)."""
    from handforge.cli import main
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    home = tmp_path / "home"
    (home / "clips").mkdir(parents=True)
    pair, frames = side_by_side(), 4
    MotionClip(hands={"right": stack_poses([pair.right] * frames), "left": stack_poses([pair.left] * frames)},
               present={side: np.ones(frames, bool) for side in ("right", "left")}).save(home / "clips" / "a.npz")
    monkeypatch.setenv("HOME", str(home))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "samples": 3, "width": 32, "height": 32,
                                "poses": {"source": "files", "files": ["~/clips/a.npz"]}}))
    assert main(["export", str(spec), "--out", str(tmp_path / "data"), "--quiet"]) == 0, capsys.readouterr().err
    assert [sample["origin"].split("#")[0] for sample in labels(tmp_path / "data")] == ["files:a.npz"] * 3


def test_the_labels_check_of_numbers_by_type_answers_as_the_check_of_each_value():
    """The labels' numbers are checked by type in one go (the check of each value was half of a dataset's
    finishing time): the same answer, or the same error, as that check for every kind of value."""
    import math

    from handforge.export.samples import _numbers

    def each_value(value, *shape, flags=False):  # the rule as it was written, one value at a time
        if not isinstance(value, list) or len(value) != shape[0]:
            return False
        if len(shape) > 1:
            return all(each_value(row, *shape[1:], flags=flags) for row in value)
        return all(isinstance(x, (int, float)) and math.isfinite(x) and (flags or not isinstance(x, bool))
                   for x in value)

    class Number(float):
        pass

    class Rows(list):
        pass

    def outcome(check, value, shape, flags):  # its answer, or the error it raises (an int too large for a float)
        try:
            return check(value, *shape, flags=flags)
        except OverflowError:
            return OverflowError

    values = [0, 1, -2.5, 1e308, 10**400, True, False, math.nan, math.inf, -math.inf, "1", None, [1], {}, Number(2.0),
              Number(math.nan), np.float64(1.5), np.float64(math.inf), np.int64(3), np.bool_(True)]
    cases = [[a, b] for a in values for b in values] + [[], [1, 2, 3], "ab", None, [[1, 2], [3, 4]], [[1, True], [2, 3]],
                                                       [[1, 2], [3]], [[1, 2], "ab"], [[1, 10**400], [True, 2]],
                                                       [[1, math.nan], [10**400, 2]], [[1, 2], Rows([3, 4])],
                                                       [Rows([1, 2]), Rows([3, math.inf])], [[1, 2], [3, False]]]
    answers = set()
    for value in cases:
        for shape in ((2,), (2, 2), (0,), (3,)):
            for flags in (False, True):
                answer = outcome(_numbers, value, shape, flags)
                assert answer == outcome(each_value, value, shape, flags), (value, shape, flags)
                answers.add(answer)
    assert answers == {True, False, OverflowError}


def test_the_progress_bar_counts_the_samples_written_not_the_one_begun(tmp_path, capsys):
    """The bar counted each sample once the loop had begun it (its Blender render sent), one ahead of those
    written: a Ctrl-C at "49/300" left 48 samples, and the rerun said "48 already there"."""
    from handforge.export.run import begin_sample, write_dataset

    spec = parse_spec({**SPEC, "samples": 8})

    def stopped_at_four(index, model, gl, rgb):
        if index == 4:
            raise KeyboardInterrupt  # as a Ctrl-C while sample 4 is made: samples 0-2 written, 3 begun
        return begin_sample(spec, index, model, gl, rgb)

    with pytest.raises(KeyboardInterrupt):
        write_dataset(spec, tmp_path / "data", stopped_at_four, command="test", progress=True)
    bars = re.findall(r"export:.*?\| (\d+)/8 ", capsys.readouterr().err)
    written = finished_indices(tmp_path / "data", 8)
    assert written == [0, 1, 2] and bars and int(bars[-1]) == len(written)


@pytest.mark.parametrize("platform", ["win32", "linux"])
def test_a_sample_folder_held_a_moment_on_windows_is_renamed_once_free(tmp_path, monkeypatch, platform):
    """Windows refuses to rename a folder while another process (an antivirus, the search indexer) holds one of
    its just-written files open (PermissionError, WinError 5), for a moment: that stopped the whole export as a
    folder this user cannot write. There the rename is tried again, about 1 s in all; elsewhere as before (one try).
    Emulated: sys.platform patched, os.replace failing twice with PermissionError, then as it is."""
    from handforge_shared.files import REPLACE_RETRY_DELAYS
    from handforge.export.folder import SAMPLES
    from handforge.export.samples import write_sample
    from tests.support.windows import held_replace

    tries, slept = held_replace(monkeypatch, platform, refusals=2)
    images = {"mask_left.png": np.ones((4, 4), bool)}
    if platform == "linux":
        with pytest.raises(PermissionError):
            write_sample(tmp_path, 3, {"index": 3}, images)
        assert len(tries) == 1 and slept == [] and list((tmp_path / SAMPLES).iterdir()) == []
        return
    final = write_sample(tmp_path, 3, {"index": 3}, images)
    assert len(tries) == 3 and len(slept) == 2 and np.asarray(Image.open(final / "mask_left.png")).all()
    assert [p.name for p in (tmp_path / SAMPLES).iterdir()] == [final.name]

    tries, slept = held_replace(monkeypatch, platform, refusals=None)
    with pytest.raises(PermissionError):  # held for good: given up after about a second, nothing left behind
        write_sample(tmp_path, 4, {"index": 4}, images)
    assert len(tries) == len(REPLACE_RETRY_DELAYS) + 1 and 0.5 <= sum(slept) <= 1.5
    assert [p.name for p in (tmp_path / SAMPLES).iterdir()] == [final.name]


def test_a_sample_folder_without_its_labels_is_not_finished(tmp_path):
    """Finished means a labels.json in the sample's folder (run.py's resume; the workers, shards and pose pairs ask
    ``is_finished``): a folder holding images but no labels (damaged, or emptied by hand) is made again, as
    ``pending_indices`` says. Before this test, ``is_finished`` asking whether the folder exists passed."""
    from handforge.export.folder import is_finished, pending_indices, sample_dir

    sample_dir(tmp_path, 0).mkdir(parents=True)
    (sample_dir(tmp_path, 0) / "mesh.png").write_bytes(b"\x89PNG")
    sample_dir(tmp_path, 1).mkdir()
    (sample_dir(tmp_path, 1) / "labels.json").write_text("{}")
    assert [is_finished(tmp_path, i) for i in range(3)] == [False, True, False]
    assert pending_indices(tmp_path, 3) == [0, 2]


def test_a_sample_another_writer_finishes_while_this_one_looks_at_its_place_is_kept(tmp_path, monkeypatch):
    """The writer looked where the sample goes before renaming its own into place: another writer renaming the
    same sample there between the look and the rename (once in a full run of the test below) ended this one in
    "not a sample folder, where this sample goes", or had it delete the other's finished sample."""
    import pathlib

    from handforge.export.folder import LABELS, is_finished
    from handforge.export.samples import write_sample

    images = {"mask0.png": np.ones((8, 8), bool)}
    final = tmp_path / "samples" / "000003"
    is_dir, looked = pathlib.Path.is_dir, []

    def other_writer_finishes_meanwhile(path, *args, **kwargs):
        seen = is_dir(path, *args, **kwargs)
        if path == final and not looked:
            looked.append(seen)
            write_sample(tmp_path, 3, {"index": 3}, images)  # the other writer, in the gap after the look
        return seen

    monkeypatch.setattr(pathlib.Path, "is_dir", other_writer_finishes_meanwhile)
    write_sample(tmp_path, 3, {"index": 3}, images)
    monkeypatch.undo()
    assert is_finished(tmp_path, 3) and sorted(p.name for p in final.iterdir()) == sorted([*images, LABELS])
    assert sorted(p.name for p in final.parent.iterdir()) == ["000003"]  # no hidden folder left


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_a_sample_another_writer_renames_into_place_just_before_this_one_is_kept(tmp_path, monkeypatch, platform):
    """Another writer renames the same sample into place just before this one's rename (a Ray worker stopped as
    hung, writing on, while its samples went to another): this rename finds a finished sample there, which is kept,
    files untouched, and this writer's own folder removed. Only the two-writers test below reached this path, by
    chance; the test of the look before the rename no longer reaches it since the rename comes first. Windows
    imitated: there a folder renamed onto an existing one raises PermissionError (WinError 5), not ENOTEMPTY, which
    the rename's error must not be told apart by."""
    import os
    import sys
    import time

    from handforge.export import samples
    from handforge.export.folder import LABELS, is_finished
    from handforge.export.samples import write_sample

    images = {"mask0.png": np.ones((8, 8), bool)}
    final = tmp_path / "samples" / "000003"
    replace_held, renames = samples.replace_held, []

    def other_writer_finishes_first(source, target):
        renames.append(Path(target))
        if len(renames) == 1:
            write_sample(tmp_path, 3, {"index": 3}, images)  # the other writer, just before this one's rename
            other = final / "mask0.png"
            renames.append((other.stat().st_ino, other.stat().st_mtime_ns))
        replace_held(source, target)

    monkeypatch.setattr(samples, "replace_held", other_writer_finishes_first)
    if platform == "win32":
        rename = os.replace

        def as_windows(source, target):
            if os.path.isdir(source) and os.path.isdir(target):
                raise PermissionError(13, "Access is denied", str(source), None, 5)
            rename(source, target)

        monkeypatch.setattr(sys, "platform", platform)
        monkeypatch.setattr(os, "replace", as_windows)
        monkeypatch.setattr(time, "sleep", lambda seconds: None)  # (replace_held's tries again, each refused)
    write_sample(tmp_path, 3, {"index": 3}, images)
    monkeypatch.undo()
    assert renames[0] == final and renames[1] == final, renames  # this one's rename found the other's sample there
    assert is_finished(tmp_path, 3) and sorted(p.name for p in final.iterdir()) == sorted([*images, LABELS])
    kept = final / "mask0.png"
    assert renames[2] == (kept.stat().st_ino, kept.stat().st_mtime_ns)  # the other's files, kept as they were
    assert sorted(p.name for p in final.parent.iterdir()) == ["000003"]  # no hidden folder left


def test_a_sample_kept_from_another_writer_is_kept_though_this_ones_folder_is_held_on_windows(tmp_path, monkeypatch):
    """Windows imitated: another writer renamed the same sample into place first, and a file of this writer's own
    hidden folder is held a moment (an antivirus, the search indexer): the sample is finished all the same, and the
    hidden folder is a leftover the next run removes (``clean_partial``). Removing it raised PermissionError, which
    as a folder this user cannot write (``stops_the_run``) stopped the whole export over a finished sample."""
    import os
    import shutil
    import sys
    import time

    from handforge.export import samples
    from handforge.export.folder import LABELS, clean_partial, is_finished
    from handforge.export.samples import write_sample

    images = {"mask0.png": np.ones((8, 8), bool)}
    final = tmp_path / "samples" / "000003"
    replace_held, unlink, rename, held, renames = samples.replace_held, os.unlink, os.replace, [], []

    def as_windows(source, target):  # a folder is not renamed onto another there
        if os.path.isdir(source) and os.path.isdir(target):
            raise PermissionError(13, "Access is denied", str(source), None, 5)
        rename(source, target)

    def held_open(path, *, dir_fd=None):
        if held and Path(path).name == "mask0.png":
            raise PermissionError(13, "The process cannot access the file", str(path), None, 32)
        unlink(path, dir_fd=dir_fd)

    def other_writer_finishes_first(source, target):
        renames.append(source)
        if len(renames) == 1:
            write_sample(tmp_path, 3, {"index": 3}, images)  # the other writer, just before this one's rename
            held.append(source)  # from now on this writer's mask0.png is held open
        replace_held(source, target)

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(os, "replace", as_windows)
    monkeypatch.setattr(os, "unlink", held_open)
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # (replace_held's tries again, each refused)
    monkeypatch.setattr(samples, "replace_held", other_writer_finishes_first)
    assert write_sample(tmp_path, 3, {"index": 3}, images) == final
    monkeypatch.undo()
    assert is_finished(tmp_path, 3) and sorted(p.name for p in final.iterdir()) == sorted([*images, LABELS])
    clean_partial(tmp_path)  # the next run's: the held folder left behind goes
    assert sorted(p.name for p in final.parent.iterdir()) == ["000003"]
    shutil.rmtree(tmp_path / "samples")


def test_what_stands_where_a_sample_goes_is_replaced_only_when_a_leftover(tmp_path):
    """Where a sample goes: a folder without labels (a leftover, emptied or damaged by hand) is replaced; a file or
    a link is not this export's to delete, and is refused naming it, nothing hidden left beside it."""
    from handforge.export.folder import LABELS, sample_dir
    from handforge.export.samples import write_sample

    images = {"mask0.png": np.ones((8, 8), bool)}
    leftover = sample_dir(tmp_path, 0)
    leftover.mkdir(parents=True)
    (leftover / "mesh.png").write_bytes(b"\x89PNG")
    write_sample(tmp_path, 0, {"index": 0}, images)
    assert sorted(p.name for p in leftover.iterdir()) == sorted([*images, LABELS])

    sample_dir(tmp_path, 1).write_text("mine")
    (tmp_path / "elsewhere").mkdir()
    sample_dir(tmp_path, 2).symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    for index in (1, 2):
        with pytest.raises(FileExistsError, match="not a sample folder, where this sample goes"):
            write_sample(tmp_path, index, {"index": index}, images)
    assert sample_dir(tmp_path, 1).read_text() == "mine" and list((tmp_path / "elsewhere").iterdir()) == []
    assert sorted(p.name for p in leftover.parent.iterdir()) == ["000000", "000001", "000002"]


def test_two_writers_of_one_sample_at_once_leave_it_whole(tmp_path):
    """A Ray worker stopped as hung goes on for a moment after ``ray.kill`` returns (its process is killed later,
    tens of ms here, longer on a busy or distant node) while its samples are handed to another worker: two writers
    of one sample at once. Each must leave it whole: they shared one hidden folder, each removing the other's
    files from under it or renaming it into place half written."""
    import threading

    from handforge.export.folder import LABELS, is_finished
    from handforge.export.samples import write_sample

    images = {f"mask{k}.png": np.ones((64, 64), bool) for k in range(4)} | {"depth.npy": np.ones((64, 64), np.float32)}
    errors = []

    def write(out):
        try:
            write_sample(out, 3, {"index": 3}, images)
        except Exception as exc:  # noqa: BLE001 - said below
            errors.append(f"{type(exc).__name__}: {exc}")

    for attempt in range(40):
        out = tmp_path / str(attempt)
        writers = [threading.Thread(target=write, args=(out,)) for _ in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join()
        assert not errors, errors
        final = out / "samples" / "000003"
        assert is_finished(out, 3) and sorted(p.name for p in final.iterdir()) == sorted([*images, LABELS])
        assert sorted(p.name for p in final.parent.iterdir()) == ["000003"]  # no hidden folder left
