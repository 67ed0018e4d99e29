"""SD 1.x as one original-layout (CompVis/LDM) ``.safetensors`` file, as many users hold it, read through
diffusers' ``from_single_file`` with ``image.sd_config`` a local diffusers folder: the tiny SD of
``tests.support.tiny_sd`` written as such a file (``tests.support.single_file_sd``) loads the same weights as
its folder, makes the same images, checks and imports, and never reaches for the network."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from handforge.cli import main
from handforge.engines.image.loading import WeightsError, build_pipeline, load_sd
from safetensors import safe_open

from tests.support import tiny_sd
from tests.support.single_file_sd import write_single_file

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a man holding two hands"
SIZE = tiny_sd.IMAGE_SIZE

_connections: list | None = None  # while a list: the network calls made (socket audit events)


def _audit(event: str, args: tuple) -> None:
    if _connections is not None and event in ("socket.connect", "socket.getaddrinfo"):
        _connections.append((event, args))


sys.addaudithook(_audit)  # (audit hooks stay for the process: it records only inside ``_no_network``)


def _no_network(load):
    """``load()``'s result, and the connections and lookups it attempted (none should be)."""
    global _connections
    _connections = []
    try:
        return load(), _connections
    finally:
        _connections = None


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("single")
    sd = tiny_sd.build_sd(root / "sd")
    guidance = tiny_sd.build_controlnet(root / "guidance", sd, seed=1)
    return root, sd, guidance, write_single_file(sd, root / "v1-5-pruned-emaonly.safetensors")


def _state(model) -> dict:
    return {k: v.detach() for k, v in model.state_dict().items()}


def test_the_file_is_in_the_original_layout(models):
    # (the writer's own check: every tensor of the folder once, under the LDM's names, none under diffusers')
    _, sd, _, file = models
    with safe_open(str(file), "pt") as f:
        keys = set(f.keys())
        attention_q = f.get_tensor("first_stage_model.encoder.mid.attn_1.q.weight")
    folder = sum(len(safe_open(str(sd / part / name), "pt").keys()) for part, name in (
        ("unet", "diffusion_pytorch_model.safetensors"), ("vae", "diffusion_pytorch_model.safetensors"),
        ("text_encoder", "model.safetensors")))
    families = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")
    assert sum(k.startswith(families) for k in keys) == folder + 1  # (+ the text encoder's position_ids)
    for key in ("model.diffusion_model.input_blocks.0.0.weight", "model.diffusion_model.middle_block.1.proj_in.weight",
                "model.diffusion_model.output_blocks.1.2.conv.weight", "model.diffusion_model.out.2.weight",
                "model.diffusion_model.input_blocks.1.0.in_layers.0.weight",
                "first_stage_model.decoder.up.3.block.0.conv1.weight", "first_stage_model.encoder.norm_out.weight",
                "cond_stage_model.transformer.text_model.embeddings.position_ids", "alphas_cumprod"):
        assert key in keys, key
    assert attention_q.ndim == 4  # a 1x1 conv there, a linear layer in diffusers
    assert not any(name in k for k in keys for name in ("down_blocks", "mid_block", "resnets", "conv_norm_out"))


def test_the_file_loads_the_folders_weights_offline(models):
    root, sd, _, file = models
    folder = load_sd(sd)
    single, connections = _no_network(lambda: load_sd(file, sd))
    assert connections == []  # (HF_HUB_OFFLINE is not set here: our load passes local_files_only alone)
    for part in ("unet", "vae", "text_encoder"):
        a, b = _state(folder[part]), _state(single[part])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
        configs = [{k: v for k, v in (m[part].config.to_dict() if part == "text_encoder" else m[part].config).items()
                    if k != "_name_or_path"} for m in (single, folder)]  # (the folder's, or none)
        assert configs[0] == configs[1], part
    assert dict(single["scheduler"].config) == dict(folder["scheduler"].config)
    assert single["tokenizer"](PROMPT).input_ids == folder["tokenizer"](PROMPT).input_ids
    # SD 1.x files are as often saved in float16: read back as float32, the folder's weights rounded
    half = load_sd(write_single_file(sd, root / "half.safetensors", torch.float16), sd)
    a, b = _state(folder["unet"]), _state(half["unet"])
    assert all(b[k].dtype == torch.float32 and torch.equal(a[k].half().float(), b[k]) for k in a)


