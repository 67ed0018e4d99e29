"""The one training loop (handforge.training.loop) on the example engine's tiny model: the loss falls,
and a run stopped and resumed ends with exactly the weights of a run that never stopped."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from handforge.engines.checkpoints import load_model
from handforge.training.loop import TrainingError, TrainSettings, check_settings, train
from tests.engines.example.model import Points, TinyNet, loss
from tests.support.unremovable import unremovable


def settings(out, **overrides) -> TrainSettings:
    # dropout and the loss's input noise draw from the global RNG: resume must restore it
    base = dict(out=out, steps=30, batch_size=16, lr=3e-3, seed=7, ema_decay=0.9, checkpoint_every=4,
                log_every=1, progress=False)
    return TrainSettings(**{**base, **overrides})


def fresh_model() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet(width=16, dropout=0.1)


def test_loss_falls_and_the_run_folder_has_log_checkpoints_and_model(tmp_path):
    result = train(fresh_model(), Points(200), loss, settings(tmp_path / "run", steps=120, lr=1e-2))
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 121))
    first, last = sum(r["loss"] for r in rows[:10]) / 10, sum(r["loss"] for r in rows[-10:]) / 10
    assert last < 0.5 * first, (first, last)
    assert result.step == 120 and result.model_dir == tmp_path / "run" / "model"
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["step-00000116", "step-00000120"]
    loaded = load_model(TinyNet, result.model_dir)  # the EMA weights, as a ModelMixin checkpoint
    for name, tensor in result.model.state_dict().items():  # (the result is on the training device: a GPU's)
        assert torch.equal(tensor.cpu(), loaded.state_dict()[name]), name


def test_the_saved_model_is_the_ema_of_the_weights_after_each_step(tmp_path):
    """model/ holds the exponential moving average of the weights, worked out here from a snapshot of the weights
    after every optimiser step with diffusers' EMAModel warm-up (its get_decay: decay 0 at the first step, so the
    average starts at the first step's weights, then (1 + t)/(10 + t) with t = step − 1, capped at ema_decay):
    ema_k = d_k·ema_(k−1) + (1 − d_k)·θ_k. The snapshots come from a step hook on the run's own AdamW (the one the
    loop builds by default, built here only to hook it): the loop overwrites the last weights with the average."""
    steps, decay = 15, 0.5  # the warm-up reaches the cap 0.5 at step 9 (9/18): both parts of the schedule are seen
    model = fresh_model()
    s = settings(tmp_path / "run", steps=steps, ema_decay=decay, checkpoint_every=steps, lr=1e-2)
    names = [name for name, _ in model.named_parameters()]
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    snapshots = []
    optimizer = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    optimizer.register_step_post_hook(
        lambda *_: snapshots.append({name: p.detach().clone() for name, p in model.named_parameters()}))
    result = train(model, Points(100), loss, s, optimizer=optimizer)
    assert len(snapshots) == steps
    ema = dict(initial)
    for k, weights in enumerate(snapshots, start=1):
        d = 0.0 if k == 1 else min(k / (k + 9), decay)
        ema = {name: d * ema[name] + (1 - d) * weights[name] for name in names}
    saved = load_model(TinyNet, result.model_dir).state_dict()
    for name in names:
        assert torch.allclose(saved[name], ema[name], atol=1e-6), name
        # an average: neither the weights it started from nor the last step's
        assert not torch.allclose(saved[name], initial[name], atol=1e-3), name
        assert not torch.allclose(saved[name], snapshots[-1][name], atol=1e-4), name
    # and it lies between the start and the last weights: nearer the trained ones, as a decay of 0.5 weighs them
    start = sum(float((saved[n] - initial[n]).norm()) for n in names)
    end = sum(float((saved[n] - snapshots[-1][n]).norm()) for n in names)
    assert end < start


def test_stopped_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole = train(fresh_model(), Points(100), loss, settings(tmp_path / "whole"))
    # 100 items / 16 = 6 batches per epoch: stopping at 10 resumes in the middle of the second epoch
    first = train(fresh_model(), Points(100), loss, settings(tmp_path / "parts", stop_after=10))
    assert first.step == 10 and first.model_dir is None
    torch.manual_seed(12345)  # the resumed run must not depend on the RNG state it starts with
    # stop_after counts this run's steps: the same command run again goes on (it stopped at 10 for good)
    second = train(fresh_model(), Points(100), loss, settings(tmp_path / "parts", stop_after=10))
    assert second.resumed_from == 10 and second.step == 20 and second.model_dir is None
    rest = train(TinyNet(width=16, dropout=0.1), Points(100), loss, settings(tmp_path / "parts"))
    assert rest.resumed_from == 20  # stop_after leaves a checkpoint where it stopped
    assert rest.step == 30
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, rest.model.state_dict()[name]), name
    log = [json.loads(line)["step"] for line in (tmp_path / "parts" / "log.jsonl").read_text().splitlines()]
    assert log == list(range(1, 31))  # one line per step, none twice
    # the finished run's command again: no step to do, its model and its last loss (it said "last loss nan")
    again = train(fresh_model(), Points(100), loss, settings(tmp_path / "parts"))
    assert again.resumed_from == again.step == 30 and again.last_loss == rest.last_loss
    whole_log = (tmp_path / "whole" / "log.jsonl").read_text().splitlines()
    parts_log = (tmp_path / "parts" / "log.jsonl").read_text().splitlines()
    assert [json.loads(a)["loss"] for a in whole_log] == [json.loads(b)["loss"] for b in parts_log]


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_ctrl_c_saves_the_step_it_ends_and_the_resumed_run_equals_an_uninterrupted_one(tmp_path, signum, capfd):
    """Ctrl-C (or SIGTERM: a scheduler's stop) threw away every step since the last periodic checkpoint (194 steps
    of a motion run, its checkpoints 1000 apart by default): the step under way ends and is saved, and the stop
    goes on through the command's own handlers (``second_ctrl_c_quits``: a Ctrl-C during the clean-ups then quits
    at once). Pressed twice, it stops at once, as before, from the newest checkpoint. In the last step, the run's
    model is saved first (the finished run was thrown away)."""
    import signal

    from handforge.termination import Terminated, second_ctrl_c_quits, sigterm_unwinds

    number = getattr(signal, signum)
    raised = Terminated if signum == "SIGTERM" else KeyboardInterrupt

    def interrupted_at(steps: set[int], times: int = 1):
        seen = [0]

        def hit(model, batch):
            seen[0] += 1
            if seen[0] in steps:  # mid-step, as a key press comes
                for _ in range(times):
                    os.kill(os.getpid(), number)
            return loss(model, batch)
        return hit

    def newest(run) -> str:
        return sorted(p.name for p in (run / "checkpoints").iterdir())[-1]

    whole = train(fresh_model(), Points(100), loss, settings(tmp_path / "whole"))
    # as a command runs: Python's Ctrl-C handler (a suite run in the background ignores it), the command's handlers
    previous = {n: signal.signal(n, signal.default_int_handler if n == signal.SIGINT else signal.SIG_DFL)
                for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(raised), sigterm_unwinds(), second_ctrl_c_quits():
            train(fresh_model(), Points(100), interrupted_at({7}), settings(tmp_path / "parts"))
        assert "stopping at the end of this step, once it is saved" in capfd.readouterr().err
        assert newest(tmp_path / "parts") == "step-00000007"
        if number == signal.SIGINT:  # the command's handler was told: it stays, to quit at a Ctrl-C during clean-up
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
            signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(raised), sigterm_unwinds(), second_ctrl_c_quits():  # twice: at once, the step lost
            train(fresh_model(), Points(100), interrupted_at({3}, times=2), settings(tmp_path / "parts"))
        assert newest(tmp_path / "parts") == "step-00000008"
        signal.signal(signal.SIGINT, signal.default_int_handler)
        with pytest.raises(raised), sigterm_unwinds(), second_ctrl_c_quits():  # in the last step: its model saved
            train(fresh_model(), Points(100), interrupted_at({30}), settings(tmp_path / "last"))
        assert newest(tmp_path / "last") == "step-00000030" and (tmp_path / "last" / "model" / "config.json").is_file()
    finally:
        for n, handler in previous.items():
            signal.signal(n, handler)
    rest = train(fresh_model(), Points(100), loss, settings(tmp_path / "parts"))
    assert rest.resumed_from == 8 and rest.step == 30
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, rest.model.state_dict()[name]), name


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
def test_a_forked_worker_ignores_the_ctrl_c_its_main_process_stops_at_a_safe_point():
    """A data loader's worker, sent the terminal's Ctrl-C with its main process, died by it: the main process's step
    failed ("DataLoader worker ... is killed by signal: Interrupt") and nothing was saved."""
    import signal

    from handforge.termination import stops_at_safe_points

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with stops_at_safe_points("stopping", enabled=True) as points:
            child = os.fork()
            if child == 0:  # the worker: Ctrl-C ignored, it goes on
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                    os.kill(os.getpid(), signal.SIGINT)
                finally:
                    os._exit(7)
            _, status = os.waitpid(child, 0)
            assert not points.asked
    finally:
        signal.signal(signal.SIGINT, previous)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 7, status


def test_bad_settings_are_refused_with_what_to_change(tmp_path):
    with pytest.raises(TrainingError, match="batch_size must be at least 1"):
        train(fresh_model(), Points(10), loss, settings(tmp_path / "a", batch_size=0))
    with pytest.raises(TrainingError, match="fewer than one batch"):
        train(fresh_model(), Points(10), loss, settings(tmp_path / "b", batch_size=16))
    with pytest.raises(TrainingError, match="not a diffusers ModelMixin"):
        train(torch.nn.Linear(3, 3), Points(10), loss, settings(tmp_path / "c"))
    train(fresh_model(), Points(40), loss, settings(tmp_path / "d", stop_after=2))
    with pytest.raises(TrainingError, match=r"other settings \(lr 0.003 -> 0.1\)"):
        train(fresh_model(), Points(40), loss, settings(tmp_path / "d", lr=0.1))
    # a longer run, with the warm-up and the saving spacing the engines derive from the steps: continued
    # (train interaction --minutes re-sizes them at every start; they were refused as other settings)
    base = settings(tmp_path / "d")
    longer = train(fresh_model(), Points(40), loss, settings(tmp_path / "d", steps=base.steps + 4, warmup_steps=3,
                                                             checkpoint_every=5, log_every=2))
    assert longer.resumed_from == 2 and longer.step == base.steps + 4
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(TrainingError, match="lr must be a finite number, 0 or more"):
            train(fresh_model(), Points(40), loss, settings(tmp_path / "e", lr=bad))
    assert not (tmp_path / "e").exists()  # refused before the run folder is made
    (tmp_path / "mine" / "model").mkdir(parents=True)
    (tmp_path / "mine" / "model" / "important.txt").write_text("mine")
    with pytest.raises(TrainingError, match="holds model but no training run"):
        train(fresh_model(), Points(40), loss, settings(tmp_path / "mine"))
    assert [p.name for p in (tmp_path / "mine").rglob("*")] == ["model", "important.txt"]  # untouched
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "settings.json").write_text('{"mine": 1}')  # was replaced by the run's, unsaid
    with pytest.raises(TrainingError, match="is not a training run's settings"):
        train(fresh_model(), Points(40), loss, settings(tmp_path / "own"))
    assert (tmp_path / "own" / "settings.json").read_text() == '{"mine": 1}'


def test_a_loss_that_stops_being_finite_ends_the_run_without_a_model(tmp_path):
    def blows_up(model, batch):
        return loss(model, batch) * float("nan")

    with pytest.raises(TrainingError, match="the loss became nan at step 1.*no model was saved"):
        train(fresh_model(), Points(40), blows_up, settings(tmp_path / "f"))
    assert not (tmp_path / "f" / "model").exists()


@pytest.mark.gpu
def test_a_run_with_ema_resumes_on_a_gpu(tmp_path):
    """accelerate gives registered objects (the EMA) back on the CPU: on a GPU every resumed run with EMA (the
    interaction and motion trainers always have one) failed at its first step, "Expected all tensors to be on the
    same device". Read in the code, not seen: no GPU was lent when it was fixed; benchmarks/gpu.sh runs this."""
    train(fresh_model(), Points(100), loss, settings(tmp_path / "run", stop_after=10))
    rest = train(fresh_model(), Points(100), loss, settings(tmp_path / "run"))
    assert rest.resumed_from == 10 and rest.step == 30 and next(rest.model.parameters()).is_cuda


