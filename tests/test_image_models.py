"""``handforge models``: what the image engines need, file checks against configs, import, fetch offline."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from handforge.cli import main
from safetensors.torch import load_file, save_file

from tests.support import tiny_sd
from tests.support.light_status import light_statuses
from tests.support.single_file_sd import write_single_file


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    sd = tiny_sd.build_sd(root / "sd")
    return root, sd, tiny_sd.build_controlnet(root / "guidance", sd)


def _image_settings(monkeypatch, root, sd, guidance):
    """The image engines' settings from the environment: ``sd`` and the guidance module ``guidance``, no
    ControlNets, no config file."""
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    monkeypatch.delenv("HANDFORGE_CONTROLNETS", raising=False)


def test_list_says_what_each_engine_needs(weights, monkeypatch, capsys):
    root, sd, guidance = weights
    _image_settings(monkeypatch, root, sd, guidance)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "attentionhand: ready" in out and "controlnet: not ready: image.controlnets is not set" in out
    assert "image.controlnets = - [not set]" in out and "HANDFORGE_CONTROLNETS" in out
    # --json after `list` too (it was refused as an unrecognised argument), and before it
    for argv in (["models", "list", "--json"], ["models", "--json", "list"], ["models", "--json"]):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["attentionhand"]["ready"] is True
    # an SD folder as the guidance module exists, but no server runs it: it said "ready" where the server did not
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(sd))
    assert main(["models"]) == 0
    assert f"attentionhand: not ready: image.guidance = {sd}: not a checkpoint folder" in capsys.readouterr().out
    # an empty folder set as the SD model or the ControlNets' folder exists, but holds nothing: it was [ok]
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(empty))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(empty))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert (f"image.sd_model = {empty} [incomplete: no unet/, vae/, text_encoder/, tokenizer/, scheduler/]" in out
            and f"see `handforge models check {empty}`" in out), out
    assert f"image.controlnets = {empty} [incomplete: no ControlNet folder (with a config.json) in it]" in out, out
    # and the engines are not ready, as the server says (an empty folder made them available, the first click failed)
    assert f"attentionhand: not ready: image.sd_model = {empty}: no unet/" in out, out
    # checked without --kind, the empty folder is taken for a ControlNet: said, with the other choice
    assert main(["models", "check", str(empty)]) == 1
    assert (f"checking {empty} as a ControlNet folder (it has no unet/): --kind sd checks it as an SD model"
            in capsys.readouterr().out)
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["controlnet"]["needs"]
    assert [row["present"] for row in rows] == [False, False], rows


def test_list_says_a_weights_file_cut_short_is_damaged_and_how_to_mend_it(weights, monkeypatch, tmp_path, capsys):
    """A weights file cut in half (an interrupted download or copy) was listed [ok] and its engine ready; every job
    then failed at its load. Said from the file's header and length, no weights read."""
    root, sd, guidance = weights
    damaged_sd, damaged_guidance = tmp_path / "sd", tmp_path / "guidance"
    shutil.copytree(sd, damaged_sd)
    shutil.copytree(guidance, damaged_guidance)
    shutil.copytree(guidance, tmp_path / "controlnets" / "control_sd15_depth")
    for file in (damaged_sd / "unet" / "diffusion_pytorch_model.safetensors",
                 damaged_guidance / "diffusion_pytorch_model.safetensors",
                 tmp_path / "controlnets" / "control_sd15_depth" / "diffusion_pytorch_model.safetensors"):
        whole = file.read_bytes()
        file.write_bytes(whole[:len(whole) // 2])
    cut = f"is damaged (cut short: {len(whole) // 2:,} of the {len(whole):,} bytes its header says)"
    _image_settings(monkeypatch, root, damaged_sd, guidance)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    said = "unet/diffusion_pytorch_model.safetensors is damaged (cut short: "
    assert f"attentionhand: not ready: image.sd_model = {damaged_sd}: {said}" in out, out
    assert f"image.sd_model = {damaged_sd} [incomplete: {said}" in out, out
    assert "download or copy the SD model again (handforge models fetch sd15)" in out, out
    _image_settings(monkeypatch, root, sd, damaged_guidance)
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(tmp_path / "controlnets"))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert (f"attentionhand: not ready: image.guidance = {damaged_guidance / 'diffusion_pytorch_model.safetensors'} "
            f"{cut}: train, import or download it again") in out, out
    assert f"image.guidance = {damaged_guidance} [incomplete: diffusion_pytorch_model.safetensors {cut}" in out, out
    assert ("controlnet: not ready: image.controlnets: " f"{tmp_path / 'controlnets' / 'control_sd15_depth'}/"
            f"diffusion_pytorch_model.safetensors {cut}") in out, out


def test_check_passes_good_files_and_names_bad_ones(weights, tmp_path, capsys):
    _, sd, guidance = weights
    assert main(["models", "check", str(sd)]) == 0
    assert main(["models", "check", str(guidance), "--hash"]) == 0
    out = capsys.readouterr().out
    assert "ok  sd" in out and "sha256" in out and "F32" in out
    bad = tmp_path / "bad"
    shutil.copytree(guidance, bad)
    tensors = load_file(bad / "diffusion_pytorch_model.safetensors")
    name = next(k for k in tensors if k.endswith("conv_in.weight"))
    tensors[name] = tensors[name][:, :2].contiguous()
    del tensors[next(k for k in tensors if "mid_block" in k)]
    save_file(tensors, bad / "diffusion_pytorch_model.safetensors")
    assert main(["models", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "1 tensors missing" in out and f"{name} (" in out and "wrong shape" in out
    (bad / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 100)
    assert main(["models", "check", str(bad)]) == 1
    assert "not a readable safetensors file" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["sd", "guidance", "controlnet", "target_generator"])
def test_a_missing_path_to_import_or_check_is_named_alone(kind, tmp_path, capsys):
    # it was checked as weights: an SD folder's five parts were each listed as missing
    missing = str(tmp_path / "nothere")
    for action in ("import", "check"):
        with pytest.raises(SystemExit) as exit_:
            main(["models", action, missing, "--kind", kind])
        assert exit_.value.code == 2
        assert capsys.readouterr().err.splitlines() == [
            f"handforge models {action}: error: argument path: no such file or folder {missing!r} "
            f"(see handforge models {action} --help)"]
    assert list(tmp_path.iterdir()) == []


def test_import_copies_checked_weights_and_fetch_without_network_is_a_clear_error(weights, tmp_path, monkeypatch,
                                                                                   capsys):
    guidance = weights[2]
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models", "import", str(guidance), "--kind", "guidance", "--name", "mine"]) == 0
    assert (tmp_path / "models" / "guidance" / "mine" / "config.json").is_file()
    assert 'guidance = "' in capsys.readouterr().out
    assert main(["models", "import", str(guidance), "--kind", "guidance", "--name", "mine"]) == 2
    assert "exists" in capsys.readouterr().err
    # a path as --name: copied outside the models folder ("/x" replaced it in the join, "../x" climbed out)
    for name in (str(tmp_path / "elsewhere"), "../escaped", "", ".."):
        assert main(["models", "import", str(guidance), "--kind", "guidance", "--name", name]) == 2
        assert "one folder name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["guidance"]
    # a copy that fails part-way (a full disk) leaves nothing under the name, and says so in one line
    copytree = shutil.copytree

    def copy_then_fail(src, dst, **_):
        copytree(src, dst)
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("handforge.engines.image.weights.shutil.copytree", copy_then_fail)
    assert main(["models", "import", str(guidance), "--kind", "guidance", "--name", "full"]) == 1
    assert "could not copy" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "models" / "guidance").iterdir()) == ["mine"]
    monkeypatch.undo()
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models", "fetch", "controlnet-depth"]) == 2
    err = capsys.readouterr().err
    assert "cannot download lllyasviel/control_v11f1p_sd15_depth" in err and "handforge models import" in err
    # a known name under another kind is refused before any download is tried
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda *a, **k: pytest.fail("downloaded"))
    assert main(["models", "fetch", "sd15", "--kind", "controlnet"]) == 2
    assert "sd15 is of kind sd, not controlnet: leave --kind out" in capsys.readouterr().err


def test_fetch_refuses_a_folder_there_keeps_nothing_partial_and_stops_at_once(weights, tmp_path, monkeypatch, capsys):
    """models fetch downloaded straight into its folder: over a folder of the artist's own weights (imported under
    the same name) it replaced them; offline, the hub handed back what an earlier try left and it said "downloaded";
    Ctrl-C waited for the file in flight. Now: refused, checked before it is renamed into place, stopped at once."""
    import shutil as sh
    import threading

    import huggingface_hub

    guidance = weights[2]  # a ControlNetModel folder: what a ControlNet download holds
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    target = tmp_path / "models" / "controlnets" / "control_v11f1p_sd15_depth"
    target.mkdir(parents=True)
    (target / "config.json").write_text('{"mine": true}')
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: pytest.fail("downloaded"))
    assert main(["models", "fetch", "controlnet-depth"]) == 2
    assert "exists (weights fetched or imported before)" in capsys.readouterr().err
    assert (target / "config.json").read_text() == '{"mine": true}'
    sh.rmtree(target)

    def incomplete(repo, local_dir, allow_patterns):  # (offline: whatever an earlier try left, here a config alone)
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        sh.copy(guidance / "config.json", Path(local_dir) / "config.json")
        return local_dir
    monkeypatch.setattr(huggingface_hub, "snapshot_download", incomplete)
    assert main(["models", "fetch", "controlnet-depth"]) == 2
    assert "the download of lllyasviel/control_v11f1p_sd15_depth is not whole" in capsys.readouterr().err
    assert list((tmp_path / "models" / "controlnets").iterdir()) == []  # nothing under the name, no partial left

    def whole(repo, local_dir, allow_patterns):
        sh.copytree(guidance, local_dir, dirs_exist_ok=True)
        return local_dir
    monkeypatch.setattr(huggingface_hub, "snapshot_download", whole)
    assert main(["models", "fetch", "controlnet-depth"]) == 0
    out, err = capsys.readouterr()
    assert f"downloaded into {target}" in out and (target / "diffusion_pytorch_model.safetensors").is_file()
    assert f"into {target}; its licence is on https://huggingface.co/lllyasviel/control_v11f1p_sd15_depth" in err
    assert [p.name for p in (tmp_path / "models" / "controlnets").iterdir()] == [target.name]

    from handforge.engines.image.weights import fetch

    # a download of a minute, and Ctrl-C half a second in (Python's own SIGINT handler: one an earlier test of the
    # suite leaves installed took the interrupt, and the fetch ran its minute)
    import signal

    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: time.sleep(60))
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.5, __import__("_thread").interrupt_main).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            fetch("controlnet-normal", models_dir=tmp_path / "other", say=lambda text: None)
        stopped = time.monotonic() - started
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stopped < 10, stopped  # (the download would have taken 60 s: before, Ctrl-C waited for it)
    # nothing left running (the hub's worker threads had kept the process alive until their files were in) or on disk
    import multiprocessing

    assert multiprocessing.active_children() == [] and list((tmp_path / "other" / "controlnets").iterdir()) == []


