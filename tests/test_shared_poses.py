"""Pose containers and the motion `.npz` format: round trips, mirroring, and clear errors."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import numpy as np
import pytest

from handforge_shared.poses import (
    HandPose,
    MotionClip,
    PoseFormatError,
    TwoHandPose,
    check_hand_model,
    check_reach,
    check_rotations,
    read_npz,
    read_npz_meta,
    stack_poses,
)
from tests.support.capped import run_capped
from handforge_shared.skeleton import (
    JOINT_NAMES,
    JOINT_PARENTS,
    KEYPOINT_FROM_EXTENDED,
    KEYPOINT_NAMES,
    keypoints_from_extended,
)


def random_pose(rng, batch=()):
    return HandPose(
        global_orient=rng.normal(size=batch + (3,)),
        hand_pose=rng.normal(scale=0.3, size=batch + (45,)),
        betas=rng.normal(size=batch + (10,)),
        transl=rng.normal(scale=0.1, size=batch + (3,)),
    )


def random_clip(rng, frames=7, with_gap=True):
    present = np.ones(frames, dtype=bool)
    if with_gap:
        present[2] = False
    return MotionClip(
        hands={"left": random_pose(rng, (frames,)), "right": random_pose(rng, (frames,))},
        present={"left": present},
        fps=24.0,
        extra={"source": "test", "seed": 3},
    )


def test_skeleton_tables_are_consistent():
    assert len(JOINT_NAMES) == len(JOINT_PARENTS) == 16
    assert all(p < j for j, p in enumerate(JOINT_PARENTS))  # parents come first
    assert len(KEYPOINT_NAMES) == 21 and sorted(KEYPOINT_FROM_EXTENDED) == list(range(21))
    extended = np.arange(21 * 3, dtype=float).reshape(21, 3)
    kp = keypoints_from_extended(extended)
    assert KEYPOINT_NAMES[-1] == "wrist" and np.array_equal(kp[-1], extended[0])
    assert np.array_equal(kp[KEYPOINT_NAMES.index("index1")], extended[JOINT_NAMES.index("index1")])
    assert np.array_equal(kp[KEYPOINT_NAMES.index("thumb4")], extended[16])  # first fingertip
    assert np.array_equal(kp[KEYPOINT_NAMES.index("pinky4")], extended[20])


def test_hand_pose_vector_dict_round_trip():
    rng = np.random.default_rng(0)
    pose = random_pose(rng, (4,))
    assert pose.batch_shape == (4,)
    again = HandPose.from_vector(pose.to_vector())
    for field in ("global_orient", "hand_pose", "betas", "transl"):
        np.testing.assert_array_equal(getattr(again, field), getattr(pose, field))
    single = pose[1]
    restored = HandPose.from_dict(json.loads(json.dumps(single.to_dict())))
    np.testing.assert_array_equal(restored.hand_pose, pose.hand_pose[1])
    assert stack_poses([pose[0], pose[1]]).batch_shape == (2,)


def test_mirroring_is_an_involution_and_swaps_two_hands():
    rng = np.random.default_rng(1)
    pose = random_pose(rng)
    twice = pose.mirrored().mirrored()
    np.testing.assert_allclose(twice.to_vector(), pose.to_vector())
    np.testing.assert_allclose(pose.mirrored().transl, pose.transl * [-1, 1, 1])
    np.testing.assert_allclose(pose.mirrored().hand_pose.reshape(15, 3), pose.hand_pose.reshape(15, 3) * [1, -1, -1])
    two = TwoHandPose(left=pose, right=None).mirrored()
    assert two.left is None and two.right is not None
    other = random_pose(rng)
    both = TwoHandPose(left=pose, right=other).mirrored()
    for got, was in ((two.right, pose), (both.right, pose), (both.left, other)):  # each hand on the other side, mirrored
        np.testing.assert_allclose(got.transl, was.transl * [-1, 1, 1])
        np.testing.assert_allclose(got.hand_pose.reshape(15, 3), was.hand_pose.reshape(15, 3) * [1, -1, -1])


def test_a_clip_keeps_only_the_hands_asked_for_with_their_presence():
    clip = random_clip(np.random.default_rng(2))
    right = clip.only("right")
    assert list(right.hands) == ["right"] and list(right.present) == ["right"]
    np.testing.assert_array_equal(right.present["right"], clip.present["right"])
    assert right.num_frames == clip.num_frames and right.fps == clip.fps and right.extra == clip.extra
    with pytest.raises(PoseFormatError, match=r"give one or more of \['left', 'right'\]"):
        clip.only()
    with pytest.raises(PoseFormatError, match=r"the clip holds the right hand\(s\), not \['left'\]"):
        right.only("left")


def test_motion_clip_npz_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    clip = random_clip(rng)
    path = clip.save(tmp_path / "clip.npz")
    loaded = MotionClip.load(path)
    assert loaded.num_frames == 7 and loaded.fps == 24.0 and loaded.hand_model == "open"
    assert loaded.extra == {"source": "test", "seed": 3}
    for side in ("left", "right"):
        np.testing.assert_allclose(loaded.hands[side].to_vector(), clip.hands[side].to_vector(), atol=1e-6)
        np.testing.assert_array_equal(loaded.present[side], clip.present[side])
    assert loaded.frame(2).left is None and loaded.frame(2).right is not None
    assert not list(tmp_path.glob(".*part")), "no temporary file left behind"
    # The file is a plain npz: no pickled objects anywhere.
    arrays, meta = read_npz(path)
    assert all(a.dtype != object for a in arrays.values()) and meta["units"] == "m"


def test_numpy_frame_rates_and_the_callers_masks_are_taken_as_they_are():
    """fps may be a numpy scalar (read from an array or a file); the presence mask given is copied,
    so the caller's array stays writable."""
    rng = np.random.default_rng(5)
    clip = random_clip(rng)
    for fps in (np.float32(30), np.int64(30), np.int32(24)):
        assert MotionClip(hands=clip.hands, fps=fps).fps == float(fps)
    mask = np.ones(clip.num_frames, dtype=bool)
    MotionClip(hands=clip.hands, present={"left": mask, "right": mask})
    mask[2] = False  # still the caller's to change
    with pytest.raises(PoseFormatError, match="fps must be a positive number"):
        MotionClip(hands=clip.hands, fps=np.bool_(True))


