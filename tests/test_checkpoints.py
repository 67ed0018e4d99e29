"""Damaged and hand-edited checkpoint folders: ``load_model`` refuses each with a CheckpointError that
names the folder and what is wrong, before building a model its config makes absurdly large."""

from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from handforge.engines.checkpoints import CheckpointError, checkpoint_problem, load_model, save_model
from tests.engines.example.model import TinyNet

WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture
def folder(tmp_path):
    torch.manual_seed(0)
    return save_model(TinyNet(), tmp_path / "model")


def edit_config(folder, **values):
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **values}))


@pytest.mark.parametrize("width, says", [(10**12, "sets width to 1000000000000, more than the 115 values"),
                                         (10**5, "sets width to 100000, more than the 115 values"),
                                         (16.0, "sets width to 16.0, not a whole number"),
                                         ("16", "sets width to '16', not a whole number"),
                                         (True, "sets width to True, not a whole number")])
def test_a_config_size_that_cannot_fit_the_weights_is_refused_before_the_model_is_built(folder, monkeypatch,
                                                                                        width, says):
    # width 10**12 made from_pretrained allocate 12 TB for the first layer (an allocator error at best, the
    # machine's memory at worst), num_layers 10**5 of the motion model built layers for minutes
    edit_config(folder, width=width)
    built = []
    monkeypatch.setattr(TinyNet, "from_pretrained", classmethod(lambda cls, *a, **k: built.append(a)))
    with pytest.raises(CheckpointError, match=f"{folder}: cannot load the TinyNet checkpoint: its config.json {says}"):
        load_model(TinyNet, folder)
    assert not built


def _engine_models():
    """A tiny model of each engine's class, by name (built when a test asks: importing them takes seconds)."""
    from handforge.engines.interaction.model import InteractionDenoiser
    from handforge.engines.motion.model import MotionDenoiser
    from handforge.engines.motion.representation import FRAME_DIM
    from handforge.engines.transfer.model import TargetGenerator
    from handforge.evaluation.feature_models import FrameNet, MotionNet

    return {
        "MotionDenoiser": lambda: MotionDenoiser(d_model=32, num_layers=1, num_heads=2, ff_size=64,
                                                 data_mean=[0.0] * FRAME_DIM, data_std=[1.0] * FRAME_DIM),
        "InteractionDenoiser": lambda: InteractionDenoiser(width=8, hidden=16, layers=1, heads=2),
        "TargetGenerator": lambda: TargetGenerator(cross_attention_dim=16, image_size=32, backbone_channels=(8, 8),
                                                   feature_dim=16, num_layers=1, num_heads=2, num_queries=2,
                                                   pose_tokens=2),
        "FrameNet": lambda: FrameNet(hidden=8, feature_dim=8),
        "MotionNet": lambda: MotionNet(channels=8, feature_dim=8)}