def _controlnet_for_wider_text(folder):
    """A ControlNet of an SD whose text is 48 wide (as an SD 2.x ControlNet is to SD 1.x: 1024 vs 768)."""
    import torch
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**{**tiny_sd.unet_config(), "cross_attention_dim": 48})
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).save_pretrained(str(folder))
    return folder


def test_controlnets_that_do_not_fit_the_sd_model_are_refused_when_loaded_and_checked(weights, tmp_path,
                                                                                     monkeypatch, capsys):
    # before: both engines reported available, `models check` said ok, and the job failed at its first step
    # with "internal: mat1 and mat2 shapes cannot be multiplied"
    from handforge.engines.image.loading import WeightsError, build_pipeline

    root, sd, guidance = weights
    wide = _controlnet_for_wider_text(tmp_path / "wide")
    with pytest.raises(WeightsError, match=r"does not fit .*cross_attention_dim is 48.*has 32 \(an SD 2.x model"):
        build_pipeline(sd, [guidance, wide])
    assert build_pipeline(sd, [guidance]).controlnet is not None
    _image_settings(monkeypatch, root, sd, wide)
    assert main(["models", "check"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED  controlnet  {wide}" in out and "does not fit the SD model" in out and f"ok  sd  {sd}" in out
    assert main(["models", "check", str(wide)]) == 0  # on its own, nothing to fit


def test_controlnets_that_do_not_fit_the_sd_model_make_no_ready_engine(weights, tmp_path):
    # before: with an SD model of another text width (SD 2.x's ControlNets on SD 1.x, or the reverse) `handforge
    # models` and welcome.engines said both engines ready (Blender's button lit), and every job failed at its load
    _, sd, guidance = weights
    wide = _controlnet_for_wider_text(tmp_path / "controlnets" / "control_sd21_depth")
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(sd),
           "HANDFORGE_IMAGE_GUIDANCE": str(wide), "HANDFORGE_CONTROLNETS": str(tmp_path / "controlnets")}
    statuses = light_statuses("from handforge.engines.image import jobs",
                              "{name: jobs.IMAGE_ENGINES[name].status().to_json() for name in jobs.IMAGE_ENGINES}", env)
    said = (f"{wide} does not fit the SD model {sd}: its cross_attention_dim is 48, the SD model's UNet has 32 "
            "(an SD 2.x model with SD 1.x ControlNets, or the reverse?)")
    for name in ("attentionhand", "controlnet"):
        assert not statuses[name]["available"] and said in statuses[name]["reason"], statuses[name]
    # the fix is an SD model of their width or nets made for this one (it said "correct them, or import the
    # ControlNets again", and "train or import the guidance module again", which mend nothing)
    assert statuses["controlnet"]["hint"] == ("point image.sd_model at an SD model whose UNet has cross_attention_dim "
                                              "48, as they were made for, or use ControlNets made for this SD model "
                                              "(cross_attention_dim 32)"), statuses["controlnet"]
    assert statuses["attentionhand"]["hint"].startswith(
        "point image.sd_model at an SD model whose UNet has cross_attention_dim 48, as it was made for, or use a "
        "guidance module made for this SD model"), statuses["attentionhand"]
    # one that fits beside it: ready with that one, the other said in the note
    shutil.copytree(guidance, tmp_path / "controlnets" / "control_sd15_depth")
    controlled = light_statuses("from handforge.engines.image import jobs",
                                "jobs.IMAGE_ENGINES['controlnet'].status().to_json()", env)
    assert controlled["available"] and controlled["note"].startswith(said), controlled


def test_a_model_of_another_class_among_the_controlnets_is_said_in_the_note(weights, tmp_path):
    # before: a UNet put in image.controlnets was passed over without a word until a job named it
    _, sd, guidance = weights
    shutil.copytree(guidance, tmp_path / "controlnets" / "control_sd15_depth")
    shutil.copytree(sd / "unet", tmp_path / "controlnets" / "my_unet")
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(sd),
           "HANDFORGE_IMAGE_GUIDANCE": str(guidance), "HANDFORGE_CONTROLNETS": str(tmp_path / "controlnets")}
    controlled = light_statuses("from handforge.engines.image import jobs",
                                "jobs.IMAGE_ENGINES['controlnet'].status().to_json()", env)
    assert controlled["available"] and controlled["note"] == ("image.controlnets: my_unet holds a "
                                                              "UNet2DConditionModel, not a ControlNet: passed over"), \
        controlled


def test_models_says_which_controlnets_of_a_ready_engine_are_broken(weights, tmp_path, monkeypatch, capsys):
    # before: `handforge models` said "controlnet: ready" and nothing more, while welcome.engines' note named the
    # ControlNet that fails every job naming no controls
    root, sd, guidance = weights
    _image_settings(monkeypatch, root, sd, guidance)
    shutil.copytree(guidance, tmp_path / "control_sd15_depth")
    wide = _controlnet_for_wider_text(tmp_path / "control_sd21_depth")
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(tmp_path))
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"controlnet: ready\n  note: {wide} does not fit the SD model {sd}" in out, out
    assert main(["models", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["controlnet"]["note"].startswith(f"{wide} does not fit")


@pytest.mark.parametrize("text", ["{unclosed", "[" * 100_000])  # (nested thousands deep)
def test_an_sd_unet_config_that_cannot_be_read_is_its_problem_not_a_traceback_from_the_controlnets(
        weights, tmp_path, monkeypatch, capsys, text):
    # before: check_sd named it, then each ControlNet's fit to that UNet read it again unguarded: a JSONDecodeError
    # (or RecursionError) traceback from `handforge models check`
    root, sd, guidance = weights
    damaged = tmp_path / "sd"
    shutil.copytree(sd, damaged)
    (damaged / "unet" / "config.json").write_text(text)
    _image_settings(monkeypatch, root, damaged, guidance)
    assert main(["models", "check"]) == 1
    out = capsys.readouterr().out
    # (said as what it is: a file that does not parse, not a JSON value that is no object)
    unet_config = damaged / "unet" / "config.json"
    assert f"FAILED  sd  {damaged}" in out and f"problem: {unet_config}: cannot be read as JSON (" in out
    assert f"ok  controlnet  {guidance}" in out and f"not checked against the SD model {damaged}" in out, out


def test_single_files_that_cannot_load_are_weights_errors(weights, tmp_path):
    # before: a single-file ControlNet looked up an unrelated Hub repository offline, and a single file
    # that is not an SD checkpoint escaped as SingleFileComponentError (the job said "internal")
    import torch
    from handforge.engines.image.loading import WeightsError, load_controlnet, load_sd

    _, sd, guidance = weights
    with pytest.raises(WeightsError, match="is one file: ControlNets are read from diffusers folders"):
        load_controlnet(guidance / "diffusion_pytorch_model.safetensors")
    junk = tmp_path / "lora.safetensors"
    save_file({"lora_unet_down.weight": torch.zeros(4, 4)}, junk)
    with pytest.raises(WeightsError, match=f"{junk} holds no unet"):
        load_sd(junk, sd)


def test_a_folder_of_another_model_or_of_partial_weights_is_no_controlnet(weights, tmp_path):
    # before: diffusers built a default (SD-sized) ControlNet with random weights from a motion model's
    # folder, warning only, and `train guidance --init` then blamed the SD weights for the mismatch
    import torch
    from handforge.engines.image.loading import WeightsError, load_controlnet, load_sd
    from handforge.engines.motion.settings import SHIPPED_CHECKPOINT

    _, _, guidance = weights
    motion = SHIPPED_CHECKPOINT
    with pytest.raises(WeightsError, match=r"holds a model of another class \(MotionDenoiser, not ControlNet"):
        load_controlnet(motion)
    partial = tmp_path / "partial"
    shutil.copytree(guidance, partial)
    tensors = load_file(partial / "diffusion_pytorch_model.safetensors")
    dropped = sorted(tensors)[0]
    save_file({k: v for k, v in tensors.items() if k != dropped}, partial / "diffusion_pytorch_model.safetensors")
    with pytest.raises(WeightsError, match=f"{partial} lacks 1 of its weights \\(e.g. {dropped}\\)"):
        load_controlnet(partial)
    assert isinstance(load_controlnet(guidance), torch.nn.Module)
    with pytest.raises(WeightsError, match="is a diffusers pipeline folder \\(model_index.json\\), not a ControlNet"):
        load_controlnet(weights[1])  # the SD folder itself (was: "cannot load ... names the damaged file")
    _, sd, _ = weights  # an interrupted copy of SD: a part's weights file without one of its tensors
    broken = tmp_path / "sd"
    shutil.copytree(sd, broken)
    for part in ("unet", "text_encoder"):
        file = next((broken / part).glob("*.safetensors"))
        tensors = load_file(file)
        save_file({k: v for k, v in tensors.items() if k != sorted(tensors)[-1]}, file)
        with pytest.raises(WeightsError, match=f"{broken / part} lacks 1 of its weights"):
            load_sd(broken)
        shutil.copytree(sd / part, broken / part, dirs_exist_ok=True)


def test_a_truncated_weights_file_says_how_to_find_and_mend_it(weights, tmp_path):
    # before: "cannot load Stable Diffusion from X: OSError: Unable to load weights from checkpoint file for
    # '…' at '…'. ", saying neither what to do nor how to find which file
    from handforge.engines.image.loading import WeightsError, load_controlnet, load_sd

    _, sd, guidance = weights
    for source, load in ((sd, load_sd), (guidance, load_controlnet)):
        copy = tmp_path / source.name
        shutil.copytree(source, copy)
        file = next(copy.rglob("*.safetensors"))
        file.write_bytes(file.read_bytes()[:5000])  # an interrupted download
        with pytest.raises(WeightsError) as failed:
            load(copy)
        # (a ControlNet's file is named by the check its load shares with the engine's status)
        assert (f"`handforge models check {copy}` names the damaged file: copy or download it again" in
                str(failed.value) or f"{file} is damaged (cut short: 5,000 bytes, fewer than its header alone"
                in str(failed.value) and "download it again" in str(failed.value)) and ". ;" not in str(failed.value)


@pytest.mark.parametrize("steps", [0, 1, "1000"])
def test_a_scheduler_config_that_cannot_sample_is_refused_naming_it(weights, tmp_path, monkeypatch, steps):
    # before: 0 was "cannot load Stable Diffusion from X: IndexError: index 0 is out of bounds ..." (and
    # `handforge models check` found nothing); 1 loaded, and each job failed inside DDIM's set_timesteps
    # with an internal ValueError
    from handforge.engines.image.jobs import cached_pipeline
    from handforge.engines.image.loading import WeightsError, load_sd
    from handforge.engines.image.weights import check_sd
    from handforge.server.jobs import JobContext, JobError

    _, sd, guidance = weights
    broken = tmp_path / "sd"
    shutil.copytree(sd, broken)
    file = broken / "scheduler" / "scheduler_config.json"
    file.write_text(json.dumps({**json.loads(file.read_text()), "num_train_timesteps": steps}))
    said = f"{file}: num_train_timesteps is {steps!r}, SD 1.x is sampled over its 1000 training noise levels; set it to 1000"
    with pytest.raises(WeightsError, match=re.escape(said)):
        load_sd(broken)
    assert any(said in problem for problem in check_sd(broken).problems)
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(broken))
    ctx = JobContext("j", "image.generate", lambda fraction, message, previews: None)
    with pytest.raises(JobError) as failed:
        cached_pipeline(ctx, {"dtype": "float32", "cpu_offload": False}, [str(guidance)])
    assert failed.value.code == "missing_weights" and said in failed.value.message
    assert failed.value.hint == f"check image.sd_model = {broken}: handforge models check {broken}"


def test_an_empty_controlnets_folder_makes_the_engine_unavailable_with_the_fix(weights, tmp_path, monkeypatch):
    # before: "controlnet available", then every job refused as invalid params.controls, which it never sent;
    # and the image engines' missing_weights came with an empty hint
    from handforge.engines.image import jobs

    _, sd, _ = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(tmp_path))
    monkeypatch.delenv("HANDFORGE_IMAGE_GUIDANCE", raising=False)
    status = jobs.IMAGE_ENGINES["controlnet"].status()
    assert not status.available and "holds no ControlNet" in status.reason and "models import" in status.hint
    assert jobs._image_availability()[1]  # the image engine's fix is said too
    monkeypatch.delenv("HANDFORGE_SD_MODEL")
    reason, hint = jobs._image_availability()
    assert "image.sd_model is not set" in reason and hint.count("HANDFORGE_SD_MODEL") == 1  # the same fix once