def test_clip_from_frames_marks_missing_hands():
    rng = np.random.default_rng(3)
    frames = [TwoHandPose(right=random_pose(rng)), TwoHandPose(left=random_pose(rng), right=random_pose(rng))]
    clip = MotionClip.from_frames(frames, fps=30)
    assert list(clip.present["left"]) == [False, True]
    assert clip.mirrored().present["right"].tolist() == [False, True]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(global_orient=np.zeros(4)), r"global_orient must have shape \(\.\.\., 3\)"),
        (dict(hand_pose=np.zeros(44)), r"hand_pose must have shape \(\.\.\., 45\)"),
        (dict(betas=np.full(10, np.nan)), r"betas has a non-finite value"),
        (dict(transl=np.array([0.0, np.inf, 0.0])), r"transl has a non-finite value"),
        (dict(transl=np.zeros((2, 3))), r"every field of a hand pose needs the same batch shape"),
        (dict(transl=["a", "b", "c"]), r"transl must be numbers"),
    ],
)
def test_bad_hand_poses_are_rejected_clearly(kwargs, message):
    fields = HandPose.zeros().to_dict()
    fields.update(kwargs)
    with pytest.raises(PoseFormatError, match=message):
        HandPose(**fields)


def test_bad_clips_and_files_are_rejected_clearly(tmp_path):
    rng = np.random.default_rng(4)
    with pytest.raises(PoseFormatError, match="unknown hand model 'smpl'"):
        check_hand_model("smpl")
    with pytest.raises(PoseFormatError, match="fps must be a positive number"):
        MotionClip(hands={"right": random_pose(rng, (3,))}, fps=0)
    with pytest.raises(PoseFormatError, match="same number of frames"):
        MotionClip(hands={"right": random_pose(rng, (3,)), "left": random_pose(rng, (4,))})
    with pytest.raises(PoseFormatError, match="batched over frames"):
        MotionClip(hands={"right": random_pose(rng)})
    with pytest.raises(PoseFormatError, match="no such file"):
        MotionClip.load(tmp_path / "missing.npz")
    (tmp_path / "rigs.npz").mkdir()  # a folder accepted in a file browser: said as one, not "no such file"
    with pytest.raises(PoseFormatError, match="rigs.npz is a folder: choose a .npz file inside it"):
        read_npz(tmp_path / "rigs.npz")
    os.mkfifo(tmp_path / "pipe.npz")  # not "no such file": it is there, and reading it would wait for a writer
    with pytest.raises(PoseFormatError, match=r"pipe.npz is not a regular file \(a FIFO\): give a .npz file"):
        read_npz(tmp_path / "pipe.npz")
    with pytest.raises(PoseFormatError, match="ending in .npz"):
        random_clip(rng).save(tmp_path / "clip.npy")
    assert MotionClip.load(random_clip(rng).save(tmp_path / "CLIP.NPZ")).num_frames == 7  # (refused before)

    good = random_clip(rng).save(tmp_path / "good.npz")
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    # A NaN inside the file.
    broken = dict(arrays)
    broken["right.hand_pose"] = broken["right.hand_pose"].copy()
    broken["right.hand_pose"][1, 4] = np.nan
    np.savez(tmp_path / "nan.npz", **broken)
    with pytest.raises(PoseFormatError, match=r"nan.npz: hand_pose has a non-finite value"):
        MotionClip.load(tmp_path / "nan.npz")
    # A missing array and an unknown hand model.
    np.savez(tmp_path / "short.npz", **{k: v for k, v in arrays.items() if k != "left.betas"})
    with pytest.raises(PoseFormatError, match=r"missing arrays \['left.betas'\]"):
        MotionClip.load(tmp_path / "short.npz")
    meta = json.loads(str(arrays["meta"]))
    meta["hand_model"] = "robot"
    np.savez(tmp_path / "robot.npz", **dict(arrays, meta=np.array(json.dumps(meta))))
    with pytest.raises(PoseFormatError, match="unknown hand model 'robot'"):
        MotionClip.load(tmp_path / "robot.npz")
    meta["hand_model"], meta["version"] = "open", 99
    np.savez(tmp_path / "future.npz", **dict(arrays, meta=np.array(json.dumps(meta))))
    with pytest.raises(PoseFormatError, match="upgrade HandForge"):
        MotionClip.load(tmp_path / "future.npz")
    np.savez(tmp_path / "more.npz", **dict(arrays, stray=np.zeros(2)))
    with pytest.raises(PoseFormatError, match=r"unexpected arrays \['stray'\]"):
        MotionClip.load(tmp_path / "more.npz")
    # Pickled objects are refused, not executed.
    np.savez(tmp_path / "pickled.npz", **dict(arrays, extra=np.array([{"x": 1}], dtype=object)))
    with pytest.raises(PoseFormatError, match="pickled objects"):
        MotionClip.load(tmp_path / "pickled.npz")
    # Not an npz at all.
    (tmp_path / "garbage.npz").write_bytes(b"not a zip")
    with pytest.raises(PoseFormatError, match="not a readable .npz|not a valid .npz"):
        MotionClip.load(tmp_path / "garbage.npz")
    assert zipfile.is_zipfile(good)


