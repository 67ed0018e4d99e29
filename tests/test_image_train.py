"""``handforge train guidance`` on a tiny exported set: the guidance module's loss falls; TAS in
training runs; bad data folders are named."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from handforge.cli import main
from handforge.engines.image.data import GuidancePairs
from handforge.engines.image.loading import load_controlnet, load_sd
from handforge.engines.image.train import GuidanceObjective
from handforge.export.run import export
from handforge.export.spec import parse_spec
from PIL import Image

from tests.support import tiny_sd

SIZE = tiny_sd.IMAGE_SIZE


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    sd = tiny_sd.build_sd(root / "sd")
    data = root / "data"
    export(parse_spec({"seed": 2, "samples": 4, "width": SIZE, "height": SIZE, "render": {"engine": "none"},
                       "camera": {"distance": [0.3, 0.45]}, "outputs": ["mesh"]}), data, progress=False)
    # Blender's RGB is slow in a test: the "photo" is the mesh image tinted, on a grey background
    for k, sample in enumerate(sorted((data / "samples").iterdir())):
        mesh = np.asarray(Image.open(sample / "mesh.png").convert("RGB")).astype(np.float32)
        rgb = np.where(mesh.sum(-1, keepdims=True) > 0, mesh * [0.9, 0.7, 0.6], 90.0)
        Image.fromarray(rgb.astype(np.uint8)).save(sample / "rgb.png")
        if k == 0:
            (sample / "caption.txt").write_text("a person holding hands\n")
    return sd, data, root


def fixed_loss(objective, net, dataset) -> float:
    batch = {k: torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in dataset[0]}
    torch.manual_seed(123)  # the same noise and timesteps for both models
    with torch.no_grad():
        return float(np.mean([float(objective(net, batch)[0]) for _ in range(3)]))


@pytest.mark.slow
def test_training_lowers_the_loss(setup, tmp_path):
    sd_path, data, _ = setup
    out = tmp_path / "run"
    assert main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(out), "--size",
                 str(SIZE), "--steps", "20", "--batch-size", "2", "--lr", "2e-3", "--checkpoint-every", "10",
                 "--quiet"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 20 and {"global", "local"} <= set(log[-1])
    sd = load_sd(sd_path)
    objective = GuidanceObjective(sd, 0.5, 0.5, None)
    dataset = GuidancePairs(data, sd["tokenizer"], size=SIZE)
    from diffusers import ControlNetModel

    before = fixed_loss(objective, ControlNetModel.from_unet(sd["unet"]), dataset)
    after = fixed_loss(objective, load_controlnet(out / "model"), dataset)
    assert after < 0.93 * before
    assert sorted(p.name for p in (out / "model").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]


def test_dataset_pairs_and_tas_in_training(setup, tmp_path, capsys):
    sd_path, data, _ = setup
    sd = load_sd(sd_path)
    dataset = GuidancePairs(data, sd["tokenizer"], size=SIZE)
    item = dataset[0]
    assert item["rgb"].shape == item["rgb_local"].shape == (3, SIZE, SIZE)
    assert float(item["rgb"].min()) >= -1 and float(item["mesh"].max()) <= 1
    # the local mesh is the hands' box (grown by the margin): the hands span it, up to that margin
    hand = item["mesh_local"].sum(0) > 0
    rows, cols = torch.nonzero(hand.any(1))[:, 0], torch.nonzero(hand.any(0))[:, 0]
    assert max(int(rows[-1] - rows[0]), int(cols[-1] - cols[0])) >= SIZE / (1 + 2 * 0.15) - 3
    assert sd["tokenizer"].decode(item["input_ids"], skip_special_tokens=True).strip() == "a person holding hands"
    (sorted((data / "samples").iterdir())[1] / "caption.txt").write_text("\n")  # empty: the default caption
    assert GuidancePairs(data, sd["tokenizer"], size=SIZE, default_caption="two hands")._caption(
        sorted((data / "samples").iterdir())[1]) == "two hands"
    assert main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(tmp_path / "tas"),
                 "--size", str(SIZE), "--steps", "1", "--batch-size", "2", "--tas", "--quiet"]) == 0
    assert (tmp_path / "tas" / "model" / "config.json").is_file()
    # the tagger that chose TAS's words is recorded: a resume where the other is installed would attend other words
    from handforge.engines.image.tokens import tag_vbg

    record = tmp_path / "tas" / "settings.json"
    recorded = json.loads(record.read_text())
    assert recorded["data_options"]["tas_tagger"] == tag_vbg(["holding"])[1]
    recorded["data_options"]["tas_tagger"] = "nltk" if tag_vbg(["holding"])[1] == "lexicon" else "lexicon"
    record.write_text(json.dumps(recorded))
    assert main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(tmp_path / "tas"),
                 "--size", str(SIZE), "--steps", "2", "--batch-size", "2", "--tas", "--quiet"]) == 2
    assert "tas_tagger" in capsys.readouterr().err
    assert main(["train", "guidance", "--data", str(tmp_path), "--sd", str(sd_path), "--out", str(tmp_path / "x"),
                 "--size", str(SIZE), "--steps", "2"]) == 2


def test_each_branch_conditions_on_its_own_mesh(setup):
    """Eqs. 7-8: the global branch (the latents of the whole image, rgb) is steered by the global mesh image and
    the local branch (the latents of the hands' box, rgb_local) by the local one. Here the local pair is half the
    size of the global one, so which latents a ControlNet call got is plain from their size; a forward hook on
    the real (tiny) ControlNet records the conditioning image each call was given."""
    sd_path, data, _ = setup
    sd = load_sd(sd_path)
    dataset = GuidancePairs(data, sd["tokenizer"], size=SIZE)
    batch = {k: torch.stack([dataset[i][k] for i in range(2)]) for k in dataset[0]}
    for key in ("rgb_local", "mesh_local"):
        batch[key] = torch.nn.functional.interpolate(batch[key], size=(SIZE // 2, SIZE // 2), mode="bilinear",
                                                     antialias=True)
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    net = ControlNetModel.from_unet(sd["unet"])
    calls = []
    net.register_forward_pre_hook(lambda module, args, kwargs: calls.append((tuple(args[0].shape[-2:]),
                                                                             kwargs["controlnet_cond"])),
                                  with_kwargs=True)
    with torch.no_grad():
        GuidanceObjective(sd, 0.5, 0.5, None)(net, batch)
    latent = SIZE // 8  # the VAE's factor
    conditions = dict(calls)
    assert len(calls) == 2 and set(conditions) == {(latent, latent), (latent // 2, latent // 2)}
    assert torch.equal(conditions[(latent, latent)], batch["mesh"])
    assert torch.equal(conditions[(latent // 2, latent // 2)], batch["mesh_local"])


def test_the_tas_target_is_the_noise_the_moved_latents_hold(setup):
    """With --tas the target is ε̂ = (X̂_t − √ᾱ_t X_0) / √(1 − ᾱ_t) (Sec. 3.3), ᾱ_t of SD's scaled-linear betas
    worked out here from the scheduler's config. Where TAS does not move the latents (a caption with no
    hand-related word chooses no token) X̂_t = X_t = √ᾱ X_0 + √(1 − ᾱ) ε (DDPM's forward process), so ε̂ is the noise
    itself; where it does ("holding hands"), ε̂ = ε + (X̂_t − X_t) / √(1 − ᾱ_t)."""
    sd_path, _, _ = setup
    sd = load_sd(sd_path)
    objective = GuidanceObjective(sd, 0.5, 0.5, tas_strength=20.0)
    config = sd["scheduler"].config
    assert config.beta_schedule == "scaled_linear"
    betas = torch.linspace(config.beta_start ** 0.5, config.beta_end ** 0.5, config.num_train_timesteps,
                           dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    generator = torch.Generator().manual_seed(5)
    x0 = torch.randn(3, 4, SIZE // 8, SIZE // 8, generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([3, 400, 990])
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = (a.sqrt() * x0 + (1 - a).sqrt() * noise).float()  # DDPM's q(X_t | X_0), by hand
    assert torch.allclose(noisy, objective.noise.add_noise(x0, noise, t), atol=1e-5)

    def encoded(caption):
        ids = sd["tokenizer"]([caption] * len(t), padding="max_length", truncation=True,
                              max_length=sd["tokenizer"].model_max_length, return_tensors="pt").input_ids
        with torch.no_grad():
            return sd["text_encoder"](ids)[0], ids

    text, ids = encoded("a red box on a table")
    moved, target = objective._tas(noisy, x0, t, text, ids)
    assert torch.equal(moved, noisy)
    assert torch.allclose(target, noise, atol=1e-4)
    text, ids = encoded("a person holding hands")
    moved, target = objective._tas(noisy, x0, t, text, ids)
    assert not torch.allclose(moved, noisy, atol=1e-4)  # TAS moved them
    expected = noise + (moved.double() - noisy.double()) / (1 - a).sqrt()
    assert torch.allclose(target.double(), expected, atol=1e-4)


def test_the_same_seed_gives_the_same_model(setup, tmp_path, capsys):
    """The guidance module's new layers are initialised after the seed is set (they were not: two runs
    of one command differed in every tensor)."""
    sd_path, data, _ = setup
    models = []
    for name in ("a", "b"):
        assert main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(tmp_path / name),
                     "--size", str(SIZE), "--steps", "1", "--batch-size", "2", "--seed", "4", "--quiet"]) == 0
        models.append(load_controlnet(tmp_path / name / "model").state_dict())
    assert all(torch.equal(models[0][k], models[1][k]) for k in models[0])
    # continued with other loss weights: another objective for the same weights (it resumed without a word)
    assert main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(tmp_path / "a"),
                 "--size", str(SIZE), "--steps", "2", "--batch-size", "2", "--seed", "4", "--quiet",
                 "--lambda-local", "0.2"]) == 2
    assert "other settings (data_options: lambda_local 0.5 -> 0.2)" in capsys.readouterr().err


def test_the_init_module_is_recorded_and_a_resume_with_another_is_refused(setup, tmp_path, capsys):
    """--init was not recorded: on a folder with checkpoints it was ignored, or changed between runs, unsaid (a
    review found it); motion and interaction runs record theirs. A resume with another --init (or none) is refused."""
    sd_path, data, _ = setup
    command = ["train", "image", "--data", str(data), "--sd", str(sd_path), "--size", str(SIZE), "--batch-size", "2",
               "--checkpoint-every", "1", "--quiet", "--steps"]
    assert main([*command, "1", "--out", str(tmp_path / "first")]) == 0
    init = tmp_path / "first" / "model"
    assert main([*command, "1", "--out", str(tmp_path / "run"), "--init", str(init)]) == 0
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["data_options"]["init"] == str(init.resolve())
    capsys.readouterr()
    assert main([*command, "2", "--out", str(tmp_path / "run")]) == 2
    assert f"other settings (data_options: init {init.resolve()} -> None)" in capsys.readouterr().err
    assert main([*command, "2", "--out", str(tmp_path / "run"), "--init", str(init)]) == 0


def test_the_model_written_is_named_as_the_config_file_takes_it(setup, tmp_path, monkeypatch, capsys):
    # before: "wrote runs/g/model ...; set image.guidance to it": that relative path in the config file is read from
    # the file's folder, not from where training ran, so the setting named a folder that is not there
    sd_path, data, _ = setup
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HANDFORGE_CONFIG", str(tmp_path / "elsewhere" / "config.toml"))
    assert main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", "runs/g", "--size", "64",
                 "--steps", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f'guidance = "{tmp_path / "runs" / "g" / "model"}"' in out and "HANDFORGE_IMAGE_GUIDANCE=" in out, out


def test_a_bad_out_is_said_before_the_sd_weights_are_loaded(tmp_path, capsys):
    """A bad --out was said by the training loop, after the SD weights were loaded (minutes with real ones):
    here --sd is no SD folder at all, and the run folder is what is named."""
    (tmp_path / "not-sd").mkdir()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["train", "guidance", "--data", str(tmp_path), "--sd", str(tmp_path / "not-sd"),
                 "--out", str(tmp_path / "mine"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("handforge train guidance: ") and "holds files that are not a training run's" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "mine" / "settings.json").exists()
    # the same run under its other name says that name (it said `train guidance` for both)
    assert main(["train", "image", "--data", str(tmp_path), "--sd", str(tmp_path / "not-sd"),
                 "--out", str(tmp_path / "mine"), "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("handforge train image: ")


def test_both_loss_weights_zero_is_refused_first(tmp_path, capsys):
    """Nothing to learn: it ran, saved and said "last loss 0"."""
    assert main(["train", "guidance", "--data", str(tmp_path), "--sd", str(tmp_path / "no-sd"),
                 "--out", str(tmp_path / "run"), "--lambda-global", "0", "--lambda-local", "0", "--quiet"]) == 2
    assert "--lambda-global and --lambda-local are both 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("options, said", [
    (["--tas-strength", "5"], "--tas-strength: only with --tas"),  # (it trained without TAS, unsaid)
    (["--tas", "--tas-strength", "0"], "argument --tas-strength: must be a number above 0")])  # (TAS off, unsaid)
def test_a_tas_strength_that_would_do_nothing_is_refused_first(tmp_path, capsys, options, said):
    code = None
    try:
        code = main(["train", "guidance", "--data", str(tmp_path), "--sd", str(tmp_path / "no-sd"),
                     "--out", str(tmp_path / "run"), *options, "--quiet"])
    except SystemExit as done:  # (argparse's refusal)
        code = done.code
    assert code == 2
    err = capsys.readouterr().err
    assert said in err and len(err.splitlines()) == 1 and "no-sd" not in err, err
    assert not (tmp_path / "run").exists()


def test_a_data_folder_that_is_not_there_is_said_first(tmp_path, capsys):
    """--data /nope was said after the SD weights were looked for: a missing SD setting was named, not the typo."""
    with pytest.raises(SystemExit) as done:
        main(["train", "guidance", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert done.value.code == 2
    assert f"argument --data: no such folder '{tmp_path / 'nope'}'" in capsys.readouterr().err


def test_a_quiet_run_prints_nothing_but_its_result(setup, tmp_path):
    """train --quiet printed transformers' torchvision notes (2 lines) and its "Loading weights" bar."""
    import subprocess
    import sys

    sd_path, data, _ = setup
    run = subprocess.run([sys.executable, "-m", "handforge", "train", "guidance", "--data", str(data), "--sd",
                          str(sd_path), "--out", str(tmp_path / "run"), "--size", str(SIZE), "--steps", "1",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stderr == "" and run.stdout.startswith("wrote "), (run.stdout, run.stderr)


@pytest.mark.parametrize("damage, named", [
    (lambda sample: (sample / "labels.json").write_text("[1, 2]"), "000001/labels.json: a JSON list"),
    (lambda sample: Image.new("RGB", (200, 50)).save(sample / "rgb.png"),
     "000001/rgb.png is 200×50 but its labels' camera is"),
    (lambda sample: (sample / "mesh.png").write_bytes(b"\x89PNG\r\n"), "000001/mesh.png: "),
])
def test_a_damaged_sample_is_named_before_training(setup, tmp_path, damage, named):
    """One damaged sample ended a guidance run whenever it was drawn, in a traceback naming no file; an RGB of
    another size than its mesh image and labels was stretched and its local crop cut in the wrong place."""
    import re
    import shutil

    from handforge.engines.image.loading import load_sd

    sd_path, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    damage(copy / "samples" / "000001")
    with pytest.raises(ValueError, match=re.escape(named) + ".*fix or remove that sample folder"):
        GuidancePairs(copy, load_sd(sd_path)["tokenizer"], size=SIZE)


@pytest.mark.parametrize("text", ['{"index": 1,', "[" * 100_000])  # (nested thousands deep)
def test_a_sample_damaged_after_the_check_is_named_when_drawn(setup, tmp_path, text):
    """A labels.json damaged once the samples were checked was read again with json.loads of its own by each
    drawn item: a JSONDecodeError or RecursionError naming no file, mid-training."""
    import re
    import shutil

    from handforge.export.samples import LabelsError

    _, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    dataset = GuidancePairs(copy, None, size=SIZE)
    damaged = copy / "samples" / "000001" / "labels.json"
    damaged.write_text(text)
    with pytest.raises(LabelsError, match=re.escape(f"{damaged}: ")):
        dataset[1]


@pytest.mark.parametrize("image", ["rgb.png", "mesh.png"])
def test_an_image_damaged_after_the_check_is_named_when_drawn(setup, tmp_path, image):
    """An image cut short once the samples were checked (its header intact) ended the run when drawn in
    Pillow's "image file is truncated", naming no file."""
    import re
    import shutil

    _, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    dataset = GuidancePairs(copy, None, size=SIZE)
    damaged = copy / "samples" / "000001" / image
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape(f"{damaged} is damaged") + ".*fix or remove that sample folder"):
        dataset[1]


def test_a_resume_on_other_samples_of_the_same_count_is_refused(setup, tmp_path, capsys):
    """settings.json recorded the samples' count only: a rerun on the same folder with other captions (or
    another folder of as many samples) went on, unsaid, training on other data."""
    import shutil

    sd_path, data, _ = setup
    mine = tmp_path / "data"
    shutil.copytree(data, mine)
    command = ["train", "guidance", "--data", str(mine), "--sd", str(sd_path), "--out", str(tmp_path / "run"),
               "--size", str(SIZE), "--batch-size", "2", "--checkpoint-every", "1", "--quiet", "--steps"]
    assert main([*command, "1"]) == 0
    (mine / "samples" / "000002" / "caption.txt").write_text("a hand waving\n")
    capsys.readouterr()
    assert main([*command, "2"]) == 2
    assert f"{tmp_path / 'run'} holds a run with other training data" in capsys.readouterr().err
    (mine / "samples" / "000002" / "caption.txt").unlink()  # the data as it was: resumed
    assert main([*command, "2"]) == 0


def test_a_caption_that_is_not_utf8_or_no_sentence_is_said_before_training(setup, tmp_path, capsys):
    # before: read when its sample was first drawn, a UnicodeDecodeError traceback mid-training (a caption
    # saved by an editor in Latin-1)
    import shutil

    sd_path, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    caption = sorted((copy / "samples").iterdir())[2] / "caption.txt"
    caption.write_bytes("two hands in a café\n".encode("latin-1"))
    assert main(["train", "guidance", "--data", str(copy), "--sd", str(sd_path), "--out", str(tmp_path / "run"),
                 "--size", str(SIZE), "--steps", "2", "--batch-size", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{caption}: not UTF-8 text" in err and "save it as UTF-8" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "model").exists()
    caption.write_text("two hands " * 2_000_000)  # 20 MB: read whole and tokenized at each draw (3 GB, 39 s)
    assert main(["train", "guidance", "--data", str(copy), "--sd", str(sd_path), "--out", str(tmp_path / "run"),
                 "--size", str(SIZE), "--steps", "2", "--batch-size", "2", "--quiet"]) == 2
    assert f"{caption}: its first line runs past 16,384 characters" in capsys.readouterr().err
    caption.write_text("two hands waving\n" + "x" * 20_000)  # a long second line is not read
    from handforge.engines.image.data import GuidancePairs

    assert GuidancePairs(copy, None, size=SIZE)._caption(caption.parent) == "two hands waving"  # (no tokenizer needed)
    # blanks before the caption: it read "its first line runs past 16,384 characters", untrue
    for text, said in ((" \n" * 10_000 + "two hands waving\n", "its first 16,384 characters are blank"),
                       ("\n" * 100 + "two hands " * 2_000, "its caption, after 100 blank characters, does not end "
                                                           "within its first 16,384, and a caption is a sentence")):
        caption.write_text(text)
        with pytest.raises(ValueError, match=f"^{re.escape(str(caption))}: {said}"):
            GuidancePairs(copy, None, size=SIZE)


def test_a_generated_image_without_caption_is_captioned_by_its_prompt(setup, tmp_path):
    # before: an export of generated images (engine "generate") writes no caption.txt, and every image trained on
    # the default caption, its prompt (in its labels) unread
    import shutil

    from handforge.engines.image.data import GuidancePairs

    _, data, _ = setup
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    samples = sorted((copy / "samples").iterdir())
    for sample, prompt in zip(samples[1:3], ("two hands holding a mug, kitchen", "  ")):
        (sample / "caption.txt").unlink(missing_ok=True)  # (the module's other tests may have written one)
        labels = json.loads((sample / "labels.json").read_text())
        (sample / "labels.json").write_text(json.dumps({**labels, "generated": {"prompt": prompt, "seed": 3}}))
    captions = GuidancePairs(copy, None, size=SIZE).captions
    # caption.txt first; the prompt; a blank prompt and no labels' prompt: the default
    assert captions == ["a person holding hands", "two hands holding a mug, kitchen", "two hands", "two hands"]


@pytest.mark.parametrize("caption", ["", "   "])
def test_an_empty_default_caption_is_refused_before_training(setup, tmp_path, capsys, caption):
    # before: taken, and every sample without caption.txt trained on an empty prompt (the export refuses empty
    # prompts); now argparse's usage error, nothing written
    sd_path, data, _ = setup
    with pytest.raises(SystemExit) as exited:
        main(["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(tmp_path / "run"),
              "--size", str(SIZE), "--steps", "1", "--caption", caption, "--quiet"])
    assert exited.value.code == 2 and "--caption: must have a word in it" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", ["guidance", "transfer"])
def test_training_without_sd_weights_is_refused_in_one_line_saying_how_to_give_them(command, tmp_path, capsys,
                                                                                   monkeypatch):
    # before: "... pass --sd or set the environment variable HANDFORGE_SD_MODEL=<value>, or add to FILE:" and the
    # file's two lines under it, where other refusals are one line
    config_file = tmp_path / "none.toml"
    monkeypatch.setenv("HANDFORGE_CONFIG", str(config_file))
    monkeypatch.delenv("HANDFORGE_SD_MODEL", raising=False)
    assert main(["train", command, "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (f"handforge train {command}: no SD weights: pass --sd or set the environment "
                                       f'variable HANDFORGE_SD_MODEL=<path>, or sd_model = "<path>" under [image] in '
                                       f"{config_file}\n")


def test_the_training_pairs_are_in_the_ranges_diffusers_gives_the_models(setup):
    """The guidance module learns on the mesh images as it is given them at sampling, RGB in [0, 1] (diffusers'
    StableDiffusionControlNetPipeline's control image processor, which the sampling pipeline's test holds it to),
    and the photos go to the VAE in [−1, 1] (that pipeline's image processor): compared with diffusers' own
    processors on the sample's files. The range check above (mesh at most 1) passes a mesh in [−1, 1], and the tiny
    ControlNets barely feel their input's range: a guidance module trained on one range and run on another would
    pass every other test."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    sd_path, data, _ = setup
    sd = load_sd(sd_path)
    oracle = StableDiffusionControlNetPipeline(
        vae=sd["vae"], text_encoder=sd["text_encoder"], tokenizer=sd["tokenizer"], unet=sd["unet"],
        controlnet=ControlNetModel.from_unet(sd["unet"], conditioning_embedding_out_channels=(8, 8, 16, 16)),
        scheduler=sd["scheduler"], safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    dataset = GuidancePairs(data, sd["tokenizer"], size=SIZE)
    item, sample = dataset[0], dataset.samples[0]  # (the samples are SIZE², so the whole view is the files as they are)
    mesh = oracle.control_image_processor.preprocess(Image.open(sample / "mesh.png").convert("RGB"), SIZE, SIZE)
    rgb = oracle.image_processor.preprocess(Image.open(sample / "rgb.png").convert("RGB"), SIZE, SIZE)
    assert torch.allclose(item["mesh"], mesh[0], atol=1e-6) and torch.allclose(item["rgb"], rgb[0], atol=1e-6)
    assert float(mesh.min()) == 0 and float(rgb.min()) < -0.2  # (the oracles' own ranges: [0, 1], [−1, 1])


def test_a_resume_against_other_sd_weights_in_the_same_folder_is_refused_and_a_copy_elsewhere_resumes(setup, tmp_path,
                                                                                                        capsys):
    """Only the SD folder's path was recorded: weights replaced in it (another model) were trained against on
    resume, unsaid, while the same weights copied to another disk were refused. Their fingerprint is recorded now."""
    import shutil

    sd_path, data, _ = setup
    mine = tmp_path / "sd"
    shutil.copytree(sd_path, mine)

    def command(sd, steps):
        return ["train", "guidance", "--data", str(data), "--sd", str(sd), "--out", str(tmp_path / "run"), "--size",
                str(SIZE), "--batch-size", "2", "--checkpoint-every", "1", "--quiet", "--steps", str(steps)]

    assert main(command(mine, 1)) == 0
    recorded = json.loads((tmp_path / "run" / "settings.json").read_text())["data_options"]["sd"]
    assert re.fullmatch(r"\d+ files, blake2b [0-9a-f]{32}", recorded), recorded
    shutil.rmtree(mine)
    tiny_sd.build_sd(mine, seed=7)  # other weights of the same shapes, in the same folder
    capsys.readouterr()
    assert main(command(mine, 2)) == 2
    err = capsys.readouterr().err
    assert f"other settings (data_options: sd {recorded} -> " in err, err
    assert main(command(sd_path, 2)) == 0  # the run's own weights, from another folder: resumed
    assert json.loads((tmp_path / "run" / "settings.json").read_text())["data_options"]["sd"] == recorded


def test_a_run_that_recorded_its_sd_folders_path_resumes_from_that_folder(setup, tmp_path):
    """Runs begun before the weights' fingerprint was recorded hold the folder's path: they resume as before."""
    sd_path, data, _ = setup
    command = ["train", "guidance", "--data", str(data), "--sd", str(sd_path), "--out", str(tmp_path / "run"),
               "--size", str(SIZE), "--batch-size", "2", "--checkpoint-every", "1", "--quiet", "--steps"]
    assert main([*command, "1"]) == 0
    settings = tmp_path / "run" / "settings.json"
    old = json.loads(settings.read_text())
    old["data_options"]["sd"] = os.path.realpath(sd_path)
    settings.write_text(json.dumps(old, indent=1) + "\n")
    assert main([*command, "2"]) == 0
