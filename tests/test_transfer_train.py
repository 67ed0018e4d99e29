"""IHPT's target generator: pairs that share appearance and differ in pose, training steps through the
one training loop lowering the loss on them (tiny SD 1.x, frozen), and ``handforge train transfer``."""

from __future__ import annotations

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from handforge.engines.checkpoints import load_model
from handforge.engines.image.loading import load_sd
from handforge.engines.transfer.model import POSE_DIM, TargetGenerator, pose_vector
from handforge.engines.transfer.pairs import PosePairs, write_pairs
from handforge.engines.transfer.train import TransferObjective
from handforge.export.spec import parse_spec
from handforge.training.loop import TrainSettings, train
from PIL import Image

from tests.support import tiny_sd

REPO = Path(__file__).resolve().parents[1]
# No forearm: the backgrounds are compared pixel for pixel outside the hands, and the forearm's
# wrist end follows the thumb's skinning, so it moves a little between the two poses.
SPEC = {"seed": 5, "samples": 4, "width": 64, "height": 64, "render": {"engine": "none", "forearm": "none"},
        "camera": {"distance": [0.45, 0.6]}, "outputs": ["mesh"]}
TINY = {"image_size": 32, "backbone_channels": (8, 16), "feature_dim": 16, "num_layers": 1, "num_heads": 2,
        "num_queries": 4, "pose_tokens": 2}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    return tiny_sd.build_sd(root / "sd"), write_pairs(parse_spec(SPEC), root / "pairs", 4, shading="gl")


def test_pairs_share_camera_and_look_and_differ_in_pose(data):
    _, pairs = data
    for n in range(4):
        a, b = (json.loads((pairs / side / "samples" / f"{n:06d}" / "labels.json").read_text())
                for side in ("source", "target"))
        assert a["camera"] == b["camera"] and a["background"] == b["background"] and a["skin_tone"] == b["skin_tone"]
        assert a["lighting"] == b["lighting"]
        for side in a["hands"]:
            pa, pb = a["hands"][side]["params_world"], b["hands"][side]["params_world"]
            assert pa["betas"] == pb["betas"] and pa["global_orient"] == pb["global_orient"]
        assert any(a["hands"][s]["params_world"]["hand_pose"] != b["hands"][s]["params_world"]["hand_pose"]
                   for s in a["hands"])
        rgb = [np.asarray(Image.open(pairs / side / "samples" / f"{n:06d}" / "rgb.png")) for side in ("source", "target")]
        masks = [np.asarray(Image.open(p)) > 0 for side in ("source", "target")
                 for p in (pairs / side / "samples" / f"{n:06d}").glob("mask_*.png")]
        outside = ~np.any(masks, axis=0)
        assert outside.mean() > 0.3 and np.array_equal(rgb[0][outside], rgb[1][outside])  # the same background
    dataset = PosePairs(pairs, size=64)
    item = dataset[0]
    assert item["source"].shape == item["target"].shape == (3, 64, 64) and item["source_pose"].shape == (POSE_DIM,)
    assert not torch.equal(item["source_pose"], item["target_pose"])


def test_pose_pairs_items_are_the_cameras_view_of_each_images_hands(data):
    """A pair's pose vectors per hand (SIDES order: present, global_orient, hand_pose) hold what the image shows:
    the wrist as its camera sees it, the labels' ``params_camera`` (made by the export, not by ``pose_vector``),
    as the ihpt engine reads a source pose at sampling time (``pose_vector(hands, camera.R)``). Before this
    test, pairs read with the world-frame wrists passed every test here."""
    from handforge_shared.skeleton import SIDES

    _, pairs = data
    dataset = PosePairs(pairs, size=64)
    for index, name in enumerate(dataset.indices):
        item = dataset[index]
        for folder in ("source", "target"):
            labels = json.loads((pairs / folder / "samples" / name / "labels.json").read_text())
            vector = item[f"{folder}_pose"].numpy().reshape(len(SIDES), -1)
            for k, side in enumerate(SIDES):
                hand = labels["hands"].get(side)
                if hand is None:
                    assert not vector[k].any()
                    continue
                camera = hand["params_camera"]
                assert vector[k, 0] == 1.0
                np.testing.assert_allclose(vector[k, 1:4], camera["global_orient"], atol=1e-5)
                np.testing.assert_allclose(vector[k, 4:], camera["hand_pose"], atol=1e-6)
                assert not np.allclose(hand["params_world"]["global_orient"], camera["global_orient"], atol=1e-3)