def test_a_guidance_setting_that_is_no_controlnet_folder_leaves_auto_to_the_controlnets(weights, tmp_path,
                                                                                        monkeypatch):
    # before: image.guidance pointing at a training run's folder (its model in model/) or at the weights file
    # counted as ready: engine auto took attentionhand and the first click failed, the ControlNets unused
    from handforge.engines.image import jobs

    _, sd, guidance = weights
    run = tmp_path / "run"
    shutil.copytree(guidance, run / "model")
    controlnets = tmp_path / "controlnets"
    shutil.copytree(guidance, controlnets / "control_sd15_depth")
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(controlnets))
    for wrong, says in ((run, f"give {run / 'model'}, the run's model"),
                        (next(guidance.glob("*.safetensors")), "is a file, not a checkpoint folder")):
        monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(wrong))
        status = jobs.IMAGE_ENGINES["attentionhand"].status()
        assert not status.available and status.reason.startswith(f"image.guidance = {wrong}") and says in \
            status.reason, status
        assert "handforge train guidance" in status.hint and "HANDFORGE_IMAGE_GUIDANCE" in status.hint
        assert jobs.ready_engine("auto", tuple(jobs.ENGINES), []) == "controlnet"
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(run / "model"))
    assert jobs.IMAGE_ENGINES["attentionhand"].status().available
    assert jobs.ready_engine("auto", tuple(jobs.ENGINES), []) == "attentionhand"


def test_a_height_that_is_no_multiple_of_8_is_named():
    from handforge.engines.image import jobs
    from handforge.server.schema import ProtocolError

    with pytest.raises(ProtocolError) as failed:
        jobs.check_request({"width": 512, "height": 100}, {})
    assert failed.value.field == "params.height"


def test_tas_on_at_strength_0_is_refused_naming_the_field():
    # before: taken, the result listing the tokens TAS attended and its losses, each step paying TAS's backward
    # pass for latents moved by 0 (`handforge train guidance --tas --tas-strength 0` is refused alike)
    from handforge.engines.image import jobs
    from handforge.server.schema import ProtocolError

    with pytest.raises(ProtocolError) as failed:
        jobs.check_request({"width": 512, "height": 512, "steps": 20, "tas": True, "tas_strength": 0.0,
                            "tas_steps": None}, {})
    assert failed.value.field == "params.tas_strength" and "set tas off" in failed.value.hint


def test_a_damaged_weights_folder_is_hinted_by_its_own_setting(weights, tmp_path, monkeypatch):
    # before: every failure hinted "check image.sd_model, image.guidance and image.controlnets", whichever
    # folder it was
    from handforge.engines.image.jobs import cached_pipeline
    from handforge.server.jobs import JobContext, JobError

    _, sd, guidance = weights
    nets = tmp_path / "controlnets"
    damaged = nets / "control_sd15_depth"
    shutil.copytree(guidance, damaged)
    file = next(damaged.rglob("*.safetensors"))
    file.write_bytes(file.read_bytes()[:5000])
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(nets))
    ctx = JobContext("j", "image.generate", lambda fraction, message, previews: None)
    params = {"dtype": "float32", "cpu_offload": False}
    with pytest.raises(JobError) as failed:
        cached_pipeline(ctx, params, [str(damaged)])
    assert failed.value.code == "missing_weights"
    assert failed.value.hint == f"check image.controlnets = {nets}: handforge models check {damaged}"
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(tmp_path / "gone"))
    with pytest.raises(JobError) as failed:
        cached_pipeline(ctx, params, [str(guidance)])
    assert failed.value.hint.startswith("check image.sd_model = ") and "image.guidance" not in failed.value.hint


def test_a_cancel_while_the_pipeline_loads_ends_the_job_before_any_step(weights, monkeypatch):
    """Cancelled while SD loaded, the job went on to load the guidance module and to sample (the cancel
    was seen at the first step's progress). Now the load stops before its next component (nothing
    cached); cancelled after the last one, the job stops as the load returns, and the pipeline stays
    cached: the next job samples with it, loading nothing."""
    import numpy as np
    from handforge.engines.image import jobs, loading
    from handforge.engines.image.pipeline import HandImagePipeline
    from handforge.render.camera import look_at
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobCancelled, JobContext
    from handforge.server.model_cache import ModelCache
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    _, sd, guidance = weights
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    size = tiny_sd.IMAGE_SIZE
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    arrays = {"camera.K": np.array([[150.0, 0, size / 2], [0, 150.0, size / 2], [0, 0, 1]]), "camera.R": R,
              "camera.t": t, **pose_arrays({"right": pose_library.get("fist", side="right")})}
    params = default_registry().kind("image.generate").schema.validate(
        {"prompt": "a hand", "width": size, "height": size, "steps": 1, "dtype": "float32"}, arrays)
    cache, loaded, sampled = ModelCache(), [], []
    ctx = JobContext("j1", "image.generate", lambda fraction, message, previews: None, models=cache)

    def spy(function, record, cancel_after=False):
        def call(*args, **kwargs):
            record.append(args[0])
            result = function(*args, **kwargs)
            if cancel_after:
                ctx.request_stop("cancelled by the client")
            return result
        return call

    def pipelines() -> int:
        return sum(1 for key, _ in cache.cached() if key[1] == str(sd))

    monkeypatch.setattr(HandImagePipeline, "__call__", spy(HandImagePipeline.__call__, sampled))
    monkeypatch.setattr(loading, "load_controlnet", spy(loading.load_controlnet, loaded))
    with monkeypatch.context() as patch:
        patch.setattr(loading, "load_sd", spy(loading.load_sd, [], cancel_after=True))
        with pytest.raises(JobCancelled):
            jobs.generate(ctx, params, arrays)
    assert (loaded, sampled, pipelines()) == ([], [], 0)  # the guidance module not loaded, no step
    ctx = JobContext("j2", "image.generate", lambda fraction, message, previews: None, models=cache)
    with monkeypatch.context() as patch:
        patch.setattr(HandImagePipeline, "to", spy(HandImagePipeline.to, [], cancel_after=True))
        with pytest.raises(JobCancelled):
            jobs.generate(ctx, params, arrays)
    assert (len(loaded), sampled, pipelines()) == (1, [], 1)  # loaded whole: cached, and no step
    loads = cache.loads
    ctx = JobContext("j3", "image.generate", lambda fraction, message, previews: None, models=cache)
    assert jobs.generate(ctx, params, arrays).arrays["images"].shape == (1, size, size, 3)
    assert cache.loads == loads and len(sampled) == 1 and ctx.loaded == []


def test_a_cancel_while_the_unet_loads_stops_before_the_next_sd_model(weights, monkeypatch):
    """The UNet takes most of an SD load: a cancel during it stopped the job only once the VAE and the
    text encoder had loaded too. Now the load stops before the next model, the job's cancel unchanged."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from handforge.engines.image.loading import build_pipeline
    from handforge.server.jobs import JobCancelled, JobContext

    ctx = JobContext("j1", "image.generate", lambda fraction, message, previews: None)
    loaded = []
    unet_load, vae_load = UNet2DConditionModel.from_pretrained.__func__, AutoencoderKL.from_pretrained.__func__

    def unet(cls, *args, **kwargs):
        loaded.append("unet")
        model = unet_load(cls, *args, **kwargs)
        ctx.request_stop("cancelled by the client")
        return model

    def vae(cls, *args, **kwargs):
        loaded.append("vae")
        return vae_load(cls, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained", classmethod(unet))
    monkeypatch.setattr(AutoencoderKL, "from_pretrained", classmethod(vae))
    with pytest.raises(JobCancelled):
        build_pipeline(weights[1], [weights[2]], check=ctx.check_cancelled)
    assert loaded == ["unet"]


def test_importing_the_current_folder_takes_its_name(weights, tmp_path, monkeypatch, capsys):
    # before: `models import . --kind controlnet` (Path(".").name is "") copied the ControlNet *as* the
    # controlnets folder, and said to set image.controlnets to the models folder
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(weights[2])
    assert main(["models", "import", ".", "--kind", "controlnet"]) == 0
    assert (tmp_path / "models" / "controlnets" / weights[2].name / "config.json").is_file()
    assert f'controlnets = "{tmp_path / "models" / "controlnets"}"' in capsys.readouterr().out


def test_a_relative_models_folder_is_given_as_an_absolute_setting(weights, tmp_path, monkeypatch, capsys):
    """HANDFORGE_MODELS_DIR=relmodels: the snippet to paste said controlnets = "relmodels/controlnets", which the
    config file reads from its own folder, not from where the import ran."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", "relmodels")
    assert main(["models", "import", str(weights[2]), "--kind", "controlnet", "--name", "r2_depth"]) == 0
    assert f'controlnets = "{tmp_path / "relmodels" / "controlnets"}"' in capsys.readouterr().out