@pytest.mark.parametrize("model, key, value, says", [
    # max_frames 0 loaded, then every job refused its window as "longer than the model's 0 frames"
    ("MotionDenoiser", "max_frames", 0, "0, not a whole number of at least 2 (the default is 512)"),
    ("MotionDenoiser", "max_frames", 1, "1, not a whole number of at least 2"),
    ("MotionDenoiser", "num_layers", 0, "0, not a whole number of at least 1 (the default is 4)"),
    ("MotionDenoiser", "num_train_timesteps", 0, "0, not a whole number of at least 1"),  # loaded: "exceeds 0 steps"
    ("MotionDenoiser", "d_model", 33, "33, not a whole number that is even"),  # its sinusoidal embeddings
    ("MotionDenoiser", "num_heads", 3, "3, not a whole number dividing d_model's 32"),  # was torch's AssertionError
    ("MotionDenoiser", "fps", 0, "0, not a finite number above 0 (the default is 30.0)"),
    ("MotionDenoiser", "fps", float("nan"), "nan, not a finite number"),
    ("MotionDenoiser", "fps", True, "True, not a finite number"),  # loaded as 1 fps
    ("MotionDenoiser", "dropout", float("nan"), "nan, not a finite number"),  # loaded (torch lets NaN through)
    ("MotionDenoiser", "data_mean", [float("nan")] * 198, "[nan, nan, nan, nan, nan, nan, ...], not finite numbers"),
    ("InteractionDenoiser", "heads", 3, "3, not a whole number dividing width's 8"),
    ("InteractionDenoiser", "layers", -1, "-1, not a whole number of at least 1"),
    ("InteractionDenoiser", "skips", [-1], "[-1], not a list of whole numbers each of at least 0"),  # loaded
    ("InteractionDenoiser", "beta_schedule", "foo",  # loaded, then every job failed making its scheduler
     "'foo', not a string among 'linear', 'scaled_linear', 'squaredcos_cap_v2'"),
    ("InteractionDenoiser", "condition_dropout", float("nan"), "nan, not a finite number"),  # loaded
    ("TargetGenerator", "num_heads", 3, "3, not a whole number dividing feature_dim's 16"),
    ("TargetGenerator", "backbone_channels", [0, 8], "[0, 8], not a list of whole numbers each of at least 1"),
    # trained (at batches above one) before `train transfer` refused it, then torch's "Expected more than 1 value
    # per channel" traceback in `eval transfer` and each ihpt job, which run one image at a time
    ("TargetGenerator", "image_size", 2, "2, not a whole number large enough for backbone_channels [8, 8] that no "
                                         "block of width 8 or less sees a 1×1 map (one value in each GroupNorm "
                                         "group: it cannot run one image at a time) (the default is 224)"),
    ("FrameNet", "hidden", -1, "-1, not a whole number of at least 1"),
    ("MotionNet", "kernel", 4, "4, not a whole number that is odd"),  # the convolutions change the length
    ("MotionNet", "dilations", [0, 1], "[0, 1], not a list of whole numbers each of at least 1"),
])
def test_a_config_value_that_makes_no_working_model_is_refused_naming_the_key(tmp_path, model, key, value, says):
    """A hand-edited or damaged config.json: each value that makes no working model of an engine is refused at
    load, saying the file, the key, the value and what is allowed (some loaded and failed in every job, others
    failed in torch's words: "embed_dim must be divisible by num_heads")."""
    torch.manual_seed(0)
    net = _engine_models()[model]()
    folder = save_model(net, tmp_path / "model")
    edit_config(folder, **{key: value})
    with pytest.raises(CheckpointError) as refused:
        load_model(type(net), folder)
    assert str(refused.value).startswith(f"{folder}: cannot load the {model} checkpoint: its config.json sets {key} "
                                         f"to {says}"), str(refused.value)
    assert str(refused.value).endswith("; correct it, or save or train the model again")


def _light_configs():
    """Each engine model's ModelConfig, as its status line reads it (without the model's module), by class name."""
    from handforge.engines.interaction.model_config import INTERACTION_DENOISER
    from handforge.engines.motion.model_config import MOTION_DENOISER
    from handforge.engines.transfer.model_config import TARGET_GENERATOR

    return {spec.name: spec for spec in (MOTION_DENOISER, INTERACTION_DENOISER, TARGET_GENERATOR)}


@pytest.mark.parametrize("model, key, value", [("MotionDenoiser", "max_frames", 0), ("MotionDenoiser", "fps", True),
                                               ("MotionDenoiser", "num_layers", 10**6),  # more than its weights' values
                                               ("InteractionDenoiser", "skips", [-1]),
                                               ("TargetGenerator", "num_heads", 3),
                                               ("TargetGenerator", "image_size", 3),
                                               # another number of layers than the weights hold: were ready, then
                                               # the load met weights its model has not (or lacks)
                                               ("MotionDenoiser", "num_layers", 2),
                                               ("InteractionDenoiser", "attention_layers", 1),
                                               ("InteractionDenoiser", "layers", 3),
                                               ("TargetGenerator", "num_layers", 2),
                                               ("TargetGenerator", "backbone_channels", [8])])
def test_an_engines_status_line_refuses_a_config_the_load_refuses_in_the_same_words(tmp_path, model, key, value):
    """The engines' status lines read the checkpoint's class only: a config.json out of limits, or of another
    number of layers than its weights hold, was ready (no note, ihpt available) until a job loaded it."""
    torch.manual_seed(0)
    net = _engine_models()[model]()
    folder = save_model(net, tmp_path / "model")
    assert checkpoint_problem(folder, _light_configs()[model]) == ""
    edit_config(folder, **{key: value})
    with pytest.raises(CheckpointError) as refused:
        load_model(type(net), folder)
    assert checkpoint_problem(folder, _light_configs()[model]) == str(refused.value)
    assert checkpoint_problem(folder, type(net)) == str(refused.value)  # (the class itself, where it is imported)


