"""Labelled export with Blender RGB: one bpy worker for the module; its renders against the GL path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from handforge.export.run import _hands, export, with_forearms
from handforge.export.sampler import sample_camera, sample_look, sample_scene
from handforge.export.spec import parse_spec
from handforge.hands import load_hand_model
from handforge.render.blender import BlenderRenderError, BlenderRGB
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


def test_a_full_temporary_folder_stops_the_run_naming_the_hand_off_file_and_tmpdir(tmp_path):
    """Blender's hand-off files go to $TMPDIR: a full one failed every sample, each after its render ("OSError:
    5370 requested and 2016 written", numpy's short write with no errno; "cannot identify image file
    render_0.png", Blender's image cut short), and the run went on to the last; with --workers the error named no
    file and said "choose another --out", where --out had room. Now a failed hand-off write is a full disk naming
    the file (``stops_the_run``), said as TMPDIR's, and an image cut short on a full disk is one too."""
    import errno

    from handforge.disk import stops_the_run
    from handforge.render.blender import _check_render_written
    from handforge_shared.files import file_error

    scene, camera, hands = _shots(parse_spec(SPEC), (0,))[0]
    with BlenderRGB("workbench") as rgb:
        handed_off = rgb.work / f"{next(iter(hands))}_vertices_0.npy"
        handed_off.symlink_to("/dev/full")  # (a full disk without root: every write fails with ENOSPC)
        with pytest.raises(OSError) as raised:
            rgb(scene, camera, hands)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(handed_off)
    assert stops_the_run(raised.value, writing=False)
    words = file_error(raised.value, "choose another --out", out=tmp_path / "data")
    assert "set TMPDIR to a folder on a disk with room" in words and "--out" not in words, words
    for users in (tmp_path / "data" / "samples", tmp_path / "corpus.npz"):  # a full --out, a user's file in /tmp:
        assert "make room (or choose another --out)" in file_error(  # as before
            OSError(errno.ENOSPC, "No space left on device", str(users)), "choose another --out", out=tmp_path / "data")

    cut_short = tmp_path / "render_0.png"
    Image.new("RGBA", (64, 64), (200, 10, 10, 255)).save(cut_short)
    cut_short.write_bytes(cut_short.read_bytes()[:-20])
    with pytest.raises(OSError) as raised:  # more room needed than the disk has left: a full disk
        _check_render_written(cut_short, room_needed=2**62)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(cut_short)
    with pytest.raises(BlenderRenderError, match="cut short"):  # with room: that render's own failure
        _check_render_written(cut_short, room_needed=0)


def _shots(spec, indices):
    """(scene, camera, hands) of the sampled scenes ``indices``, as the export sends them to Blender."""
    model = load_hand_model("open")
    shots = []
    for index in indices:
        scene = sample_scene(spec, index)
        hands = _hands(model, scene)
        camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
        sample_look(spec, scene)
        shots.append((scene, camera, hands))
    return shots


def test_a_render_submitted_and_never_collected_does_not_answer_the_next_one(blender):
    """The export sends Blender sample i + 1's request before it collects sample i's image: a sample
    whose labels failed in between leaves a reply unread, which the next sample's collect drops rather
    than take as its own; a third render sent drops the oldest too (two in flight at most)."""
    shots = _shots(parse_spec(SPEC), (0, 1, 2))
    alone = [blender(*shot) for shot in shots]
    dropped = blender.submit_sample(*shots[0])  # never collected
    collect = blender.submit_sample(*shots[1])
    np.testing.assert_array_equal(collect(), alone[1])
    with pytest.raises(RuntimeError, match="dropped by a later one"):
        dropped()  # (after the later one took its own reply)
    with pytest.raises(RuntimeError, match="collected already"):
        collect()
    dropped = blender.submit_sample(*shots[0])
    second = blender.submit_sample(*shots[1])
    third = blender.submit_sample(*shots[2])
    with pytest.raises(RuntimeError, match="dropped by a later one"):
        dropped()
    np.testing.assert_array_equal(second(), alone[1])
    np.testing.assert_array_equal(third(), alone[2])


