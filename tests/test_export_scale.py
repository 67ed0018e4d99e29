"""Scale-out export on local worker processes: same bytes as one process, a killed worker is replaced,
a killed driver resumes, failures are summarised, and the driver logic on its own."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from handforge.commands.export import reproducing_command
from handforge.export.local_pool import LocalPool
from handforge.export.shards import MAX_CHUNK, export_sharded, failure_summary, plan_chunks
from handforge.export.folder import ExportBusy, run_lock
from tests.support.refusing_site import refusals, refusing_env
from tests.support.scale import COMMAND, SPEC, single_process, spec, tree

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, bytes]:
    return single_process(tmp_path_factory.mktemp("single") / "data")


def local(out: Path, workers: int, **kwargs) -> dict:
    pool = lambda: LocalPool(spec().to_dict(), str(out), workers)
    return export_sharded(spec(), out, pool, workers, command=COMMAND, progress=False, **kwargs)


def test_two_worker_processes_write_the_single_process_dataset(reference, tmp_path):
    summary = local(tmp_path / "data", 2)
    assert summary["finished"] == SPEC["samples"] and summary["failed"] == {} and summary["worker_restarts"] == 0
    assert tree(tmp_path / "data") == reference


def test_a_worker_killed_mid_run_is_replaced_and_its_samples_redone(reference, tmp_path):
    # each first worker that gets work exits abruptly after 1 sample, inside its first chunk of 2 (40 // (2 × 8))
    summary = local(tmp_path / "data", 2, fault="die_after=1")
    assert summary["worker_restarts"] in (1, 2) and summary["failed"] == {}
    assert tree(tmp_path / "data") == reference


def test_a_hung_worker_is_stopped_replaced_and_its_samples_redone(reference, tmp_path):
    # each first worker that gets work stops answering after 1 sample, inside its first chunk of 2
    started = time.monotonic()
    summary = local(tmp_path / "data", 2, fault="hang_after=1", sample_timeout=6.0)
    assert summary["worker_restarts"] in (1, 2) and summary["failed"] == {}
    assert tree(tmp_path / "data") == reference
    assert time.monotonic() - started < 120  # not the default 600 s per sample


def test_a_worker_stuck_before_it_is_ready_is_replaced(reference, tmp_path, monkeypatch):
    """Never ready (it was waited for without end): stopped after the start timeout and replaced."""
    from handforge.export import shards

    monkeypatch.setattr(shards, "START_TIMEOUT_FLOOR", 1.0)
    summary = local(tmp_path / "data", 2, fault="hang_at_start=0", sample_timeout=20.0)  # a slow real start fits
    assert summary["worker_restarts"] == 2 and summary["failed"] == {}
    assert tree(tmp_path / "data") == reference


def test_a_sample_that_kills_every_worker_fails_alone(tmp_path):
    """A poisonous sample (one that segfaults Blender) failed the healthy samples of its chunk with it:
    the chunk was redone whole and died on that sample each time. After a first death each sample
    goes alone, so only the poisonous one is given up and named."""
    from handforge.export.spec import parse_spec

    twelve, out = parse_spec({**SPEC, "samples": 12}), tmp_path / "data"
    summary = export_sharded(twelve, out, lambda: LocalPool(twelve.to_dict(), str(out), 2), 2, command=COMMAND,
                             progress=False, chunk_size=8, fault="die_at=3")  # chunks [0..7], [8..11]
    assert sorted(summary["failed"]) == [3] and summary["finished"] == 11 and summary["worker_restarts"] == 3
    assert failure_summary(summary["failed"]) == [
        "  1 sample(s) [3]: 3 workers died on this sample (last: worker process exited with code 70)"]
    # an error out of a worker's run (no sample's own): the same, its process exiting on it (Ray's: test_export_scale_ray)
    out = tmp_path / "raised"
    summary = export_sharded(twelve, out, lambda: LocalPool(twelve.to_dict(), str(out), 2), 2, command=COMMAND,
                             progress=False, chunk_size=8, fault="raise_at=3")
    assert sorted(summary["failed"]) == [3] and summary["finished"] == 11, summary["failed"]


def _finished(out: Path) -> list[Path]:
    """The finished samples' labels: a killed driver's hidden ``.partial-N`` folder may hold its labels
    (written, being synced to the disk) and is no sample: the rerun removes and redoes it."""
    return sorted(p for p in out.glob("samples/*/labels.json") if p.parent.name.isdigit())


def test_a_driver_killed_mid_run_resumes_without_duplicates_or_holes(reference, tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    out = tmp_path / "data"
    command = [sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet"]
    driver = subprocess.Popen([*command, "--workers", "2"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(_finished(out)) < 4:
        assert driver.poll() is None, driver.stderr.read()
        assert time.monotonic() < deadline, "no samples written in 2 minutes"
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(1.0)  # its workers die with it (PR_SET_PDEATHSIG): nothing is written any more
    finished = _finished(out)
    assert 4 <= len(finished) < SPEC["samples"], "the driver was not killed mid-run"
    time.sleep(1.0)
    assert _finished(out) == finished
    rerun = subprocess.run([*command, "--workers", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"({SPEC['samples'] - len(finished)} new, {len(finished)} already there)" in rerun.stdout
    result = tree(out)
    # the card records the command without the scale-out options: the one that remakes the dataset
    card = json.loads(result.pop("dataset_card.json"))
    expected = dict(reference)
    # --quiet changes nothing written; the relative paths are read from the folder it ran in, said first
    assert card.pop("command") == f"cd {shlex.quote(str(tmp_path))} && handforge export spec.json --out data"
    assert card == {k: v for k, v in json.loads(expected.pop("dataset_card.json")).items() if k != "command"}
    expected.pop("dataset_card.md"), result.pop("dataset_card.md")
    assert result == expected


def _corpus_with_a_damaged_clip(root: Path) -> Path:
    """A corpus whose one test clip has sound metadata (what the spec check reads) and damaged arrays
    (what each sample reads): every sample fails, as a disk error or a clip damaged later would."""
    import numpy as np
    from handforge_shared.poses import MotionClip, side_by_side, stack_poses

    pair = side_by_side()
    (root / "clips").mkdir(parents=True)
    clip = root / "clips" / "broken.npz"
    MotionClip(hands={"right": stack_poses([pair.right] * 3), "left": stack_poses([pair.left] * 3)}).save(clip)
    with np.load(clip) as data:
        arrays = {k: data[k] for k in data.files}
    name = next(k for k in arrays if k.endswith("hand_pose"))
    arrays[name] = arrays[name][:, :44]
    np.savez(clip, **arrays)
    (root / "splits.json").write_text(json.dumps({"format": "handforge.corpus-splits", "version": 1, "seed": 0,
                                                  "train": [], "validation": [], "test": ["broken"]}))
    return root


def test_failed_samples_are_summarised_and_retried_by_a_rerun(tmp_path):
    corpus = _corpus_with_a_damaged_clip(tmp_path / "corpus")
    from handforge.export.spec import SpecError, parse_spec

    with pytest.raises(SpecError, match="clips are of the open hand model, this run is for the mano hand: set the spec's hand_model = 'open'"):
        parse_spec({"hand_model": "mano", "poses": {"source": "corpus", "corpus": str(corpus)}})
    with pytest.raises(SpecError, match="no clips in split 'train'"):
        parse_spec({"poses": {"source": "corpus", "corpus": str(corpus), "split": "train"}})
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "samples": 3, "poses": {"source": "corpus",
                                                                                    "corpus": str(corpus)}}))
    run = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet",
                          "--workers", "1"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1
    assert "3 sample(s) failed (a rerun retries them)" in run.stderr
    assert "3 sample(s) [0, 1, 2]:" in run.stderr, run.stderr
    assert not list((tmp_path / "data").glob("samples/*"))  # no half-written samples
    assert json.loads((tmp_path / "data" / "coco.json").read_text())["images"] == []
    # in one process the same (a bad sample ended the run with a traceback)
    one = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "one", "--quiet"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert one.returncode == 1 and "Traceback" not in one.stderr, one.stderr
    assert "3 sample(s) failed (a rerun retries them)" in one.stderr and "3 sample(s) [0, 1, 2]:" in one.stderr


def test_ray_without_ray_installed_says_what_to_install(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    block_ray = "import sys; sys.modules['ray'] = None; from handforge.cli import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.run([sys.executable, "-c", block_ray, "export", "spec.json", "--out", "data", "--ray"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "--ray needs Ray" in run.stderr and 'pip install "handforge[cluster]"' in run.stderr
    assert not (tmp_path / "data").exists()


def test_a_ray_address_nothing_answers_at_is_refused_at_once(tmp_path):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    run = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data",
                          "--ray", "127.0.0.1:9"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "--ray 127.0.0.1:9: no Ray head answers there" in run.stderr, run.stderr
    assert not (tmp_path / "data").exists()


def test_a_worker_that_cannot_start_stops_the_run_with_its_reason(tmp_path, monkeypatch):
    from handforge.export.shards import WorkerStartError
    from handforge.export.spec import parse_spec
    from handforge.hands.mano_files import MANOFileError
    from tests.support.synthetic_mano import write_synthetic_mano

    (tmp_path / "no-mano").mkdir()
    monkeypatch.setenv("HANDFORGE_MANO_DIR", str(write_synthetic_mano(tmp_path / "mano")))
    mano = parse_spec({**SPEC, "hand_model": "mano"})
    out = tmp_path / "data"

    def pool_without_mano():  # the driver has loaded its model (the folder records it); the workers cannot
        monkeypatch.setenv("HANDFORGE_MANO_DIR", str(tmp_path / "no-mano"))  # the workers inherit it
        return LocalPool(mano.to_dict(), str(out), 2)

    with pytest.raises(WorkerStartError, match="an export worker could not start: MANOFileError"):
        export_sharded(mano, out, pool_without_mano, 2, command=COMMAND, progress=False)
    assert not out.exists()  # nothing left behind
    with pytest.raises(MANOFileError, match="holds neither MANO_RIGHT nor MANO_LEFT"):  # the driver's: before any worker
        export_sharded(mano, out, lambda: pytest.fail("no worker"), 2, command=COMMAND, progress=False)
    assert not out.exists()


def test_a_second_driver_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    with run_lock(out):
        with pytest.raises(ExportBusy, match="another handforge export is writing into this folder"):
            local(out, 1)
    assert not list(out.iterdir())


def test_a_ctrl_c_leaves_no_half_written_sample(tmp_path):
    """A Ctrl-C kills the workers (they ignore SIGINT; the driver stops them): one killed while it wrote a
    sample left its hidden .partial folder until a rerun. Here the kill falls mid-write for certain. It waits
    for a finished sample (``_finished``): pathlib's ``*`` matches a worker's hidden ``.partial-N`` folder too, and
    a Ctrl-C that came while the only labels were in one (under load) left no sample to assert on."""
    out = tmp_path / "data"

    class CtrlCMidWrite(LocalPool):
        def wait(self, timeout):
            events = super().wait(timeout)
            if _finished(out):
                (out / "samples" / ".partial-39").mkdir()  # a worker's sample half written as the driver stops
                (out / "samples" / ".partial-39" / "mesh.png").write_bytes(b"\x89PNG")
                raise KeyboardInterrupt
            return events

    with pytest.raises(KeyboardInterrupt):
        export_sharded(spec(), out, lambda: CtrlCMidWrite(spec().to_dict(), str(out), 2), 2, command=COMMAND,
                       progress=False)
    assert _finished(out), "interrupted before a sample was written"
    assert not [p for p in out.rglob("*") if p.name.startswith(".partial-") or p.name.endswith(".tmp")]


def test_a_background_image_edited_while_workers_run_takes_the_runs_samples_away(tmp_path):
    """The workers read a background image as they draw it: one overwritten mid-run gave a dataset of both
    versions in exit status 0. The driver sees it before the aggregate files and removes the run's samples
    (``test_an_input_edited_while_the_export_runs_takes_the_runs_samples_away``: the same for one process)."""
    import numpy as np
    from PIL import Image

    from handforge.export.folder import InputsEdited
    from handforge.export.spec import parse_spec

    (tmp_path / "bg").mkdir()
    image = tmp_path / "bg" / "a.png"
    Image.fromarray(np.full((8, 8, 3), 10, np.uint8)).save(image)
    edited = parse_spec({**SPEC, "samples": 4, "background": {"kinds": ["images"], "folder": str(tmp_path / "bg")}})
    out = tmp_path / "data"

    class EditsTheImageMidRun(LocalPool):
        def wait(self, timeout):
            events = super().wait(timeout)
            if list(out.glob("samples/*/labels.json")) and image.stat().st_size < 100:
                Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(image)
            return events

    with pytest.raises(InputsEdited, match=f"^{image} changed while this export ran .*: the 4 sample\\(s\\) it made "
                                           "were removed"):
        export_sharded(edited, out, lambda: EditsTheImageMidRun(edited.to_dict(), str(out), 2), 2, command=COMMAND,
                       progress=False)
    assert not out.exists()  # the run's folder, left with no sample: as it found it (none), as any failed run leaves it


def test_a_sample_reported_failed_but_finished_on_disk_is_not_a_failure(tmp_path):
    """The summary's ``failed`` leaves out a sample a worker reported failed whose files are finished on disk
    (a failed sample that a replaced worker finished after all is not a failure): here the pool reports every
    finished sample of the first chunk as failed."""
    from handforge.export.folder import is_finished
    from handforge.export.spec import parse_spec

    four, out, told = parse_spec({**SPEC, "samples": 4}), tmp_path / "data", []

    class ReportsFinishedAsFailed(LocalPool):
        def wait(self, timeout):
            events = super().wait(timeout)
            for event in events:
                if event.kind == "done" and not told:
                    for result in event.payload[1]:
                        assert is_finished(out, result["index"]) and result["error"] is None
                        result["error"] = "RuntimeError: reported failed after all"
                        told.append(result["index"])
            return events

    summary = export_sharded(four, out, lambda: ReportsFinishedAsFailed(four.to_dict(), str(out), 1), 1,
                             command=COMMAND, progress=False, chunk_size=2)
    assert told == [0, 1]
    assert summary["failed"] == {} and summary["written"] == 4 and summary["finished"] == 4
    assert all(is_finished(out, i) for i in range(4))


def test_chunks_cover_the_pending_samples_in_order():
    pending = [i for i in range(100) if i % 7]
    for workers in (1, 2, 5):
        chunks = plan_chunks(pending, workers)
        assert [i for c in chunks for i in c] == pending
        assert max(map(len, chunks)) <= MAX_CHUNK and len(chunks) >= min(len(pending), workers * 8)
    assert plan_chunks(pending, 2, chunk_size=10)[0] == pending[:10]
    assert plan_chunks([], 3) == []


def test_the_progress_bars_clock_starts_when_a_worker_is_ready(capsys):
    """The bar counted from the command's start: the workers' start-up (seconds each) made the first
    sample's rate an ETA of a minute for a run of seconds. Until a worker is ready it says so."""
    from handforge.export.shards import _Bar

    bar = _Bar(True, 3, "export (2 workers, local processes)")
    assert "starting workers" in str(bar.tqdm)
    before = bar.tqdm._time()
    bar.first_ready()
    assert bar.tqdm.start_t >= before and bar.tqdm.n == 0 and "starting" not in str(bar.tqdm)
    bar.update(1, failed=0, restarts=0)
    bar.first_ready()  # a replacement worker ready later: the clock runs on
    assert bar.tqdm.n == 1
    bar.close()