def test_a_models_folder_that_is_a_file_is_said_naming_the_setting(weights, tmp_path, monkeypatch, capsys):
    # it was "could not copy ...: .../a_file/controlnets: Not a directory", which named no setting
    (tmp_path / "a_file").write_text("")
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "a_file"))
    assert main(["models", "import", str(weights[2]), "--kind", "controlnet"]) == 2
    assert capsys.readouterr().err == (
        f"handforge models import: {tmp_path / 'a_file'} is no folder, and the weights go into "
        f"{tmp_path / 'a_file' / 'controlnets'}: point image.models_dir ($HANDFORGE_MODELS_DIR) at a folder, or move "
        f"{tmp_path / 'a_file'} away\n")


def test_check_names_a_configured_sd_model_or_controlnets_folder_that_holds_nothing(weights, tmp_path, monkeypatch,
                                                                                  capsys):
    """A configured ControlNets folder not there, or holding no ControlNet, went unchecked ("no weights are
    configured", or only the guidance module checked); an SD model file not there was checked as a folder
    ("x.safetensors/text_encoder: no such folder" and four more)."""
    root, sd, guidance = weights
    _image_settings(monkeypatch, root, sd, guidance)
    monkeypatch.delenv("HANDFORGE_SD_MODEL")
    monkeypatch.delenv("HANDFORGE_IMAGE_GUIDANCE")
    (tmp_path / "cns").mkdir()
    (tmp_path / "cns" / "x.txt").write_text("")
    for folder, said in ((tmp_path / "none", ": no such folder"), (tmp_path / "cns", " holds no ControlNet (a folder")):
        monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(folder))
        for argv in (["models", "check"], ["models", "check", "--kind", "controlnet"]):
            assert main(argv) == 1
            out = capsys.readouterr().out
            assert f"FAILED  controlnets  {folder}" in out and f"image.controlnets = {folder}{said}" in out, out
    monkeypatch.delenv("HANDFORGE_CONTROLNETS")
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(tmp_path / "x.safetensors"))
    assert main(["models", "check"]) == 1
    assert capsys.readouterr().out.splitlines() == [
        f"FAILED  sd  {tmp_path / 'x.safetensors'}",
        f"    problem: {tmp_path / 'x.safetensors'}: no such file or folder: give a .safetensors file or a diffusers "
        "SD folder"]


@pytest.mark.parametrize("text, shown", [
    ('"stable-diffusion-v1-5/stable-diffusion-v1-5"', "config.json: not a JSON object"),
    ("[]", "config.json: not a JSON object"),
    ("{unclosed", "config.json: cannot be read as JSON ("),  # (it said 'not a JSON object', though no JSON at all)
    ("[" * 100_000, "config.json: cannot be read as JSON ("),  # (nested thousands deep: a RecursionError traceback)
    ('{"_class_name": "ControlNetModel", "block_out_channels": "wide"}', "config.json: does not describe a "
                                                                         "model of class ControlNetModel"),
])
def test_a_config_json_that_is_no_model_config_is_named_not_looked_up_online(weights, tmp_path, monkeypatch, capsys,
                                                                             text, shown):
    # before: a JSON string was taken by diffusers for a hub repo id (a download tried, retried for seconds), and
    # every such file was "could not copy ...: make room and run it again" (import) or a traceback (check)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    folder = tmp_path / "net"
    shutil.copytree(weights[2], folder)
    (folder / "config.json").write_text(text)
    assert main(["models", "check", str(folder), "--kind", "controlnet"]) == 1
    assert f"problem: {folder / shown}" in capsys.readouterr().out
    assert main(["models", "import", str(folder), "--kind", "controlnet"]) == 2
    assert shown in capsys.readouterr().err and not (tmp_path / "models" / "controlnets" / "net").exists()