def test_two_renders_in_flight_each_get_their_own_image_also_after_blender_died(blender):
    """Two renders sent before either is collected (the export's pipeline) get their own images, in
    order, though each writes its image and reads its vertices while the other's are sent; a Blender
    killed with both in flight renders both again in the new process. Before 2026-12-05 a second
    submit dropped the first render."""
    import os
    import signal

    shots = _shots(parse_spec(SPEC), (0, 1, 2))
    scene, camera, hands = shots[1]
    shots[1] = scene, camera, with_forearms(hands, "skin")  # other meshes: Blender rebuilds them for it
    alone = [blender(*shot) for shot in shots]
    assert not np.array_equal(alone[0], alone[1])
    first, second = blender.submit_sample(*shots[0]), blender.submit_sample(*shots[1])
    np.testing.assert_array_equal(first(), alone[0])
    third = blender.submit_sample(*shots[2])  # (the forearm-less meshes' faces sent while the second is in flight)
    np.testing.assert_array_equal(second(), alone[1])
    np.testing.assert_array_equal(third(), alone[2])
    first, second = blender.submit_sample(*shots[0]), blender.submit_sample(*shots[1])
    old = blender._proc.pid
    os.kill(old, signal.SIGKILL)
    np.testing.assert_allclose(first(), alone[0], atol=1 / 255)
    np.testing.assert_allclose(second(), alone[1], atol=1 / 255)
    assert blender._proc.pid != old


def test_a_scene_blender_dies_in_twice_fails_and_is_not_sent_to_the_next_blender(blender, monkeypatch):
    """A render Blender died in, then died in again in the new process (a scene that crashes it), fails; the
    next render goes alone to a new Blender. Before, the failed render stayed in flight: the next submit's
    restart sent it a third time (one more crash, one more start, the next render done twice)."""
    import os
    import signal

    shots = _shots(parse_spec(SPEC), (0, 1))
    alone = blender(*shots[1])
    poison, sends, starts = shots[0][1], [], []
    send, start = blender._send, blender._start

    def dying_send(render):  # Blender dies in this scene's render, every time (killed the moment it has it)
        sends.append("poison" if render.args[0] is poison else "other")
        send(render)
        if render.args[0] is poison:
            os.kill(blender._proc.pid, signal.SIGKILL)

    def counted_start():
        start()
        starts.append(blender._proc.pid)

    monkeypatch.setattr(blender, "_send", dying_send)
    monkeypatch.setattr(blender, "_start", counted_start)
    with pytest.raises(BlenderRenderError, match="stopped"):
        blender.submit_sample(*shots[0])()
    assert (sends, len(starts), len(blender._pending)) == (["poison", "poison"], 1, 0)
    np.testing.assert_array_equal(blender.submit_sample(*shots[1])(), alone)
    assert (sends, len(starts)) == (["poison", "poison", "other"], 2)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(f.relative_to(folder)): f.read_bytes() for f in sorted(folder.rglob("*")) if f.is_file()}


def test_the_pipelined_export_writes_the_bytes_of_one_sample_at_a_time(blender, tmp_path):
    """``export`` begins sample i + 1 (its render sent) before it finishes sample i: the same files as
    each sample made whole in turn (``make_sample``). A sample whose labels fail after the next one's
    render was sent is reported under its own index and the next sample is its own (the failed one's
    render reply is dropped, not taken as the next's)."""
    from handforge.export.run import begin_sample, make_sample, write_dataset

    spec = parse_spec({**SPEC, "samples": 5})

    def failing_third(index, model, gl, rgb):
        finish = begin_sample(spec, index, model, gl, rgb)
        if index == 2:
            def finish():
                raise ValueError("labels failed")
        return finish

    runs = {"pipelined": lambda index, model, gl, rgb: begin_sample(spec, index, model, gl, rgb),
            "whole": lambda index, model, gl, rgb: make_sample(spec, index, model, gl, rgb),
            "failing": failing_third}
    done = {}
    for name, make in runs.items():
        reported = []
        summary = write_dataset(spec, tmp_path / name, make, command="test", rgb=blender,
                                progress=lambda n, total: reported.append((n, total)))
        assert reported == [(n, 5) for n in range(1, 6)]
        done[name] = summary["failed"]
    assert done["pipelined"] == done["whole"] == {}
    assert list(done["failing"]) == [2] and done["failing"][2].startswith("ValueError: labels failed")
    assert _files(tmp_path / "pipelined") == _files(tmp_path / "whole")
    assert sorted(k for k in _files(tmp_path / "whole" / "samples") if k.endswith("rgb.png")) == \
        [f"{index:06d}/rgb.png" for index in range(5)]
    failing = _files(tmp_path / "failing" / "samples")
    assert failing == {k: v for k, v in _files(tmp_path / "whole" / "samples").items() if not k.startswith("000002")}