def test_a_resume_on_another_number_of_processes_is_refused(tmp_path):
    """A run of 2 processes resumed on 1 went on with the schedule of twice the steps (its learning rate 2e-5 where
    5e-3 was due, then rising) and another global batch, unsaid. A checkpoint with two processes' random states
    stands for such a run here."""
    import shutil as copying

    run = tmp_path / "run"
    train(fresh_model(), Points(100), loss, settings(run, stop_after=4))
    checkpoint = run / "checkpoints" / "step-00000004"
    copying.copyfile(checkpoint / "random_states_0.pkl", checkpoint / "random_states_1.pkl")
    with pytest.raises(TrainingError, match=r"saved by a run on 2 process\(es\), and this one runs on 1: resume it on 2"):
        train(fresh_model(), Points(100), loss, settings(run))


def test_a_resume_that_would_save_other_weights_is_refused(tmp_path):
    """A run is resumed only into the same model, within its steps, from a checkpoint."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=6))
    # model options shape the weights as much as the settings do (dropout was accepted and recorded)
    torch.manual_seed(0)
    with pytest.raises(TrainingError, match=r"other settings \(model_config: dropout 0.1 -> 0.5\)"):
        train(TinyNet(width=16, dropout=0.5), Points(40), loss, settings(run))
    # fewer steps than the run has done: its step-6 weights were saved as the model of a 3-step run
    with pytest.raises(TrainingError, match="already at step 6, past --steps 3"):
        train(fresh_model(), Points(40), loss, settings(run, steps=3))
    # nor on data shaped otherwise (an engine's options: a window, a stride, loss weights)
    windowed = tmp_path / "windowed"
    train(fresh_model(), Points(40), loss, settings(windowed, stop_after=2, data_options={"window": 8}))
    with pytest.raises(TrainingError, match=r"other settings \(data_options: window 8 -> 16\)"):
        train(fresh_model(), Points(40), loss, settings(windowed, data_options={"window": 16}))
    assert train(fresh_model(), Points(40), loss, settings(windowed, data_options={"window": 8})).resumed_from == 2
    # another model's run (another engine's --out): said as such, not as every setting that differs
    class OtherNet(TinyNet):
        pass

    with pytest.raises(TrainingError, match=r"holds a run of another model \(TinyNet, not OtherNet\): train into a new"):
        train(OtherNet(width=16, dropout=0.1), Points(40), loss, settings(windowed, data_options={"window": 8}))
    # a long value that differs (a model's normalisation statistics) is named, not printed
    with pytest.raises(TrainingError, match=r"other settings \(data_options: means \(other values\), window 8 -> 9\);"):
        train(fresh_model(), Points(40), loss, settings(windowed, data_options={"window": 9, "means": [0.5] * 100}))
    # nor on other data that the engine's statistics do not show (an --init run keeps the model's): its size
    with pytest.raises(TrainingError, match=r"other training data \(40 items, now 48\); resume with the same"):
        train(fresh_model(), Points(48), loss, settings(windowed, data_options={"window": 8}))
    (run / "checkpoints" / "step-best").mkdir()  # a folder of the user's is not a checkpoint
    done = train(fresh_model(), Points(40), loss, settings(run, steps=8))
    assert done.resumed_from == 6 and done.step == 8
    # nor counted among the newest checkpoints kept
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000006", "step-00000008", "step-best"]
    model = (run / "model" / "diffusion_pytorch_model.safetensors").read_bytes()
    for checkpoint in (run / "checkpoints").glob("step-0*"):
        import shutil

        shutil.rmtree(checkpoint)
    # a finished model without checkpoints was trained over from scratch
    with pytest.raises(TrainingError, match="trained model but no checkpoint to resume from"):
        train(fresh_model(), Points(40), loss, settings(run, steps=8))
    assert (run / "model" / "diffusion_pytorch_model.safetensors").read_bytes() == model


def test_a_damaged_checkpoint_or_log_is_said_or_survived(tmp_path):
    """A truncated checkpoint file is named with what to do (not a library's traceback, nor "another
    model"); a half-written last log line (a run killed while logging) is dropped on resume."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    with (run / "log.jsonl").open("a") as fh:
        fh.write('{"step": 5, "lo')
    newest = run / "checkpoints" / "step-00000004"
    for name in ("model.safetensors", "optimizer.bin"):
        original = (newest / name).read_bytes()
        (newest / name).write_bytes(original[: len(original) // 2])
        with pytest.raises(TrainingError, match=rf"(?:{re.escape(name)}|step-00000004) cannot be read.*delete its "
                                                r"folder .*step-00000004 to start the run over"):
            train(fresh_model(), Points(40), loss, settings(run, steps=6))
        (newest / name).write_bytes(original)
    (newest / "step.json").write_text("{")
    # before: "step.json ... delete it", and a run without it failed the same way: the folder is to delete
    with pytest.raises(TrainingError, match="step.json cannot be read .*delete its folder .*step-00000004 to start the run over"):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))
    # another step than its folder's: it resumed at that step and wrote over the later checkpoints and log lines
    (newest / "step.json").write_text('{"step": 2}')
    with pytest.raises(TrainingError, match="step.json cannot be read .*step 2 in the folder of step 4.*delete its "
                                            "folder"):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))
    (newest / "step.json").write_text("[" * 100_000)  # nested thousands deep: a RecursionError traceback
    with pytest.raises(TrainingError, match="step.json cannot be read \\(nested too deeply: .*delete its folder"):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))
    settings_file, recorded = run / "settings.json", (run / "settings.json").read_text()
    settings_file.write_text("[" * 100_000)
    with pytest.raises(TrainingError, match="settings.json cannot be read \\(nested too deeply: "):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))
    settings_file.write_text(recorded)
    (newest / "step.json").write_text('{"step": 4}')
    with (run / "log.jsonl").open("a") as fh:  # an edited line whose step is no number: dropped (a TypeError)
        fh.write('\n{"step": "x"}\n{"step": null}\n' + "[" * 100_000 + "\n")
    done = train(fresh_model(), Points(40), loss, settings(run, steps=6))
    assert done.resumed_from == 4
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


