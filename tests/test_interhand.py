"""InterHand2.6M readers on small fixtures written by the test: MANO_NeuralAnnot.json (null and missing hands,
several captures and frames) → MotionClip / TwoHandPose → .npz and back; the mean-relative convention; cameras."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import smplx
import torch

from handforge.hands.mano import load_mano
from handforge.datasets import interhand_files as interhand
from handforge_shared.poses import MotionClip, PoseFormatError
from handforge_shared.rotations import axis_angle_to_matrix
from tests.support.synthetic_mano import synthetic_mano_dir, write_synthetic_mano  # noqa: F401 - fixture


def _hand(rng: np.random.Generator) -> dict:
    return {"pose": rng.normal(scale=0.4, size=48).tolist(), "shape": rng.normal(size=10).tolist(),
            "trans": rng.normal(scale=0.2, size=3).tolist()}


@pytest.fixture
def annotations() -> dict:
    rng = np.random.default_rng(0)
    return {
        "0": {
            "0": {"right": _hand(rng), "left": _hand(rng)},
            "6": {"right": None, "left": _hand(rng)},  # null hand
            "3": {"right": _hand(rng)},                 # missing key; out of order on purpose
            "12": {"right": None, "left": None},        # no hand at all
        },
        "7": {"100": {"left": _hand(rng)}, "105": {"left": _hand(rng), "right": None}},
        "9": {"1": {"right": None, "left": None}},     # a capture without any hand
    }


@pytest.fixture
def annotation_file(tmp_path, annotations) -> Path:
    path = tmp_path / "InterHand2.6M_test_MANO_NeuralAnnot.json"
    path.write_text(json.dumps(annotations))
    return path


def test_reader_handles_null_and_missing_hands(annotation_file, annotations):
    parsed = interhand.read_mano_annotations(annotation_file)
    assert list(parsed) == ["0", "7", "9"]
    assert list(parsed["0"]) == [0, 3, 6, 12]  # numeric frame order
    assert set(parsed["0"][0]) == {"left", "right"} and set(parsed["0"][3]) == {"right"}
    assert set(parsed["0"][6]) == {"left"} and parsed["0"][12] == {} and parsed["9"][1] == {}
    raw = annotations["0"]["0"]["right"]
    pose = parsed["0"][0]["right"]
    np.testing.assert_array_equal(pose.global_orient, raw["pose"][:3])
    np.testing.assert_array_equal(pose.hand_pose, raw["pose"][3:])
    np.testing.assert_array_equal(pose.betas, raw["shape"])
    np.testing.assert_array_equal(pose.transl, raw["trans"])


def test_capture_clips_round_trip_through_npz(tmp_path, annotation_file, annotations):
    clips = interhand.capture_clips(annotation_file, fps=5.0)
    assert set(clips) == {"0", "7"}  # capture 9 has no hand
    clip = clips["0"]
    assert clip.hand_model == "mano" and clip.fps == 5.0 and clip.num_frames == 4
    assert clip.extra == {"source": interhand.SOURCE, "capture": "0", "frame_indices": [0, 3, 6, 12],
                          "pose_convention": "mean_relative"}
    assert clip.present["right"].tolist() == [True, True, False, False]
    assert clip.present["left"].tolist() == [True, False, True, False]
    np.testing.assert_array_equal(clip.hands["left"].hand_pose[2], annotations["0"]["6"]["left"]["pose"][3:])
    assert set(clips["7"].hands) == {"left"} and clips["7"].present["left"].all()
    path = clip.save(tmp_path / "capture0.npz")
    loaded = MotionClip.load(path)
    assert loaded.extra == clip.extra and loaded.fps == clip.fps
    for side in ("left", "right"):
        assert np.array_equal(loaded.present[side], clip.present[side])
        np.testing.assert_allclose(loaded.hands[side].to_vector(), clip.hands[side].to_vector(), atol=1e-6)
    # A frame of the clip is the annotated two-hand pose; an empty frame has no hand.
    frame = clip.frame(0)
    np.testing.assert_allclose(frame.right.hand_pose, annotations["0"]["0"]["right"]["pose"][3:])


def test_flat_conversion_uses_each_sides_mean(annotation_file):
    rng = np.random.default_rng(1)
    means = {"right": rng.normal(size=45), "left": rng.normal(size=45)}
    relative = interhand.capture_clips(annotation_file)
    flat = interhand.capture_clips(annotation_file, hands_mean=means)
    assert flat["0"].extra["pose_convention"] == "flat"
    for side in ("left", "right"):
        present = relative["0"].present[side]
        np.testing.assert_allclose(flat["0"].hands[side].hand_pose[present],
                                   relative["0"].hands[side].hand_pose[present] + means[side])
        assert not flat["0"].hands[side].hand_pose[~present].any()  # absent frames stay zero
        np.testing.assert_array_equal(flat["0"].hands[side].global_orient, relative["0"].hands[side].global_orient)
    converted = interhand.to_flat(relative["0"], means)
    np.testing.assert_array_equal(converted.hands["right"].hand_pose, flat["0"].hands["right"].hand_pose)
    assert interhand.to_flat(converted, means) is converted  # already flat
    frames = interhand.frame_poses(annotation_file, hands_mean=means)
    assert sorted(frames) == [("0", 0), ("0", 3), ("0", 6), ("7", 100), ("7", 105)]
    np.testing.assert_allclose(frames[("0", 6)].left.hand_pose, flat["0"].hands["left"].hand_pose[2])
    with pytest.raises(PoseFormatError, match="hands_mean has no left hand"):
        interhand.capture_clips(annotation_file, hands_mean={"right": means["right"]})
    with pytest.raises(PoseFormatError, match=r"hands_mean\['right'\] must be 45 finite numbers"):
        interhand.to_flat(relative["0"], {"right": np.zeros(44), "left": means["left"]})


def test_interhand_poses_on_mano_match_smplx_used_as_the_dataset_says(tmp_path, annotation_file, synthetic_mano_dir):
    """As https://github.com/facebookresearch/InterHand2.6M says: smplx with its default
    flat_hand_mean=False, pose[:3] / pose[3:], shape, trans."""
    model = load_mano(synthetic_mano_dir).to(dtype=torch.float64)
    plain = write_synthetic_mano(tmp_path / "plain", chumpy_shapedirs=False)  # smplx cannot read chumpy
    clip = interhand.capture_clips(annotation_file, hands_mean=model.hands_mean_arrays())["0"]
    raw = interhand.read_mano_annotations(annotation_file)["0"][0]
    for side in ("right", "left"):
        reference = _smplx_default(plain, side)
        hand = raw[side]
        expected = reference(global_orient=torch.tensor(hand.global_orient[None]),
                             hand_pose=torch.tensor(hand.hand_pose[None]), betas=torch.tensor(hand.betas[None]),
                             transl=torch.tensor(hand.transl[None]))
        ours = model.forward_pose(side, clip.hands[side][0])
        torch.testing.assert_close(ours.vertices, expected.vertices, rtol=0, atol=1e-6)


def _smplx_default(folder: Path, side: str) -> smplx.MANO:
    """smplx loaded the ordinary way, with its default flat_hand_mean=False."""
    return smplx.MANO(str(folder / f"MANO_{side.upper()}.pkl"), is_rhand=side == "right", use_pca=False,
                      dtype=torch.float64)


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a["0"]["0"]["right"].update(pose=[0.0] * 47), r"capture 0 frame 0 right: pose must hold 48"),
    (lambda a: a["0"]["0"]["left"].update(shape=[float("nan")] * 10),
     r"capture 0 frame 0 left: betas has a non-finite"),
    (lambda a: a["0"]["0"]["left"].pop("trans"), r"frame 0 left: missing trans"),
    (lambda a: a["0"].update({"x": {}}), r"capture 0 frame x: frame keys must be integers"),
    # what int() also reads: "1_0" was frame 10, " 3" frame 3, "-2" frame -2
    (lambda a: a["0"].update({"1_0": {}}), r"capture 0 frame 1_0: frame keys must be integers"),
    (lambda a: a["0"].update({" 3": {}}), r"capture 0 frame  3: frame keys must be integers"),
    (lambda a: a["0"].update({"-2": {}}), r"capture 0 frame -2: frame keys must be integers"),
    # int() of over 4300 digits raised Python's ValueError, a traceback
    (lambda a: a["0"].update({"9" * 5000: {}}), r"capture 0 frame 99999999999999999999…: frame index of 5000 digits"),
    (lambda a: a["0"]["0"].update(middle=None), r"unknown hands \['middle'\]"),
    (lambda a: a["0"]["0"].update(right=[1, 2]), r"frame 0 right: expected an object"),
    (lambda a: a.update({"5": [1]}), r"capture 5: expected an object keyed by frame index"),
    # text and booleans as numbers: "1e3" read as 1000 m before
    (lambda a: a["0"]["0"]["right"].update(trans=["1e3", 0, 0]), r"frame 0 right: pose, shape and trans must be lists"),
    (lambda a: a["0"]["0"]["right"].update(shape=[True] * 10), r"frame 0 right: pose, shape and trans must be lists"),
    # one boolean among numbers: numpy made the list numbers, true read as 1 unsaid
    (lambda a: a["0"]["0"]["right"].update(shape=[True] + [0.0] * 9), r"frame 0 right: pose, shape and trans must be"),
    # a turn past MotionClip's bound was refused as "right.hand_pose turns a joint by ... in frame 0", naming no
    # file, capture or annotated frame (frame 0 of the clip), and not at all by frame_poses
    (lambda a: a["0"]["3"]["right"]["pose"].__setitem__(7, 1e300), r"capture 0 frame 3 right: pose\[6:9\] turns .* 1e\+300"),
])
def test_malformed_annotations_are_refused(tmp_path, annotations, mutate, message):
    mutate(annotations)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(annotations))
    with pytest.raises(PoseFormatError, match=message) as info:
        interhand.capture_clips(path)
    assert str(path) in str(info.value)
    with pytest.raises(PoseFormatError, match=message):
        interhand.frame_poses(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(PoseFormatError, match="no such file"):
        interhand.read_mano_annotations(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PoseFormatError, match="not a readable JSON file"):
        interhand.read_mano_annotations(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(PoseFormatError, match="expected a JSON object keyed by capture id"):
        interhand.read_cameras(tmp_path / "list.json")



@pytest.mark.parametrize("text", ['{"0": %s}', '{"0": {"0": %s}}'])
def test_json_nested_too_deeply_is_said_so(tmp_path, text):
    """A value nested thousands deep (a capture's, or a frame's, read as its capture is) was refused with
    Python's "maximum recursion depth exceeded while decoding a JSON array"; it is said as the damage it is, as
    every JSON file of the project is (``handforge_shared.files.NestedTooDeeply``)."""
    path = tmp_path / "deep.json"
    path.write_text(text % ("[" * 100_000 + "]" * 100_000))
    for read in (interhand.read_mano_annotations, interhand.read_cameras):
        with pytest.raises(PoseFormatError) as info:
            read(path)
        assert str(info.value) == f"{path}: not a readable JSON file (nested too deeply: lists or objects inside " \
                                  "one another thousands of times)"


@pytest.mark.parametrize("frames", ['{"1": {"left": null}, "1": %s}', '{"1": %s, "01": {"left": null}}'])
def test_a_frame_annotated_twice_is_refused(tmp_path, annotations, frames):
    """A repeated frame id (twice the same key, or "1" and "01") kept one annotation and dropped the other unseen."""
    path = tmp_path / "twice.json"
    path.write_text('{"0": %s}' % (frames % json.dumps(annotations["0"]["0"])))
    with pytest.raises(PoseFormatError, match=r"twice.*keep one of them") as info:
        interhand.capture_clips(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------- cameras
def test_cameras_become_opencv_cameras_in_metres(tmp_path):
    rng = np.random.default_rng(2)
    rot = axis_angle_to_matrix(rng.normal(size=3))
    campos_mm = np.array([150.0, -820.0, 1200.0])
    data = {"0": {"campos": {"400262": campos_mm.tolist()}, "camrot": {"400262": rot.tolist()},
                  "focal": {"400262": [1200.0, 1190.0]}, "princpt": {"400262": [160.0, 250.0]}}}
    path = tmp_path / "InterHand2.6M_test_camera.json"
    path.write_text(json.dumps(data))
    cam = interhand.read_cameras(path)["0"]["400262"]
    np.testing.assert_allclose(cam.K, [[1200.0, 0, 160.0], [0, 1190.0, 250.0], [0, 0, 1]])
    np.testing.assert_allclose(cam.position, campos_mm / 1000.0, atol=1e-12)
    # InterHand2.6M's own projection, in millimetres: x_cam = R (X - campos), u = fx x/z + cx.
    world_mm = np.array([[10.0, 20.0, 30.0], [-50.0, 5.0, 80.0]])
    x_cam = (world_mm - campos_mm) @ rot.T
    expected = np.stack([1200.0 * x_cam[:, 0] / x_cam[:, 2] + 160.0, 1190.0 * x_cam[:, 1] / x_cam[:, 2] + 250.0], 1)
    np.testing.assert_allclose(cam.project(world_mm / 1000.0), expected, rtol=1e-10)
    np.testing.assert_allclose(cam.t, x_cam[0] / 1000.0 - (world_mm[0] / 1000.0) @ rot.T, atol=1e-12)
    data["0"]["camrot"]["400262"] = (2 * rot).tolist()
    path.write_text(json.dumps(data))
    with pytest.raises(PoseFormatError, match="camera 400262: camrot is not a rotation matrix"):
        interhand.read_cameras(path)
    del data["0"]["focal"]
    with pytest.raises(PoseFormatError, match="capture 0: expected campos, camrot, focal and princpt"):
        interhand.read_cameras(data)


# ---------------------------------------------------------------------- reading large files
@pytest.mark.parametrize("chunk", [1, 7, 4096])
@pytest.mark.parametrize("indent", [None, 3])
def test_files_read_piecewise_give_what_json_load_gives(monkeypatch, tmp_path, annotations, chunk, indent):
    """A file is read a piece at a time (a release file is gigabytes): wherever the pieces end, in a
    number, a key or between members, the annotations are those of the file loaded whole."""
    monkeypatch.setattr(interhand, "CHUNK_BYTES", chunk)
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(annotations, indent=indent))
    whole = interhand.read_mano_annotations(json.loads(path.read_text()))
    read = interhand.read_mano_annotations(path)
    assert [(c, list(frames), [sorted(h) for h in frames.values()]) for c, frames in read.items()] == \
        [(c, list(frames), [sorted(h) for h in frames.values()]) for c, frames in whole.items()]
    for capture, frames in whole.items():
        for index, hands in frames.items():
            for side, pose in hands.items():
                np.testing.assert_array_equal(read[capture][index][side].to_vector(), pose.to_vector())


@pytest.mark.parametrize("text", [
    '{"0": {"1": {"left": null}} "7": {}}',           # no comma between captures
    '{"0": {"1": {"left": null}, "2" {}}}',           # no colon in a capture
    '{"0": {"1": {"left": null},}}',                  # a trailing comma
    '{"0": {"1": {"left": nul}}}',                    # a broken literal inside a frame
    '{"0": {"1": {"left": null}}}  x',                # something after the object
    '{"0": {"1": {"left": null}}, 5: {}}',            # a key that is no string
    '{"0": {"1": {"left": null}}',                    # cut short
    '{"0": {"1": {"left": [1.5, 2.}}}}',              # a broken number
])
@pytest.mark.parametrize("chunk", [3, 4096])
def test_malformed_json_is_refused_at_the_place_json_names(monkeypatch, tmp_path, text, chunk):
    monkeypatch.setattr(interhand, "CHUNK_BYTES", chunk)
    path = tmp_path / "broken.json"
    path.write_text("\n".join([text[:9], text[9:]]))  # a line break: the line is counted over the pieces
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(path.read_text())
    with pytest.raises(PoseFormatError, match="not a readable JSON file") as info:
        interhand.capture_clips(path)
    assert str(path) in str(info.value)
    assert f"line {expected.value.lineno}, character {expected.value.pos + 1} of the file" in str(info.value)


def test_reading_holds_a_fraction_of_the_file_not_its_object_tree(monkeypatch, tmp_path):
    """``json.load`` of the file held its text and object tree, about three times the file, before a
    clip was made; read a piece and a capture at a time, the peak is the clips' arrays (float64, 0.4
    times the file here), one capture's objects and the piece of text (a release file's gigabytes
    dwarf the megabyte read at a time; this small file is read 64 kB at a time)."""
    import tracemalloc

    monkeypatch.setattr(interhand, "CHUNK_BYTES", 1 << 16)
    rng = np.random.default_rng(3)
    data = {str(c): {str(f): {"right": _hand(rng), "left": _hand(rng)} for f in range(100)} for c in range(30)}
    path = tmp_path / "InterHand2.6M_train_MANO_NeuralAnnot.json"
    path.write_text(json.dumps(data))
    del data
    size = path.stat().st_size
    tracemalloc.start()
    try:
        clips = interhand.capture_clips(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(clips) == 30 and all(c.num_frames == 100 for c in clips.values())
    assert peak < 0.6 * size, f"peak {peak / 1e6:.1f} MB reading {size / 1e6:.1f} MB"


def test_an_error_early_in_a_large_file_is_said_without_reading_the_rest(monkeypatch, tmp_path):
    """A syntax error is the file's unless the text read so far ends inside the value: reading on to the end
    (a release file's gigabytes) before saying so held the whole file."""
    import tracemalloc

    monkeypatch.setattr(interhand, "CHUNK_BYTES", 1 << 12)
    path = tmp_path / "broken.json"
    rest = json.dumps({str(f): {"left": None} for f in range(200_000)})[1:]
    path.write_text('{"0": {"1": {"left": nul}}, "1": {' + rest + "}")
    tracemalloc.start()
    try:
        with pytest.raises(PoseFormatError, match="Expecting value: line 1, character 22 of the file"):
            interhand.capture_clips(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.1 * path.stat().st_size, f"peak {peak / 1e6:.1f} MB for a {path.stat().st_size / 1e6:.1f} MB file"


@pytest.mark.parametrize("chunk", [5, 4096])
def test_a_byte_that_is_no_utf8_is_named_by_its_place_in_the_file(monkeypatch, tmp_path, annotations, chunk):
    monkeypatch.setattr(interhand, "CHUNK_BYTES", chunk)
    text = json.dumps(annotations).encode()
    at = text.index(b'"7"') + 1  # inside a capture id, past the first pieces
    path = tmp_path / "latin1.json"
    path.write_bytes(text[:at] + b"\xff" + text[at + 1:])
    with pytest.raises(PoseFormatError, match=rf"not UTF-8 text \(invalid start byte\): byte {at + 1} of the file"):
        interhand.capture_clips(path)


def test_a_byte_order_mark_is_read_past(tmp_path, annotations):
    """Editors on Windows may start a UTF-8 file with a byte-order mark; json.load refused the file."""
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(annotations).encode())
    assert list(interhand.capture_clips(path)) == ["0", "7"]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files through /proc")
def test_the_file_is_closed_when_reading_stops_on_an_error(tmp_path, annotations):
    """An error in the middle of the file kept it open for as long as the error was kept (its traceback holds
    the reader's frame)."""
    def open_files() -> list[str]:
        return [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                if os.path.exists(f"/proc/self/fd/{fd}")]

    annotations["7"]["100"]["left"]["shape"] = [0.0] * 3
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(annotations))
    errors = []
    for reader in (interhand.capture_clips, interhand.frame_poses, interhand.read_mano_annotations):
        with pytest.raises(PoseFormatError, match="capture 7 frame 100 left: shape must hold 10 numbers") as info:
            reader(path)
        errors.append(info.value)  # kept, with its traceback
        assert str(path) not in open_files()


@pytest.mark.parametrize("chunk", range(1, 16))
def test_a_number_cut_by_the_end_of_a_piece_is_read_whole(monkeypatch, tmp_path, chunk):
    """"1.5e10" cut after "1." was read as 1.0, and the rest then failed as a syntax error."""
    monkeypatch.setattr(interhand, "CHUNK_BYTES", chunk)
    path = tmp_path / "cameras.json"
    path.write_text('{"0": 1.5e10}')
    with pytest.raises(PoseFormatError, match="capture 0: expected campos, camrot, focal and princpt"):
        interhand.read_cameras(path)