def test_pairs_of_another_spec_are_not_mixed_into_a_folder(data):
    """A rerun resumes (or extends) the same pairs; another spec's pairs were added to them silently."""
    _, pairs = data
    assert write_pairs(parse_spec(SPEC), pairs, 4, shading="gl") == pairs  # the same spec: nothing to do
    with pytest.raises(ValueError, match="holds pairs written from another spec or shading"):
        write_pairs(parse_spec({**SPEC, "seed": 9}), pairs, 6, shading="gl")
    assert not (pairs / "source" / "samples" / "000004").exists()


def test_one_run_at_a_time_writes_pairs_into_a_folder(data):
    """Two runs into one folder both drew every pair, each replacing the other's samples."""
    from handforge_shared.files import folder_lock

    _, pairs = data
    with folder_lock(pairs):  # (as another process's run holds it)
        with pytest.raises(ValueError, match="another run is writing pairs into this folder"):
            write_pairs(parse_spec(SPEC), pairs, 6, shading="gl")
    assert not (pairs / "source" / "samples" / "000004").exists()


def test_pairs_recorded_before_a_render_setting_existed_resume(tmp_path):
    """Pairs written before render.antialiasing (their record has no such key) were made at its default: the
    same spec resumes them (compared as written, the new key refused every older pairs folder); another value
    is another spec."""
    from handforge.engines.transfer.pairs import PAIRS_SPEC, check_pairs_folder

    spec = {**SPEC, "render": {"engine": "workbench"}}
    made_by = check_pairs_folder(tmp_path, parse_spec(spec), "blender")
    del made_by["spec"]["render"]["antialiasing"]  # as an older HandForge recorded it
    (tmp_path / PAIRS_SPEC).write_text(json.dumps(made_by))
    check_pairs_folder(tmp_path, parse_spec(spec), "blender")
    with pytest.raises(ValueError, match="holds pairs written from another spec or shading"):
        check_pairs_folder(tmp_path, parse_spec({**spec, "render": {"engine": "workbench", "antialiasing": "OFF"}}),
                           "blender")


def test_a_pairs_record_nested_too_deeply_is_said_unreadable(tmp_path):
    """A pairs_spec.json nested thousands deep was a RecursionError traceback."""
    from handforge.engines.transfer.pairs import PAIRS_SPEC, check_pairs_folder

    (tmp_path / PAIRS_SPEC).write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"pairs_spec.json cannot be read \(nested too deeply: .*\): write these "
                                         "pairs into another folder"):
        check_pairs_folder(tmp_path, parse_spec(SPEC), "gl")