def test_fp16_on_the_cpu_is_refused(tmp_path, monkeypatch):
    """accelerate trains "fp16" on the CPU in full precision, unsaid, and settings.json recorded fp16."""
    import handforge.training.loop as loop

    monkeypatch.setattr(loop, "_training_device", lambda: "cpu")
    for run in (lambda s: check_settings(s), lambda s: train(fresh_model(), Points(40), loss, s)):
        with pytest.raises(TrainingError, match="fp16 needs a GPU: on the CPU it would train in full precision; "
                                                "use bf16 or no"):
            run(settings(tmp_path / "run", mixed_precision="fp16"))
    assert not (tmp_path / "run" / "checkpoints").exists()
    check_settings(settings(tmp_path / "run", mixed_precision="bf16"))
    monkeypatch.undo()  # accelerate's own answer here
    assert loop._training_device() == ("cuda" if torch.cuda.is_available() else "cpu")


def test_one_run_at_a_time_in_a_folder(tmp_path):
    """A second run into the folder of a running one is refused (two interleaved their log lines)."""
    from handforge_shared.files import folder_lock

    run = tmp_path / "run"
    run.mkdir()
    with folder_lock(run):  # as a run in another process holds it
        with pytest.raises(TrainingError, match="another training run is writing into this folder"):
            train(fresh_model(), Points(40), loss, settings(run, steps=2))
    assert list(run.iterdir()) == []  # nothing written by the refused run
    assert train(fresh_model(), Points(40), loss, settings(run, steps=2)).step == 2  # free again