def test_the_light_model_configs_are_those_of_their_classes():
    """What the status lines check a config.json against is kept beside the model classes (which import torch
    and diffusers): the same defaults and limits, or a status line and the load would disagree."""
    from handforge.engines.checkpoints import model_config

    models = _engine_models()
    for name, spec in _light_configs().items():
        assert model_config(type(models[name]())) == spec, name
        # each count names the blocks the class makes of it (a wrong prefix refused every checkpoint)
        net = models[name]()
        for key, prefixes in spec.counts.items():
            value = net.config[key]
            for prefix in prefixes:
                held = {n[len(prefix) + 1:].split(".")[0] for n in net.state_dict() if n.startswith(prefix + ".")}
                assert held == {str(i) for i in range(len(value) if isinstance(value, (list, tuple)) else value)}, \
                    (name, key, prefix)


def test_weights_the_model_has_not_are_refused(folder):
    # dropped with a log line before: a config.json with fewer layers than its weights loaded a smaller model
    tensors = load_file(folder / WEIGHTS)
    save_file({**tensors, "layers.9.weight": torch.zeros(3)}, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match="has 1 weights its model has not \\(e.g. layers.9.weight\\)"):
        load_model(TinyNet, folder)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_that_are_not_finite_are_refused(folder, bad, dtype):
    tensors = {name: tensor.to(dtype) for name, tensor in load_file(folder / WEIGHTS).items()}
    tensors["layers.0.weight"][0, 0] = bad
    save_file(tensors, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match=f"{folder}: .* not finite \\(NaN or infinity\\) in layers.0.weight") \
            as refused:
        load_model(TinyNet, folder)
    # a status line that reads the weights' values says it in the same words (bfloat16 too, which numpy has not);
    # one that reads their header only cannot
    assert checkpoint_problem(folder, TinyNet, finite=True) == str(refused.value)
    assert checkpoint_problem(folder, TinyNet) == ""


def test_weights_beyond_the_range_of_the_dtype_asked_for_say_so(folder):
    # a finite float32 weight of 1e6 is infinite in float16: that said "its training diverged", and training
    # again would not have helped
    tensors = load_file(folder / WEIGHTS)
    tensors["layers.0.weight"][0, 0] = -1e6
    save_file(tensors, folder / WEIGHTS)
    assert load_model(TinyNet, folder).layers[0].weight[0, 0] == -1e6
    with pytest.raises(CheckpointError, match=f"{folder}: the TinyNet checkpoint holds layers.0.weight up to 1e\\+06 "
                                              "in torch.float32, beyond the range of the torch.float16 it was loaded "
                                              "in \\(±6.55e\\+04\\); load it in torch.float32$"):
        load_model(TinyNet, folder, dtype=torch.float16)
    tensors["layers.0.weight"][0, 0] = float("inf")  # infinite in the file too: diverged, whatever the dtype
    save_file(tensors, folder / WEIGHTS)
    with pytest.raises(CheckpointError, match="not finite \\(NaN or infinity\\) in layers.0.weight: its training"):
        load_model(TinyNet, folder, dtype=torch.float16)
    # each weight within float16, their sum beyond it: the check sums first, then looks closer (loaded)
    tensors["layers.0.weight"] = torch.full_like(tensors["layers.0.weight"], 60000.0)
    save_file(tensors, folder / WEIGHTS)
    assert load_model(TinyNet, folder, dtype=torch.float16).layers[0].weight.sum().isinf()
    assert checkpoint_problem(folder, TinyNet, finite=True) == ""


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b[:20], lambda b: b"",
                                    lambda b: (10**15).to_bytes(8, "little") + b"{}"])
def test_a_damaged_weights_file_is_named(folder, damage):
    # (truncated, header only, empty, a header length of 1 PB: safetensors' own checks, said with the file)
    weights = folder / WEIGHTS
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(CheckpointError, match=f"{weights}: not a readable safetensors weights file \\(Error while "
                                              "deserializing header: .*truncated or not safetensors"):
        load_model(TinyNet, folder)