def test_pose_vector_is_the_cameras_view_of_the_wrists():
    from handforge_shared import pose_library
    from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    hands = {"right": pose_library.get("fist", side="right"), "left": pose_library.get("spread", side="left")}
    R = axis_angle_to_matrix(np.array([0.3, -1.1, 0.4]))
    turn = axis_angle_to_matrix(np.array([-0.7, 0.2, 2.0]))  # the whole world turned, the camera with it
    turned = {s: p.replace(global_orient=matrix_to_axis_angle(turn @ axis_angle_to_matrix(p.global_orient)))
              for s, p in hands.items()}
    a, b = pose_vector(hands, R), pose_vector(turned, R @ turn.T)
    assert a.shape == (POSE_DIM,) and np.allclose(a, b, atol=1e-5)
    assert not np.allclose(pose_vector(hands), pose_vector(turned), atol=1e-3)
    assert np.array_equal(pose_vector({"right": hands["right"]})[:POSE_DIM // 2], np.zeros(POSE_DIM // 2))  # no left


def fixed_loss(model, objective, batch) -> float:
    with torch.no_grad():
        return float(np.mean([float(objective(model, batch, torch.Generator().manual_seed(k))) for k in range(6)]))


def test_training_steps_lower_the_loss(data, tmp_path):
    sd_path, pairs = data
    sd = load_sd(sd_path)
    dataset = PosePairs(pairs, size=64)
    torch.manual_seed(0)
    model = TargetGenerator(cross_attention_dim=sd["unet"].config.cross_attention_dim, **TINY)
    objective = TransferObjective(sd)
    batch = {k: torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in dataset[0]}
    before = fixed_loss(model, objective, batch)
    result = train(model, dataset, objective, TrainSettings(out=tmp_path / "run", steps=40, batch_size=2, lr=3e-3,
                                                             ema_decay=None, checkpoint_every=40, progress=False))
    after = fixed_loss(result.model.cpu().eval(), objective, batch)
    assert after < before, (before, after)
    loaded = load_model(TargetGenerator, result.model_dir)
    context = loaded(batch["source"][:1], batch["source_pose"][:1], batch["target_pose"][:1])
    assert context.shape == (1, 4 + 8 * 8 + 2, sd["unet"].config.cross_attention_dim)  # queries + 8×8 grid + pose


def test_train_transfer_command_writes_pairs_and_a_model(data, tmp_path):
    sd_path, _ = data
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared"), str(REPO)])}
    command = [sys.executable, "-m", "handforge", "train", "transfer", "--data", str(tmp_path / "pairs"),
               "--write-pairs", str(spec), "--pairs", "2", "--shading", "gl", "--sd", str(sd_path),
               "--out", str(tmp_path / "run"), "--size", "64", "--image-size", "32", "--channels", "8", "16",
               "--feature-dim", "16", "--layers", "1", "--heads", "2", "--steps", "2", "--batch-size", "1", "--quiet"]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "pairs" / "target" / "samples" / "000001" / "rgb.png").is_file()
    first = load_model(TargetGenerator, tmp_path / "run" / "model").state_dict()
    from handforge.engines.transfer.jobs import trained_size  # the ihpt engine's size warning reads the run's --size

    assert trained_size(tmp_path / "run" / "model") == 64
    from handforge.cli import main  # the same command again (its pairs written): the same model

    assert main([*command[3:7], *command[13:16], str(tmp_path / "again"), *command[17:]]) == 0
    again = load_model(TargetGenerator, tmp_path / "again" / "model").state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    bad = subprocess.run([*command[:6], str(tmp_path / "nothing"), "--sd", str(sd_path), "--out", str(tmp_path / "r2")],
                         check=False, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "nothing: no such folder" in bad.stderr


def test_pairs_written_into_a_file_are_refused_in_one_line(data, tmp_path, capsys):
    """--write-pairs into a --data that is a file said only "[Errno 17] File exists: '...'"."""
    from handforge.cli import main

    sd_path, _ = data
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    (tmp_path / "afile").write_text("")
    assert main(["train", "transfer", "--data", str(tmp_path / "afile"), "--write-pairs", str(spec), "--pairs", "1",
                 "--shading", "gl", "--sd", str(sd_path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]  # (after the SD loading progress)
    assert last.startswith("handforge train transfer: --data: ") and "afile is a file: give a folder" in last


def test_a_missing_spec_is_said_before_the_sd_weights_are_loaded(tmp_path, capsys):
    """--write-pairs missing.toml loaded the SD weights (minutes with real ones) before saying the spec was
    missing: here --sd is no SD folder at all, and the spec is what is named."""
    from handforge.cli import main

    (tmp_path / "not-sd").mkdir()
    assert main(["train", "transfer", "--data", str(tmp_path / "pairs"), "--write-pairs", str(tmp_path / "missing.toml"),
                 "--sd", str(tmp_path / "not-sd"), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge train transfer: ") and "missing.toml" in err and len(err.splitlines()) == 1
    assert "not-sd" not in err and not (tmp_path / "pairs").exists()


def test_a_bad_out_is_said_before_the_sd_weights_are_loaded(tmp_path, capsys):
    """A bad --out was said by the training loop, after the SD weights were loaded (minutes with real ones):
    here --sd is no SD folder at all, and the run folder is what is named."""
    from handforge.cli import main

    (tmp_path / "not-sd").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["train", "transfer", "--data", str(tmp_path / "pairs"), "--sd", str(tmp_path / "not-sd"),
                 "--out", str(tmp_path / "mine"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge train transfer: ") and "holds files that are not a training run's" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "mine" / "settings.json").exists()


def test_a_pairs_folder_that_is_missing_or_empty_is_named_so(tmp_path):
    from handforge.engines.transfer.pairs import PosePairs

    with pytest.raises(ValueError, match="missing: no such folder"):  # before: "no pairs", as for an empty one
        PosePairs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no pairs"):
        PosePairs(tmp_path / "empty")


def test_interhand_pairs_are_two_frames_of_one_sequence_and_camera(tmp_path):
    from handforge.engines.transfer.pairs import InterHandPairs

    rng = np.random.default_rng(0)

    def hand():
        return {"pose": rng.normal(scale=0.4, size=48).tolist(), "shape": rng.normal(size=10).tolist(),
                "trans": rng.normal(scale=0.2, size=3).tolist()}

    folder = tmp_path / "annotations" / "test"
    folder.mkdir(parents=True)
    frames = [0, 10, 40, 45]
    (folder / "InterHand2.6M_test_MANO_NeuralAnnot.json").write_text(json.dumps(
        {"0": {str(f): {"right": hand(), "left": hand()} for f in frames}}))
    (folder / "InterHand2.6M_test_camera.json").write_text(json.dumps({"0": {
        "campos": {"400002": [0.0, 0.0, -500.0]}, "camrot": {"400002": np.eye(3).tolist()},
        "focal": {"400002": [1000.0, 1000.0]}, "princpt": {"400002": [160.0, 256.0]}}}))
    images = tmp_path / "images" / "test" / "Capture0" / "ROM01" / "cam400002"
    images.mkdir(parents=True)
    for f in [*frames, 99]:  # frame 99 has no annotation: left out
        Image.fromarray(rng.integers(0, 256, (64, 48, 3), dtype=np.uint8)).save(images / f"image{f}.jpg")
    hands_mean = {s: rng.normal(scale=0.1, size=45) for s in ("left", "right")}
    dataset = InterHandPairs(tmp_path, hands_mean, split="test", size=32, gap=30)
    partners = [(a[0].name, b[0].name) for a, b in dataset.items]
    assert partners == [("image0.jpg", "image40.jpg"), ("image10.jpg", "image40.jpg"), ("image40.jpg", "image0.jpg"),
                        ("image45.jpg", "image0.jpg")]
    item = dataset[0]
    assert item["source"].shape == (3, 32, 32) and item["source_pose"].shape == (POSE_DIM,)
    assert not torch.equal(item["source_pose"], item["target_pose"])
    whole = (images / "image0.jpg").read_bytes()
    (images / "image0.jpg").write_bytes(whole[:300])  # cut short: named, with what to do
    with pytest.raises(ValueError, match=re.escape(f"{images / 'image0.jpg'} is damaged") + ".*InterHand2.6M copy"):
        dataset[0]
    (images / "image0.jpg").write_bytes(whole)
    # what a resume must find again: both annotation files and the four paired images
    fingerprint = dataset.fingerprint()
    assert fingerprint["files"] == 2 + 4
    assert InterHandPairs(tmp_path, hands_mean, split="test", size=32, gap=5).fingerprint() == fingerprint
    (folder / "InterHand2.6M_test_camera.json").write_text((folder / "InterHand2.6M_test_camera.json").read_text() + " ")
    assert InterHandPairs(tmp_path, hands_mean, split="test", size=32, gap=30).fingerprint() != fingerprint
    for f in frames[1:]:
        (images / f"image{f}.jpg").unlink()
    with pytest.raises(ValueError, match="no InterHand2.6M pairs"):  # one annotated image: no partner
        InterHandPairs(tmp_path, hands_mean, split="test")


def test_the_target_generator_is_wired_as_the_paper_says():
    """IHPT's target generator (model.py's docstring, the paper's Sec. 2.3), written out step by step from the
    model's own layers: f_source = backbone(I_source) projected, plus positions; e_source = feature_encoder(f_source);
    e_pose = pose_encoder([P_source, P_target]) as pose tokens; c = feature_decoder(queries, [f_source, e_pose]) (the
    queries attend to the source's features before the encoder and to the pose tokens); the context is
    [c, e_source, e_pose] projected to the UNet's width. Before this test, a decoder attending to e_source in
    place of f_source passed every test here (training lowers the loss either way)."""
    torch.manual_seed(0)
    model = TargetGenerator(cross_attention_dim=24, **TINY).eval()
    image = torch.rand(2, 3, 32, 32) * 2 - 1
    source, target = torch.randn(2, POSE_DIM), torch.randn(2, POSE_DIM)
    with torch.no_grad():
        f_source = model.feature_proj(model.backbone(image).flatten(2).transpose(1, 2)) + model.feature_position
        e_source = model.feature_encoder(f_source)
        e_pose = model.pose_encoder(torch.cat([source, target], dim=1)).reshape(2, TINY["pose_tokens"], -1)
        c = model.feature_decoder(model.queries.expand(2, -1, -1), torch.cat([f_source, e_pose], dim=1))
        expected = model.to_context(torch.cat([c, e_source, e_pose], dim=1))
        got = model(image, source, target)
        assert got.shape == (2, TINY["num_queries"] + 8 * 8 + TINY["pose_tokens"], 24)
        assert torch.allclose(got, expected, atol=1e-5)
        assert not torch.allclose(model(image, target, source), got, atol=1e-4)  # which pose is which matters


def test_the_target_generator_takes_any_backbone_input_size():
    """Its stride-2 blocks give ceil(n / 2): a 34-pixel input is 17 then 9 cells a side (34 // 4 = 8 failed)."""
    for size in (32, 34):
        model = TargetGenerator(cross_attention_dim=8, **{**TINY, "image_size": size})
        out = model(torch.zeros(1, 3, size, size), torch.zeros(1, POSE_DIM), torch.zeros(1, POSE_DIM))
        assert out.shape[0] == 1 and torch.isfinite(out).all()


@pytest.mark.parametrize("damage, named", [
    (lambda sample: (sample / "labels.json").write_text('{"index": 2,'), "target/samples/000002/labels.json: "),
    (lambda sample: (sample / "labels.json").write_text(
        (sample / "labels.json").read_text().replace('"params_world":{"betas":[', '"params_world":{"betas":[NaN,', 1)),
     "target/samples/000002/labels.json: hands."),
    (lambda sample: Image.new("RGB", (200, 50)).save(sample / "rgb.png"),
     "target/samples/000002/rgb.png is 200×50 but its labels' camera is"),
])
def test_a_damaged_pair_is_named_before_training(data, tmp_path, damage, named):
    """One damaged pair ended a run whenever it was drawn (hours in), in a JSONDecodeError, PoseFormatError or
    TypeError traceback naming no file; an RGB of another size than its labels was stretched, unsaid."""
    import shutil

    _, pairs = data
    copy = tmp_path / "pairs"
    shutil.copytree(pairs, copy)
    damage(copy / "target" / "samples" / "000002")
    with pytest.raises(ValueError, match=re.escape(named) + ".*fix or remove that pair"):
        PosePairs(copy, size=64)


@pytest.mark.parametrize("text", ['{"index": 0,', "[" * 100_000])  # (nested thousands deep)
def test_a_pair_damaged_after_the_check_is_named_by_training_and_evaluation(data, tmp_path, text):
    """A labels.json damaged once the pairs were checked (rewritten by another run) was read again with json.loads
    of its own by each drawn item and by eval transfer: a JSONDecodeError or RecursionError naming no file."""
    import shutil

    from handforge.engines.transfer.evaluate import evaluate_pairs
    from handforge.export.samples import LabelsError

    _, pairs = data
    copy = tmp_path / "pairs"
    shutil.copytree(pairs, copy)
    dataset = PosePairs(copy, size=64)
    damaged = copy / "target" / "samples" / "000000" / "labels.json"
    damaged.write_text(text)
    with pytest.raises(LabelsError, match=re.escape(f"{damaged}: ")):
        dataset[0]
    with pytest.raises(LabelsError, match=re.escape(f"{damaged}: ")):
        evaluate_pairs({}, dataset, 1, 1, 0, 0.1, None)


def test_an_image_damaged_after_the_check_is_named_by_training_and_evaluation(data, tmp_path):
    """An rgb.png cut short once the pairs were checked ended a run (and eval transfer) when drawn, in Pillow's
    "image file is truncated", naming no file."""
    import shutil

    from handforge.engines.transfer.evaluate import evaluate_pairs

    _, pairs = data
    copy = tmp_path / "pairs"
    shutil.copytree(pairs, copy)
    dataset = PosePairs(copy, size=64)
    damaged = copy / "source" / "samples" / "000000" / "rgb.png"
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape(f"{damaged} is damaged") + ".*fix or remove that pair"):
        dataset[0]
    with pytest.raises(ValueError, match=re.escape(f"{damaged} is damaged") + ".*fix or remove that pair"):
        evaluate_pairs({}, dataset, 1, 1, 0, 0.1, None)


def _tiny_run(data_folder, sd_path, out, steps: int) -> list[str]:
    return ["train", "transfer", "--data", str(data_folder), "--sd", str(sd_path), "--out", str(out), "--size", "64",
            "--image-size", "32", "--channels", "8", "16", "--feature-dim", "16", "--layers", "1", "--heads", "2",
            "--steps", str(steps), "--batch-size", "1", "--checkpoint-every", "1", "--quiet"]


def test_a_resume_on_another_folder_of_as_many_pairs_is_refused(data, tmp_path, capsys):
    """settings.json recorded the pairs' count only: a rerun on another folder of 4 pairs went on, unsaid,
    training on other data (a review found it)."""
    import shutil

    from handforge.cli import main

    sd_path, pairs = data
    other = write_pairs(parse_spec({**SPEC, "seed": 6}), tmp_path / "other", 4, shading="gl")
    moved = tmp_path / "moved"
    shutil.copytree(pairs, moved)  # the same pairs elsewhere: the same data
    assert main(_tiny_run(pairs, sd_path, tmp_path / "run", 2)) == 0
    capsys.readouterr()
    assert main(_tiny_run(other, sd_path, tmp_path / "run", 4)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"handforge train transfer: {tmp_path / 'run'} holds a run with other training data"), err
    # another batch size and model depth: both in one refusal, said before the SD weights are loaded
    assert main([*_tiny_run(pairs, sd_path, tmp_path / "run", 3), "--batch-size", "2", "--layers", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "holds a run with other settings (batch_size 1 -> 2; model_config: num_layers 1 -> 2); resume" in err, err
    assert main(_tiny_run(moved, sd_path, tmp_path / "run", 3)) == 0
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-00000003" / "step.json").read_text())["step"] == 3


def test_pairs_of_another_spec_are_said_before_the_sd_weights_are_loaded(data, tmp_path, capsys):
    """A --write-pairs spec other than the one the --data folder's pairs were written from was refused by
    write_pairs, after the SD weights loaded (minutes with real ones): here --sd is no SD folder at all."""
    from handforge.cli import main

    _, pairs = data
    (tmp_path / "not-sd").mkdir()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "seed": 9}))
    assert main([*_tiny_run(pairs, tmp_path / "not-sd", tmp_path / "run", 2), "--write-pairs", str(spec),
                 "--shading", "gl"]) == 2
    err = capsys.readouterr().err
    assert "holds pairs written from another spec or shading" in err and "not-sd" not in err, err


@pytest.mark.parametrize("engine", ["generate", "none"])
def test_a_spec_whose_engine_makes_no_pairs_is_said_before_anything_is_written(tmp_path, capsys, engine):
    """--write-pairs with a generated-image (or no-RGB) spec and Blender shading: refused after the SD weights
    loaded, as "unknown Blender engine 'generate'", and after pairs_spec.json was written, so that the
    corrected command (--shading gl) was refused as "pairs written from another spec or shading" in a
    folder holding none. Here --sd is no SD folder at all."""
    from handforge.cli import main

    (tmp_path / "not-sd").mkdir()
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({**SPEC, "outputs": ["rgb", "mesh"], "render": {"engine": engine}}))
    assert main([*_tiny_run(tmp_path / "pairs", tmp_path / "not-sd", tmp_path / "run", 2), "--write-pairs",
                 str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"render.engine is {engine!r}" in err and "--shading gl" in err and "not-sd" not in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "pairs" / "pairs_spec.json").exists()


def test_fewer_pairs_than_the_folder_holds_are_refused(data, tmp_path, capsys):
    """--write-pairs --pairs 2 into a folder of 4 pairs trained on all 4 (then with a note), and write_pairs(…, 2)
    returned the folder of 4 to train on; refused now as the export refuses fewer samples than its folder holds
    (the export's guard, ``refuse_beyond``), before the SD weights load (here: no SD folder at all)."""
    from handforge.cli import main

    _, pairs = data
    before = sorted(p.name for p in (pairs / "source" / "samples").iterdir())
    refused = (f"{pairs} holds 2 finished pair(s) beyond the 2 asked for (up to index 3): ask for at least 4 pairs "
               "(--pairs), or choose another folder")
    with pytest.raises(ValueError, match=re.escape(refused)):
        write_pairs(parse_spec(SPEC), pairs, 2, shading="gl")
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    (tmp_path / "not-sd").mkdir()
    assert main([*_tiny_run(pairs, tmp_path / "not-sd", tmp_path / "run", 1), "--write-pairs", str(spec), "--pairs",
                 "2", "--shading", "gl"]) == 2
    err = capsys.readouterr().err
    assert refused in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in (pairs / "source" / "samples").iterdir()) == before


def test_pairs_are_not_written_beside_other_files(tmp_path):
    """The pairs writer wrote source/, target/ and pairs_spec.json beside a user's thesis.tex, or into an export's
    dataset; the export's guard (``refuse_foreign_files``) refuses both now, and still takes a new, an empty or a
    Finder-touched folder."""
    from handforge.export.run import export

    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "thesis.tex").write_text("keep")
    with pytest.raises(ValueError, match=re.escape(f"{thesis} is not empty and holds no pose-transfer pairs "
                                                   "(thesis.tex): choose a new or an empty folder")):
        write_pairs(parse_spec(SPEC), thesis, 1, shading="gl")
    assert [p.name for p in thesis.iterdir()] == ["thesis.tex"]
    dataset = tmp_path / "dataset"
    export(parse_spec({**SPEC, "samples": 1}), dataset, progress=False)
    held = sorted(p.name for p in dataset.iterdir())
    with pytest.raises(ValueError, match=f"holds no pose-transfer pairs \\({held[0]}, "):
        write_pairs(parse_spec(SPEC), dataset, 1, shading="gl")
    assert sorted(p.name for p in dataset.iterdir()) == held
    finder = tmp_path / "finder"
    finder.mkdir()
    (finder / ".DS_Store").write_text("")
    assert write_pairs(parse_spec(SPEC), finder, 1, shading="gl") == finder


def test_write_pairs_with_interhand_is_refused_before_anything_is_written(tmp_path, capsys):
    """--interhand --write-pairs wrote HandForge pairs into --data, the InterHand2.6M copy, then trained on
    InterHand2.6M without them (or, without the MANO files, failed after writing them). Here --sd is no SD
    folder at all: the conflict is what is said."""
    from handforge.cli import main

    (tmp_path / "not-sd").mkdir()
    root = tmp_path / "InterHand2.6M"
    (root / "annotations" / "train").mkdir(parents=True)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    assert main([*_tiny_run(root, tmp_path / "not-sd", tmp_path / "run", 2), "--interhand", "--write-pairs",
                 str(spec), "--shading", "gl"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge train transfer: ") and "--write-pairs" in err and "--interhand" in err, err
    assert len(err.splitlines()) == 1 and "not-sd" not in err
    assert sorted(p.name for p in root.iterdir()) == ["annotations"] and not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, needed", [(["--pairs", "3"], "--write-pairs"), (["--shading", "gl"], "--write-pairs"),
                                             (["--interhand-gap", "5"], "--interhand"),
                                             (["--interhand-split", "test"], "--interhand")])
def test_an_option_that_needs_another_is_refused_without_it(data, tmp_path, capsys, options, needed):
    """--pairs/--shading without --write-pairs and --interhand-* without --interhand were ignored unsaid: the run
    trained on the folder's pairs as they were. Here --sd is no SD folder at all: the option is what is said."""
    from handforge.cli import main

    _, pairs = data
    (tmp_path / "not-sd").mkdir()
    assert main([*_tiny_run(pairs, tmp_path / "not-sd", tmp_path / "run", 2), *options]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"handforge train transfer: {options[0]}: only with {needed}"), err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_the_model_records_its_training_size_and_a_run_begun_before_it_did_resumes(data, tmp_path, capsys):
    # before: the size was in the run's settings.json alone, so a model/ copied out of its run could not say it
    # (the ihpt engine's warning at another size needs it); a run begun before it was recorded resumes as it was
    from handforge.cli import main
    from handforge.engines.transfer.jobs import trained_size

    sd_path, pairs = data
    run = tmp_path / "run"
    assert main(_tiny_run(pairs, sd_path, run, 1)) == 0
    assert json.loads((run / "model" / "config.json").read_text())["trained_size"] == 64
    shutil.copytree(run / "model", tmp_path / "copied")
    assert trained_size(tmp_path / "copied") == 64
    # as an older version left the run: neither its settings.json nor its model's config holds trained_size
    settings_file = run / "settings.json"
    settings = json.loads(settings_file.read_text())
    del settings["model_config"]["trained_size"]
    settings_file.write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(_tiny_run(pairs, sd_path, run, 2)) == 0, capsys.readouterr().err
    assert json.loads((run / "model" / "config.json").read_text())["trained_size"] is None
    assert trained_size(run / "model") == 64  # (from the run's settings.json, as before)


def test_a_resume_on_another_pair_count_is_refused_before_a_pair_is_written(data, tmp_path, capsys):
    """A run on 2 written pairs, rerun with --write-pairs --pairs 3: refused ("other training data (2 items,
    now 3)") after pair 000002 was written, and then neither --pairs 2 (the folder held 3) nor --pairs 3 (the run
    had 2) resumed it (a review found it). Refused now before anything is written; --pairs 2 resumes."""
    from handforge.cli import main

    sd_path, _ = data
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    pairs = tmp_path / "pairs"

    def run(count: int, steps: int) -> int:
        return main([*_tiny_run(pairs, sd_path, tmp_path / "run", steps), "--write-pairs", str(spec), "--pairs",
                     str(count), "--shading", "gl"])

    assert run(2, 2) == 0
    capsys.readouterr()
    assert run(3, 4) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'run'} holds a run with other training data (2 items, now 3)" in err, err
    assert sorted(p.name for p in (pairs / "source" / "samples").iterdir()) == ["000000", "000001"]
    assert run(2, 4) == 0
    assert json.loads((tmp_path / "run" / "checkpoints" / "step-00000004" / "step.json").read_text())["step"] == 4