def test_import_copies_only_the_files_the_engines_read(weights, tmp_path, monkeypatch, capsys):
    # before: the whole folder was copied, a pickle of the same weights beside the safetensors too, and a
    # dangling link in it failed the import as "could not copy ...: make room and run it again"
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    for source, kind in ((weights[1], "sd"), (weights[2], "controlnet")):
        folder = tmp_path / kind
        shutil.copytree(source, folder)
        (folder / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
        (folder / "old.ckpt").symlink_to(tmp_path / "gone.ckpt")
        assert main(["models", "import", str(folder), "--kind", kind]) == 0, capsys.readouterr().err
        target = tmp_path / "models" / {"sd": "sd", "controlnet": "controlnets"}[kind] / kind
        copied = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
        assert copied == sorted(str(p.relative_to(source)) for p in source.rglob("*") if p.is_file()), copied


def test_a_copy_left_by_an_interrupted_import_is_no_controlnet(tmp_path):
    # before: a killed `models import` left .NAME.partial holding config.json, and every job of the controlnet
    # engine naming no ControlNet took it for one (a truncated file), as did `models check`
    from handforge.engines.image.controls import available

    for name in ("depth", ".depth_v2.partial"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    assert available(tmp_path) == ["depth"]


def test_check_and_import_speak_json_when_asked(weights, tmp_path, monkeypatch, capsys):
    # before: --json changed `list` alone; check and import printed their text
    root, sd, guidance = weights
    for argv in (["models", "--json", "check", str(sd)], ["models", "check", str(sd), "--json"]):
        assert main(argv) == 0
        (found,) = json.loads(capsys.readouterr().out)
        assert found["kind"] == "sd" and found["ok"] is True and found["problems"] == [] and found["notes"]
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models", "import", str(guidance), "--kind", "guidance", "--json"]) == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported == {"imported": str(tmp_path / "models" / "guidance" / "guidance"), "setting": "image.guidance",
                        "value": str(tmp_path / "models" / "guidance" / "guidance")}
    # a ControlNet whose name says no render: jobs naming no controls leave it out, which import says
    assert main(["models", "import", str(guidance), "--kind", "controlnet", "--name", "my_net"]) == 0
    assert "jobs use it only when their controls name it as 'my_net:KIND'" in capsys.readouterr().err
    assert main(["models", "import", str(guidance), "--kind", "controlnet", "--name", "my_net_depth"]) == 0
    assert capsys.readouterr().err == ""


def test_check_with_nothing_configured_speaks_json_when_asked(monkeypatch, capsys):
    # before: `models --json check` with no weights configured printed only the stderr line, no JSON
    from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_MODEL
    from handforge.engines.transfer.settings import TARGET_GENERATOR

    for setting in (SD_MODEL, GUIDANCE, CONTROLNETS, TARGET_GENERATOR):
        monkeypatch.delenv(setting.env, raising=False)
    for argv in (["models", "--json", "check"], ["models", "check", "--json"]):
        assert main(argv) == 1
        out = capsys.readouterr()
        assert json.loads(out.out) == [] and "no weights are configured" in out.err
    assert main(["models", "check"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "no weights are configured" in out.err


def test_a_render_kind_that_is_none_is_named_as_such(tmp_path):
    # before: 'my_net:dpeth' was answered "say which render it takes, as 'my_net:KIND'", as if no kind had been given
    from handforge.engines.image.controls import ControlError, resolve

    (tmp_path / "my_net").mkdir()
    (tmp_path / "my_net" / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    with pytest.raises(ControlError, match=r"'my_net:dpeth': 'dpeth' is no render kind; KIND is one of mesh, depth"):
        resolve(["my_net:dpeth"], tmp_path)
    with pytest.raises(ControlError, match=r"'my_net': say which render it takes, as 'my_net:KIND'"):
        resolve(["my_net"], tmp_path)
    # longer than any folder's name: the look for its folder failed ("File name too long", an internal error)
    with pytest.raises(ControlError, match=r"^'a{40}'… is a name of 300 characters: a ControlNet is named by its folder"):
        resolve(["a" * 300 + ":depth"], tmp_path)


def test_a_controlnet_named_twice_is_refused(tmp_path):
    # before: controls ["depth:depth"] × 5 ran the same ControlNet five times, its conditioning added five times
    from handforge.engines.image.controls import ControlError, resolve

    for name in ("depth", "skeleton"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    assert [c.name for c in resolve(["depth", "skeleton"], tmp_path)] == ["depth", "skeleton"]
    for specs in (["depth", "depth"], ["depth:depth", "skeleton", "depth:normals"]):
        with pytest.raises(ControlError, match="the ControlNet 'depth' is named twice; name each once"):
            resolve(specs, tmp_path)


def test_a_controlnet_whose_name_says_no_render_is_left_out_when_none_are_named(weights, tmp_path):
    """One ControlNet imported as my_net failed every job that named no controls (the default), though the
    folder's depth ControlNet could run; only when no name says a render is the job refused, with the fix."""
    from handforge.engines.image.controls import ControlError, resolve, unnamed

    for name in ("my_net", "control_sd15_depth"):
        shutil.copytree(weights[2], tmp_path / name)  # (a ControlNet that its checks do not call broken)
    assert [(c.name, c.kind) for c in resolve([], tmp_path)] == [("control_sd15_depth", "depth")]
    assert unnamed(tmp_path) == ["my_net"]
    assert [c.kind for c in resolve(["my_net:normals"], tmp_path)] == ["normals"]  # named, it is taken
    (tmp_path / "control_sd15_depth" / "config.json").unlink()
    with pytest.raises(ControlError, match=r"\(my_net\) say no render they take: name them in the job's controls as "
                                           r"'NAME:KIND'"):
        resolve([], tmp_path)


def test_check_takes_one_file_for_a_single_file_sd_checkpoint(weights, tmp_path, monkeypatch, capsys):
    # before: without --kind, a file was checked as a ControlNet ("ControlNets are read from diffusers folders")
    import torch

    file = write_single_file(weights[1], tmp_path / "v1-5-pruned-emaonly.safetensors")
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(weights[1]))
    assert main(["models", "check", str(file)]) == 0
    assert capsys.readouterr().out.startswith(f"ok  sd  {file}\n    single-file checkpoint of 618 tensors")
    # its values are read too: a NaN there loaded, and every image came out black
    tensors = load_file(file)
    tensors["model.diffusion_model.out.2.weight"] = torch.full_like(tensors["model.diffusion_model.out.2.weight"],
                                                                    float("nan"))
    save_file(tensors, file)
    assert main(["models", "check", str(file)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {file}: model.diffusion_model.out.2.weight holds values that are not finite" in out
    assert out.count("problem:") == 1, out


def test_a_single_file_sd_model_without_its_config_folder_is_no_ready_engine(weights, tmp_path, monkeypatch, capsys):
    # before: `handforge models` said "attentionhand: ready" and the server the same (Blender's button lit), and every
    # job failed at its load: "is a single-file checkpoint: set image.sd_config"
    root, sd, guidance = weights
    _image_settings(monkeypatch, root, sd, guidance)
    file = tmp_path / "v1-5-pruned-emaonly.safetensors"
    shutil.copy(sd / "unet" / "diffusion_pytorch_model.safetensors", file)
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(file))
    monkeypatch.delenv("HANDFORGE_SD_CONFIG", raising=False)
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert f"attentionhand: not ready: image.sd_model = {file}: one .safetensors file, and image.sd_config is not " \
           "set" in out, out
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(tmp_path / "nowhere"))
    assert main(["models"]) == 0
    assert f"image.sd_config = {tmp_path / 'nowhere'} does not exist" in capsys.readouterr().out
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(sd))
    assert main(["models"]) == 0
    assert "attentionhand: ready" in capsys.readouterr().out


def test_a_single_file_that_is_no_safetensors_is_refused_by_check_and_load(weights, tmp_path, monkeypatch, capsys):
    """A 12-byte text named .safetensors was 'ok' (and imported), and a .ckpt pickle too, which the load
    then unpickled: only .safetensors are read."""
    from handforge.engines.image.loading import WeightsError, load_sd

    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(weights[1]))
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not weights\n")
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04K\x01.")
    assert main(["models", "check", str(notes)]) == 1
    assert f"problem: {notes}: not a readable safetensors file" in capsys.readouterr().out
    assert main(["models", "check", str(pickle)]) == 1
    assert f"problem: {pickle}: not weights HandForge reads: only .safetensors weights are read, never pickles" \
        in capsys.readouterr().out
    report = tmp_path / "report.json"  # (it was said to be a pickle)
    report.write_text("{}")
    assert main(["models", "check", str(report)]) == 1
    assert (f"problem: {report}: not weights HandForge reads: a .safetensors file or a diffusers folder"
            in capsys.readouterr().out)
    with pytest.raises(WeightsError, match="only .safetensors weights are read, never pickles"):
        load_sd(pickle, weights[1])


@pytest.mark.parametrize("text", ['"openai/clip-vit-large-patch14"', "{unclosed", None])
def test_a_text_encoder_config_that_is_missing_or_no_object_is_a_problem(weights, tmp_path, capsys, text):
    # before: a traceback (a JSON string, broken JSON), or a missing one read as CLIP's defaults: "the text
    # encoder gives 512" named a width no file held
    sd = tmp_path / "sd"
    shutil.copytree(weights[1], sd)
    config = sd / "text_encoder" / "config.json"
    config.unlink() if text is None else config.write_text(text)
    assert main(["models", "check", str(sd)]) == 1
    out = capsys.readouterr().out
    said = ("no config.json" if text is None else "cannot be read as JSON (" if text == "{unclosed" else
            "not a JSON object")
    assert f"problem: {sd / 'text_encoder' if text is None else config}: {said}" in out, out
    assert "the text encoder gives" not in out


@pytest.mark.parametrize("damage, shown", [
    (lambda sd: shutil.copy(sd / "vae" / "diffusion_pytorch_model.safetensors", sd / "text_encoder" / "model.safetensors"),
     "text_encoder/model.safetensors: 36 tensors missing, e.g. embeddings.position_embedding.weight"),
    (lambda sd: (sd / "text_encoder" / "config.json").write_text(json.dumps(
        {**json.loads((sd / "text_encoder" / "config.json").read_text()), "num_hidden_layers": 1000000})),
     "text_encoder/config.json: num_hidden_layers is 1000000, more than the 36 tensors"),
    (lambda sd: (sd / "text_encoder" / "config.json").write_text(json.dumps(
        {**json.loads((sd / "text_encoder" / "config.json").read_text()), "hidden_size": -5})),
     "text_encoder/config.json: does not describe a model of class CLIPTextModel"),
])
def test_a_text_encoder_that_cannot_load_is_a_problem_of_the_check(weights, tmp_path, capsys, damage, shown):
    """Check read only the text encoder's width: another part's weights in its file or a config of 1,000,000
    layers were 'ok' (load_sd then refused them and pointed back to the check), a hidden size of -5 a traceback."""
    sd = tmp_path / "sd"
    shutil.copytree(weights[1], sd)
    damage(sd)
    assert main(["models", "check", str(sd)]) == 1
    out = capsys.readouterr().out
    assert f"problem: {sd}/{shown}" in out, out


@pytest.mark.parametrize("text", ['"ddim"', "[1000]"])
def test_a_scheduler_config_that_is_no_object_is_a_problem_naming_it(weights, tmp_path, capsys, text):
    # before: AttributeError: 'str' object has no attribute 'get' (a traceback from models check, an internal
    # error from every image job)
    sd = tmp_path / "sd"
    shutil.copytree(weights[1], sd)
    config = sd / "scheduler" / "scheduler_config.json"
    config.write_text(text)
    assert main(["models", "check", str(sd)]) == 1
    assert f"problem: {config}: not a JSON object" in capsys.readouterr().out


def test_a_single_file_imported_under_a_name_keeps_its_suffix(weights, tmp_path, monkeypatch, capsys):
    # before: `--name mine` imported v1-5.safetensors as sd/mine, which diffusers' from_single_file, going by the
    # suffix, then read as a torch pickle
    file = write_single_file(weights[1], tmp_path / "v1-5-pruned-emaonly.safetensors")
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(weights[1]))
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models", "import", str(file), "--kind", "sd", "--name", "mine"]) == 0
    assert (tmp_path / "models" / "sd" / "mine.safetensors").is_file()
    assert f'sd_model = "{tmp_path / "models" / "sd" / "mine.safetensors"}"' in capsys.readouterr().out


def test_an_import_whose_name_is_taken_while_it_copies_leaves_no_hidden_copy(weights, tmp_path, monkeypatch):
    """Another import under the same name finishing during a copy of minutes: the rename into place is refused;
    the whole copy stayed behind as .NAME.partial (gigabytes for real weights) until the next import of it."""
    from handforge.engines.image import weights as weights_module

    copytree = shutil.copytree

    def meanwhile(source, target, **options):  # (the other import lands while this one copies)
        (Path(target).parent / "mine").mkdir()
        (Path(target).parent / "mine" / "config.json").write_text("{}")
        return copytree(source, target, **options)

    monkeypatch.setattr(weights_module.shutil, "copytree", meanwhile)
    with pytest.raises(OSError):
        weights_module.import_weights(weights[2], "guidance", name="mine", models_dir=tmp_path / "models")
    assert sorted(p.name for p in (tmp_path / "models" / "guidance").iterdir()) == ["mine"]


def test_importing_over_a_dangling_link_of_that_name_says_it_exists(weights, tmp_path, monkeypatch, capsys):
    # before: the name looked free (exists() follows the link), and the rename onto the link failed as
    # "could not copy ...: Not a directory; make room and run it again"
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    (tmp_path / "models" / "guidance").mkdir(parents=True)
    (tmp_path / "models" / "guidance" / "mine").symlink_to(tmp_path / "moved-away")
    assert main(["models", "import", str(weights[2]), "--kind", "guidance", "--name", "mine"]) == 2
    assert "mine exists; choose another --name or remove it" in capsys.readouterr().err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("part, key, value, shown", [
    ("guidance", "layers_per_block", 100000, "layers_per_block is 100000, more than the 196 tensors"),
    ("guidance", "block_out_channels", [32, 32, 10**12], f"block_out_channels holds {10**12}, more than the"),
    ("sd/unet", "layers_per_block", 100000, "layers_per_block is 100000, more than the 402 tensors"),
])
def test_a_config_of_absurd_sizes_is_refused_before_a_model_is_built(weights, tmp_path, capsys, part, key, value,
                                                                     shown):
    # before: the check built the model the config describes (on the meta device), which took minutes and
    # gigabytes for layers_per_block 100000; the import, which checks first, hung as well
    root = weights[0]
    top = part.split("/")[0]
    folder = tmp_path / top
    shutil.copytree(root / top, folder)
    config_file = tmp_path / part / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), key: value}))
    assert main(["models", "check", str(folder)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if "problem:" in line]
    assert len(problems) == 1 and problems[0].startswith(f"    problem: {config_file}: {shown}")
    assert problems[0].endswith("does not describe them; import or download the weights again")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("part", ["guidance", "sd/unet", "sd/vae", "sd/text_encoder"])
def test_loading_a_folder_of_absurd_sizes_is_refused_before_a_model_is_built(weights, tmp_path, part):
    """A folder set in the config (never checked nor imported) went straight to diffusers, which built the
    model its config describes: a job loading layers_per_block 100000 kept its worker busy for good."""
    from handforge.engines.image.loading import WeightsError, build_pipeline

    root = weights[0]
    for top in ("sd", "guidance"):
        shutil.copytree(root / top, tmp_path / top)
    config_file = tmp_path / part / "config.json"
    key = "num_hidden_layers" if part.endswith("text_encoder") else "layers_per_block"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), key: 100000}))
    with pytest.raises(WeightsError) as refused:
        build_pipeline(tmp_path / "sd", [tmp_path / "guidance"])
    assert str(refused.value).startswith(f"{config_file}: {key} is 100000, more than the ")
    assert refused.value.path == tmp_path / part