def _export_until_rendering(tmp_path):
    """A real ``handforge export`` with Blender RGB, its temporary folder ``tmp_path/tmp``, returned once
    it has rendered (its first sample is in place): (process, dataset folder, temporary folder)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    scratch, out = tmp_path / "tmp", tmp_path / "data"
    scratch.mkdir()
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "samples": 1000, "width": 48, "height": 40}))
    # Ctrl-C as at a terminal: tests run in the background (`cmd &` in a script) inherit SIGINT ignored,
    # which Python then keeps, and the export would go on to its end
    process = subprocess.Popen([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet"],
                               cwd=tmp_path, env={**os.environ, "TMPDIR": str(scratch)}, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "samples" / "000000").is_dir():  # renamed into place whole: rendered and written
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the export did not start rendering: {process.communicate()}")
        time.sleep(0.05)
    return process, out, scratch


def _resume(tmp_path, out, samples):
    import os
    import subprocess
    import sys

    rerun = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet",
                            "--samples", str(samples)], cwd=tmp_path, env={**os.environ, "TMPDIR": str(tmp_path / "tmp")},
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "(1 new," in rerun.stdout
    assert sorted(p.name for p in (out / "samples").iterdir()) == [f"{i:06d}" for i in range(samples)]
    return rerun


def _finished(out) -> int:
    return len([p for p in (out / "samples").iterdir() if not p.name.startswith(".")])


@pytest.mark.parametrize("how", ["SIGTERM", "Ctrl-C"])
def test_a_stopped_export_removes_its_blender_scratch_folder_and_resumes(tmp_path, how):
    """SIGTERM to the export, or Ctrl-C (SIGINT to its process group), once Blender renders: the scratch
    folder (the hand-off files, Blender's own temporary files) goes, the finished samples stay and the
    same command continues. SIGTERM's default action ended the process on the spot and left the folder."""
    import os
    import signal

    process, out, scratch = _export_until_rendering(tmp_path)
    assert len(list(scratch.glob("handforge-blender-*"))) == 1
    if how == "SIGTERM":
        process.send_signal(signal.SIGTERM)
    else:
        os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == (143 if how == "SIGTERM" else 130), err
    if how == "SIGTERM":
        assert err.strip().splitlines()[-1] == ("stopped by SIGTERM: finished samples are kept: run the same command "
                                                "again to finish the dataset")
    assert list(scratch.iterdir()) == []
    _resume(tmp_path, out, _finished(out) + 1)
    assert list(scratch.iterdir()) == []


def test_a_killed_exports_scratch_folder_is_removed_by_the_next_run_and_no_other(tmp_path):
    """kill -9 leaves the scratch folder; the next run removes it (its owner's pid, recorded in it, is
    gone) and leaves a live run's, one whose owner is not recorded, one of another host and another user's."""
    import os
    import signal

    process, out, scratch = _export_until_rendering(tmp_path)
    (killed,) = scratch.glob("handforge-blender-*")
    os.killpg(process.pid, signal.SIGKILL)  # the export and its Blender
    process.communicate(timeout=60)
    assert (killed / "owner.pid").read_text().split()[0] == str(process.pid)
    from handforge.scratch import pid_namespace

    ns = pid_namespace()
    kept = {"live": f"{os.getpid()} {os.uname().nodename} {ns}", "unrecorded": None,
            "elsewhere": f"{process.pid} another-host {ns}",
            "another-pid-namespace": f"{process.pid} {os.uname().nodename} pid:[1]"}
    if os.geteuid() == 0:  # root can make one another user owns
        kept["another-user"] = f"{process.pid} {os.uname().nodename} {ns}"
    for name, owner in kept.items():
        (scratch / f"handforge-blender-{name}").mkdir()
        if owner:
            (scratch / f"handforge-blender-{name}" / "owner.pid").write_text(owner + "\n")
    if "another-user" in kept:
        os.chown(scratch / "handforge-blender-another-user", 65534, 65534)
    _resume(tmp_path, out, _finished(out) + 1)
    assert sorted(p.name for p in scratch.iterdir()) == sorted(f"handforge-blender-{name}" for name in kept)


def test_leaving_on_an_error_does_not_wait_for_the_render_in_flight():
    """An error (or Ctrl-C, SIGTERM) in the export loop while Blender renders: the renderer ends at once.
    It waited up to 30 s for a render nobody would read (Cycles at many samples), then killed it."""
    import time

    spec = parse_spec({**SPEC, "render": {"engine": "cycles"}})
    scene = sample_scene(spec, 0)
    hands = _hands(load_hand_model("open"), scene)
    camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
    sample_look(spec, scene)
    with pytest.raises(KeyboardInterrupt):
        with BlenderRGB("cycles", samples=1_000_000) as rgb:  # (no adaptive sampling: minutes of render)
            rgb.submit_sample(scene, camera, hands)
            time.sleep(1)  # it renders
            started = time.monotonic()
            raise KeyboardInterrupt
    assert time.monotonic() - started < 15
    assert not rgb.work.exists()


@pytest.mark.timeout(120)  # (it hung for ever: nothing bounded the wait for Blender's answer)
def test_a_hung_blender_fails_its_render_and_the_next_renders_start_a_new_one():
    """A Blender that stops answering (a stuck render, a GL deadlock: here stopped with SIGSTOP) hung the
    export for ever. Its render fails within the timeout, without a retry; the render sent after it is
    sent again to a new Blender, as is every later one."""
    import os
    import signal
    import time

    from handforge.render.blender import BlenderHung

    spec = parse_spec(SPEC)
    scene = sample_scene(spec, 0)
    hands = _hands(load_hand_model("open"), scene)
    camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
    sample_look(spec, scene)
    with BlenderRGB("workbench", timeout=3) as rgb:  # (its start may take longer: START_TIMEOUT_FLOOR)
        expected = rgb(scene, camera, hands)
        hung = rgb._proc
        os.kill(hung.pid, signal.SIGSTOP)
        first, second = rgb.submit_sample(scene, camera, hands), rgb.submit_sample(scene, camera, hands)
        started = time.monotonic()
        with pytest.raises(BlenderHung, match="had not answered a render after 3 s") as raised:
            first()
        assert 3 <= time.monotonic() - started < 15
        assert isinstance(raised.value, BlenderRenderError)  # (what the export reports as the sample's failure)
        # a caller without a knob of its own is told BlenderRGB's (it said handforge export's --sample-timeout)
        assert str(raised.value).endswith("Cycles at many samples), allow them more time (BlenderRGB's "
                                          "timeout=SECONDS)"), raised.value
        assert hung.poll() is not None  # stopped, not left behind
        assert np.array_equal(second(), expected) and rgb._proc is not hung
        assert np.array_equal(rgb(scene, camera, hands), expected)


def test_a_hung_render_names_the_knob_of_the_command_that_rendered_it():
    """BlenderHung told every caller to use `handforge export --sample-timeout`, which pose-transfer pairs
    (train/eval transfer --write-pairs) and the add-on's Export Labelled Renders do not have."""
    from handforge.commands.export import SLOW_HINT as EXPORT_HINT
    from handforge.engines.image.generated_rgb import rgb_source
    from handforge.engines.transfer.pairs import blender_rgb
    from handforge.export import blender_scene

    spec = parse_spec(SPEC)
    assert "handforge export --sample-timeout SECONDS" in EXPORT_HINT
    assert rgb_source(spec, 7.5, EXPORT_HINT).slow_hint == EXPORT_HINT
    assert "--sample-timeout" not in rgb_source(spec).slow_hint  # (a Python caller: BlenderRGB's timeout=)
    pairs = blender_rgb(spec).slow_hint
    assert "--sample-timeout" not in pairs and "--write-pairs spec, or --shading gl" in pairs, pairs
    assert "--sample-timeout" not in blender_scene.SLOW_HINT and "Cycles Samples" in blender_scene.SLOW_HINT


def test_a_render_slower_than_the_timeout_names_export_s_knob(tmp_path, capsys):
    """The export's own hang (a Cycles render of 4,096 samples against a 1 s timeout): its failure names the
    command's --sample-timeout, and export()'s blender_timeout= for a Python caller."""
    from handforge.cli import main

    slow = {**SPEC, "samples": 1, "width": 1024, "height": 1024, "render": {"engine": "cycles", "samples": 4096}}
    (tmp_path / "spec.json").write_text(json.dumps(slow))
    assert main(["export", str(tmp_path / "spec.json"), "--out", str(tmp_path / "cli"), "--sample-timeout", "1",
                 "--quiet"]) == 1
    assert "allow them more time (handforge export --sample-timeout SECONDS)" in capsys.readouterr().err
    (reason,) = export(parse_spec(slow), tmp_path / "python", progress=False, blender_timeout=1)["failed"].values()
    assert "BlenderHung" in reason and "allow them more time (export's blender_timeout=SECONDS)" in reason, reason


def test_the_export_gives_blender_its_timeout():
    from handforge.engines.image.generated_rgb import rgb_source

    spec = parse_spec(SPEC)
    assert rgb_source(spec, 7.5).timeout == 7.5 and rgb_source(spec).timeout == BlenderRGB().timeout
    assert rgb_source(parse_spec({**SPEC, "render": {"engine": "workbench", "antialiasing": "FXAA"}})).antialiasing \
        == "FXAA"
    with pytest.raises(ValueError, match="expected a positive number of seconds, got 0"):
        BlenderRGB(timeout=0)


def test_workbench_antialiasing_reaches_blender_and_smooths_only_the_edges(blender, tmp_path):
    """render.antialiasing is Blender's scene.display.render_aa: "OFF" draws each pixel all hand or none (no
    partial alpha), the default "8" blends the silhouette; exported, the two differ at the hands' edges and
    hardly elsewhere. A rerun with another value is another dataset, and the card says which."""
    from handforge.export.folder import FolderTaken

    scene, camera, hands = _shots(parse_spec(SPEC), (0,))[0]
    with BlenderRGB("workbench", antialiasing="OFF") as aliased:
        hard = aliased(scene, camera, hands)[..., 3]
    smooth = blender(scene, camera, hands)[..., 3]  # (the module's: the default, 8 samples)
    assert hard.max() == 1 and not ((hard > 0) & (hard < 1)).any()
    assert ((smooth > 0.05) & (smooth < 0.95)).sum() > 200
    assert ((hard > 0.5) == (smooth > 0.5)).mean() > 0.97  # the same hands
    with pytest.raises(ValueError, match="Workbench anti-aliasing 'off': use one of OFF, FXAA, 5, 8, 11, 16, 32"):
        BlenderRGB(antialiasing="off")

    from scipy import ndimage

    off = parse_spec({**SPEC, "samples": 2, "render": {"engine": "workbench", "antialiasing": "OFF"}})
    export(off, tmp_path / "off", progress=False)  # the export's own Blender, set up from the spec
    export(parse_spec({**SPEC, "samples": 2}), tmp_path / "8", progress=False, rgb=blender)
    for index in range(2):
        folders = {aa: tmp_path / aa / "samples" / f"{index:06d}" for aa in ("off", "8")}
        rgb = {aa: np.asarray(Image.open(folders[aa] / "rgb.png")).astype(int) for aa in folders}
        difference = np.abs(rgb["off"] - rgb["8"]).max(-1)
        edges = np.zeros(difference.shape, bool)  # each hand's outline, a pixel either side
        for side in json.loads((folders["off"] / "labels.json").read_text())["hands"]:
            mask = np.asarray(Image.open(folders["off"] / f"mask_{side}.png")) > 127
            edges |= ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)
        # (measured: 21–30 levels a pixel on the outlines, 0.6–1.3 elsewhere: a finger over another is an edge too)
        assert difference[edges].mean() > 8 * difference[~edges].mean(), index
        assert np.median(difference[~edges]) == 0, index
    card = json.loads((tmp_path / "off" / "dataset_card.json").read_text())
    assert card["render"] == "workbench (no anti-aliasing)" and card["spec"]["render"]["antialiasing"] == "OFF"
    assert json.loads((tmp_path / "8" / "dataset_card.json").read_text())["render"] == \
        "workbench (8-sample anti-aliasing)"
    with pytest.raises(FolderTaken, match='another spec \\(differing: render.antialiasing: "OFF" → "8"\\)'):
        export(parse_spec({**SPEC, "samples": 2}), tmp_path / "off", progress=False, rgb=blender)