def test_a_run_killed_while_saving_leaves_no_half_saved_folders_behind(tmp_path):
    """A kill mid-save left ``.step-N.part-*`` (a whole optimiser state, for large models gigabytes)
    that no resume read or removed; the user's own hidden folders stay."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=2))
    checkpoints = run / "checkpoints"
    killed = [checkpoints / ".step-00000004.part-ab12cd34", run / ".model.part-x1y2z3w4"]
    replaced = checkpoints / ".step-00000002.old-q9r8s7t6"  # step-00000002 exists: a stale copy
    only_copy = checkpoints / ".step-00000003.old-k1l2m3n4"  # step-00000003 is missing: the only copy
    mine = [run / ".notes.part-1", checkpoints / ".cache"]
    for folder in (*killed, replaced / "step-00000002", only_copy / "step-00000003", *mine):
        folder.mkdir(parents=True)
        (folder / "optimizer.bin").write_bytes(b"\0" * 64)
    train(fresh_model(), Points(40), loss, settings(run, stop_after=2))
    assert not any(p.exists() for p in (*killed, replaced))
    assert all(p.exists() for p in (only_copy, *mine))


def test_a_full_disk_while_saving_a_checkpoint_is_an_os_error_and_the_run_resumes(tmp_path, monkeypatch):
    """torch.save (the optimiser's state) says a full disk as a RuntimeError without an errno ("unexpected pos 576
    vs 534"): `handforge train` ended in that traceback. It is the OSError the CLI says in one line, naming the
    checkpoint; nothing half-written stays, and the run resumes from the checkpoint before."""
    import errno
    import shutil as shutil_module
    from collections import namedtuple

    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)  # (a file partly written)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: usage(2**30, 2**30, 0))
    with pytest.raises(OSError) as raised:
        train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(run / "checkpoints" / "step-00000008")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000004"]
    monkeypatch.undo()
    assert train(fresh_model(), Points(40), loss, settings(run, stop_after=4)).resumed_from == 4


@pytest.mark.parametrize("damage", ["garbage", "missing", "no_rng_states"])
def test_a_checkpoint_whose_random_states_cannot_be_restored_is_refused(tmp_path, damage):
    """accelerate only logs a random-states file it cannot read and goes on with the RNGs as they are: the
    resumed run finished without a word and with other weights than a run that never stopped."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    states = run / "checkpoints" / "step-00000004" / "random_states_0.pkl"
    if damage == "garbage":
        states.write_bytes(b"not a pickle")
    elif damage == "missing":
        states.unlink()
    else:
        torch.save({"step": 4}, states)
    with pytest.raises(TrainingError, match="step-00000004 cannot be read.*random_states_0.pkl.*delete it"):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))


