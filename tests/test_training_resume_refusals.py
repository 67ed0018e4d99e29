"""The training loop's refusals before a run or its resume: a damaged checkpoint said in one line, with advice that holds;
an --out through a dangling link."""

from __future__ import annotations

import pytest

from handforge.training.loop import TrainingError, TrainSettings, train
from tests.engines.example.model import Points, TinyNet, loss


def _settings(out, **overrides) -> TrainSettings:
    base = dict(out=out, steps=8, batch_size=16, lr=3e-3, seed=7, ema_decay=0.9, checkpoint_every=2,
                log_every=1, progress=False)
    return TrainSettings(**{**base, **overrides})


def _model() -> TinyNet:
    return TinyNet(width=16, dropout=0.1)


def test_a_damaged_checkpoint_is_said_in_one_line(tmp_path):
    """accelerate's error for a checkpoint missing its EMA file spans four lines ("Number of custom checkpoints
    ... does not match ...:\\n\\tFound checkpoints: 0\\n\\tRegistered objects: 1\\nPlease make sure ..."): they were
    printed as they were, one refusal in four lines on the terminal."""
    run = tmp_path / "run"
    train(_model(), Points(40), loss, _settings(run, stop_after=4))
    (run / "checkpoints" / "step-00000004" / "custom_checkpoint_0.pkl").unlink()
    with pytest.raises(TrainingError) as refused:
        train(_model(), Points(40), loss, _settings(run))
    said = str(refused.value)
    assert "\n" not in said and "\t" not in said, said
    assert "Found checkpoints: 0 Registered objects: 1" in said and "delete its folder" in said, said


def test_a_damaged_only_checkpoint_is_not_said_to_have_one_before_it(tmp_path):
    """A run stopped after its first checkpoint, that checkpoint damaged: the refusal said "delete its folder ...
    to resume from the checkpoint before it", and there was none: the rerun after the deletion trained from step 0
    (its log rewritten), said as a plain "wrote ..." line, not the resume the message had promised."""
    run = tmp_path / "run"
    train(_model(), Points(40), loss, _settings(run, checkpoint_every=4, stop_after=4))
    only = run / "checkpoints" / "step-00000004"
    weights = only / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(TrainingError) as refused:
        train(_model(), Points(40), loss, _settings(run, checkpoint_every=4))
    said = str(refused.value)
    assert "checkpoint before it" not in said, said
    assert f"delete its folder {only} to start the run over (it is the run's only checkpoint)" in said, said
    (only / "step.json").write_text("{")  # (the step's record: said by the settings' check, before the model)
    with pytest.raises(TrainingError, match="step.json cannot be read .*to start the run over"):
        train(_model(), Points(40), loss, _settings(run, checkpoint_every=4))
    # with a checkpoint before it, the words stay
    run2 = tmp_path / "run2"
    train(_model(), Points(40), loss, _settings(run2, stop_after=4))
    newest = run2 / "checkpoints" / "step-00000004" / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.raises(TrainingError, match="to resume from the checkpoint before it"):
        train(_model(), Points(40), loss, _settings(run2))


@pytest.mark.parametrize("below", ["", "run"])
def test_an_out_folder_through_a_dangling_link_is_refused_before_the_data_is_read(below, tmp_path):
    """--out a link to nothing (a moved disk, a typo), or a loop of links, or a folder below one: the engine read its
    data and built its model, then train()'s mkdir failed and the command line said "handforge train: LINK: File
    exists: fix it (or choose another --out); run the same command again to resume from the run's newest checkpoint",
    a resume that did not exist and a rerun that failed the same way."""
    from handforge.training.loop import check_settings

    dangling, loop = tmp_path / "dangling", tmp_path / "loop"
    dangling.symlink_to(tmp_path / "moved")
    loop.symlink_to(loop)
    for link in (dangling, loop):
        out = link / below if below else link
        with pytest.raises(TrainingError) as refused:
            check_settings(_settings(out))
        assert str(refused.value) == (f"{link} is a link to {link.readlink()}, which does not exist (or is a loop of "
                                      "links): make the folder it names, or choose another out folder"), refused.value
    assert not (tmp_path / "moved").exists()