def test_a_config_nested_too_deeply_is_named(folder):
    """A config.json nested thousands deep was a RecursionError traceback (handforge eval motion --checkpoint)."""
    (folder / "config.json").write_text("[" * 100_000)
    with pytest.raises(CheckpointError, match=r"config.json: not a readable model config \(nested too deeply: "):
        load_model(TinyNet, folder)
    assert checkpoint_problem(folder, TinyNet).startswith(f"{folder / 'config.json'}: not a readable model config")


@pytest.mark.parametrize("replace", ["remove", "directory", "symlink loop"])
def test_a_missing_weights_file_is_named(folder, replace):
    # said 'no file named diffusion_pytorch_model.bin', after a warning about unsafe pickle serialization
    weights = folder / WEIGHTS
    weights.unlink()
    if replace == "directory":
        weights.mkdir()
    elif replace == "symlink loop":
        weights.symlink_to(weights)
    with pytest.raises(CheckpointError, match=f"{folder}: the checkpoint has no weights file {WEIGHTS}"):
        load_model(TinyNet, folder)


def test_a_checkpoint_setting_that_names_a_file_says_so(folder):
    """motion.checkpoint set to a file (e.g. the weights inside the folder) was "no such checkpoint folder"."""
    weights = next(folder.glob("*.safetensors"))
    with pytest.raises(CheckpointError, match="is a file, not a checkpoint folder: give the folder holding it"):
        load_model(TinyNet, weights)
    assert "is a file, not a checkpoint folder" in checkpoint_problem(weights, TinyNet)  # the engine's status line
    assert "no such checkpoint folder" in checkpoint_problem(folder / "missing", TinyNet)


def test_a_training_runs_folder_names_its_model_folder(folder):
    """--checkpoint RUN (the folder `handforge train` wrote, its model in RUN/model) said only "it has no
    config.json"."""
    run = folder.parent  # (the fixture saved the model into <tmp>/model, as a run does)
    with pytest.raises(CheckpointError, match=f"it has no config.json: give {folder}, the run's model$"):
        load_model(TinyNet, run)
    (run / "empty").mkdir()
    assert checkpoint_problem(run / "empty", TinyNet).endswith("it has no config.json")  # no model/ in it: no hint


def test_a_config_that_does_not_fit_its_weights_is_said_without_diffusers_python_advice(tmp_path):
    """An edited config.json: diffusers' ValueError, passed on, advised `low_cpu_mem_usage=False` and
    `ignore_mismatched_sizes=True`, which no command takes (and which would load random weights)."""
    from handforge.engines.interaction.model import InteractionDenoiser

    folder = save_model(InteractionDenoiser(width=8, hidden=16, layers=1), tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden": 24}))
    with pytest.raises(CheckpointError) as refused:
        load_model(InteractionDenoiser, folder)
    message = str(refused.value)
    assert "its config.json does not fit its weights: " in message and "[24] by the config, [16] in the weights" \
        in message and "save or train it again" in message, message
    assert "ignore_mismatched_sizes" not in message


def test_a_full_disk_while_saving_is_an_os_error_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    """safetensors says a full disk as a SafetensorError ("... (os error 28)"): a traceback from `handforge train`
    when its model was saved, where every other full disk is one line (the OSError the CLI puts in words)."""
    import errno

    import safetensors.torch
    from safetensors import SafetensorError

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"\0" * 64)  # as far as it got
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError) as raised:
        save_model(TinyNet(width=8), tmp_path / "model")
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []  # no model/, no hidden .model.part-*


def test_a_status_line_reads_a_checkpoint_again_only_when_its_files_change(folder, monkeypatch):
    """Engine statuses are asked at every submit, on the server's loop: the config and weights header were read
    each time (~0.5 ms a checkpoint). They are read once, and again when a file changes (its stat signature), or
    while a file is too new for its stat to tell a change within the clock's granularity."""
    import os

    from handforge.engines import checkpoints

    reads = []
    config = checkpoints._config
    monkeypatch.setattr(checkpoints, "_config", lambda path: reads.append(path) or config(path))
    files = [p for p in folder.iterdir()]
    for file in files:  # written just now: not kept
        os.utime(file, ns=(time.time_ns(), time.time_ns()))
    assert [checkpoint_problem(folder, TinyNet) for _ in range(2)] == ["", ""] and len(reads) == 2
    old = time.time_ns() - 10**10
    for file in files:
        os.utime(file, ns=(old, old))
    assert [checkpoint_problem(folder, TinyNet) for _ in range(3)] == ["", "", ""] and len(reads) == 3
    edit_config(folder, width=10**5)  # a change: read again, and refused (more than its weights hold)
    for file in files:
        os.utime(file, ns=(old + 10**9, old + 10**9))
    problem = checkpoint_problem(folder, TinyNet)
    assert problem != "" and len(reads) == 4 and checkpoint_problem(folder, TinyNet) == problem and len(reads) == 4