class _RunsCode:
    """Unpickled, it creates a file: what a checkpoint folder from elsewhere could do on resume."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["random_states_0.pkl", "custom_checkpoint_0.pkl"])
def test_a_checkpoint_pickle_that_would_run_code_is_refused_unread(tmp_path, name):
    """accelerate reads the random states and the EMA's state (``custom_checkpoint_0.pkl``) with
    ``weights_only=False``: a resumed checkpoint from elsewhere ran what its pickles said."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    marker = tmp_path / "code-ran"
    torch.save({"random_state": _RunsCode(marker), "numpy_random_seed": 0, "torch_manual_seed": 0},
               run / "checkpoints" / "step-00000004" / name)
    with pytest.raises(TrainingError, match=f"step-00000004 cannot be read.*{name}: not a pickle of tensors and "
                       "plain data.*could run code.*delete it"):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))
    assert not marker.exists()


def test_every_pickle_is_checked_whatever_the_case_of_its_suffix(tmp_path):
    """On a case-insensitive file system (macOS, Windows) accelerate's custom_checkpoint_0.pkl opens a file
    named custom_checkpoint_0.PKL, which a check of "*.pkl" names only had passed by."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    marker = tmp_path / "code-ran"
    torch.save({"decay": _RunsCode(marker)}, run / "checkpoints" / "step-00000004" / "custom_checkpoint_5.PKL")
    with pytest.raises(TrainingError, match="custom_checkpoint_5.PKL: not a pickle of tensors and plain data"):
        train(fresh_model(), Points(40), loss, settings(run, steps=6))
    assert not marker.exists()


def test_a_run_folder_named_with_a_tilde_resumes_from_itself(tmp_path, monkeypatch):
    """``out="~/run"`` from Python is the folder ./~/run (the command line expands "~" itself): its checkpoints
    were checked there, but accelerate's load_state expanded "~" and loaded $HOME/run's, unchecked."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    train(fresh_model(), Points(40), loss, settings("~/run", stop_after=4))
    assert (tmp_path / "~" / "run" / "checkpoints" / "step-00000004").is_dir()
    elsewhere = tmp_path / "home" / "run"
    shutil.copytree(tmp_path / "~" / "run", elsewhere)
    marker = tmp_path / "code-ran"
    torch.save({"decay": _RunsCode(marker)}, elsewhere / "checkpoints" / "step-00000004" / "custom_checkpoint_0.pkl")
    resumed = train(fresh_model(), Points(40), loss, settings("~/run", steps=6))
    assert not marker.exists() and resumed.resumed_from == 4 and resumed.step == 6  # from ./~/run's own checkpoint


def test_random_states_in_torchs_legacy_format_resume(tmp_path):
    """accelerate reads a random-states file of torch's legacy (non-zip) format; the check's memory-mapped
    read cannot, and refused it as damaged."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=4))
    states = run / "checkpoints" / "step-00000004" / "random_states_0.pkl"
    torch.save(torch.load(states, weights_only=False), states, _use_new_zipfile_serialization=False)
    model = fresh_model()
    torch.manual_seed(12345)  # what the resume restores from the legacy file, not what it starts with
    resumed = train(model, Points(40), loss, settings(run, steps=6))
    assert resumed.resumed_from == 4 and resumed.step == 6 and (run / "model").is_dir()
    whole = train(fresh_model(), Points(40), loss, settings(tmp_path / "whole", steps=6))
    for name, tensor in whole.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_another_models_run_is_named_so_whatever_steps_are_given(tmp_path):
    """`train interaction --out` a motion run folder at step 40 with --steps 5 was told to "give at least 40
    steps", which then failed as another model's run."""
    class OtherNet(TinyNet):
        pass

    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=6))
    with pytest.raises(TrainingError, match=r"holds a run of another model \(TinyNet, not OtherNet\)"):
        train(OtherNet(width=16, dropout=0.1), Points(40), loss, settings(run, steps=3))
    with pytest.raises(TrainingError, match=r"other settings \(lr 0.003 -> 0.1\)"):
        train(fresh_model(), Points(40), loss, settings(run, steps=3, lr=0.1))
    with pytest.raises(TrainingError, match="already at step 6, past --steps 3"):
        train(fresh_model(), Points(40), loss, settings(run, steps=3))