def test_failure_summary_groups_by_reason():
    lines = failure_summary({4: "b", 1: "a", 2: "a", **{k: "c" for k in range(10, 25)}}, shown=3)
    assert lines == ["  15 sample(s) [10, 11, 12, …]: c", "  2 sample(s) [1, 2]: a", "  1 sample(s) [4]: b"]


@pytest.mark.parametrize("argv, address, kept", [
    (["s.toml", "--out", "d", "--workers", "4"], None, ["s.toml", "--out", "d"]),
    (["s.toml", "--workers=4", "--out", "d", "--ray"], "", ["s.toml", "--out", "d"]),
    (["s.toml", "--out", "d", "--ray", "head:6379", "--seed", "3"], "head:6379", ["s.toml", "--out", "d", "--seed", "3"]),
    (["s.toml", "--ray=ray://h:10001", "--gpus-per-worker", "1", "--out", "d"], "ray://h:10001", ["s.toml", "--out", "d"]),
    (["s.toml", "--workers", "2", "--sample-timeout", "30", "--out", "d"], None, ["s.toml", "--out", "d"]),
    (["s.toml", "--quiet", "--out", "d", "--seed", "2"], None, ["s.toml", "--out", "d", "--seed", "2"]),
    # the prefixes argparse takes for the options (the card said them: another dataset's bytes)
    (["s.toml", "--work", "2", "--qui", "--sample-t=9", "--out", "d", "--samples", "4"], None,
     ["s.toml", "--out", "d", "--samples", "4"]),
    (["s.toml", "--r", "head:6379", "--g", "1", "--out", "d"], "head:6379", ["s.toml", "--out", "d"]),
])
def test_the_card_command_leaves_out_the_scale_out_options(argv, address, kept):
    assert reproducing_command(argv, address) == " ".join(["handforge", "export", *kept])