def test_a_status_line_of_a_folder_without_its_config_follows_what_is_outside_it(tmp_path):
    """Its answer depends on what its files' signature does not hold: whether the folder exists (empty, the
    signature of none), and the run's model/ beside a training checkpoint, written when the run ends."""
    import os

    step = tmp_path / "run" / "checkpoints" / "step-4"
    step.mkdir(parents=True)
    (step / "optimizer.bin").write_bytes(b"state")
    old = time.time_ns() - 10**10
    os.utime(step / "optimizer.bin", ns=(old, old))
    assert checkpoint_problem(step, TinyNet).endswith("give the run's model/ folder, which it writes when it ends")
    save_model(TinyNet(width=8), tmp_path / "run" / "model")
    # before: the first answer, kept while step-4's files stayed as they were
    assert checkpoint_problem(step, TinyNet).endswith(f"give {tmp_path / 'run' / 'model'}, the run's model")
    later = tmp_path / "later"
    assert "no such checkpoint folder" in checkpoint_problem(later, TinyNet)
    later.mkdir()  # before: still 'no such checkpoint folder' (no file in it either way)
    assert checkpoint_problem(later, TinyNet) == f"{later}: not a checkpoint folder, it has no config.json"


def test_a_checkpoints_saved_config_is_read_again_only_when_its_files_change(folder, monkeypatch):
    """Motion and interaction submits read the checkpoint's config to refuse what the model cannot take: read once
    while its files stay as they are (beside the status line's answer for the same class, not mistaken for it)."""
    import os

    from handforge.engines import checkpoints
    from handforge.engines.checkpoints import model_config, saved_config

    spec = model_config(TinyNet)
    old = time.time_ns() - 10**10
    for file in folder.iterdir():
        os.utime(file, ns=(old, old))
    reads = []
    config = checkpoints._config
    monkeypatch.setattr(checkpoints, "_config", lambda path: reads.append(path) or config(path))
    assert checkpoint_problem(folder, spec) == "" and saved_config(folder, spec)["width"] == 16
    assert saved_config(folder, spec)["width"] == 16 and checkpoint_problem(folder, spec) == "" and len(reads) == 2
    saved_config(folder, spec)["width"] = 3  # (a copy: the remembered one stays)
    edit_config(folder, width=17)
    for file in folder.iterdir():
        os.utime(file, ns=(old + 10**9, old + 10**9))
    assert saved_config(folder, spec)["width"] == 17 and len(reads) == 3


def test_a_file_rewritten_with_its_size_and_mtime_kept_is_read_again(folder):
    """A config.json rewritten in place, its size the same and its mtime put back (``cp --preserve=timestamps``,
    ``touch -r``; as a ``chmod`` that makes an unreadable one readable, only its ctime tells): the remembered
    config and status line were served for it, the old file's, until the server restarted."""
    import os

    from handforge.engines.checkpoints import config_json

    file = folder / "config.json"
    old = time.time_ns() - 10**10
    for each in folder.iterdir():
        os.utime(each, ns=(old, old))
    assert config_json(file)["width"] == 16 and checkpoint_problem(folder, TinyNet) == ""
    time.sleep(0.05)  # (a ctime tick later, as any edit by hand is)
    file.write_text(file.read_text().replace('"width": 16', '"width": -1'))  # the same size, the same inode
    os.utime(file, ns=(old, old))
    assert config_json(file)["width"] == -1
    assert "sets width to -1" in checkpoint_problem(folder, TinyNet)