def test_a_refused_resume_names_every_difference_with_both_values_at_once(tmp_path):
    """The refusal named plain settings without values ("other settings (lr)"), and came in two passes: with the
    batch size and the model changed, only batch_size was named, the model on the next try."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=2, data_options={"window": 8}))
    advice = "; resume with the same settings and data, or choose a new out folder"
    with pytest.raises(TrainingError, match=re.escape("other settings (lr 0.003 -> 0.1)" + advice)):
        train(fresh_model(), Points(40), loss, settings(run, lr=0.1, data_options={"window": 8}))
    torch.manual_seed(0)
    wider = TinyNet(width=32, dropout=0.1)
    with pytest.raises(TrainingError, match=re.escape(
            "other settings (batch_size 16 -> 8; model_config: width 16 -> 32; data_options: window 8 -> 16)"
            + advice)):
        train(wider, Points(40), loss, settings(run, batch_size=8, data_options={"window": 16}))
    # with other data too: one refusal still
    with pytest.raises(TrainingError, match=re.escape(
            "other training data (40 items, now 48), and other settings (batch_size 16 -> 8; model_config: width "
            "16 -> 32)" + advice)):
        train(wider, Points(48), loss, settings(run, batch_size=8, data_options={"window": 8}))
    # before the data is read: what the engine knows of its model is compared with the rest
    with pytest.raises(TrainingError, match=re.escape(
            "other settings (batch_size 16 -> 8, seed 7 -> 1; model_config: width 16 -> 32; data_options: "
            "window 8 -> 16)" + advice)):
        check_settings(settings(run, batch_size=8, seed=1, data_options={"window": 16}), TinyNet, {"width": 32})
    check_settings(settings(run, data_options={"window": 8}), TinyNet, {"width": 16})  # the rest: train()'s
    # a long value (a path) is shortened in its middle
    long_path = "/data/" + "corpus-" * 40 + "clips"
    with pytest.raises(TrainingError, match=re.escape(f"(data_options: source None -> {long_path[:78]}..."
                                                      f"{long_path[-78:]});")):
        check_settings(settings(run, data_options={"window": 8, "source": long_path}))


@pytest.mark.parametrize("name, folder", [("checkpoints", False), ("model", False), ("log.jsonl", True),
                                          ("settings.json", True)])
def test_a_run_name_of_the_wrong_kind_is_refused_before_training(tmp_path, name, folder):
    """A file named checkpoints (or a folder named log.jsonl) in the run folder: FileExistsError or
    IsADirectoryError tracebacks, some only after the steps were trained."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=2))
    target = run / name
    import shutil

    shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    target.mkdir() if folder else target.write_text("mine\n")
    kind = "a folder" if folder else "a file"
    with pytest.raises(TrainingError, match=f"{target} is {kind}, not the run's own: move it away or choose "
                                            "another out folder"):
        train(fresh_model(), Points(40), loss, settings(run, steps=4))


def test_a_model_too_large_for_memory_is_refused_before_its_weights_exist(tmp_path):
    """70 billion parameters (1.4 TB to train with AdamW and EMA) are refused from their count, built on
    torch's meta device: the real weights, past the machine's memory, were ended by the OOM killer unsaid."""
    from handforge.training.loop import new_model

    built = []

    def build() -> TinyNet:
        built.append(TinyNet(width=10**10))
        return built[-1]

    with pytest.raises(TrainingError, match=r"TinyNet of 70,000.* M parameters needs about .* GiB to train .* "
                                            r"GiB of memory: lower the model's sizes"):
        new_model(build)
    assert len(built) == 1 and built[0].layers[0].weight.is_meta  # never built for real
    with pytest.raises(TrainingError, match="lower the model's sizes"):  # the loop's own check, for any engine
        train(built[0], Points(64), loss, settings(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_with_a_gpu_weights_larger_than_the_machines_memory_are_refused_too(monkeypatch):
    """With CUDA the check was skipped, but the weights are built on the CPU first: 70 billion parameters
    (280 GB) would meet the OOM killer before any GPU allocator could say a word."""
    import torch

    from handforge.training.loop import new_model

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    with pytest.raises(TrainingError, match=r"needs about .* GiB to build before it moves to the GPU"):
        new_model(lambda: TinyNet(width=10**10))


def test_a_folder_holding_other_files_is_refused_as_a_run_folder(tmp_path):
    """--out a corpus (or any folder of the user's) got model/, checkpoints/ and the log mixed into it;
    an empty folder, a new path and a run's own folder are trained into."""
    corpus = tmp_path / "corpus"
    (corpus / "train").mkdir(parents=True)
    (corpus / "corpus.json").write_text("{}")
    with pytest.raises(TrainingError, match=r"corpus holds files that are not a training run's \(corpus.json, "
                                            r"train\): choose a new or an empty folder"):
        train(fresh_model(), Points(40), loss, settings(corpus))
    assert sorted(p.name for p in corpus.iterdir()) == ["corpus.json", "train"]  # untouched
    (tmp_path / "empty").mkdir()
    (tmp_path / "hidden" / ".ipynb_checkpoints").mkdir(parents=True)  # a file manager's or a notebook's: not refused
    (tmp_path / "hidden" / ".DS_Store").write_text("")
    for out in (tmp_path / "empty", tmp_path / "new", tmp_path / "hidden"):
        train(fresh_model(), Points(40), loss, settings(out, stop_after=2))
        assert train(fresh_model(), Points(40), loss, settings(out, stop_after=2)).resumed_from == 2


def test_a_warm_up_longer_than_the_run_is_refused(tmp_path):
    """--warmup-steps past --steps was accepted: the learning rate never reached the one set."""
    with pytest.raises(TrainingError, match=r"warmup_steps \(--warmup-steps\) 31 is more than steps 30: the learning "
                                            r"rate would never reach 0.003; give at most 30 warm-up steps"):
        train(fresh_model(), Points(40), loss, settings(tmp_path / "run", warmup_steps=31))
    assert not (tmp_path / "run").exists()
    train(fresh_model(), Points(40), loss, settings(tmp_path / "run", steps=4, warmup_steps=4))  # as long: trained


def test_check_settings_refuses_what_needs_neither_model_nor_data(tmp_path):
    """What engines call before reading their data: the settings, the folder, and a resumed run's settings, data
    options and model class; what needs the data (its size, statistics) is left to train(), which has it."""
    with pytest.raises(TrainingError, match=r"warmup_steps \(--warmup-steps\) 50 is more than steps 10"):
        check_settings(settings(tmp_path / "a", steps=10, warmup_steps=50))
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, stop_after=2, data_options={"window": 8}))
    with pytest.raises(TrainingError, match=r"other settings \(lr 0.003 -> 0.1\)"):
        check_settings(settings(run, lr=0.1, data_options={"window": 8}))

    class OtherNet(TinyNet):
        pass

    with pytest.raises(TrainingError, match=r"holds a run of another model \(TinyNet, not OtherNet\)"):
        check_settings(settings(run, data_options={"window": 8}), OtherNet)
    # the data's options are known before the data: said with the rest (they were left to train())
    with pytest.raises(TrainingError, match=r"other settings \(data_options: window 8 -> 16\)"):
        check_settings(settings(run, data_options={"window": 16}), TinyNet)
    # fewer steps than the run has done: said before the data is read too (train motion read it first)
    with pytest.raises(TrainingError, match="already at step 2, past --steps 1"):
        check_settings(settings(run, steps=1, warmup_steps=0, data_options={"window": 8}), TinyNet)
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name, value", [("steps", "abc"), ("steps", None), ("steps", 2.5), ("steps", True),
                                         ("checkpoint_every", "4"), ("warmup_steps", None), ("stop_after", 1.5),
                                         ("lr", "0.1"), ("ema_decay", "0.9"), ("grad_clip", "1")])
