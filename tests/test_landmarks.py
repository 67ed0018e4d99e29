"""The hand-landmark detector (real MediaPipe) on images without hands, its input checks, keypoint
order and error arithmetic. Renders with hands: tests/test_blender_landmarks.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from handforge.evaluation.image_alignment import evaluate_image, passes, sample_folders, summarise
from handforge.evaluation.landmarks import (OURS_FROM_MEDIAPIPE, PCK_THRESHOLD, LandmarkError, detect,
                                            keypoint_errors, match)
from handforge_shared.skeleton import KEYPOINT_NAMES
from tests.support.images import png_claiming


def _labels(rng) -> dict:
    hands = {}
    for side, x in (("left", 60.0), ("right", 180.0)):
        keypoints = rng.uniform(-30, 30, (21, 2)) + [x, 128.0]
        lo, hi = keypoints.min(0), keypoints.max(0)
        hands[side] = {"keypoints_2d": keypoints.tolist(), "bbox_projected": [*lo, *(hi - lo)]}
    return {"hands": hands}


def test_mediapipe_order_maps_to_ours():
    # MediaPipe: 0 wrist, then thumb CMC, MCP, IP, tip (1-4), index MCP..tip (5-8), ... pinky (17-20)
    expected = {"wrist": 0, "thumb1": 1, "thumb4": 4, "index1": 5, "index4": 8, "middle3": 11, "pinky4": 20}
    for name, mediapipe_index in expected.items():
        assert OURS_FROM_MEDIAPIPE[KEYPOINT_NAMES.index(name)] == mediapipe_index
    assert sorted(OURS_FROM_MEDIAPIPE) == list(range(21))


@pytest.mark.parametrize("image", [np.full((256, 256, 3), 128, np.uint8), np.zeros((96, 128, 3), np.uint8)])
def test_an_image_without_hands_gives_no_detection_and_a_clear_result(image):
    assert detect(image) == []
    result = evaluate_image(image, _labels(np.random.default_rng(0)))
    assert result["detections"] == 0 and result["unmatched_detections"] == 0
    assert result["hands"] == {"left": {"detected": False}, "right": {"detected": False}}
    assert not passes(result, keep_below_px=1e9) and not passes(result, 1e9, allow_missing=True)
    summary = summarise([result])
    assert summary["detection_rate"] == 0 and summary["mean_px"] is None and summary["labelled_hands"] == 2


@pytest.mark.parametrize("image", [np.zeros((64, 64, 4), np.uint8), np.zeros((64, 64, 3), np.float32),
                                   np.zeros((64, 64), np.uint8)])
def test_a_wrong_image_is_a_clear_error(image):
    with pytest.raises(LandmarkError, match=r"RGB uint8 image of shape \(H, W, 3\)"):
        detect(image)


def test_keypoint_errors_in_pixels_normalised_and_pck():
    labelled = np.random.default_rng(1).uniform(0, 100, (21, 2))
    shift = np.zeros((21, 2))
    shift[:5, 0] = 30.0                  # five keypoints 30 px off: outside 10 % of a 50 px diagonal
    shift[5:, 1] = 3.0                   # the rest 3 px off: inside
    errors = keypoint_errors(labelled + shift, labelled, box=[0, 0, 30, 40])  # diagonal 50
    assert errors.per_keypoint_px == pytest.approx([30] * 5 + [3] * 16)
    assert errors.mean_px == pytest.approx((5 * 30 + 16 * 3) / 21)
    assert errors.mean_normalised == pytest.approx(errors.mean_px / 50)
    assert errors.mse_2d == pytest.approx((5 * 900 + 16 * 9) / 21)
    assert errors.pck == pytest.approx(16 / 21) and PCK_THRESHOLD == 0.1
    with pytest.raises(ValueError, match=r"two \(21, 2\) arrays"):
        keypoint_errors(labelled[:20], labelled[:20])


def test_match_pairs_by_proximity_whatever_the_handedness():
    from handforge.evaluation.landmarks import DetectedHand

    labels = {s: np.asarray(h["keypoints_2d"]) for s, h in _labels(np.random.default_rng(2))["hands"].items()}
    # one detection near the right hand, claiming to be a left hand
    near_right = DetectedHand("left", 0.9, labels["right"] + 2.0)
    assert match([near_right], labels) == {"right": near_right}
    assert match([], labels) == {}
    # a label edited out to 1e308 px: paired last, its error as large, not scipy's "cost matrix is infeasible"
    far = {"left": np.full((21, 2), -1e308), "right": labels["right"]}
    near_left = DetectedHand("left", 0.9, labels["left"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (numpy's overflow warnings were printed amid eval image's table)
        assert match([near_right, near_left], far) == {"right": near_right, "left": near_left}
        assert keypoint_errors(near_left.keypoints, far["left"]).mean_px >= 1e308


def test_without_mediapipe_the_error_names_the_extra():
    code = ("import sys; sys.modules['mediapipe'] = None\n"  # as if it were not installed
            "import numpy as np\n"
            "from handforge.evaluation.landmarks import detect, LandmarkError\n"
            "try:\n    detect(np.zeros((8, 8, 3), np.uint8))\n"
            "except LandmarkError as exc:\n    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert 'handforge[landmarks]' in out.stdout and "mediapipe" in out.stdout, out.stderr


@pytest.mark.parametrize("egl", ["", "surfaceless"])
def test_the_detector_says_nothing_on_stderr(egl):
    """MediaPipe's C++ wrote "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." and absl warnings
    ("W0000 ... Feedback manager requires a model with a single signature ...") to fd 2 on every run; where EGL
    is there (EGL_PLATFORM set, as the GL renderer sets it in the process) its GL context's start too."""
    code = ("import numpy as np\n"
            "from handforge.evaluation.landmarks import detect\n"
            "print(detect(np.zeros((64, 64, 3), np.uint8)), detect(np.zeros((64, 64, 3), np.uint8)))\n")
    env = {k: v for k, v in os.environ.items() if k != "EGL_PLATFORM"} | ({"EGL_PLATFORM": egl} if egl else {})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert (done.returncode, done.stdout, done.stderr) == (0, "[] []\n", "")