def test_a_file_with_an_ema_copy_loads_the_ema_unet(models, tmp_path, capfd):
    """SD 1.x's 'v1-5-pruned.safetensors' holds the trained UNet and its EMA copy (``model_ema.*``); the EMA one
    is what its authors give for inference ('-emaonly' is that copy alone), and diffusers' from_single_file reads
    the trained one unless asked. Built here from two tiny SDs of other seeds: the file's UNet is the EMA one's,
    its other parts the file's own; diffusers' notes of which copy it read are not passed on."""
    root, sd, _, _ = models
    other = tiny_sd.build_sd(tmp_path / "ema", seed=7)
    both = load_sd(write_single_file(sd, tmp_path / "v1-5-pruned.safetensors", ema=other), sd)
    ema, trained = _state(load_sd(other)["unet"]), _state(load_sd(sd)["unet"])
    got = _state(both["unet"])
    assert got.keys() == ema.keys() and all(torch.equal(got[k], ema[k]) for k in ema)
    assert not all(torch.equal(got[k], trained[k]) for k in trained)
    folder_vae = _state(load_sd(sd)["vae"])
    assert all(torch.equal(v, folder_vae[k]) for k, v in _state(both["vae"]).items())
    assert "EMA" not in capfd.readouterr().err  # (diffusers' advice names its conversion script's flag)


def test_a_file_of_sd15s_layout_loads_the_folders_weights(tmp_path):
    # the names the tiny model's file does not have: two layers per level, a level without attention (the
    # upsampler after a resnet alone), the VAE's shortcuts, up to output_blocks.11 (diffusers' own test for SD 1.x)
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors.torch import load_file

    sd = tiny_sd.build_sd15_shaped(tmp_path / "sd")
    file = write_single_file(sd, tmp_path / "sd15.safetensors")
    tensors = load_file(file)
    for key in ("model.diffusion_model.output_blocks.11.0.skip_connection.weight",
                "model.diffusion_model.output_blocks.2.1.conv.weight", "model.diffusion_model.input_blocks.9.0.op.weight",
                "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight",
                "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight"):
        assert key in tensors, key
    assert infer_diffusers_model_type(tensors) == "v1"
    folder, single = load_sd(sd), load_sd(file, sd)
    for part in ("unet", "vae", "text_encoder"):
        a, b = _state(folder[part]), _state(single[part])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part


def test_the_file_makes_the_folders_images(models):
    _, sd, guidance, file = models
    control = np.random.default_rng(0).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    images = []
    for pipe in (build_pipeline(sd, [guidance]), build_pipeline(file, [guidance], sd_config=sd)):
        out = pipe(PROMPT, [control], num_inference_steps=3, guidance_scale=7.5, num_images=2, tas_tokens=[4, 9],
                   tas_steps=1, generator=torch.Generator().manual_seed(5))
        images.append(out.images)
    _same_image(*images)


def _same_image(a: np.ndarray, b: np.ndarray) -> None:
    """``a`` and ``b`` the same to float rounding: the same weights at other memory addresses (each part's tensors
    sit in the file's memory map at other offsets) made torch's CPU kernels round some sums otherwise, on 1 or 2
    threads (a few values in 50,000 one level apart; with the weights copied to fresh memory, the same bits)."""
    apart = np.abs(a.astype(int) - b.astype(int))
    assert a.std() > 0 and apart.max() <= 1 and (apart > 0).mean() < 1e-3, (apart.max(), (apart > 0).mean())


def test_models_check_and_import_take_the_file(models, tmp_path, monkeypatch, capsys):
    root, sd, guidance, file = models
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(sd))
    monkeypatch.setenv("HANDFORGE_MODELS_DIR", str(tmp_path / "models"))
    assert main(["models", "check", str(file)]) == 0
    assert capsys.readouterr().out.startswith(f"ok  sd  {file}\n")
    assert main(["models", "import", str(file), "--kind", "sd"]) == 0
    imported = tmp_path / "models" / "sd" / file.name
    assert f'sd_model = "{imported}"' in capsys.readouterr().out
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(imported))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    monkeypatch.delenv("HANDFORGE_CONTROLNETS", raising=False)
    assert main(["models"]) == 0
    assert "attentionhand: ready" in capsys.readouterr().out
    single = load_sd(imported, sd)
    assert torch.equal(single["unet"].conv_out.weight, load_sd(sd)["unet"].conv_out.weight)