# ---------------------------------------------------------------------- hostile files
def _entries(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def test_every_corrupted_byte_gives_a_pose_format_error_naming_the_file(tmp_path):
    rng = np.random.default_rng(10)
    original = random_clip(rng).save(tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    outcomes = set()
    for position in rng.choice(len(original), size=300, replace=False):
        damaged = bytearray(original)
        damaged[position] ^= 1 << int(rng.integers(8))
        for content in (bytes(damaged), original[:position]):
            bad.write_bytes(content)
            try:
                MotionClip.load(bad)
                outcomes.add("loaded")  # a flipped bit the zip format does not cover (e.g. a timestamp)
            except PoseFormatError as exc:
                assert str(bad) in str(exc)
                outcomes.add("refused")
    assert "refused" in outcomes


def test_sizes_are_checked_from_the_zip_directory_before_inflating(tmp_path):
    bomb = tmp_path / "bomb.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (34 << 20,)  # 272 MiB of float64 zeros (just over the limit), about 1 MB compressed
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("right.hand_pose.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            chunk = bytes(1 << 24)
            for _ in range(17):
                fh.write(chunk)
        archive.writestr("meta.npy", b"")
    assert bomb.stat().st_size < 2 << 20
    result = run_capped(f"""
        from handforge_shared.poses import MotionClip, PoseFormatError
        try:
            MotionClip.load({str(bomb)!r})
        except PoseFormatError as exc:
            print(exc)
    """, cap_bytes=768 << 20)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{bomb}: its arrays take 285,212,8" in result.stdout and "more than the 268,435,456" in result.stdout


def test_an_array_header_must_match_the_stored_bytes(tmp_path):
    path = tmp_path / "liar.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (1 << 40,)  # 8 TiB announced, 8 bytes stored
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open("right.betas.npy", "w") as fh:
            np.lib.format.write_array_header_1_0(fh, header)
            fh.write(bytes(8))
    with pytest.raises(PoseFormatError, match=r"liar.npz: array 'right.betas' says shape \(1099511627776,\)"):
        read_npz(path)


@pytest.mark.parametrize("name, value, message", [
    ("right.hand_pose", lambda a: a.astype(str), r"array 'right.hand_pose' has dtype <U"),
    ("right.hand_pose", lambda a: a.astype(np.complex64) + 1j, "has dtype complex64"),
    ("right.transl", lambda a: np.zeros(len(a), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "has dtype"),
    ("right.present", lambda a: a.astype(np.float32), "right_present must be a bool array"),
])
def test_dtypes_are_strict(tmp_path, name, value, message):
    arrays = _entries(random_clip(np.random.default_rng(1)).save(tmp_path / "good.npz"))
    np.savez(tmp_path / "typed.npz", **dict(arrays, **{name: value(arrays[name])}))
    with pytest.raises(PoseFormatError, match=message) as info:
        MotionClip.load(tmp_path / "typed.npz")
    assert str(tmp_path / "typed.npz") in str(info.value)


def test_text_complex_and_bool_values_are_not_numbers():
    fields = HandPose.zeros().to_dict()
    for bad, dtype in ((["0.5", "0", "0"], "<U3"), (np.array([0, 0, 1j]), "complex128")):
        with pytest.raises(PoseFormatError, match=f"transl must be numbers.*{dtype}"):
            HandPose(**dict(fields, transl=bad))
    pose = random_pose(np.random.default_rng(2), (3,))
    with pytest.raises(PoseFormatError, match="fps must be a positive number, got True"):
        MotionClip(hands={"right": pose}, fps=True)


@pytest.mark.parametrize("change, message", [
    ({"sides": ["middle"]}, "'sides' must list 'left' and/or 'right'"),
    ({"sides": [["right"]]}, "'sides' must list"),
    ({"fps": "0.5"}, "fps must be a positive number"),
    ({"fps": True}, "fps must be a positive number"),
    ({"fps": 1e308}, "fps must be a positive number, got 1e\\+308 \\(at most 10000 frames"),  # (measure: an overflow)
    ({"extra": 3}, "extra metadata"),
])
def test_bad_metadata_names_the_file(tmp_path, change, message):
    arrays = _entries(random_clip(np.random.default_rng(3)).save(tmp_path / "good.npz"))
    meta = {**json.loads(str(arrays["meta"])), **change}
    np.savez(tmp_path / "meta.npz", **dict(arrays, meta=np.array(json.dumps(meta))))
    with pytest.raises(PoseFormatError, match=message) as info:
        MotionClip.load(tmp_path / "meta.npz")
    assert str(tmp_path / "meta.npz") in str(info.value)


def test_metadata_nested_deeper_than_a_file_holds_is_refused_when_read_and_when_made(tmp_path):
    """A clip whose meta.extra nested ~990 deep parsed, then raised RecursionError where json.dumps wrote it
    again (MotionClip checks its extra so), from any stack deeper than the reader's: now 'meta' nests at most
    64 levels when read, and a clip's extra 63 when made, so whatever loads saves and loads again."""
    def nested(depth):
        value = 1
        for _ in range(depth):
            value = [value]
        return {"x": value}

    clip = random_clip(np.random.default_rng(4))
    deepest = MotionClip(hands=clip.hands, present=clip.present, extra=nested(62))
    assert MotionClip.load(deepest.save(tmp_path / "deepest.npz")).extra == nested(62)
    for depth in (63, 5_000):  # (5,000: a RecursionError out of the constructor)
        with pytest.raises(PoseFormatError, match="extra metadata must be JSON-serialisable: lists or objects "
                                                  "inside one another more than 63 times"):
            MotionClip(hands=clip.hands, extra=nested(depth))
    arrays = _entries(tmp_path / "deepest.npz")
    head = json.dumps({**json.loads(str(arrays["meta"])), "extra": {"x": None}}).replace("null", "%s")
    for depth in (63, 985):  # (written as text: json.dumps of 985 deep fails on this stack)
        text = head % ("[" * depth + "1" + "]" * depth)
        np.savez(tmp_path / "deep.npz", **dict(arrays, meta=np.array(text)))
        with pytest.raises(PoseFormatError, match=f"^{tmp_path / 'deep.npz'}: 'meta' is not valid JSON \\(nested too "
                                                  "deeply: lists or objects inside one another (more than 64|thousands "
                                                  "of) times"):  # (985: json.loads gives up first, on this stack)
            MotionClip.load(tmp_path / "deep.npz")


@pytest.mark.parametrize("name", ["right.hand_pose", "left.global_orient"])
def test_absurd_rotations_are_refused_naming_the_file_and_array(tmp_path, name):
    # 1e30 rad is finite, but posing it gives NaN keypoints ("the trajectory contains NaN or inf" in measure)
    arrays = _entries(random_clip(np.random.default_rng(5)).save(tmp_path / "good.npz"))
    arrays[name] = arrays[name].copy()
    arrays[name][3, 1] = 1e30
    np.savez(tmp_path / "spun.npz", **arrays)
    with pytest.raises(PoseFormatError, match=rf"spun.npz: {name} turns a joint by 1e\+30 rad in frame 3 "
                                              r"\(at most 1000 rad\)") as info:
        MotionClip.load(tmp_path / "spun.npz")
    assert str(tmp_path / "spun.npz") in str(info.value)
    arrays[name][3, 1] = 900.0  # generous: many turns are still a rotation
    np.savez(tmp_path / "turns.npz", **arrays)
    assert MotionClip.load(tmp_path / "turns.npz").num_frames == 7


def test_the_placing_checks_name_the_hand_and_frame_and_skip_absent_frames():
    """check_rotations and check_reach, the bounds Paste Pose and Import Motion share with MotionClip: a single
    pose names no frame; a hand 1e30 m away in a frame where it is absent is no placement."""
    one = HandPose.zeros().replace(hand_pose=np.full(45, 1e5))
    with pytest.raises(PoseFormatError, match=r"^left.hand_pose turns a joint by 173205 rad \(at most 1000 rad\)"):
        check_rotations(one, "left")
    far = np.zeros((4, 3))
    far[2, 1] = -1e30
    frames = HandPose.zeros((4,)).replace(transl=far)
    with pytest.raises(PoseFormatError, match=r"^right.transl places the hand 1e\+30 m from the origin in frame 2, "
                                              r"beyond 10000 m"):
        check_reach(frames, "right")
    check_reach(frames, "right", present=np.array([True, True, False, True]))
    check_reach(frames.replace(transl=np.full((4, 3), 5000.0)), "right")  # 8.7 km: still placed to a millimetre


def test_the_rotation_bound_is_1000_rad_exactly():
    """Mutation PO3 (poses.py:68, the bound compared as 1e4 instead of MAX_ROTATION = 1e3) survived: the tests
    turned joints by 1e5 or 1e30 rad (beyond either) and 900 rad (within either). 1010 rad is refused, with its
    angle and the bound named; 999 rad and exactly 1000 rad ("more than" the bound) pass, for a single pose
    and a batch alike."""
    from handforge_shared.poses import overturned

    assert overturned(np.array([[0.0, 0.0, 999.0], [0.0, 1010.0, 0.0]])) == ((1,), 1010.0)
    assert overturned(np.array([[0.0, 0.0, 999.0], [600.0, 800.0, 0.0]])) is None  # |(600, 800, 0)| = 1000
    for field in ("hand_pose", "global_orient"):
        turned = np.zeros(45 if field == "hand_pose" else 3)
        turned[-3:] = (0.0, 1010.0, 0.0)
        with pytest.raises(PoseFormatError, match=rf"^right.{field} turns a joint by 1010 rad \(at most 1000 rad\): "):
            check_rotations(HandPose.zeros().replace(**{field: turned}), "right")
        turned[-3:] = (0.0, 0.0, 999.0)
        check_rotations(HandPose.zeros().replace(**{field: turned}), "right")
        turned[-3:] = (0.0, 600.0, 800.0)
        check_rotations(HandPose.zeros().replace(**{field: turned}), "right")
    frames = np.zeros((3, 45))
    frames[1, 6:9] = (1010.0 * 0.6, 0.0, 1010.0 * 0.8)
    with pytest.raises(PoseFormatError, match=r"^left.hand_pose turns a joint by 1010 rad in frame 1 "):
        check_rotations(HandPose.zeros((3,)).replace(hand_pose=frames), "left")
    frames[1, 6:9] = (999.0 * 0.6, 0.0, 999.0 * 0.8)
    check_rotations(HandPose.zeros((3,)).replace(hand_pose=frames), "left")


def test_a_value_beyond_float32_is_refused_before_a_file_is_written(tmp_path):
    """1e300 m is a finite float64: saved as float32 it became inf, a file that its own load then refused."""
    clip = random_clip(np.random.default_rng(5))
    far = clip.hands["right"].transl.copy()
    far[2, 0] = 1e300
    clip = MotionClip(hands={**clip.hands, "right": clip.hands["right"].replace(transl=far)}, present=clip.present)
    with pytest.raises(PoseFormatError, match=r"right.transl holds 1e\+300 in frame 2, beyond float32"):
        clip.save(tmp_path / "far.npz")
    assert not list(tmp_path.iterdir())


def test_a_motion_file_that_cannot_be_written_leaves_nothing_and_no_open_archive(tmp_path, monkeypatch):
    """A full disk part-way through a clip: np.savez_compressed left its ZipFile open, whose finaliser then
    wrote to the closed file (`Exception ignored in: ZipFile.__del__ ... seek of closed file` after the
    corpus command's one-line error). Now the error alone, no file, and nothing left for the finaliser."""
    import errno
    import gc

    from handforge_shared.poses import write_npz_atomic

    arrays = {"a": np.arange(2000, dtype=np.float64), "b": np.ones((3, 4), np.float32)}
    write_npz_atomic(tmp_path / "ok.npz", arrays)
    with np.load(tmp_path / "ok.npz", allow_pickle=False) as back:  # numpy reads it as its own
        assert sorted(back.files) == ["a", "b"]
        assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in arrays.items())
    write_array = np.lib.format.write_array

    def full_disk_after_the_first(fh, array, **kwargs):
        if array.dtype == np.float32:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_array(fh, array, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", full_disk_after_the_first)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(OSError, match="No space left"):
        write_npz_atomic(tmp_path / "full.npz", arrays)
    gc.collect()
    assert unraisable == [] and sorted(p.name for p in tmp_path.iterdir()) == ["ok.npz"]


def test_interaction_candidates_are_named_as_such_not_denied_as_handforges(tmp_path):
    """Import Motion of the demo's interaction.npz said "no 'meta' entry; not a HandForge file": it is one, an
    interaction job's candidates, which no reader takes; the refusal says so and what reads motion clips."""
    from handforge.engines.interaction.pipeline import Candidates

    rng = np.random.default_rng(5)
    hands = {side: {name: np.asarray(getattr(pose, name), np.float32)
                    for name in ("global_orient", "hand_pose", "betas", "transl")}
             for side, pose in (("left", random_pose(rng, (4,))), ("right", random_pose(rng, (4,))))}
    found = Candidates(hands=hands, score=np.linspace(1, 0.5, 4), max_depth=np.zeros(4), gap=np.zeros(4),
                       limit=np.zeros(4), anchor_side="left")
    path = tmp_path / "interaction.npz"
    np.savez(path, **found.arrays())  # as the demo writes it
    said = f"{path} holds interaction candidates (an interaction job's result, as the demo's interaction.npz), not a motion clip"
    for read in (MotionClip.load, read_npz, read_npz_meta):
        with pytest.raises(PoseFormatError) as refused:
            read(path)
        assert str(refused.value).startswith(said), str(refused.value)
        assert "Sample Interaction" in str(refused.value) and "Import Motion reads motion clips" in str(refused.value)
    np.savez(tmp_path / "other.npz", score=np.zeros(4))  # any other file without 'meta': as before
    with pytest.raises(PoseFormatError, match="other.npz: no 'meta' entry; not a HandForge file"):
        MotionClip.load(tmp_path / "other.npz")