def test_a_remembered_read_error_is_raised_afresh_each_time(tmp_path):
    """An unreadable config.json's error is remembered, and was raised as the one same exception object at every
    ask: a later ask's traceback carried an earlier caller's exception as its context ("During handling of the
    above exception..." in the server's log, of another request), kept alive with its frames, and two threads
    raising it at once wrote one traceback over the other's."""
    import os

    from handforge.engines.checkpoints import config_json

    file = tmp_path / "config.json"
    file.write_text("{not json")
    old = time.time_ns() - 10**10
    os.utime(file, ns=(old, old))
    with pytest.raises(ValueError) as first:
        config_json(file)
    try:
        raise KeyError("another request's")
    except KeyError:
        with pytest.raises(ValueError):
            config_json(file)
    with pytest.raises(ValueError) as later:
        config_json(file)
    assert later.value is not first.value and str(later.value) == str(first.value)
    assert later.value.__context__ is None


def test_a_checkpoint_saved_over_another_is_never_missing_to_a_reader(tmp_path):
    """A reader (the server loading the model a training run is saving over) looked for the folder between
    its two renames (old out, new in) and found nothing: "no checkpoint". Swapped in one call (renameat2's
    RENAME_EXCHANGE), a process polling the folder as fast as it can always finds its config, old or new."""
    import subprocess
    import sys

    from handforge.engines.checkpoints import atomic_folder

    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "config.json").write_text("{}")
    stop = tmp_path / "stop"
    poll = ("import os, sys\nmissing = polls = 0\n"
            f"config, stop = {str(folder / 'config.json')!r}, {str(stop)!r}\n"
            "print('ready', flush=True)\n"
            "while True:\n"
            "    polls += 1\n"
            "    if not os.path.isfile(config):\n"
            "        missing += 1\n"
            "    if polls % 256 == 0 and os.path.exists(stop):\n"
            "        break\n"
            "print(missing, polls)\n")
    reader = subprocess.Popen([sys.executable, "-c", poll], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "ready"
        for save in range(300):
            with atomic_folder(folder) as tmp:
                (tmp / "config.json").write_text(json.dumps({"save": save}))
        stop.touch()
        missing, polls = map(int, reader.communicate(timeout=60)[0].split())
    finally:
        reader.kill()
    assert missing == 0 and polls > 1000, (missing, polls)
    assert json.loads((folder / "config.json").read_text()) == {"save": 299}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "stop"]  # no .model.part-* / .old-* left


@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_a_checkpoint_saved_over_another_where_ctypes_cannot_open_the_process_itself(tmp_path, monkeypatch,
                                                                                     platform):
    """Windows's ctypes.CDLL(None) raises TypeError (not the AttributeError/OSError caught): saving a checkpoint
    over an existing folder crashed there. Emulated: CDLL(None) raising TypeError (on Linux and as win32, where
    renameat2 is not even looked for); the two-rename path replaces the folder and leaves nothing beside it."""
    import ctypes
    import sys

    from handforge.engines.checkpoints import atomic_folder

    real = ctypes.CDLL

    def cdll(name, *args, **kwargs):
        if name is None:
            raise TypeError("LoadLibrary() argument 1 must be str, not None")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    monkeypatch.setattr(sys, "platform", platform)
    folder = tmp_path / "model"
    for save in range(2):
        with atomic_folder(folder) as tmp:
            (tmp / "config.json").write_text(json.dumps({"save": save}))
    assert json.loads((folder / "config.json").read_text()) == {"save": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_checkpoint_folder_held_a_moment_on_windows_is_replaced_once_free(tmp_path, monkeypatch):
    """On Windows a folder cannot be renamed while another process (an antivirus scanning the weights just
    written) holds one of its files: the save failed there at once. Both renames of the save over an existing
    checkpoint are tried again for about a second (``replace_held``); the new checkpoint lands whole, nothing
    is left beside it. Emulated: sys.platform win32 (no renameat2 swap), each rename refused once."""
    from handforge.engines.checkpoints import atomic_folder
    from tests.support.windows import held_replace

    folder = tmp_path / "model"
    with atomic_folder(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps({"save": 0}))
    tries, slept = held_replace(monkeypatch, "win32", refusals=1, each=True)
    with atomic_folder(folder) as tmp:
        (tmp / "config.json").write_text(json.dumps({"save": 1}))
    assert len(tries) == 4 and len(slept) == 2, tries
    assert json.loads((folder / "config.json").read_text()) == {"save": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