@pytest.mark.slow
def test_a_server_job_makes_the_same_images_from_the_file(models):
    from handforge.render.camera import look_at
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    from tests.support.server import running_server

    root, sd, guidance, file = models
    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    arrays = {"camera.K": np.array([[150.0, 0, SIZE / 2], [0, 150.0, SIZE / 2], [0, 0, 1]]), "camera.R": R,
              "camera.t": t, **pose_arrays({"right": pose_library.get("fist", side="right")})}
    params = {"prompt": PROMPT, "width": SIZE, "height": SIZE, "steps": 2, "seed": 4, "engine": "attentionhand"}
    images = []
    for model in ({"HANDFORGE_SD_MODEL": str(sd)}, {"HANDFORGE_SD_MODEL": str(file), "HANDFORGE_SD_CONFIG": str(sd)}):
        env = {**model, "HANDFORGE_CONFIG": str(root / "none.toml"), "HANDFORGE_IMAGE_GUIDANCE": str(guidance),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        with running_server("--devices", "cpu", env=env) as server, server.client() as client:
            assert client.hello()["engines"]["attentionhand"]["available"]
            images.append(client.run("image.generate", params, arrays, timeout=600).arrays["images"])
    _same_image(*images)


def test_an_sd_config_folder_as_models_fetch_leaves_sd15_serves(models, tmp_path, capfd):
    # before: "cannot load Stable Diffusion from FILE: OSError: Can't load image processor ...": SD 1.5's
    # model_index.json names a feature extractor (and a safety checker) whose files `handforge models fetch` leaves
    # out, and from_single_file loaded every component the index names but the safety checker
    _, sd, _, file = models
    config = tmp_path / "stable-diffusion-v1-5"
    shutil.copytree(sd, config)
    index = json.loads((config / "model_index.json").read_text())
    index.update(feature_extractor=["transformers", "CLIPImageProcessor"], requires_safety_checker=True,
                 safety_checker=["stable_diffusion", "StableDiffusionSafetyChecker"])
    (config / "model_index.json").write_text(json.dumps(index))
    (config / "safety_checker").mkdir()
    (config / "safety_checker" / "config.json").write_text("{}")  # (*/config.json is fetched, not its weights)
    capfd.readouterr()
    parts, connections = _no_network(lambda: load_sd(file, config))
    assert connections == [] and torch.equal(parts["unet"].conv_in.weight, load_sd(sd)["unet"].conv_in.weight)
    # and quietly, as a folder loads (a job reports its own progress): diffusers drew a bar per load on stderr
    assert "Loading pipeline components" not in capfd.readouterr().err


def test_an_sd_config_folder_without_model_index_is_named(models, tmp_path, monkeypatch, capsys):
    # before: the engines were "ready", `models check FILE` said ok, and each load failed as "cannot load Stable
    # Diffusion from FILE: OSError: Error no file named model_index.json found in directory CONFIG; `handforge
    # models check FILE` names the damaged file" (a folder of the five parts serves as the SD model itself)
    root, sd, guidance, file = models
    config = tmp_path / "parts"
    shutil.copytree(sd, config)
    (config / "model_index.json").unlink()
    with pytest.raises(WeightsError, match=f"image.sd_config = {config} has no model_index.json: it must be a whole "
                                           "diffusers SD 1.x folder") as refused:
        load_sd(file, config)
    assert refused.value.path == config
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(file))
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(config))
    monkeypatch.setenv("HANDFORGE_IMAGE_GUIDANCE", str(guidance))
    monkeypatch.delenv("HANDFORGE_CONTROLNETS", raising=False)
    assert main(["models"]) == 0
    assert f"attentionhand: not ready: image.sd_model = {file}: image.sd_config = {config} has no model_index.json" \
        in capsys.readouterr().out
    assert main(["models", "check", str(file)]) == 1
    assert f"problem: image.sd_config = {config} has no model_index.json" in capsys.readouterr().out