def test_only_mediapipes_routine_lines_are_dropped(capfd):
    from handforge.evaluation.landmarks import native_noise_dropped

    noise = b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    with native_noise_dropped():
        os.write(2, noise + b"E0000 a real error\n")
    assert capfd.readouterr().err == "E0000 a real error\n"
    with pytest.raises(RuntimeError), native_noise_dropped():
        os.write(2, b"E0000 the graph failed\n" + noise + b"no newline")
        raise RuntimeError("the graph failed")
    assert capfd.readouterr().err == "E0000 the graph failed\nno newline"


def test_a_child_that_holds_the_pipe_past_the_block_neither_stalls_it_nor_writes_into_another_file(tmp_path):
    """A process started in the block inherits fd 2 (the pipe) and may outlive it: the block waited 5 s for the
    pipe's end, then closed the forwarder's terminal fd under it, and the child's later words went into whatever
    file took that number next (here a file opened just after the block)."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    victim = tmp_path / "victim.txt"
    script = ("import os, subprocess, time\nfrom handforge.evaluation.landmarks import native_noise_dropped\n"
              "start = time.monotonic()\nwith native_noise_dropped():\n"
              "    child = subprocess.Popen(['sh', '-c', 'sleep 2; echo FROM-THE-CHILD >&2'])\n"
              f"took = time.monotonic() - start\nwith open({str(victim)!r}, 'w') as f:\n"
              "    f.write('mine'); f.flush(); child.wait(); time.sleep(0.5)\nprint(round(took, 1))\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "backend"), str(repo / "shared")])})
    assert run.returncode == 0, run.stderr
    assert victim.read_text() == "mine"
    assert float(run.stdout) < 1.8 and "FROM-THE-CHILD" in run.stderr, (run.stdout, run.stderr)


def test_the_words_of_a_crash_in_the_block_reach_stderr():
    """fd 2 was held in a temporary file until the block ended: an absl CHECK failure's line, then its abort,
    printed nothing (exit 134, silent). (Aborting the very moment after still loses them: see the debug-logging
    test below.)"""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = ("import os, time\nfrom handforge.evaluation.landmarks import native_noise_dropped\n"
              "with native_noise_dropped():\n    os.write(2, b'F0000 check failed: graph\\n')\n"
              "    time.sleep(0.5)\n    os.abort()\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "backend"), str(repo / "shared")])})
    assert run.returncode != 0 and b"F0000 check failed: graph" in run.stderr, run.stderr


def test_with_debug_logging_fd_2_is_left_alone_so_an_immediate_aborts_words_show():
    """An absl CHECK writes its line and aborts at once: the forwarder thread dies before reading it (0 of 8 runs
    printed it), so ``handforge -v`` (debug logging) leaves fd 2 alone, MediaPipe's routine lines shown too."""
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = ("import logging, os\nfrom handforge.evaluation.landmarks import native_noise_dropped\n"
              "logging.basicConfig(level=logging.DEBUG)\n"
              "with native_noise_dropped():\n    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate\\n')\n"
              "    os.write(2, b'F0000 check failed: graph\\n')\n    os.abort()\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "backend"), str(repo / "shared")])})
    assert run.returncode != 0 and run.stderr.startswith(b"INFO: Created TensorFlow Lite XNNPACK delegate\n"
                                                         b"F0000 check failed: graph\n"), run.stderr


@pytest.mark.parametrize("failing", ["thread", "dup"])
def test_a_block_that_cannot_start_raises_its_own_error_and_leaks_no_fd(monkeypatch, failing):
    """A forwarder thread that could not start was joined in the cleanup ("cannot join thread before it is
    started", the real error lost) and the pipe's ends and the terminal's copy were left open."""
    import threading

    from handforge.evaluation import landmarks

    def refuse(*args):
        raise OSError(24, "Too many open files")

    before = sorted(os.listdir("/proc/self/fd"))
    if failing == "thread":
        monkeypatch.setattr(threading.Thread, "start", refuse)
    else:  # the terminal's copy for the forwarder, after the pipe was made
        dup, calls = os.dup, []
        monkeypatch.setattr(landmarks.os, "dup", lambda fd: refuse() if calls.append(fd) or len(calls) == 2 else dup(fd))
    with pytest.raises(OSError, match="Too many open files"), landmarks.native_noise_dropped():
        pass
    monkeypatch.undo()
    assert sorted(os.listdir("/proc/self/fd")) == before
    with landmarks.native_noise_dropped():  # (fd 2 back where it was: the next block works)
        pass


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One sample as `handforge export` writes it (GL labels only: no rgb.png)."""
    from handforge.export.run import export
    from handforge.export.spec import parse_spec

    out = tmp_path_factory.mktemp("export") / "data"
    export(parse_spec({"seed": 3, "samples": 1, "width": 64, "height": 64, "render": {"engine": "none"},
                       "camera": {"distance": [0.3, 0.4]}}), out, progress=False)
    return out


def _edited(labels: dict, key: str, value) -> dict:
    hand = next(h for h in labels["hands"].values() if h)
    hand[key] = value
    return labels


@pytest.mark.parametrize("edit, image, message", [
    (lambda text: "{not json", True, "labels.json: Expecting property name .*give a sample as `handforge export`"),
    (lambda text: json.dumps(_edited(json.loads(text), "keypoints_2d", [[1, 2]])), True,
     "hands.(left|right).keypoints_2d must be 21×2 numbers"),
    # a true among the numbers was taken as 1, unsaid; visible's flags may be true or false
    (lambda text: json.dumps(_edited(json.loads(text), "keypoints_2d", [[1, 2]] * 20 + [[3, True]])), True,
     r"hands.(left|right).keypoints_2d\[20\]\[1\] is true, not a number"),
    (lambda text: json.dumps(_edited(json.loads(text), "params_world", {"global_orient": [False, 0, 0],
                                                                         "hand_pose": [0] * 45, "betas": [],
                                                                         "transl": [0, 0, 0]})), True,
     r"hands.(left|right).params_world.global_orient\[0\] is false, not a number"),
    (lambda text: json.dumps(_edited(json.loads(text), "visible", [True] * 21)), "32x48", r"rgb.png is 32×48"),
    # a hand's whole-hand box edited: a TypeError traceback in the errors' normalisation
    (lambda text: json.dumps(_edited(json.loads(text), "bbox_projected", "all of it")), True,
     "hands.(left|right).bbox_projected must be null or 4 numbers"),
    (lambda text: text, False, "has no rgb.png: export with \"rgb\" in the spec's outputs and an RGB engine"),
    (lambda text: text, b"not a png", "cannot read .*rgb.png as an image"),
    # a header claiming 20000 x 20000 pixels: Pillow's DecompressionBombError, a traceback
    (lambda text: text, png_claiming(20_000, 20_000),
     r"cannot read .*rgb.png as an image: Image size \(400000000 pixels"),
    # an image resized since (its labels are in the camera's pixels): it was measured as it was, 30-50 px
    # "errors" that were only the scale
    (lambda text: text, "32x48", r"rgb.png is 32×48 but its labels' camera is 64×64"),
])
def test_cli_names_a_broken_sample_and_how_to_fix_it(exported, tmp_path, capsys, edit, image, message):
    from handforge.cli import main

    data = tmp_path / "data"
    shutil.copytree(exported, data)
    sample = data / "samples" / "000000"
    (sample / "labels.json").write_text(edit((sample / "labels.json").read_text()))
    if image is True:
        from PIL import Image

        Image.new("RGB", (64, 64)).save(sample / "rgb.png")
    elif isinstance(image, str):
        from PIL import Image

        Image.new("RGB", tuple(int(n) for n in image.split("x"))).save(sample / "rgb.png")
    elif image:
        (sample / "rgb.png").write_bytes(image)
    assert main(["eval", "image", str(data), "--out", str(tmp_path / "report.json")]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "report.json").exists()  # nothing half-written


def test_an_rgb_image_lost_since_the_export_is_said_so(exported, tmp_path, capsys):
    """A sample whose labels name its rgb.png, deleted since: told to export with an RGB engine, which it had."""
    from handforge.cli import main

    data = tmp_path / "data"
    shutil.copytree(exported, data)
    labels = data / "samples" / "000000" / "labels.json"
    record = json.loads(labels.read_text())
    record["files"]["rgb"] = "rgb.png"  # as a workbench or cycles export names it
    labels.write_text(json.dumps(record))
    assert main(["eval", "image", str(data), "--out", str(tmp_path / "report.json")]) == 2
    err = capsys.readouterr().err
    assert "has lost its rgb.png, which its labels.json names: delete the sample's folder and run the same export" \
           " again" in err and "RGB engine" not in err


def test_a_sample_folder_whose_labels_were_deleted_is_said_not_evaluated(exported, tmp_path, capsys):
    """A numbered sample folder without its labels.json was left out of the evaluation without a word."""
    from PIL import Image

    from handforge.cli import main

    data = tmp_path / "data"
    shutil.copytree(exported, data)
    Image.new("RGB", (64, 64)).save(data / "samples" / "000000" / "rgb.png")
    shutil.copytree(data / "samples" / "000000", data / "samples" / "000001")
    (data / "samples" / "000001" / "labels.json").unlink()
    (data / "samples" / "7").mkdir()  # no sample's name (the export's are six digits): not one, nor said
    assert main(["eval", "image", str(data), "--out", str(tmp_path / "report.json")]) == 0, capsys.readouterr().err
    assert ("not evaluated: 1 sample folder without labels.json (being written, or its labels deleted: run the export "
            "again to redo it): 000001") in capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["samples"] == 1 and report["without_labels"] == ["000001"]


def test_cli_takes_a_folder_under_the_home_as_other_commands_do(exported, tmp_path, capsys, monkeypatch):
    """`handforge eval image '~/renders'` (a ~ the shell leaves, quoted or after "="): "no samples/*/labels.json
    under ~/renders" before, though the folder was there."""
    from PIL import Image

    from handforge.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(exported, tmp_path / "renders")
    Image.new("RGB", (64, 64)).save(tmp_path / "renders" / "samples" / "000000" / "rgb.png")
    assert main(["eval", "image", "~/renders", "--out", "~/report.json"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "report.json").read_text())["summary"]["samples"] == 1
    assert "1 samples, 0/" in capsys.readouterr().out


def test_a_half_written_sample_of_a_killed_export_is_no_sample(tmp_path):
    """An export killed mid-write leaves samples/.partial-NNNNNN, its labels.json maybe cut short: eval
    image counted it as a sample (a duplicate of the one the resume writes) or failed on its labels; so was
    a copy of a sample folder, which the export's own aggregates do not count."""
    for name, text in (("000000", "{}"), (".partial-000001", '{"hands": {"le'), ("000000 copy", "{}"), ("0", "{}")):
        (tmp_path / "samples" / name).mkdir(parents=True)
        (tmp_path / "samples" / name / "labels.json").write_text(text)
    assert sample_folders(tmp_path) == [tmp_path / "samples" / "000000"]


def test_the_table_lists_the_passing_samples_with_no_dangling_colon_when_none_pass():
    from handforge.engines.image.evaluate import _table

    summary = {"samples": 2, "detected_hands": 0, "labelled_hands": 2, "detection_rate": 0.0, "confidence": None,
               "mean_px": None, "mean_normalised": None, "mse_2d": None, "pck@0.1": None, "handedness_agreement": None}
    report = {"samples": [], "summary": summary, "keep_below_px": 12.0}
    assert _table({**report, "passing": []}).splitlines()[-1] == "passing (< 12 px): 0 of 2"
    assert _table({**report, "passing": ["000001"]}).splitlines()[-1] == "passing (< 12 px): 1 of 2: 000001"


def test_a_folder_that_is_not_there_or_a_file_is_named_so(tmp_path):
    """A typo in the folder was said as "no samples/*/labels.json under it", as if it were an empty export."""
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'renderz'}: no such folder")):
        sample_folders(tmp_path / "renderz")
    (tmp_path / "coco.json").write_text("{}")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path / 'coco.json'} is a file")):
        sample_folders(tmp_path / "coco.json")
    with pytest.raises(ValueError, match="no samples/"):  # an empty folder: as before
        sample_folders(tmp_path)


def test_blocks_in_two_threads_leave_fd_2_where_it_was(capfd):
    """Two threads' blocks interleaved (the second entered while the first ran, the first left first) had left
    fd 2 on the first block's closed temporary file: every later error lost. They now take turns."""
    import os
    import threading
    import time

    from handforge.evaluation.landmarks import native_noise_dropped

    inside = threading.Event()

    def first() -> None:
        with native_noise_dropped():
            inside.set()
            time.sleep(0.3)  # the second thread tries to enter meanwhile

    def second() -> None:
        inside.wait(5)
        with native_noise_dropped():
            time.sleep(0.5)  # and leaves after the first

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    os.write(2, b"said after both\n")
    assert "said after both" in capfd.readouterr().err