@pytest.mark.parametrize("options, message", [
    (["--workers", "0"], "--workers: must be at least 1, got 0"),
    (["--workers", "2", "--sample-timeout", "nan"], "--sample-timeout: must be a number above 0, got 'nan'"),
    (["--sample-timeout", "nan"], "--sample-timeout: must be a number above 0, got 'nan'"),  # (one process too)
    (["--gpus-per-worker", "1"], "--gpus-per-worker: only with --ray"),  # was ignored without --workers
    (["--ray", "--gpus-per-worker", "nan"], "--gpus-per-worker: must be a"),  # was taken after Ray had started
])
def test_bad_scale_out_options_say_what_is_wrong(tmp_path, options, message):
    (tmp_path / "spec.json").write_text(json.dumps(SPEC))
    run = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", *options],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120, env={**os.environ})
    assert run.returncode == 2 and message in run.stderr, run.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity here (Linux only)")
def test_more_workers_than_cpus_run_one_per_cpu_and_say_so(tmp_path):
    """As ``handforge corpus --workers`` does (it capped them silently, and export refused the count); the CPUs
    are those this process may use (a cgroup cpuset, taskset, Slurm): `taskset -c 0 handforge export --workers 3`
    said "more than this machine's 2 CPUs: running 2" and ran two workers on one core."""
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "samples": 2}))
    one_cpu = min(os.sched_getaffinity(0))
    run = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet",
                          "--workers", "3"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: os.sched_setaffinity(0, {one_cpu}))
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stderr.splitlines() if "--workers" in line] == [
        "handforge export: --workers 3 is more than the 1 CPUs this process may use: running 1 (each worker "
        "draws with its own hand model and GL context; --ray ADDRESS for a cluster)"]  # (no Blender: no RGB here)
    assert len(_finished(tmp_path / "data")) == 2