def test_settings_that_are_not_numbers_are_refused_in_words(tmp_path, name, value):
    """A count or rate of another type (`train interaction --minutes` takes a resumed run's steps from its
    settings.json, which the user may have edited: "steps": "abc") ended in a TypeError traceback, or ran
    (true: one step; 2.5 steps)."""
    with pytest.raises(TrainingError, match=f"{name} must be .*got {re.escape(repr(value))}"):
        check_settings(settings(tmp_path / "a", **{name: value}))
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("name, value, said", [
    ("seed", 7.0, '"seed" must be a whole number (a JSON integer, e.g. 20000), got 7.0'),
    ("batch_size", 16.0, '"batch_size" must be a whole number (a JSON integer, e.g. 20000), got 16.0'),
    ("steps", 1e9, '"steps" must be a whole number (a JSON integer, e.g. 20000), got 1000000000.0'),
    ("seed", True, '"seed" must be a whole number (a JSON integer, e.g. 20000), got true'),
    ("lr", "0.003", '"lr" must be a number, got "0.003"'),
    ("ema_decay", True, '"ema_decay" must be a number or null, got true'),
    ("mixed_precision", 0, '"mixed_precision" must be a string, got 0'),
    ("data_options", [], '"data_options" must be an object or null, got []'),
])
def test_a_resumed_runs_settings_of_another_kind_are_refused_naming_the_file_and_the_key(tmp_path, name, value, said):
    """An edited settings.json's "seed": 7.0 or true resumed a run of seed 7 or 1 (compared with ==), its
    "lr": "0.003" was said as a setting changed from 0.003 to 0.003, and `train interaction --minutes` took
    "steps": 1e9 from it (said as "training settings: steps must be a whole number", no file named)."""
    from handforge.training.loop import recorded_settings

    out = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(out, stop_after=2))
    settings_file = out / "settings.json"
    recorded = json.loads(settings_file.read_text())
    assert recorded_settings(out) == recorded  # (as written: every value of its kind)
    settings_file.write_text(json.dumps({**recorded, name: value}))
    refused = f"^{re.escape(f'{settings_file}: {said}')}: write it back as the run recorded it, or train into a new"
    with pytest.raises(TrainingError, match=refused):
        train(fresh_model(), Points(40), loss, settings(out))
    with pytest.raises(TrainingError, match=refused):
        recorded_settings(out)
    assert json.loads(settings_file.read_text())[name] == value  # (left as it was, for the user to correct)


def _two_process_run(out: str, crash_saving_step: int | None) -> None:
    """One process of a two-process CPU run (accelerate's debug_launcher forks both); rank 1 dies while the
    checkpoint of ``crash_saving_step`` is being saved, after rank 0 has written its share."""
    import os
    import time

    import torch.distributed as dist
    from accelerate import Accelerator

    os.environ["RANK"] = str(dist.get_rank())  # as `accelerate launch` sets it (debug_launcher does not)
    if crash_saving_step is not None and dist.get_rank() == 1:
        save_state = Accelerator.save_state

        def dying(self, output_dir=None, **kwargs):
            if f"step-{crash_saving_step:08d}" in str(output_dir):
                time.sleep(1.0)  # rank 0's files are written meanwhile
                os._exit(3)
            return save_state(self, output_dir, **kwargs)

        Accelerator.save_state = dying
    train(fresh_model(), Points(100), loss, settings(out, steps=8, batch_size=8))