@pytest.mark.parametrize("camera, size, indices", [
    ({"distance": [0.05, 0.06], "elevation": [-10, 10], "azimuth": [60, 120], "focal": [12, 12]}, 96, (8, 19)),
    ({"distance": [99.95, 100.0], "elevation": [0, 0], "focal": [500, 500]}, 1024, (0, 1)),
])
def test_blender_clips_where_the_masks_do(blender, camera, size, indices):
    """Blender clipped at 0.01–100 m, the GL images from 1 mm on: a hand 1–9 mm from the camera filled its
    mask and was missing from the RGB (the other hand's mask empty behind it), and a hand at 100 m lost its
    far side in the RGB only."""
    spec = parse_spec({"seed": 5, "samples": 24, "width": size, "height": size, "lighting": ["studio"],
                       "render": {"engine": "workbench", "forearm": "none"}, "background": {"kinds": ["solid"]},
                       "camera": camera})
    model, gl = load_hand_model("open"), renderer()
    for index in indices:
        scene = sample_scene(spec, index)
        hands = _hands(model, scene)
        shot, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
        sample_look(spec, scene)
        theirs = blender(scene, shot, hands)[..., 3] > 0.5
        ours = gl.render(shot, [(h["vertices"], h["faces"]) for h in hands.values()]).instance > 0
        iou = (theirs & ours).sum() / (theirs | ours).sum()
        assert ours.sum() > 20 and iou > 0.8, (index, iou, theirs.sum(), ours.sum())


