"""Keyframing in real Blender: clip import writes exactly the clip's frames and values as GENERATED
keys, keeps the artist's keys, replaces its own keys on re-import, and is undone by one undo."""

from __future__ import annotations

import dataclasses
import json
from collections import defaultdict

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handforge_shared.poses import HandPose, MotionClip
from handforge_shared.rig import load_open_hand_rig
from handforge_shared.rotations import axis_angle_to_matrix
from handforge_shared.skeleton import JOINT_NAMES, SIDES
from tests.blender.fixtures import addon_zip  # noqa: F401 - fixture
from tests.blender.harness import run_blender

pytestmark = [pytest.mark.blender, pytest.mark.slow]

START = 1
NUM_FRAMES = 30
ARTIST_FRAMES = [5, 40]


def clip_of(rng, n, fps=24.0, present=None) -> MotionClip:
    hands = {s: HandPose(global_orient=rng.normal(0, 0.5, (n, 3)), hand_pose=rng.normal(0, 0.3, (n, 45)),
                         betas=np.zeros((n, 10)), transl=rng.uniform(-0.1, 0.1, (n, 3))) for s in SIDES}
    return MotionClip(hands=hands, fps=fps, present=present or {})


@pytest.fixture(scope="module")
def session(addon_zip, tmp_path_factory):  # noqa: F811 - fixture
    work = tmp_path_factory.mktemp("keys_session")
    rng = np.random.default_rng(3)
    clips = {"clip1": clip_of(rng, NUM_FRAMES), "clip2": clip_of(rng, NUM_FRAMES)}
    gaps = np.ones(10, bool)
    gaps[3:6] = False
    clips["clip_gaps"] = clip_of(rng, 10, fps=48.0, present={"left": gaps})
    clips["clip_long"] = clip_of(rng, 600)
    still = HandPose(global_orient=np.zeros((21, 3)), hand_pose=np.tile(rng.normal(0, 0.3, 45), (21, 1)),
                     betas=np.zeros((21, 10)), transl=np.zeros((21, 3)))
    clips["clip_still"] = MotionClip(hands={s: still for s in SIDES}, fps=24.0)  # one pose held
    near = clip_of(np.random.default_rng(4), 10)  # (its own generator: the clips above stay as they were)
    far_transl = near.hands["right"].transl.copy()
    far_transl[4, 0] = 1e30  # finite, so a valid clip, and no place for a hand
    clips["clip_far"] = dataclasses.replace(near, hands={**near.hands, "right": near.hands["right"].replace(
        transl=far_transl)})
    for name, clip in clips.items():
        clip.save(work / f"{name}.npz")
    (work / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip")
    artist = {s: HandPose(global_orient=np.zeros(3), hand_pose=rng.normal(0, 0.2, 45), betas=np.zeros(10),
                          transl=np.zeros(3)) for s in SIDES}
    args = {name: str(work / f"{name}.npz") for name in clips} | {
        "corrupt": str(work / "corrupt.npz"), "work": str(work), "start": START, "artist_frames": ARTIST_FRAMES,
        "artist_pose": json.dumps({"format": "handforge.pose", "hands": {s: p.to_dict() for s, p in artist.items()}})}
    result = run_blender("keys_session.py", addon_zip, work / "blender", args)
    result.clips = clips
    return result


def _keys(snapshot, side, path, index):
    return snapshot[f"{side}|{path}|{index}"]


def _rotation_keys(snapshot, side: str) -> dict[str, dict[float, np.ndarray]]:
    """Per bone, per frame: the keyed bone-local rotation matrix (from Euler YZX or quaternion keys)."""
    values: dict[str, dict[float, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    modes = {}
    for key, points in snapshot.items():
        s, path, index = key.split("|")
        if s != side or ".rotation_" not in path:
            continue
        bone = path.split('"')[1]
        modes[bone] = path.rsplit(".", 1)[1]
        for frame, value, *_ in points:
            values[bone][frame][int(index)] = value
    out: dict[str, dict[float, np.ndarray]] = {}
    for bone, per_frame in values.items():
        out[bone] = {}
        for frame, comps in per_frame.items():
            if modes[bone] == "rotation_euler":
                x, y, z = comps[0], comps[1], comps[2]
                out[bone][frame] = Rotation.from_euler("yzx", [y, z, x]).as_matrix()  # Blender 'YZX'
            else:
                w, x, y, z = (comps[i] for i in range(4))
                out[bone][frame] = Rotation.from_quat([x, y, z, w]).as_matrix()
    return out


def _expected_local(clip: MotionClip, side: str) -> np.ndarray:
    f = load_open_hand_rig(side).joint_frames()
    p = clip.hands[side]
    aa = np.concatenate([p.global_orient[:, None], p.hand_pose.reshape(-1, 15, 3)], axis=1)
    return np.swapaxes(f, -1, -2) @ axis_angle_to_matrix(aa) @ f  # (T, 16, 3, 3)


def _check_import(snapshot, artist, clip):
    frames = [float(START + i) for i in range(NUM_FRAMES)]
    for side in SIDES:
        expected = _expected_local(clip, side)
        rot = _rotation_keys(snapshot, side)
        assert set(rot) == set(JOINT_NAMES)
        for k, bone in enumerate(JOINT_NAMES):
            keyed = rot[bone]
            assert sorted(keyed) == sorted(set(frames) | set(map(float, ARTIST_FRAMES)))
            for i, frame in enumerate(frames):
                if frame in ARTIST_FRAMES:
                    continue
                np.testing.assert_allclose(keyed[frame], expected[i, k], atol=2e-6, err_msg=f"{side} {bone} {frame}")
        loc = [_keys(snapshot, side, 'pose.bones["wrist"].location', i) for i in range(3)]
        f0 = load_open_hand_rig(side).joint_frames()[0]
        want = clip.hands[side].transl @ f0  # location = F0ᵀ·transl
        for i in range(3):
            gen = {p[0]: p[1] for p in loc[i] if p[2] == "GENERATED"}
            assert sorted(gen) == [f for f in frames if f not in ARTIST_FRAMES]
            np.testing.assert_allclose([gen[f] for f in sorted(gen)],
                                       [want[int(f) - START, i] for f in sorted(gen)], atol=1e-6)
    # every artist key is exactly as it was (value, type, interpolation, handles)
    for key, points in artist.items():
        now = {p[0]: p for p in snapshot[key]}
        for p in points:
            assert now[p[0]] == p, key
        types = {p[0]: p[2] for p in snapshot[key]}
        assert all(types[f] == "GENERATED" for f in frames if f not in ARTIST_FRAMES)


def test_artist_keys_are_ordinary_keys_on_a_layered_action(session):
    assert session["layered"] is True
    artist = session["artist"]
    assert artist and all(p[2] == "KEYFRAME" for points in artist.values() for p in points)
    probe = _keys(artist, "right", 'pose.bones["index1"].rotation_euler', 0)[0]
    assert probe[3] == "CONSTANT" and probe[4] == "VECTOR"


def test_import_writes_exactly_the_clip_and_keeps_artist_keys(session):
    session.no_error("import1")
    _check_import(session["import1"], session["artist"], session.clips["clip1"])


def test_reimport_replaces_generated_keys_only(session):
    session.no_error("import2")
    _check_import(session["import2"], session["artist"], session.clips["clip2"])


def test_one_undo_undoes_one_import(session):
    session.no_error("undo")
    assert session["undo"]["one"] == session["import1"]
    assert session["undo"]["two"] == session["artist"]


def test_presence_gaps_and_retiming(session):
    session.no_error("gaps")
    gaps = session["gaps"]["gaps"]
    # 48 fps clip into a 24 fps scene: keys every half frame from 200; the left hand is absent in 3..5
    right = sorted(p[0] for p in _keys(gaps, "right", 'pose.bones["index1"].rotation_euler', 0) if p[0] >= 200)
    left = sorted(p[0] for p in _keys(gaps, "left", 'pose.bones["index1"].rotation_euler', 0) if p[0] >= 200)
    assert right == [200 + 0.5 * i for i in range(10)]
    assert left == [200 + 0.5 * i for i in range(10) if not 3 <= i < 6]
    assert session["gaps"]["frame_end"] >= 205


def test_bad_files_are_reported_and_change_nothing(session):
    session.no_error("bad")
    bad = session["bad"]
    assert "corrupt.npz" in bad["corrupt"] and "nope.npz" in bad["missing"]
    assert bad["unsaved"] and all("save it first" in bad[k] for k in ("relative_import", "relative_export")), bad
    # before: keyed, the wrist at 1e30 m in frame 4
    assert "right.transl places the hand 1e+30 m from the origin in frame 4" in bad["far"], bad["far"]
    assert bad["unchanged"] is True


def test_export_of_600_frames_reads_the_curves_in_bulk_and_gives_the_clip_back(session):
    """What keeps a long export fast (its time is no unit test's business) is that a rig showing just its keys
    is read from its F-curves at once: no frame is set for it, where joint limits set each frame in turn."""
    session.no_error("export")
    export = session["export"]
    assert export["frames_set_bulk"] == [], export["frames_set_bulk"][:5]
    assert export["frames_set_limits"] == [*range(1001, 1031), export["frame_before"]], export["frames_set_limits"]
    assert export["frame_after"] == export["frame_before"]  # the frame-by-frame path restores it
    want = session.clips["clip_long"]
    for key in ("path", "path_limits"):
        got = MotionClip.load(export[key])
        assert got.num_frames == (600 if key == "path" else 30)
        for side in SIDES:
            limited = key == "path_limits" and side == "left"  # what is shown: the limits clamp the fingers
            for field in ("global_orient",) if limited else ("global_orient", "hand_pose"):
                expected = axis_angle_to_matrix(getattr(want.hands[side], field)[:got.num_frames].reshape(got.num_frames, -1, 3))
                actual = axis_angle_to_matrix(getattr(got.hands[side], field).reshape(got.num_frames, -1, 3))
                np.testing.assert_allclose(actual, expected, atol=2e-5, err_msg=f"{key} {side} {field}")
            np.testing.assert_allclose(got.hands[side].transl, want.hands[side].transl[:got.num_frames], atol=1e-6)
            if limited:
                assert np.abs(got.hands[side].hand_pose - want.hands[side].hand_pose[:30]).max() > 0.05


def test_imported_keys_are_shown_at_the_next_update_with_the_sliders(session):
    """Import tags the rigs' animation instead of re-evaluating the scene itself: after the next
    depsgraph update the bones and sliders are what Blender's frame evaluation gives."""
    session.no_error("shown")
    shown = session["shown"]
    np.testing.assert_allclose(shown["lazy"], shown["evaluated"], atol=1e-6)
    assert np.abs(np.array(shown["lazy"]) - np.array(shown["before"])).max() > 0.05  # the import changed the pose


def test_import_onto_a_rig_with_keyed_sliders_shows_the_result_at_once(session):
    session.no_error("keyed_slider")
    result = session["keyed_slider"]
    np.testing.assert_allclose(result["now"], result["evaluated"], atol=1e-6)
    assert np.abs(np.array(result["now"]) - np.array(result["before"])).max() > 0.05


def test_export_shows_progress_and_esc_cancels_without_writing(session):
    session.no_error("export_modal")
    out = session["export_modal"]
    assert out["move"] == ["PASS_THROUGH"]
    assert out["tick"] == ["RUNNING_MODAL"] and out["tick_frame"] != 1200  # mid-export, on one of its frames
    assert out["esc"] == ["CANCELLED"] and not out["esc_written"] and out["esc_frame"] == 1200  # put back
    assert ["WARNING", "export cancelled: nothing was written"] in out["reports"]
    assert out["ticks"][-1] == ["FINISHED"] and out["written"] and out["frame_after"] == 1200
    progress = out["progress"]
    assert len(progress) >= 60 and progress == sorted(progress) and progress[-1] == 100
    texts = [t for t in out["status"] if isinstance(t, str) and t != "END"]
    assert texts and all("exporting motion" in t and "Esc cancels" in t for t in texts)
    assert out["status"][-2:] == ["END", None]  # progress bar ended, status text cleared, twice (Esc, done)
    assert any(kind == "INFO" and "wrote 60 frames" in text for kind, text in out["reports"])


def test_paths_and_ranges_are_checked_before_any_work(session):
    session.no_error("checked_first")
    bad = session["checked_first"]
    assert "choose where to write" in bad["export_empty"]
    assert "does not exist" in bad["export_no_folder"] and "folder" in bad["export_folder"]
    refused = bad["export_refused"].strip().removeprefix("Error: ")
    assert refused.startswith("/proc/handforge_m.npz: ") and ".tmp" not in refused, refused
    assert refused.endswith("(or choose another file or folder)"), refused
    assert "frame range 20..10 is empty" in bad["export_range"]
    assert "choose a HandForge motion clip" in bad["import_empty"]
    # "~" is the home folder, as Blender's file browser reads it (before: a folder named "~" in the working folder)
    assert bad["tilde"] == ["FINISHED"] and bad["tilde_written"] is True, bad
    assert bad["quoted"] == bad["address"] == ["FINISHED"], bad
    assert bad["pasted_written"] == ["an address.npz", "quoted.npz"], bad
    assert bad["hash"] == ["FINISHED"] and bad["hash_written"] is True, bad
    assert "'\"\"' holds no path: give a file or folder" in bad["quotes_only"], bad
    assert "'file://server/share/m.npz' is an address on another machine (server)" in bad["other_machine"], bad
    assert "'file:////server/share/m.npz' is an address on another machine (server)" in bad["unc"], bad
    assert bad["one_slash"] == ["FINISHED"] and bad["one_slash_written"] is True, bad
    assert "1,048,575 frames" in bad["export_huge"] and "export it in parts" in bad["export_huge"]
    assert bad["seconds"] < 5, bad  # a guard against starting: 1,048,575 frames took minutes (not a speed target)
    assert "beyond Blender's last frame" in bad["import_past_end"] and bad["past_end_unchanged"]
    # before: "would end at frame -1048571, beyond Blender's last frame (1048574): start it at frame 1048565"
    assert ("the clip would start at frame -1048580, before Blender's first frame (-1048574): start it at frame "
            "-1048574 or later") in bad["import_before_start"], bad["import_before_start"]


def test_import_reports_frames_skipped_for_artist_keys_and_can_blend_into_them(session):
    session.no_error("skipped")
    result = session["skipped"]
    for blend in ("0", "5"):
        assert "right hand: your keys were kept at frame 2010" in result[blend]["printed"]
        assert "left hand: your keys were kept at frame 2010" in result[blend]["printed"]
    jump = max(result["0"]["steps"])
    assert jump > 0.2  # the held pose and the artist's differ: without blending, one jump into the key
    assert sorted(result["0"]["steps"])[-3] < 1e-3  # ... and stillness elsewhere (one jump in, one out)
    eased = result["5"]["steps"]
    assert max(eased) < 0.4 * jump  # eased in and out over several frames
    assert sum(eased) > 1.9 * jump * 0.9  # still arriving at the artist's pose and leaving it


def test_keying_set_holds_exactly_the_pose_channels(session):
    session.no_error("keying_set")
    paths = session["keying_set"]["paths"]
    want = set()
    for side in SIDES:
        for bone in JOINT_NAMES:
            prop = "rotation_quaternion" if bone == "wrist" else "rotation_euler"
            want.add(f'{side}|pose.bones["{bone}"].{prop}|True')  # every component of each
        want.add(f'{side}|pose.bones["wrist"].location|True')
    assert len(paths) == len(want) and set(paths) == want


def test_generated_key_tools(session):
    session.no_error("tools")
    tools = session["tools"]
    assert tools["keyed_over_generated"] == ["KEYFRAME"]
    before = tools["before"]
    assert before["left"]["GENERATED"] > 0 and before["right"]["GENERATED"] > 0
    for side in SIDES:  # exactly the generated keys are selected
        assert tools["selected"][side] == {"GENERATED": before[side]["GENERATED"], "KEYFRAME": 0}
    made = tools["after_make_left"]
    assert made["left"] == {"GENERATED": 0, "KEYFRAME": before["left"]["KEYFRAME"] + before["left"]["GENERATED"]}
    assert made["right"] == before["right"]
    deleted = tools["after_delete_right"]
    assert deleted["right"] == {"GENERATED": 0, "KEYFRAME": before["right"]["KEYFRAME"]}
    assert tools["right_artist_kept"] is True
    assert tools["nothing_left"] == ["CANCELLED"]


def test_export_after_deleting_every_key_gives_the_pose_shown(session):
    session.no_error("after_delete")
    out = session["after_delete"]
    assert out["pose_curves_left"] == 0  # emptied curves go, as Blender removes a curve with its last key
    bulk, shown = MotionClip.load(out["bulk"]).hands["right"], MotionClip.load(out["shown"]).hands["right"]
    np.testing.assert_allclose(bulk.transl, shown.transl, atol=1e-6)
    np.testing.assert_allclose(axis_angle_to_matrix(bulk.global_orient), axis_angle_to_matrix(shown.global_orient),
                               atol=2e-5)
    assert np.abs(bulk.transl).max() > 1e-3  # the imported clip's last shown wrist, not the origin


def test_hands_sharing_one_action_are_refused_before_any_key(session):
    session.no_error("shared_action")
    out = session["shared_action"]
    assert "share one action" in out["error"] and "Make Single User" in out["error"], out
    assert out["unchanged"] is True
    assert "share one action" in out["key_error"] and "Make Single User" in out["key_error"], out
    assert out["unchanged_by_key"] is True


def test_an_override_keeping_the_librarys_action_is_refused_before_any_key(session):
    session.no_error("override_action")
    out = session["override_action"]
    assert out["editable"] == [True, True] and out["action_linked"] is True, out  # the state under test
    for name in ("key", "delete", "import"):
        assert "cannot be keyed here" in out[name] and "Make Single User" in out[name], (name, out)
    assert out["unchanged"] is True


def test_key_pose_in_nla_tweak_mode_makes_the_artists_key_in_the_actions_time(session):
    session.no_error("tweak_key")
    out = session["tweak_key"]
    assert out["at_5"] == ["KEYFRAME"] and out["left_over"] == [5.0], out


def test_import_starts_at_the_current_frame_unless_told_and_at_negative_frames_when_told(session):
    session.no_error("starts")
    assert session["starts"] == [50.0, -20.0]


def test_key_pose_at_a_subframe_keys_the_time_shown_not_the_whole_frame(session):
    session.no_error("subframe")
    out = session["subframe"]
    assert out["shown"] == pytest.approx(10.5)
    assert out["frames"] == [pytest.approx(10.5)] and out["types"] == ["KEYFRAME"], out


def test_key_pose_leaves_the_key_types_of_other_channels_alone(session):
    session.no_error("other_channels")
    types = session["other_channels"]
    assert types["pose"] == ["KEYFRAME"]
    assert types["location"] == ["BREAKDOWN"] and types['["artist_value"]'] == ["JITTER"]


def test_import_benchmark_writes_the_floors_keys(addon_zip, tmp_path):  # noqa: F811 - fixture
    """benchmarks/blender_import.py runs HandForge's import and the pure-bpy floor interleaved, checks
    that both write the same keys (it raises otherwise) and prints min/median and the ratio."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "blender_user"))
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "blender_import.py"), "--frames", "60",
                           "--repeats", "3", "--zip", str(addon_zip)], check=False, capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = {line.split(" min ")[0].split("(")[0].strip(): line for line in proc.stdout.splitlines() if " min " in line}
    assert {"HandForge import", "pure bpy", "import_motion operator"} <= set(lines), proc.stdout
    ratio = float(proc.stdout.split("ratio (min/min): ")[1].split("x")[0])
    assert ratio > 0


_CHANNELS = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from blender_addon import pose  # the add-on's own module (bpy is importable here)
from handforge_shared import rotations as rot
rng = np.random.default_rng(3)
out = []
for order in rot.EULER_ORDERS:
    for _ in range(200):  # the middle angle at 84 degrees: near gimbal lock, where float32 angles are least exact
        e = np.array([rng.uniform(-1.5, 1.5) for _ in range(3)])
        e["XYZ".index(order[1])] = np.radians(84.0) * rng.choice([-1, 1])
        aa = rot.matrix_to_axis_angle(rot.euler_to_matrix(e, order)).astype(np.float32)
        walk = aa + np.cumsum(rng.normal(0, 0.01, (6, 3)), axis=0).astype(np.float32)  # a slow motion from it
        seq = np.concatenate([aa[None], walk])[:, None]
        previous = rot.matrix_to_euler(rot.axis_angle_to_matrix(aa.astype(np.float64)), order)[None]
        _, values = pose.rotation_channels(seq, order, previous)
        shown = rot.euler_to_matrix(values.astype(np.float64), order)
        out.append([float(np.abs(np.diff(values, axis=0)).max()), float(np.abs(values[0] - previous).max()),
                    float(np.abs(shown - rot.axis_angle_to_matrix(seq.astype(np.float64))).max())])
print(json.dumps(out))
"""


def test_euler_channels_stay_on_one_branch_near_gimbal_lock():
    """Keys written from axis-angles continue the channels' current values without a half-turn jump,
    also where a bone's middle Euler angle is near 90 degrees (a fist's flexion in YXZ or ZXY)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-c", _CHANNELS, str(root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    jump, first, rotation = np.array(json.loads(run.stdout.strip().splitlines()[-1])).T
    assert jump.max() < 1.5, jump.max()        # no half-turn spin between keys (a branch change jumps ~π)
    assert first.max() < 1e-5, first.max()    # the first key continues the channels' values
    assert rotation.max() < 1e-5, rotation.max()  # and every key is the rotation asked for


_FREE_FRAMES = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from blender_addon import keys  # the add-on's own module (bpy is importable here)
artist = np.array([1.0, 20.0])
retimed = 1 + np.arange(20) * 29.97 / 30  # a 30 fps clip on a 29.97 fps scene
doubled = 1 + np.arange(39) * 0.5         # a 60 fps clip on a 30 fps scene
print(json.dumps([retimed[~keys._free_frames(artist, retimed)].tolist(),
                  doubled[~keys._free_frames(artist, doubled)].tolist()]))
"""


def test_a_retimed_key_half_a_frame_from_an_artist_key_is_left_out():
    """30 fps into 29.97: a generated key landed 0.02 frames before the artist's key at 20 (a jump
    right beside it); keys half a frame away (60 fps into 30) stay."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-c", _FREE_FRAMES, str(root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    retimed_out, doubled_out = json.loads(run.stdout.strip().splitlines()[-1])
    assert [round(f, 3) for f in retimed_out] == [1.0, 19.981]
    assert doubled_out == [1.0, 20.0]


def test_far_frames_are_reported_in_full(session):
    session.no_error("far_frames")
    found = session["far_frames"]
    frames = session.clips["clip_still"].num_frames
    assert f"at frames 1000000-{1000000 + frames - 1}" in found["1000000"], found
    assert f"at frames -200000 to {-200000 + frames - 1}" in found["-200000"], found
    assert "at frame 1000000.25" in found["key"], found


def test_a_chosen_rig_deleted_is_refused_not_stood_in_for_by_another_pairs_hand(session):
    session.no_error("pair_rig_deleted")
    found = session["pair_rig_deleted"]
    for what in ("key", "mirror"):
        assert "the left hand is not chosen in HandForge > Hands (its rig deleted?)" in found[what], found
        assert "choose the left hand there" in found[what], found
    assert found["listed"] == ["right"]  # the panels and the keying set leave the stand-in out too


def test_export_motion_says_what_of_the_rigs_placement_the_clip_leaves_out(session):
    """A rig moved as an object, a parent carrying one, a mirrored rig: written without a word before."""
    session.no_error("placement")
    found = session["placement"]
    assert found["plain"] == [], found  # Add Hands' rigs: nothing left out
    assert any(line.startswith("Warning: Hand.R") and "moves as an object" in line for line in found["keyed"]), found
    assert any("moves as an object (Carrier: keys" in line for line in found["parented"]), found
    # keys all on one value move nothing; an animated bone of the armature a rig hangs from does
    assert found["constant"] == [] and found["constant_moves"] is False, found
    assert any(line.startswith("Warning: Hand.R") and "moves as an object (Body: keys" in line
               for line in found["bone_parent"]), found
    assert found["bone_parent_moves"] is True, found
    assert any("is mirrored (a negative scale)" in line for line in found["mirrored"]), found
    assert any("placed differently as objects" in line for line in found["mirrored"]), found


def test_an_import_says_a_linked_duplicate_moves_with_the_rigs_keys(session):
    # before: the duplicate got the keys without a word (the report named only the hands); Key Pose and Delete
    # Generated Keys changed its pose at those frames unsaid
    session.no_error("linked_duplicate")
    found = session["linked_duplicate"]
    assert found["result"] == ["FINISHED"], found
    assert (f"{found['copy']!r} shares the action of {found['rig']!r} (a linked duplicate): the new keys move it too"
            in found["printed"]), found["printed"]
    shares = f"{found['copy']!r} shares the action of {found['rig']!r} (a linked duplicate): "
    assert found["key"][0] == ["FINISHED"] and shares + "its pose at frame 5002 is this one too" in found["key"][1], found
    assert found["delete"][0] == ["FINISHED"] and shares + "its keys were deleted too" in found["delete"][1], found


def test_export_motion_writes_the_pose_an_artists_own_constraint_shows(session):
    # before: only HandForge's joint limits were read as shown; a bone held by the artist's own constraint (a
    # Limit Rotation, an IK) was exported as its channels, and Export Labelled Renders labelled that pose
    session.no_error("artists_constraint")
    found = session["artists_constraint"]
    shown, channels, imported = (np.array(found[k]) for k in ("shown", "channels", "imported"))
    assert np.abs(shown - channels)[:, 0].max() > 5e-3  # the constraint moves the index tip: the check can fail
    np.testing.assert_allclose(imported, shown, atol=2e-5)
    keyed, keyed_imported = np.array(found["keyed"]), np.array(found["keyed_imported"])
    assert np.abs(keyed - channels)[-1, 0].max() > 5e-3  # the keyed influence holds the finger at the last frame
    np.testing.assert_allclose(keyed_imported, keyed, atol=2e-5)


def test_a_clip_of_another_hand_model_says_what_was_keyed_and_what_to_do(session):
    # before: "the clip was made for the mano hand, the left rig is open", and nothing on what that means or does
    session.no_error("other_model")
    found = session["other_model"]
    assert found["result"] == ["FINISHED"], found
    for side in SIDES:
        assert (f"the clip was made for the mano hand, the {side} rig is open: its joint angles were keyed as they are, "
                "on another skeleton") in found["printed"], found["printed"]
    assert "import it onto mano hands (Add Hands from Backend)" in found["printed"], found["printed"]


def test_a_retimed_clip_names_the_artists_kept_key_where_it_is(session):
    # before: "your keys were kept at frame 8101.25": the clip's frame skipped beside the key, between frames
    session.no_error("retimed_kept")
    found = session["retimed_kept"]
    assert found["result"] == ["FINISHED"] and found["clip_fps"] == 24.0, found
    for side in SIDES:
        assert f"{side} hand: your keys were kept at frame 8101, so the clip was not keyed there" in found["printed"], \
            found["printed"]


def test_a_retimed_import_says_its_keys_fall_between_frames(session):
    # before: "imported 30 frames (... keys) at frames 1-24.2": a fractional frame, unexplained
    session.no_error("retimed_report")
    result, printed = session["retimed_report"]["30_to_24"]
    assert result == ["FINISHED"], printed
    assert "at frames 1-24.2 (a 30 fps clip retimed to the scene's 24 fps: its keys fall between whole frames)" \
        in printed, printed
    result, printed = session["retimed_report"]["24_to_48"]
    assert result == ["FINISHED"], printed
    assert "at frames 100-158 (a 24 fps clip retimed to the scene's 48 fps)" in printed, printed


def test_an_import_past_the_scene_end_says_it_moved_the_end(session):
    # before: End moved from 9010 to 9020 unsaid (the longer range then showed in playback and in every export)
    session.no_error("past_end")
    found = session["past_end"]
    assert found["end_after"] == 9020 and found["past"][0] == ["FINISHED"], found
    assert "at frames 9000-9020; the scene's End moved from 9010 to 9020 to play it whole" in found["past"][1], found
    assert found["inside"][0] == ["FINISHED"] and "End moved" not in found["inside"][1], found


def test_an_import_before_the_scene_start_says_it_moved_the_start(session):
    # before: Start stayed at 9500, frames 9490-9499 of the motion outside playback, unsaid
    session.no_error("before_start")
    found = session["before_start"]
    assert found["range_after"] == [9490, 9600] and found["before"][0] == ["FINISHED"], found
    assert "at frames 9490-9510; the scene's Start moved from 9500 to 9490 to play it whole" in found["before"][1], found
    assert found["inside"][0] == ["FINISHED"] and "moved" not in found["inside"][1], found
    # Blender's Start is 0 at the least: the frames before it named
    assert found["start_after_zero"] == 0, found
    assert ("the scene's Start moved from 9490 to 0 (frames -10 to -1 are keyed, but Blender plays no frame "
            "before 0)") in found["below_zero"][1], found
    # Start already at 0: nothing moved, yet frames -5 to -1 play no more than before (they went unsaid)
    assert found["at_zero"][0] == ["FINISHED"] and "Start moved" not in found["at_zero"][1], found
    assert "; frames -5 to -1 are keyed, but Blender plays no frame before 0" in found["at_zero"][1], found
    # the motion jobs', Key Candidates' and Run Job's keying say it as well (keys.import_clip's summary): unsaid before
    assert found["run_job"].endswith("keyed at 9590-9610; the scene's End moved from 9600 to 9610 to play it whole"), found



def test_a_capital_npz_is_written_and_read_and_a_two_hand_clip_keys_the_one_hand_there(session):
    session.no_error("capital_one_hand")
    result = session["capital_one_hand"]
    # before: "upper.NPZ: HandForge writes .npz files, give a path ending in .npz"
    assert result["export"][0] == ["FINISHED"] and "wrote 3 frames" in result["export"][1], result["export"]
    assert "choose where to write" in result["suffix_only"], result["suffix_only"]
    assert result["import"][0] == ["FINISHED"], result["import"]
    result_, printed = result["two_hands"]
    assert result_ == ["FINISHED"] and "the scene has no left hand: its motion was skipped" in printed, printed
    assert result["right_keyed"] == [float(20 + i) for i in range(NUM_FRAMES)]


_BLEND = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from blender_addon import keys  # the add-on's own module (bpy is importable here)
frames = np.arange(21, dtype=np.float32)
co = np.stack([frames, 0.1 * frames - 0.5], axis=1).astype(np.float32)  # generated keys at 0..20
artist = np.array([[10.0, 3.0]], np.float32)                            # the artist's key at frame 10
print(json.dumps([co[:, 1].tolist(), keys.blend_towards(co, artist, 5, False)[:, 1].tolist()]))
"""


def test_blending_eases_keys_within_blend_frames_into_the_artist_key():
    """blend_towards' docstring: a generated key d frames from the nearest artist key moves towards its value with
    weight smoothstep(1 - d/(frames+1)). Blend 5, the artist's key at frame 10, generated keys at 0..20: the key at
    frame 10 takes the artist's value, the keys at distance 5 (frames 5 and 15) move by smoothstep(1/6) = 2/27 of
    their gap to it, and those 6 or more frames away stay as they were."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "-c", _BLEND, str(root)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    before, after = (np.array(v) for v in json.loads(run.stdout.strip().splitlines()[-1]))
    # smoothstep(w) = w²(3 - 2w) of the distance to frame 10, w = 1 there, 0 from 6 frames away
    for frame in range(21):
        d = abs(frame - 10)
        w = max(0.0, 1 - d / 6)
        expected = before[frame] + w * w * (3 - 2 * w) * (3.0 - before[frame])
        assert after[frame] == pytest.approx(expected, abs=1e-6), (frame, after[frame], expected)
    assert after[10] == pytest.approx(3.0, abs=1e-6)
    for frame in (5, 15):
        assert after[frame] - before[frame] == pytest.approx(2 / 27 * (3.0 - before[frame]), abs=1e-6)
    assert np.array_equal(after[[*range(0, 5), *range(16, 21)]], before[[*range(0, 5), *range(16, 21)]])