def test_a_two_process_run_killed_while_saving_resumes_from_its_last_whole_checkpoint(tmp_path):
    """The processes of a multi-process run wrote their shards straight into step-N, the main one its step.json
    first: killed while saving, the run left a step-N without the other process's random states, and its
    resume was refused ("saved by a run on 1 process(es)") until the folder was deleted by hand. The shards now
    go to a hidden part folder that becomes step-N once every process has written its own."""
    import os
    import subprocess
    import sys

    def launch(crash_saving_step: int | None) -> subprocess.CompletedProcess:
        # in a fresh interpreter: forked from this one, after other tests had run torch's thread pools, the
        # processes could hang
        code = ("from accelerate import debug_launcher\nfrom tests.test_training_loop import _two_process_run\n"
                f"debug_launcher(_two_process_run, args=({str(out)!r}, {crash_saving_step!r}), num_processes=2)\n")
        # TMPDIR: torch's launcher leaves a pytorch-errorfile-*.pickle per process it spawned in the temp folder
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              cwd=Path(__file__).resolve().parents[1],  # (where `tests` imports from)
                              env={**os.environ, "TMPDIR": str(scratch)})

    out, scratch = tmp_path / "run", tmp_path / "tmp"
    scratch.mkdir()
    crashed = launch(8)
    assert crashed.returncode != 0 and "exit code 3" in crashed.stderr, crashed.stderr[-2000:]
    saved = sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith("."))
    assert saved == ["step-00000004"], saved
    assert {p.name for p in (out / "checkpoints" / "step-00000004").glob("random_states_*.pkl")} == \
        {"random_states_0.pkl", "random_states_1.pkl"}
    resumed = launch(None)  # resumed at step 4
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000004", "step-00000008"]
    steps = [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9)) and (out / "model" / "config.json").is_file()


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_an_old_checkpoint_whose_removal_cannot_finish_is_no_checkpoint(tmp_path):
    """Each save removes the checkpoints beyond the newest two. One whose removal could not finish (a run stopped
    meanwhile, a file that cannot be deleted) stayed a step-N folder with some of its files: a checkpoint to the
    listing and to a resume's advice ("delete it to resume from the one before"). It is taken out of the
    checkpoints' names first now, and goes at the next start once it can."""
    run = tmp_path / "run"
    train(fresh_model(), Points(40), loss, settings(run, steps=8))
    checkpoints = run / "checkpoints"
    oldest = checkpoints / "step-00000004"
    with unremovable(oldest / "optimizer.bin", checkpoints):
        train(fresh_model(), Points(40), loss, settings(run, steps=12))  # saves step 12, removes step 4
        assert sorted(p.name for p in checkpoints.iterdir() if p.name.startswith("step-")) == [
            "step-00000008", "step-00000012"]
        assert (checkpoints / ".step-00000004.part-removed" / "optimizer.bin").exists()
    train(fresh_model(), Points(40), loss, settings(run, steps=16))
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-00000012", "step-00000016"]


def test_an_init_that_is_a_loop_of_links_is_a_training_error_not_a_traceback(tmp_path):
    """`train motion --init LOOP` (and interaction's, and the image engines' recorded --sd and --init) ended in
    pathlib's "RuntimeError: Symlink loop" traceback."""
    from handforge.training.loop import fine_tune_start

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(TrainingError, match=f"^--init: {re.escape(str(tmp_path / 'a'))}: no such checkpoint folder"):
        fine_tune_start(TinyNet, tmp_path / "a", tmp_path / "out")


@pytest.mark.skipif(os.name == "nt", reason="no file-size limit (resource) on Windows")
def test_a_file_size_limit_met_by_torch_saving_a_checkpoint_is_said_as_one(tmp_path):
    """torch.save (a checkpoint's optimiser state) over a file-size limit (``ulimit -f``) was said in torch's words,
    "torch could not write it ([enforce fail at inline_container.cc:672] . unexpected pos 102464 vs 102352): fix it",
    where safetensors' over the same limit is "File too large ... raise the limit"."""
    import resource
    import subprocess
    import sys

    script = (
        "import errno, sys\n"
        "from handforge.training.loop import TrainSettings, train\n"
        "from tests.engines.example.model import Points, TinyNet, loss\n"
        "s = TrainSettings(out=sys.argv[1], steps=2, batch_size=16, checkpoint_every=1, progress=False, ema_decay=None)\n"
        "try:\n"
        "    train(TinyNet(width=256), Points(40), loss, s)\n"
        "except OSError as exc:\n"
        "    print(errno.errorcode.get(exc.errno), exc.filename, exc.strerror)\n")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("backend", "shared", "."))}
    free = subprocess.run([sys.executable, "-c", script, str(tmp_path / "free")], env=env, capture_output=True,
                          text=True, timeout=300, cwd=root)
    assert free.returncode == 0 and not free.stdout, free.stderr
    saved = {f.name: f.stat().st_size for f in next((tmp_path / "free" / "checkpoints").iterdir()).iterdir()}
    assert saved["optimizer.bin"] > 1.5 * saved["model.safetensors"], saved
    limit = (saved["optimizer.bin"] + saved["model.safetensors"]) // 2  # the model's weights pass, torch's state not
    run = subprocess.run([sys.executable, "-c", script, str(tmp_path / "limited")], env=env, capture_output=True,
                         text=True, timeout=300, cwd=root,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert run.returncode == 0 and run.stdout.startswith("EFBIG ") and "File too large" in run.stdout, (run.stdout,
                                                                                                      run.stderr)