@pytest.mark.parametrize("damage, said", [
    (lambda t: t.pop("model.diffusion_model.out.2.weight"), "lacks 1 of the unet's 402 tensors"),
    (lambda t: t.pop("first_stage_model.decoder.conv_out.bias"), "lacks 1 of the vae's 176 tensors"),
    (lambda t: t.pop("cond_stage_model.transformer.text_model.final_layer_norm.weight"),
     "lacks 1 of the text_encoder's 36 tensors"),
    (lambda t: t.update({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 9, 3, 3)}),  # inpainting's
     "the unet's conv_in.weight is (32, 9, 3, 3) there"),
    (lambda t: [t.pop(k) for k in list(t) if k.startswith("cond_stage_model.")], "holds no text_encoder"),
])
def test_a_file_that_lacks_tensors_or_holds_other_shapes_is_named(models, tmp_path, monkeypatch, capsys, damage, said):
    # before: diffusers left a missing tensor unset: "cannot load Stable Diffusion from FILE: NotImplementedError:
    # Cannot copy out of meta tensor", or for the text encoder a RuntimeError out of load_sd ("Tensor.item() cannot
    # be called on meta tensors": an internal error of the job), and `models check FILE`, where the error sent the
    # user, said ok; a wrong shape or a missing part came as diffusers' words, naming no tensor or code to write
    from safetensors.torch import load_file, save_file

    _, sd, _, file = models
    tensors = load_file(file)
    damage(tensors)
    damaged = tmp_path / file.name
    save_file(tensors, damaged)
    with pytest.raises(WeightsError, match=re.escape(said)) as refused:
        load_sd(damaged, sd)
    assert refused.value.path == damaged and str(damaged) in str(refused.value)
    monkeypatch.setenv("HANDFORGE_SD_CONFIG", str(sd))
    assert main(["models", "check", str(damaged)]) == 1
    assert said in capsys.readouterr().out


@pytest.mark.slow
def test_a_server_takes_a_changed_sd_config_as_it_takes_a_changed_sd_model(models, tmp_path):
    """image.generate kept the pipeline of the first ``image.sd_config`` (the key and signature named the .safetensors
    file alone) until the server restarted: another config folder, or files edited inside it, went unseen."""
    from handforge.render.camera import look_at
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    from tests.support.server import running_server

    root, sd, guidance, file = models
    for name in ("a", "same_as_a"):
        shutil.copytree(sd, tmp_path / name)
    settings = tmp_path / "handforge.toml"

    def point(folder: Path) -> None:
        (tmp_path / "new.toml").write_text(f'[image]\nsd_model = "{file}"\nsd_config = "{folder}"\n'
                                           f'guidance = "{guidance}"\n')
        os.replace(tmp_path / "new.toml", settings)

    R, t = look_at([-0.08, -0.35, 0.06], [-0.08, 0.0, 0.0])
    arrays = {"camera.K": np.array([[150.0, 0, SIZE / 2], [0, 150.0, SIZE / 2], [0, 0, 1]]), "camera.R": R,
              "camera.t": t, **pose_arrays({"right": pose_library.get("fist", side="right")})}
    params = {"prompt": PROMPT, "width": SIZE, "height": SIZE, "steps": 3, "seed": 4, "engine": "attentionhand"}
    point(tmp_path / "a")
    env = {"HANDFORGE_CONFIG": str(settings),
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with running_server("--devices", "cpu", env=env) as server, server.client() as client:
        first = client.run("image.generate", params, arrays, timeout=600).arrays["images"]
        scheduler = tmp_path / "a" / "scheduler" / "scheduler_config.json"  # edited in place: another schedule
        (tmp_path / "new.json").write_text(json.dumps({**json.loads(scheduler.read_text()), "beta_end": 0.02,
                                                       "beta_schedule": "linear"}))
        os.replace(tmp_path / "new.json", scheduler)
        edited = client.run("image.generate", params, arrays, timeout=600).arrays["images"]
        point(tmp_path / "same_as_a")  # another folder, with A's first files: A's first images again
        again = client.run("image.generate", params, arrays, timeout=600).arrays["images"]
    assert np.abs(edited.astype(float) - first.astype(float)).mean() > 1.0
    _same_image(first, again)