@pytest.mark.parametrize("key, value, said", [
    ("norm_eps", float("nan"), "sets norm_eps to nan, not a finite number"),  # (loaded: NaN images)
    ("norm_eps", -1, "sets norm_eps to -1, not a number above 0"),
    ("controlnet_conditioning_channel_order", "xyz", "not 'rgb' or 'bgr'"),  # (loaded: failed mid-generation)
    ("layers_per_block", 0, "sets layers_per_block to 0, but its weights file holds 1 (down_blocks.0.resnets.0-0)"),
    # widths its weights have not: diffusers' "Cannot load  because ... expected shape" and ignore_mismatched_sizes
    ("conditioning_channels", 4, "does not fit its weights: controlnet_cond_embedding.conv_in.weight has 8 out and 3 "
                                 "in channels in diffusion_pytorch_model.safetensors, its conditioning_embedding_out_"
                                 "channels, conditioning_channels make it in 4"),
    ("in_channels", 8, "conv_in.weight has 32 out and 4 in channels"),
    ("conditioning_embedding_out_channels", [8, 8, 16, 32], "controlnet_cond_embedding.conv_out.weight has 32 out "
                                                            "and 16 in channels"),
    ("cross_attention_dim", 64, "attn2.to_k.weight has 32 out and 32 in channels"),
])
def test_a_hand_edited_controlnet_config_is_refused_when_loaded(weights, tmp_path, key, value, said):
    from handforge.engines.image.loading import WeightsError, load_controlnet

    folder = tmp_path / "guidance"
    shutil.copytree(weights[2], folder)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    assert config.get(key) != value
    config_file.write_text(json.dumps({**config, key: value}))
    with pytest.raises(WeightsError) as refused:
        load_controlnet(folder)
    assert said in str(refused.value) and str(folder) in str(refused.value)
    assert refused.value.path == folder


@pytest.mark.parametrize("kind", ["controlnet", "guidance"])
def test_check_and_import_name_a_folder_of_another_model_class(tmp_path, monkeypatch, capsys, kind):
    # before: a motion model's folder "did not describe its weights; import or download the weights again"
    # (its data_mean list outnumbered its tensors), as if a ControlNet download were damaged
    from handforge.engines.motion.settings import SHIPPED_CHECKPOINT

    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    shown = f"{SHIPPED_CHECKPOINT} holds a model of another class (MotionDenoiser, not ControlNetModel)"
    assert main(["models", "check", str(SHIPPED_CHECKPOINT)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if "problem:" in line]
    assert len(problems) == 1 and shown in problems[0]
    assert main(["models", "import", str(SHIPPED_CHECKPOINT), "--kind", kind]) == 2
    assert shown in capsys.readouterr().err and not (tmp_path / "models").exists()


@pytest.mark.parametrize("file, text", [("vocab.json", "[]"), ("merges.txt", None)])
def test_a_tokenizer_that_cannot_load_is_a_problem_naming_it(weights, tmp_path, capsys, file, text):
    # before: `models check` said ok, and loading the model failed saying `models check` names the damaged file
    from handforge.engines.image.loading import WeightsError, load_sd

    sd = tmp_path / "sd"
    shutil.copytree(weights[1], sd)
    damaged = sd / "tokenizer" / file
    damaged.unlink() if text is None else damaged.write_text(text)
    with pytest.raises(WeightsError, match="models check"):
        load_sd(sd)
    assert main(["models", "check", str(sd)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if "problem:" in line]
    assert len(problems) == 1 and f"problem: {sd / 'tokenizer'}: not a readable CLIP tokenizer" in problems[0]


def test_controlnet_folders_without_their_config_are_named(tmp_path):
    # before: "no ControlNet folders in …" while the folders were there (empty, or a download cut short)
    from handforge.engines.image.controls import ControlError, resolve

    for name in ("control_v11f1p_sd15_depth", "control_v11p_sd15_openpose"):
        (tmp_path / name).mkdir()
    with pytest.raises(ControlError, match=r"\(control_v11f1p_sd15_depth, control_v11p_sd15_openpose hold no "
                                           r"config.json of a ControlNet\)"):
        resolve([], tmp_path)


def test_a_controlnet_config_of_other_widths_than_its_weights_is_no_ready_engine(weights, tmp_path):
    # before: the guidance module and a ControlNets folder whose config.json says another conditioning width than
    # their weights were ready, and every job's load failed in diffusers' words; the status reads the weights'
    # header only (no torch, nor diffusers)
    _, sd, guidance = weights
    nets = tmp_path / "controlnets"
    for folder in (tmp_path / "guidance", nets / "control_sd15_depth"):
        shutil.copytree(guidance, folder)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "conditioning_channels": 4}))
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(sd),
           "HANDFORGE_IMAGE_GUIDANCE": str(tmp_path / "guidance"), "HANDFORGE_CONTROLNETS": str(nets)}
    statuses = light_statuses("from handforge.engines.image import jobs",
                              "{name: jobs.IMAGE_ENGINES[name].status().to_json() for name in jobs.IMAGE_ENGINES}", env)
    said = ("does not fit its weights: controlnet_cond_embedding.conv_in.weight has 8 out and 3 in channels in "
            "diffusion_pytorch_model.safetensors")
    guided = statuses["attentionhand"]
    assert not guided["available"] and guided["reason"].startswith(
        f"image.guidance = {tmp_path / 'guidance' / 'config.json'} {said}"), guided
    assert f"handforge models check {tmp_path / 'guidance'}" in guided["hint"], guided
    controlled = statuses["controlnet"]
    assert not controlled["available"] and f"{nets / 'control_sd15_depth' / 'config.json'} {said}" in \
        controlled["reason"], controlled
    # the folders as made fit: ready
    for folder in (tmp_path / "guidance", nets / "control_sd15_depth"):
        shutil.copy(guidance / "config.json", folder / "config.json")
    statuses = light_statuses("from handforge.engines.image import jobs",
                              "{name: jobs.IMAGE_ENGINES[name].status().to_json() for name in jobs.IMAGE_ENGINES}", env)
    assert statuses["attentionhand"]["available"] and statuses["controlnet"]["available"], statuses
    assert statuses["controlnet"]["note"] == "", statuses
    # one of two broken: ready with the other, the broken one said in the note (it was unsaid until a job failed)
    shutil.copytree(nets / "control_sd15_depth", nets / "control_sd15_normal")
    config = json.loads((nets / "control_sd15_normal" / "config.json").read_text())
    (nets / "control_sd15_normal" / "config.json").write_text(json.dumps({**config, "conditioning_channels": 4}))
    controlled = light_statuses("from handforge.engines.image import jobs",
                                "jobs.IMAGE_ENGINES['controlnet'].status().to_json()", env)
    assert controlled["available"] and controlled["note"].startswith(
        f"{nets / 'control_sd15_normal' / 'config.json'} {said}"), controlled
    assert "control_sd15_depth" not in controlled["note"] and "name no controls leave it out" in controlled["note"]


def test_one_status_of_the_controlnet_engine_reads_each_controlnets_header_once(weights, tmp_path, monkeypatch):
    """Its availability and its note each read every ControlNet's weights header: twice per status (every hello,
    ``handforge models``), for the same answer."""
    import safetensors

    from handforge.engines.checkpoints import WEIGHTS_NAME
    from handforge.engines.image import jobs

    root, sd, guidance = weights
    _image_settings(monkeypatch, root, sd, guidance)
    nets = tmp_path / "controlnets"
    for name in ("control_sd15_depth", "control_sd15_normal"):
        shutil.copytree(guidance, nets / name)
    config = json.loads((nets / "control_sd15_normal" / "config.json").read_text())
    (nets / "control_sd15_normal" / "config.json").write_text(json.dumps({**config, "conditioning_channels": 4}))
    # written a minute ago, as a user's are: a file written within the last 2 s is read at every ask (it may change
    # again unseen), which made this test fail when run alone, right after the fixture wrote the weights
    a_minute_ago = time.time_ns() - 60_000_000_000
    for file in nets.rglob("*"):
        os.utime(file, ns=(a_minute_ago, a_minute_ago))
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(nets))
    opened: list[str] = []
    safe_open = safetensors.safe_open

    def counting_safe_open(path, *args, **kwargs):
        opened.append(str(path))
        return safe_open(path, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", counting_safe_open)
    status = jobs.IMAGE_ENGINES["controlnet"].status()
    # ready with the depth ControlNet, the broken normal one in the note: both read, by the checks that said so
    assert status.available and status.note.startswith(f"{nets / 'control_sd15_normal' / 'config.json'} "), status
    assert sorted(opened) == [str(nets / name / WEIGHTS_NAME)
                              for name in ("control_sd15_depth", "control_sd15_normal")], opened


def test_one_hello_reads_each_controlnet_file_once_and_an_edited_one_again(weights, tmp_path, monkeypatch):
    """Every engine that runs on the ControlNets (controlnet, attentionhand, image, transfer) checks them, each
    through the folder's class and its widths: one hello read each ControlNet's config.json six times and its
    weights header three times, the guidance module's as often, for the same answer."""
    import os
    import pathlib
    import time

    import safetensors

    from handforge.engines.checkpoints import WEIGHTS_NAME
    from handforge.server.builtin_jobs import default_registry

    root, sd, guidance = weights
    nets = tmp_path / "controlnets"
    for name in ("control_sd15_depth", "control_sd15_normal"):
        shutil.copytree(guidance, nets / name)
    shutil.copytree(guidance, tmp_path / "guidance")
    _image_settings(monkeypatch, root, sd, tmp_path / "guidance")
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(nets))
    # a file written within 2 s of a read is read again at each ask (it may change again with the same stat)
    long_ago = time.time() - 60
    for file in tmp_path.rglob("*"):
        os.utime(file, (long_ago, long_ago))
    reads: list[str] = []
    safe_open, read_text = safetensors.safe_open, pathlib.Path.read_text

    def counting_safe_open(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path)):  # (other engines read their shipped weights)
            reads.append(str(path))
        return safe_open(path, *args, **kwargs)

    def counting_read_text(path, *args, **kwargs):
        if path.name == "config.json" and str(path).startswith(str(tmp_path)):
            reads.append(str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(safetensors, "safe_open", counting_safe_open)
    monkeypatch.setattr(pathlib.Path, "read_text", counting_read_text)
    registry = default_registry()
    engines = registry.describe_engines()
    assert all(engines[name]["available"] for name in ("attentionhand", "controlnet", "image", "transfer")), engines
    folders = [nets / "control_sd15_depth", nets / "control_sd15_normal", tmp_path / "guidance"]
    assert sorted(reads) == sorted(str(folder / file) for folder in folders for file in ("config.json", WEIGHTS_NAME))
    reads.clear()
    registry.describe_engines()
    assert reads == []  # nothing changed since
    # an edited config is read again (its header is as it was), and what it now says is said
    edited = nets / "control_sd15_normal" / "config.json"
    edited.write_text(json.dumps({**json.loads(read_text(edited)), "conditioning_channels": 4}))
    os.utime(edited, (long_ago + 1, long_ago + 1))
    engines = registry.describe_engines()
    assert reads == [str(edited)]
    assert engines["controlnet"]["note"].startswith(f"{edited} does not fit its weights"), engines["controlnet"]


def test_a_controlnet_config_nested_too_deeply_leaves_the_engine_ready_with_the_others(weights, tmp_path):
    """Unreadable as any other unreadable config.json (a job that names it says so, as diffusers' load fails)."""
    # before: the engine unavailable beside a working ControlNet, 'availability check failed: maximum recursion
    # depth exceeded while decoding a JSON array' (doctor, every submit's engine list), and a job naming it a
    # RecursionError traceback from load_controlnet
    _, sd, guidance = weights
    nets = tmp_path / "controlnets"
    for name in ("control_sd15_depth", "control_sd15_normal"):
        shutil.copytree(guidance, nets / name)
    (nets / "control_sd15_normal" / "config.json").write_text("[" * 100_000)
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(sd),
           "HANDFORGE_CONTROLNETS": str(nets)}
    controlled = light_statuses("from handforge.engines.image import jobs",
                                "jobs.IMAGE_ENGINES['controlnet'].status().to_json()", env)
    assert controlled["available"] and controlled["reason"] == "", controlled
    from handforge.engines.image.loading import WeightsError, load_controlnet

    with pytest.raises(WeightsError, match=r"cannot load the ControlNet .*control_sd15_normal: .*recursion"):
        load_controlnet(nets / "control_sd15_normal")