def test_a_killed_drivers_scratch_folder_is_removed_by_the_next_export(tmp_path):
    """A driver killed with SIGKILL cannot remove its workers' scratch folder (340 KB of Blender files
    each, 34 of them left in /tmp by one afternoon's runs); the next export, with workers or not,
    removes it (its owner's pid, recorded in it, is gone) and leaves a running export's. Before, only
    the next run with --workers did."""
    scratch, out = tmp_path / "tmp", tmp_path / "data"
    scratch.mkdir()
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "samples": 100000}))
    command = [sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet"]
    env = {**os.environ, "TMPDIR": str(scratch)}
    driver = subprocess.Popen([*command, "--workers", "1"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _finished(out):
        assert driver.poll() is None, driver.stderr.read()
        assert time.monotonic() < deadline, "no samples written in 2 minutes"
        time.sleep(0.01)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    (killed,) = scratch.glob("handforge-export-workers-*")
    live = scratch / "handforge-export-workers-live"
    live.mkdir()
    from handforge.scratch import pid_namespace

    (live / "owner.pid").write_text(f"{os.getpid()} {os.uname().nodename} {pid_namespace()}\n")
    last = max(int(p.parent.name) for p in _finished(out))
    rerun = subprocess.run([*command, "--samples", str(last + 2)], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert not killed.exists() and list(scratch.iterdir()) == [live]



@pytest.mark.skipif(sys.platform == "win32", reason="no file-size limit (resource) on Windows")
def test_a_file_error_before_any_sample_does_not_say_samples_are_kept(tmp_path):
    """A disk full (here: a file-size limit of 512 bytes, EFBIG) where export_spec.json is written, before any sample,
    said "finished samples are kept"; it says none was finished now, and still says they are kept after one."""
    import resource

    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "samples": 1}))
    command = [sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet"]

    def limited(*more: str) -> str:
        run = subprocess.run([*command, *more], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (512, 512)))
        assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        return run.stderr.strip()

    assert "export_spec.json" in limited() and limited().endswith("; no sample was finished yet: run the same "
                                                                  "command again")
    assert subprocess.run(command, cwd=tmp_path, capture_output=True, timeout=300).returncode == 0
    assert limited("--samples", "2").endswith("; finished samples are kept: run the same command again")


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]], ids=["one-process", "workers"])
def test_a_folder_that_cannot_take_samples_stops_the_run_at_once_in_one_line(tmp_path, workers):
    """samples/ unwritable (or the disk full): every sample was made (all of Cycles' render time), then
    each failed alone, one line each (10,000 lines for 10,000 samples), with "a rerun retries them"."""
    (tmp_path / "spec.json").write_text(json.dumps({**SPEC, "samples": 30}))
    env = {**os.environ, **refusing_env(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "handforge", "export", "spec.json", "--out", "data", "--quiet",
                          *workers], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    # the samples' folder named, not the hidden .partial- one nobody chose
    assert re.match(rf"handforge export: ({re.escape(str(tmp_path))}/)?data/samples: Permission denied", lines[0]), lines
    assert lines[0].endswith(": Permission denied: let this user read and write it (or choose another --out); "
                             "no sample was finished yet: run the same command again"), lines
    assert refusals(tmp_path) <= 3  # not 30: stopped at the first
    assert not list(tmp_path.glob("data/samples/*"))


def test_local_workers_of_generated_images_take_the_gpus_in_turn(monkeypatch, tmp_path):
    """Each local worker loads its own image pipeline on the GPU it sees: every one took the first GPU (the others
    idle, one GPU's memory for all the pipelines). Each now sees one GPU of those this process may use, in
    turn; rendered datasets and a machine without GPUs are as before."""
    from handforge.export.local_pool import worker_gpus

    generated = {"render": {"engine": "generate"}, "outputs": ["rgb", "mesh"]}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5,GPU-8f3e")
    assert worker_gpus(generated) == ["2", "5", "GPU-8f3e"]
    pool = LocalPool(generated, str(tmp_path), workers=4)
    assert [pool.gpu(slot) for slot in range(4)] == ["2", "5", "GPU-8f3e", "2"]
    assert worker_gpus({"render": {"engine": "blender"}, "outputs": ["rgb"]}) == []
    assert worker_gpus({"render": {"engine": "generate"}, "outputs": ["mesh"]}) == []  # no image generated
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # every GPU hidden: the CPU, as before
    assert LocalPool(generated, str(tmp_path), workers=2).gpu(0) is None
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    import torch

    assert len(worker_gpus(generated)) == torch.cuda.device_count()


def test_a_rerun_with_workers_rebuilds_a_damaged_card(reference, tmp_path):
    """A finished dataset whose dataset_card.json was cut short (a copy stopped midway): a rerun with workers
    rewrites it, as one without does; it read the card for the GL renderer's name and ended on its JSON error."""
    out = tmp_path / "data"
    single_process(out)
    card = out / "dataset_card.json"
    card.write_bytes(card.read_bytes()[:100])
    summary = local(out, 2)
    assert (summary["written"], summary["skipped"]) == (0, SPEC["samples"])
    assert tree(out) == reference
