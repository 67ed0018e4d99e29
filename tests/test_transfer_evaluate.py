"""``handforge eval transfer``: its scores respond to what they measure, and the command runs both
engines on tiny random weights over exported pairs (the pose score says why it is missing when no
hand landmark detector is installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from handforge.engines.checkpoints import save_model
from handforge.engines.transfer.evaluate import box_mask, pose_scores, psnr, ssim
from handforge.engines.transfer.model import TargetGenerator

from tests.support import tiny_sd

REPO = Path(__file__).resolve().parents[1]


def test_appearance_scores_separate_the_hands_box_from_the_background():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    inside = box_mask([10.2, 5.0, 20.0, 10.0], 40, 60)
    assert inside.sum() == 20 * 10 and inside[5, 10] and not inside[15, 10]
    result = truth.copy()
    result[inside] = 255 - result[inside]  # only the hands change
    assert psnr(result, truth, ~inside) == 100.0  # capped: an exact match counts in a mean (inf dropped out)
    assert psnr(result, truth, inside) < 10
    assert psnr(result, truth, np.zeros_like(inside)) is None
    # SSIM: 1 where the images agree (away from the box: its 7x7 windows see none of it), low where they do not
    far = ~box_mask([7.2, 2.0, 26.0, 16.0], 40, 60)
    assert ssim(result, truth, far) == 1.0 and ssim(truth, truth, inside) == 1.0
    assert ssim(result, truth, inside) < 0.1 < ssim(result, truth, ~inside) < 1.0
    assert ssim(result, truth, np.zeros_like(inside)) is None
    # the oracle: scikit-image's own mean SSIM, which leaves out the 3 pixels along the image's edges
    from skimage.metrics import structural_similarity

    noisy = np.clip(truth.astype(int) + rng.integers(-30, 31, truth.shape), 0, 255).astype(np.uint8)
    interior = np.zeros_like(inside)
    interior[3:-3, 3:-3] = True
    whole = structural_similarity(noisy, truth, channel_axis=-1, data_range=255)
    assert 0.5 < whole < 0.99 and abs(ssim(noisy, truth, interior) - whole) < 1e-9


def test_pck_counts_visible_keypoints_within_the_radius():
    # one implementation with eval image's (evaluation.landmarks): pairing by 2D proximity, not handedness
    from handforge.evaluation.landmarks import DetectedHand

    target = np.zeros((21, 2))
    visible = np.ones(21, bool)
    visible[0] = False
    detected = target.copy()
    detected[1:11] += 6.0  # 8.5 px away: outside 0.1 × a 50 px diagonal
    detected[0] += 100.0   # not visible: not counted
    hand = {"keypoints_2d": target.tolist(), "visible": visible.tolist(), "bbox_projected": [0, 0, 30, 40]}
    far = DetectedHand("left", 0.9, target + 500.0)
    assert pose_scores([DetectedHand("left", 0.9, detected)], {"right": hand}, 0.1) == [10 / 20]  # label ignored
    assert pose_scores([], {"right": hand}, 0.1) == [0.0]
    assert pose_scores([far, DetectedHand("right", 0.9, detected)], {"right": hand}, 0.1) == [10 / 20]


def test_a_hand_out_of_view_is_left_out_of_the_pose_score():
    """A labelled hand with no visible keypoint (occluded, or outside the image) scored 0 when nothing was
    detected but NaN (dropped from the mean) when a wrong detection was paired with it: now left out either
    way, as eval image leaves it, and it takes no detection from a hand in view."""
    from handforge.evaluation.landmarks import DetectedHand

    target = np.random.default_rng(0).uniform(100, 200, (21, 2))
    seen = {"keypoints_2d": target.tolist(), "visible": [1] * 21, "bbox_projected": [100, 100, 100, 100]}
    occluded = {"keypoints_2d": (target + 300).tolist(), "visible": [0] * 21, "bbox_projected": [400, 400, 100, 100]}
    outside = {"keypoints_2d": (target - 300).tolist(), "visible": [0] * 21, "bbox_projected": None}
    right = DetectedHand("right", 0.9, target.copy())
    for hidden in (occluded, outside):
        hands = {"right": seen, "left": hidden}
        assert pose_scores([right], hands, 0.1) == [1.0]
        assert pose_scores([right, DetectedHand("left", 0.9, target + 350)], hands, 0.1) == [1.0]
    assert pose_scores([right], {"left": occluded}, 0.1) == []  # nothing to score: the pair's mean is None


def test_eval_transfer_runs_both_engines_on_pairs(tmp_path):
    sd = tiny_sd.build_sd(tmp_path / "sd")
    tiny_sd.build_controlnet(tmp_path / "controlnets" / "control_sd15_depth", sd, seed=2)
    torch.manual_seed(0)
    generator = save_model(TargetGenerator(cross_attention_dim=32, image_size=32, backbone_channels=(8, 16),
                                           feature_dim=16, num_layers=1, num_heads=2), tmp_path / "tg")
    spec = {"seed": 2, "samples": 2, "width": 64, "height": 64, "render": {"engine": "none"},
            "camera": {"distance": [0.45, 0.6]}, "outputs": ["mesh"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    pairs = tmp_path / "pairs"  # held-out pairs written by the command itself, as the README says
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared"), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "handforge", "eval", "transfer", "--data", str(pairs),
                           "--write-pairs", str(tmp_path / "spec.json"), "--pairs", "2", "--shading", "gl",
                           "--sd", str(sd), "--device", "cpu",
                           # relative, from the folder it runs in: the report records it absolute (as the others)
                           "--controlnets", str(tmp_path / "controlnets"), "--target-generator", "tg",
                           "--steps", "1", "--limit", "2", "--out", str(tmp_path / "report.json")],
                          check=False, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name for p in (pairs / "target" / "samples").iterdir()) == ["000000", "000001"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []  # written in one go
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["pairs"] == 2 and set(report["engines"]) == {"reference", "ihpt"}
    run = report["run"]  # which weights the scores are of (the report did not say)
    assert generator == tmp_path / "tg" and run["data"] == str(pairs)
    assert run["sd"] == str(sd) and run["models"]["ihpt"] == {"target_generator": str(generator)}
    assert run["models"]["reference"]["controlnets"] == {"depth": str(tmp_path / "controlnets" / "control_sd15_depth")}
    assert (run["steps"], run["limit"], run["device"]) == (1, 2, "cpu")
    for scores in report["engines"].values():
        assert 0 < scores["psnr_hands"] < 60 and 0 < scores["psnr_background"] < 60
        assert -1 <= scores["ssim_hands"] < 1 and -1 <= scores["ssim_background"] < 1
    try:
        import mediapipe  # noqa: F401
    except ImportError:
        assert "mediapipe" in report["pose"]
    else:
        assert report["pose"] == "PCK@0.1 over visible keypoints" and all("pck" in s for s in report["engines"].values())


def test_eval_transfer_runs_the_reference_engine_with_the_guidance_module(tmp_path):
    # before: the reference engine ran with ControlNets only ("--guide": unrecognized arguments), so one who had
    # only the guidance module (image.guidance) could not evaluate it; the image.transfer job could run it
    sd = tiny_sd.build_sd(tmp_path / "sd")
    guidance = tiny_sd.build_controlnet(tmp_path / "guidance", sd, seed=3)
    spec = {"seed": 2, "samples": 1, "width": 64, "height": 64, "render": {"engine": "none"},
            "camera": {"distance": [0.45, 0.6]}, "outputs": ["mesh"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "cfg.toml").write_text("")  # nothing set: no ControlNets, no guidance module
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HANDFORGE_")},
           "HANDFORGE_CONFIG": str(tmp_path / "cfg.toml"),
           "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared"), str(REPO)])}
    command = [sys.executable, "-m", "handforge", "eval", "transfer", "--data", str(tmp_path / "pairs"), "--sd",
               str(sd), "--device", "cpu", "--engines", "reference", "--steps", "1", "--limit", "1"]
    subprocess.run([*command, "--write-pairs", str(tmp_path / "spec.json"), "--pairs", "1", "--shading", "gl",
                    "--guidance", str(guidance), "--guide", "attentionhand", "--out", str(tmp_path / "given.json")],
                   check=True, env=env, capture_output=True, text=True, timeout=600)
    given = json.loads((tmp_path / "given.json").read_text())
    assert given["pairs"] == 1 and set(given["engines"]) == {"reference"}
    assert given["run"]["models"]["reference"] == {"guide": "attentionhand", "guidance": str(guidance)}
    # auto, with no ControlNets: the guidance module, as the job's auto picks (it set, not given)
    auto = subprocess.run([*command, "--out", str(tmp_path / "auto.json")], check=False, capture_output=True,
                          text=True, timeout=600, env={**env, "HANDFORGE_IMAGE_GUIDANCE": str(guidance)})
    assert auto.returncode == 0, auto.stderr[-3000:]
    assert json.loads((tmp_path / "auto.json").read_text())["run"]["models"]["reference"]["guide"] == "attentionhand"
    # no guidance module given or set: refused in one line saying how to give it, before SD loads (none at no-sd)
    missing = subprocess.run([*command, "--guide", "attentionhand", "--sd", str(tmp_path / "no-sd")],
                             check=False, env=env, capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    assert missing.stderr.startswith("handforge eval transfer: reference: guide attentionhand: no guidance module: "
                                     "pass --guidance or set the environment variable HANDFORGE_IMAGE_GUIDANCE=")


def test_eval_transfer_refuses_a_device_it_does_not_have(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared"), str(REPO)])}
    bad = subprocess.run([sys.executable, "-m", "handforge", "eval", "transfer", "--data", str(tmp_path), "--device",
                          "gpu0"], check=False, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "must be cpu, cuda or cuda:N, got 'gpu0'" in bad.stderr
    if not torch.cuda.is_available():
        absent = subprocess.run([sys.executable, "-m", "handforge", "eval", "transfer", "--data", str(tmp_path),
                                 "--sd", str(tmp_path), "--device", "cuda"],
                                check=False, env=env, capture_output=True, text=True, timeout=120)
        assert absent.returncode == 2 and "no CUDA device; use --device cpu" in absent.stderr
        assert "Traceback" not in absent.stderr


def test_eval_transfer_refuses_a_target_generator_of_another_sd_model_as_the_job_does(tmp_path):
    # before: a traceback in the first pair's sampling ("mat1 and mat2 shapes cannot be multiplied (84x48 and
    # 32x32)"); the image.transfer job refused it by name
    sd = tiny_sd.build_sd(tmp_path / "sd")
    generator = save_model(TargetGenerator(cross_attention_dim=48, image_size=32, backbone_channels=(8, 16),
                                           feature_dim=16, num_layers=1, num_heads=2), tmp_path / "tg")
    spec = {"seed": 2, "samples": 1, "width": 64, "height": 64, "render": {"engine": "none"},
            "camera": {"distance": [0.45, 0.6]}, "outputs": ["mesh"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "backend"), str(REPO / "shared"), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "handforge", "eval", "transfer", "--data", str(tmp_path / "pairs"),
                           "--write-pairs", str(tmp_path / "spec.json"), "--pairs", "1", "--shading", "gl",
                           "--sd", str(sd), "--device", "cpu", "--engines", "ihpt", "--target-generator",
                           str(generator), "--steps", "1", "--limit", "1"],
                          check=False, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert f"{generator} was trained for a 48-wide UNet context, {sd} attends 32: train it on this SD model, or use " \
           "the SD model it was trained on" in done.stderr


def test_a_data_folder_that_is_not_there_is_said_before_the_weights(tmp_path, capsys):
    """--data /nope was said as missing SD weights (none configured here): the typo came second."""
    from handforge.cli import main

    assert main(["eval", "transfer", "--data", str(tmp_path / "nope")]) == 2
    assert f"--data {tmp_path / 'nope'}: no such folder" in capsys.readouterr().err
    # so are a --write-pairs spec that is not there and a folder without pairs (found one fix after the weights')
    assert main(["eval", "transfer", "--data", str(tmp_path / "pairs"), "--write-pairs", str(tmp_path / "no.json")]) == 2
    assert f"{tmp_path / 'no.json'}: no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "transfer", "--data", str(tmp_path / "empty")]) == 2
    assert f"{tmp_path / 'empty'}: no pairs" in capsys.readouterr().err


def test_an_engine_named_twice_is_refused(tmp_path, capsys):
    """--engines ihpt ihpt ran ihpt once, unsaid: refused, as the export spec's lists refuse a repeat."""
    from handforge.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["eval", "transfer", "--data", str(tmp_path), "--engines", "ihpt", "reference", "ihpt"])
    assert exit_.value.code == 2
    assert "argument --engines: ihpt given more than once; give each once" in capsys.readouterr().err