@pytest.mark.parametrize("key, value", [("norm_eps", float("nan")), ("norm_eps", -1),
                                        ("controlnet_conditioning_channel_order", "xyz"),
                                        ("layers_per_block", 10**5), ("layers_per_block", 0),
                                        ("layers_per_block", 2), ("transformer_layers_per_block", 2),
                                        # per down block (the last also the middle block's), as diffusers takes
                                        # it: a list was not counted, and was ready whatever it said
                                        ("transformer_layers_per_block", [2, 2, 2]),
                                        ("transformer_layers_per_block", [1, 1, 2]),
                                        ("transformer_layers_per_block", [[1], [1], [2]]),
                                        ("transformer_layers_per_block", [1, 1]),
                                        ("down_block_types", ["CrossAttnDownBlock2D"] * 2),
                                        ("block_out_channels", [32, 32, 64, 64])])
def test_what_a_controlnets_load_refuses_models_check_and_the_engines_status_refuse(weights, tmp_path, monkeypatch,
                                                                                  capsys, key, value):
    """`handforge models check` built the model its config.json describes and compared shapes, and the engines'
    status read the widths alone: a NaN or negative norm_eps, an unknown channel order or an absurd size was 'ok'
    and ready, and every job's load refused it; so was a config.json of fewer or more layers, transformer blocks or
    down blocks than its weights hold, until the status counted them in the weights' header."""
    from handforge.engines.image import jobs
    from handforge.engines.image.loading import WeightsError, load_controlnet

    folder = tmp_path / "guidance"
    shutil.copytree(weights[2], folder)
    config_file = folder / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), key: value}))
    with pytest.raises(WeightsError) as refused:
        load_controlnet(folder)
    assert main(["models", "check", "--kind", "controlnet", str(folder)]) == 1
    assert "problem: " in capsys.readouterr().out
    _image_settings(monkeypatch, tmp_path, weights[1], folder)
    status = jobs.IMAGE_ENGINES["attentionhand"].status()
    assert not status.available and status.reason == f"image.guidance = {refused.value}", status
    monkeypatch.setenv("HANDFORGE_CONTROLNETS", str(tmp_path))  # (holding guidance/ alone)
    status = jobs.IMAGE_ENGINES["controlnet"].status()
    assert not status.available and status.reason == f"image.controlnets: {refused.value}", status


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_controlnet_weights_that_are_not_finite_are_refused_by_the_load_and_models_check(weights, tmp_path,
                                                                                       monkeypatch, capsys, bad):
    """They loaded (status, `models check` and load all said yes), and every image came out black or noise. The
    status reads the header only (a ControlNet's values are hundreds of MB): the load and `models check` read them."""
    import torch

    from handforge.engines.checkpoints import WEIGHTS_NAME
    from handforge.engines.image import jobs
    from handforge.engines.image.loading import WeightsError, load_controlnet

    folder = tmp_path / "guidance"
    shutil.copytree(weights[2], folder)
    tensors = load_file(folder / WEIGHTS_NAME)
    tensors["controlnet_mid_block.weight"][0, 0] = bad
    save_file(tensors, folder / WEIGHTS_NAME)
    with pytest.raises(WeightsError) as refused:
        load_controlnet(folder)
    assert str(refused.value).startswith(f"{folder / WEIGHTS_NAME} holds weights that are not finite (NaN or "
                                         "infinity), e.g. controlnet_mid_block.weight: every image made with them "
                                         "would come out black or noise"), refused.value
    assert refused.value.path == folder
    assert main(["models", "check", "--kind", "controlnet", str(folder)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if "problem:" in line]
    assert problems == [f"    problem: {folder / WEIGHTS_NAME}: controlnet_mid_block.weight holds values that are "
                        "not finite (NaN or infinity): images made with it would come out black or noise; copy or "
                        "download it again, or train it again"], problems
    _image_settings(monkeypatch, tmp_path, weights[1], folder)
    assert jobs.IMAGE_ENGINES["attentionhand"].status().available  # (header only: the job's load refuses it)
    # finite in the file, beyond float16 once loaded in it: said so (training again would not mend it)
    tensors["controlnet_mid_block.weight"][0, 0] = 1e6
    save_file(tensors, folder / WEIGHTS_NAME)
    assert main(["models", "check", "--kind", "controlnet", str(folder)]) == 0
    with pytest.raises(WeightsError, match=r"holds controlnet_mid_block.weight up to 1e\+06 in torch.float32, beyond "
                                           r"the range of the torch.float16 it was loaded in .*; load it in "
                                           r"torch.float32$"):
        load_controlnet(folder, dtype=torch.float16)


@pytest.mark.parametrize("part, file", [("unet", "diffusion_pytorch_model.safetensors"),
                                        ("vae", "diffusion_pytorch_model.safetensors"),
                                        ("text_encoder", "model.safetensors")])
def test_sd_weights_that_are_not_finite_are_refused_by_the_load_and_models_check(weights, tmp_path, capsys, part,
                                                                               file):
    """A NaN in the UNet, VAE or text encoder loaded without a word, and every image came out black."""
    from handforge.engines.image.loading import WeightsError, load_sd

    sd = tmp_path / "sd"
    shutil.copytree(weights[1], sd)
    tensors = load_file(sd / part / file)
    name = next(key for key in sorted(tensors) if key.endswith(".weight") and tensors[key].is_floating_point())
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, sd / part / file)
    with pytest.raises(WeightsError) as refused:
        load_sd(sd)
    assert str(refused.value).startswith(f"{sd / part / file} holds weights that are not finite (NaN or infinity), "
                                         f"e.g. {name}: "), refused.value
    assert refused.value.path == sd / part
    assert main(["models", "check", str(sd)]) == 1
    problems = [line for line in capsys.readouterr().out.splitlines() if "problem:" in line]
    assert problems == [f"    problem: {sd / part / file}: {name} holds values that are not finite (NaN or infinity): "
                        "images made with it would come out black or noise; copy or download it again, or train it "
                        "again"], problems


def test_the_image_engines_hand_model_is_the_hands_engines_on_the_cpu_and_a_labelled_cpu_copy_on_a_gpu():
    """Both were cached as "the open hand model" under two keys: a CPU server loaded the same model twice, each
    time said as "loading the open hand model", and a GPU server's progress could not tell the hands engine's
    model on the GPU from the image engine's CPU copy."""
    from handforge.engines.hands.jobs import cached_hand_model
    from handforge.engines.image.jobs import hand_model_for
    from handforge.server.jobs import JobContext
    from handforge.server.model_cache import ModelCache

    cache, said = ModelCache(), []

    def context(kind: str, device: str) -> JobContext:
        ctx = JobContext("j", kind, lambda fraction, message, previews: said.append(message), models=cache)
        ctx.device = device
        return ctx

    hands = context("hands.forward", "cpu")
    posed = cached_hand_model(hands, "open")
    image = context("image.generate", "cpu")
    assert hand_model_for(image, "open") is posed and image.loaded == []  # one model, loaded once
    on_gpu = context("image.generate", "cuda:0")  # (its copy stays on the CPU: no GPU is needed here)
    copy = hand_model_for(on_gpu, "open")
    assert copy is not posed and on_gpu.loaded == ["the open hand model (a CPU copy for the pose renders)"]
    assert said == ["loading the open hand model", "loading the open hand model (a CPU copy for the pose renders)"]