def test_a_blender_process_ends_with_the_process_that_started_it(tmp_path):
    """An export worker killed mid-render (Ctrl-C or a hung worker: the driver kills it, then removes its
    scratch folder) left its Blender rendering: the render, written after the removal, made the folder again
    without its owner record, so no later run removed it (``handforge-export-workers-*`` left in $TMPDIR)."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    script = tmp_path / "render_then_wait.py"
    script.write_text(f"""
import json, sys, time
import numpy as np
from handforge.export.run import _hands
from handforge.export.sampler import sample_camera, sample_look, sample_scene
from handforge.export.spec import parse_spec
from handforge.hands import load_hand_model
from handforge.render.blender import BlenderRGB

spec = parse_spec(json.loads({json.dumps({**SPEC, "width": 320, "height": 240, "render": {"engine": "cycles", "samples": 512}})!r}))
scene = sample_scene(spec, 0)
hands = _hands(load_hand_model("open"), scene)
camera, _ = sample_camera(spec, scene.rng, np.concatenate([h["keypoints"] for h in hands.values()]).mean(0))
sample_look(spec, scene)
rgb = BlenderRGB("cycles", 512).__enter__()
rgb.submit_sample(scene, camera, hands)  # Blender renders (seconds) while this process is killed
print(rgb._proc.pid, rgb.work, flush=True)
time.sleep(600)
""")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "TMPDIR": str(tmp_path)})
    pid, work = process.stdout.readline().split()
    process.kill()  # as the driver kills a worker
    process.wait()
    shutil.rmtree(work)  # and then removes its scratch folder
    deadline = time.monotonic() + 300
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:  # (the render's end, without the fix)
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert not Path(work).exists()