@pytest.mark.parametrize("options, said", [
    (["--engines", "ihpt", "--guidance", "/nowhere/g", "--controls", "depth"],
     "--controls, --guidance: the reference engine's, which --engines ihpt leaves out: add reference to --engines, "
     "or leave them out"),
    (["--engines", "reference", "--target-generator", "/nowhere/tg"],
     "--target-generator: the ihpt engine's, which --engines reference leaves out: add ihpt to --engines, or leave "
     "it out"),
    (["--engines", "reference", "--guide", "controlnet", "--guidance", "/nowhere/g"],
     "--guidance: not read by --guide controlnet: leave it out, or pass the guide that reads it"),
    (["--guide", "attentionhand", "--controlnets", "/nowhere/cn"],
     "--controlnets: not read by --guide attentionhand"),
])
def test_an_engines_options_without_that_engine_are_refused(tmp_path, capsys, options, said):
    """eval transfer ran with another engine's options, paths to nothing included, exit 0: they were ignored."""
    from handforge.cli import main

    assert main(["eval", "transfer", "--data", str(tmp_path), "--sd", str(tmp_path / "no-sd"), *options]) == 2
    err = capsys.readouterr().err
    assert said in err and "no-sd" not in err, err  # said before the weights


def test_pairs_whose_size_the_engines_cannot_draw_are_refused_before_the_weights(tmp_path, capsys):
    # before: pairs of a spec 100 px wide were written, the weights loaded, and the first pair's sampling
    # ended in a traceback ("ValueError: image size 100×100: both sides must be multiples of 8"; ihpt's
    # 96² result failed its comparison with the 100² truth)
    from handforge.cli import main

    spec = {"seed": 2, "samples": 1, "width": 100, "height": 64, "render": {"engine": "none"},
            "camera": {"distance": [0.45, 0.6]}, "outputs": ["mesh"]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    pairs = tmp_path / "pairs"
    args = ["eval", "transfer", "--data", str(pairs), "--sd", str(tmp_path / "no-sd"), "--device", "cpu"]
    assert main([*args, "--write-pairs", str(tmp_path / "spec.json"), "--pairs", "1", "--shading", "gl"]) == 2
    err = capsys.readouterr().err
    assert "100×64" in err and "multiples of 8" in err and "Traceback" not in err
    assert not pairs.exists()  # said before any pair was written
    from handforge.engines.transfer.pairs import write_pairs
    from handforge.export.spec import parse_spec

    write_pairs(parse_spec(spec), pairs, 1, shading="gl")  # pairs already there (written otherwise)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "100×64" in err and "multiples of 8" in err and "no-sd" not in err  # said before the weights


def test_missing_weights_are_refused_in_one_line_saying_how_to_give_them(tmp_path, capsys, monkeypatch):
    # before: "... pass --target-generator or set the environment variable ...=<value>, or add to FILE:" and the
    # file's two lines under it, where other refusals are one line; and with both engines asked for, the reference
    # engine's weights loaded (minutes for SD 1.5) before the missing target generator was said (here: no-sd's
    # load failure was said instead)
    from handforge.cli import main
    from handforge.engines.transfer.pairs import write_pairs
    from handforge.export.spec import parse_spec

    config_file = tmp_path / "none.toml"
    monkeypatch.setenv("HANDFORGE_CONFIG", str(config_file))
    for name in ("HANDFORGE_SD_MODEL", "HANDFORGE_CONTROLNETS", "HANDFORGE_IMAGE_GUIDANCE",
                 "HANDFORGE_TRANSFER_TARGET_GENERATOR"):
        monkeypatch.delenv(name, raising=False)
    spec = {"seed": 2, "samples": 1, "width": 64, "height": 64, "render": {"engine": "none"},
            "camera": {"distance": [0.45, 0.6]}, "outputs": ["mesh"]}
    write_pairs(parse_spec(spec), tmp_path / "pairs", 1, shading="gl")
    command = ["eval", "transfer", "--data", str(tmp_path / "pairs"), "--device", "cpu"]
    given_sd = ["--sd", str(tmp_path / "no-sd")]
    no_generator = ('ihpt: no target generator: pass --target-generator or set the environment variable '
                    f'HANDFORGE_TRANSFER_TARGET_GENERATOR=<path>, or target_generator = "<path>" under [transfer] '
                    f'in {config_file}')
    for args, said in (
            ([*given_sd, "--engines", "ihpt"], no_generator),
            ([*given_sd, "--guide", "attentionhand", "--guidance", str(tmp_path)], no_generator),  # (both engines)
            ([*given_sd, "--engines", "reference", "--guide", "controlnet"],
             'reference: guide controlnet: no ControlNets: pass --controlnets or set the environment variable '
             f'HANDFORGE_CONTROLNETS=<path>, or controlnets = "<path>" under [image] in {config_file}'),
            (["--engines", "ihpt"],
             'no SD weights: pass --sd or set the environment variable HANDFORGE_SD_MODEL=<path>, or sd_model = '
             f'"<path>" under [image] in {config_file}')):
        assert main([*command, *args]) == 2
        assert capsys.readouterr().err == f"handforge eval transfer: {said}\n", args