def test_a_controlnet_of_other_transformer_layers_per_down_block_is_counted_per_block(weights, tmp_path):
    """transformer_layers_per_block as a list (diffusers' per-down-block form, SDXL's ControlNets use it): the status
    counts each block's against its own entry, so one whose weights hold what it says is ready and loads."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from handforge.engines.image.loading import controlnet_problem, load_controlnet

    unet = UNet2DConditionModel(**{**tiny_sd.unet_config(), "transformer_layers_per_block": [1, 2, 1]})
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).save_pretrained(
        str(tmp_path / "net"))
    assert json.loads((tmp_path / "net" / "config.json").read_text())["transformer_layers_per_block"] == [1, 2, 1]
    assert controlnet_problem(tmp_path / "net") == ""
    assert len(load_controlnet(tmp_path / "net").down_blocks[1].attentions[0].transformer_blocks) == 2
    config_file = tmp_path / "net" / "config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "transformer_layers_per_block": [1, 1, 1]}))
    assert "sets transformer_layers_per_block[1] to 1, but its weights file holds 2 " \
           "(down_blocks.1.attentions.0.transformer_blocks.0-1)" in controlnet_problem(tmp_path / "net")


def test_a_unet_config_of_fewer_transformer_layers_than_its_weights_is_refused_by_the_load_and_models_check(
        weights, tmp_path, capsys):
    """The UNet's weights beyond its config.json were dropped unsaid (diffusers only warns) and SD sampled without
    them; `models check` built the model the config describes and found no tensor missing. A per-down-block list
    (diffusers' form) that fits its weights loads."""
    from diffusers import UNet2DConditionModel

    from handforge.engines.image.loading import WeightsError, load_sd

    sd = tmp_path / "sd"
    shutil.copytree(weights[1], sd)
    shutil.rmtree(sd / "unet")
    UNet2DConditionModel(**{**tiny_sd.unet_config(), "transformer_layers_per_block": [1, 2, 1]}).save_pretrained(
        str(sd / "unet"))
    assert len(load_sd(sd)["unet"].down_blocks[1].attentions[0].transformer_blocks) == 2
    assert main(["models", "check", "--kind", "sd", str(sd)]) == 0
    capsys.readouterr()
    config_file = sd / "unet" / "config.json"
    for fewer in ([1, 1, 1], 1):
        config = json.loads(config_file.read_text())
        config_file.write_text(json.dumps({**config, "transformer_layers_per_block": fewer}))
        with pytest.raises(WeightsError, match=r"unet has 60 weights its model has not \(e\.g\. down_blocks\.1\."
                                               r"attentions\.0\.transformer_blocks\.1\..*\): its weights file does "
                                               "not fit its config.json"):
            load_sd(sd)
        assert main(["models", "check", "--kind", "sd", str(sd)]) == 1
        assert "60 tensors its config.json makes no place for" in capsys.readouterr().out


def test_check_kind_without_a_path_checks_only_the_configured_weights_of_that_kind(weights, monkeypatch, capsys):
    # before: `models check --kind sd` checked the guidance module and every ControlNet too (--kind was read only
    # with a PATH), and `--kind controlnet` the SD model
    root, sd, guidance = weights
    _image_settings(monkeypatch, root, sd, guidance)
    assert main(["models", "check", "--kind", "sd"]) == 0
    out = capsys.readouterr().out
    assert f"ok  sd  {sd}" in out and "controlnet" not in out, out
    assert main(["models", "check", "--kind", "controlnet"]) == 0
    out = capsys.readouterr().out
    assert f"ok  controlnet  {guidance}" in out and "  sd  " not in out, out
    monkeypatch.delenv("HANDFORGE_IMAGE_GUIDANCE")
    assert main(["models", "check", "--kind", "controlnet"]) == 1
    assert "no guidance module or ControlNet is configured" in capsys.readouterr().err


def test_the_demos_skip_line_says_an_import_needs_its_setting_too(weights, tmp_path, monkeypatch, capsys):
    # before: it said `models import` "brings in weights you have, and the demo then generates a labelled image";
    # an import sets nothing, and the demo skipped the image again
    from handforge.engines.image.demo import demo

    root, sd, guidance = weights
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    for setting in ("HANDFORGE_SD_MODEL", "HANDFORGE_IMAGE_GUIDANCE", "HANDFORGE_CONTROLNETS"):
        monkeypatch.delenv(setting, raising=False)
    assert main(["models", "import", str(sd), "--kind", "sd"]) == 0
    assert main(["models", "import", str(guidance), "--kind", "guidance"]) == 0
    assert 'sd_model = "' in capsys.readouterr().out  # the import prints the setting to add
    demo(tmp_path / "demo")
    line = capsys.readouterr().out
    assert line.startswith("image generation: skipped") and "prints the setting to add" in line, line
    assert not (tmp_path / "demo" / "generated").exists()


def test_checking_a_controlnet_folder_does_not_guess_aloud_at_what_it_holds(weights, tmp_path, capsys):
    # before: every ControlNet checked by its path was announced "checking ... as a ControlNet folder (it has no
    # unet/): --kind sd checks it as an SD model", though its config.json names ControlNetModel; the guess is said
    # only where the folder does not say what it is
    root, sd, guidance = weights
    assert main(["models", "check", str(guidance)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok  controlnet  {guidance}") and "--kind sd" not in out, out
    unsaid = tmp_path / "unsaid"
    shutil.copytree(guidance, unsaid)
    (unsaid / "config.json").write_text("{}")  # names no class: the guess is said
    main(["models", "check", str(unsaid)])
    assert f"checking {unsaid} as a ControlNet folder (it has no unet/)" in capsys.readouterr().out


def _inpainting_sd(folder, sd):
    """``sd`` with an inpainting UNet: 9 input channels (the latents, a mask, the masked image's latents)."""
    from diffusers import UNet2DConditionModel

    shutil.copytree(sd, folder)
    shutil.rmtree(folder / "unet")
    unet = UNet2DConditionModel(**{**tiny_sd.unet_config(), "in_channels": 9})
    tiny_sd._randomise(unet, 0)
    unet.save_pretrained(str(folder / "unet"))
    return folder, unet


def test_an_inpainting_sd_model_or_controlnet_is_refused_by_the_load_models_check_and_the_engines_status(
        weights, tmp_path, monkeypatch, capsys):
    # before: an SD inpainting model (UNet in_channels 9) loaded, checked ok and made both engines ready, and every
    # job failed at its first step with torch's "expected input[2, 9, 16, 16] to have 4 channels", naming no file
    from diffusers import ControlNetModel

    from handforge.engines.image.loading import WeightsError, build_pipeline, load_sd, sd_fit_problem

    root, sd, guidance = weights
    inpainting, unet = _inpainting_sd(tmp_path / "sd-inpainting", sd)
    said = (f"{inpainting / 'unet'} is an inpainting or other non-text-to-image UNet (in_channels 9, its VAE's "
            "latent_channels 4): give an SD 1.x text-to-image model")
    with pytest.raises(WeightsError, match=re.escape(said)):
        load_sd(inpainting)
    assert main(["models", "check", "--kind", "sd", str(inpainting)]) == 1
    assert said in capsys.readouterr().out
    env = {"HANDFORGE_CONFIG": str(tmp_path / "none.toml"), "HANDFORGE_SD_MODEL": str(inpainting),
           "HANDFORGE_IMAGE_GUIDANCE": str(guidance), "HANDFORGE_CONTROLNETS": str(root)}
    statuses = light_statuses("from handforge.engines.image import jobs",
                              "{name: jobs.IMAGE_ENGINES[name].status().to_json() for name in jobs.IMAGE_ENGINES}", env)
    for name in ("attentionhand", "controlnet"):
        assert not statuses[name]["available"] and statuses[name]["reason"] == f"image.sd_model = {inpainting}: " \
            f"{said}", statuses[name]
        assert statuses[name]["hint"].startswith("point image.sd_model at an SD 1.x text-to-image model"), statuses
    # a single-file inpainting model, its configs (image.sd_config) an inpainting model's: refused alike
    single = write_single_file(inpainting, tmp_path / "inpainting.safetensors")
    with pytest.raises(WeightsError, match=re.escape(said)):
        load_sd(single, inpainting)
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(inpainting))
    assert main(["models", "check", "--kind", "sd", str(single)]) == 1
    assert "inpainting or other non-text-to-image UNet (in_channels 9" in capsys.readouterr().out
    # a ControlNet made for it reads 9 channels where the text-to-image UNet gives it 4
    net = tmp_path / "control_inpainting"
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).save_pretrained(str(net))
    with pytest.raises(WeightsError, match=r"does not fit .*its in_channels is 9, the SD model's UNet has 4 \(a "
                                           r"ControlNet of an inpainting model\?\)"):
        build_pipeline(sd, [net])
    assert "its in_channels is 9, the SD model's UNet has 4" in sd_fit_problem(net, sd)
    assert main(["models", "check", "--kind", "sd", str(sd)]) == 0  # the text-to-image model as made: ok


@pytest.mark.parametrize("platform, method", [("linux", "fork"), ("darwin", "spawn"), ("win32", "spawn")])
def test_fetch_forks_its_download_only_on_linux(tmp_path, monkeypatch, platform, method):
    """fetch forked its download's process wherever fork exists, macOS included, where a forked child that
    touches CoreFoundation (urllib's proxy lookup under the hub's requests) can crash or hang: spawn there."""
    import multiprocessing
    import sys

    from handforge.engines.image.weights import fetch

    class Chosen(Exception):
        pass

    chosen = []

    def get_context(name=None):
        chosen.append(name)
        raise Chosen  # (no process started: a spawned child here would not see this test's patches)

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(multiprocessing, "get_context", get_context)
    with pytest.raises(Chosen):
        fetch("controlnet-normal", models_dir=tmp_path, say=lambda text: None)
    assert chosen == [method]
    assert list((tmp_path / "controlnets").iterdir()) == []  # (its partial folder removed)


def test_weights_that_are_a_device_or_a_fifo_are_said_to_be_so(tmp_path):
    """`models check /dev/zero` and a FIFO said "no such folder", and an SD setting that is a FIFO "FIFO/unet: no
    such folder" (the fuzzing of 2026-12-07)."""
    import os

    from handforge.engines.image.weights import check

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert check("sd", fifo).problems == [f"{fifo}: a FIFO, not weights HandForge reads: a .safetensors file or a "
                                          "diffusers folder"]
    for kind in ("guidance", "controlnet"):
        assert check(kind, "/dev/zero").problems == ["/dev/zero: a device, not a folder"]
        assert check(kind, fifo).problems == [f"{fifo}: a FIFO, not a folder"]
        assert check(kind, tmp_path / "nowhere").problems == [f"{tmp_path / 'nowhere'}: no such folder"]


@pytest.mark.skipif(os.name == "nt", reason="no file-size limit (resource) on Windows")
def test_an_import_whose_copy_fails_names_the_file_and_why_in_words(weights, tmp_path):
    """A copy that failed (here: a file-size limit) printed shutil's raw list: "could not copy sd: [('/…/unet/
    diffusion_pytorch_model.safetensors', '…/.sd.partial/…', "[Errno 27] File too large: …")]"."""
    import resource
    import subprocess
    import sys

    sd = weights[1]
    largest = max(p.stat().st_size for p in sd.rglob("*") if p.is_file())
    assert largest > 16_384
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HANDFORGE_MODELS_DIR": str(tmp_path / "models"),
           "PYTHONPATH": os.pathsep.join(str(root / p) for p in ("backend", "shared"))}
    run = subprocess.run([sys.executable, "-m", "handforge", "models", "import", str(sd), "--kind", "sd"], env=env,
                         capture_output=True, text=True, timeout=300,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (largest // 2, largest // 2)))
    assert run.returncode == 1, run.stderr
    said = re.fullmatch(rf"handforge models import: could not copy {re.escape(str(sd))}: {re.escape(str(sd))}/(\S+): "
                        r"File too large: over this process's file-size limit .*; nothing was left half-copied: run "
                        r"it again\n", run.stderr)
    assert said and (sd / said[1]).stat().st_size == largest, run.stderr
    assert not any((tmp_path / "models").rglob("*.safetensors"))


def test_check_of_a_folder_of_controlnets_says_to_check_each(weights, tmp_path, capsys):
    """A folder of ControlNets (what image.controlnets names) was "no config.json" alone."""
    shutil.copytree(weights[2], tmp_path / "cns" / "mesh")
    assert main(["models", "check", str(tmp_path / "cns"), "--kind", "controlnet"]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'cns'}: no config.json: it holds model folders (mesh), as a folder of ControlNets does (what " \
           f"image.controlnets names): check each of them, e.g. handforge models check {tmp_path / 'cns' / 'mesh'}" in out
    assert main(["models", "check", str(tmp_path / "cns" / "mesh"), "--kind", "controlnet"]) == 0
