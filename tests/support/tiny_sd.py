"""Tiny random Stable Diffusion 1.x components (UNet, VAE, CLIP text encoder, a CLIP BPE tokenizer
from a vocabulary written here, DDIM) and ControlNets, saved in the diffusers folder layout that
real SD 1.5 / ControlNet weights come in, so tests load them through the users' code path; and one
tiny SD set by hand whose self-attention carries the image (``build_mean_colour_sd``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch

IMAGE_SIZE = 128  # VAE factor 8 → 16×16 latents → 4×4 maps at TAS's resolution (latent / 4)
# A few merges: "hand" and "a" become single tokens; "holding", "waving", "man" stay several pieces.
MERGES = ["h a", "ha n", "han d</w>", "han d", "m a", "o l", "i n", "in g</w>", "t w", "tw o</w>"]


def use_weights(monkeypatch, root: Path, sd: Path, guidance: Path | None = None,
                controlnets: Path | None = None) -> None:
    """Point the image settings at tiny weights, and at nothing else (an empty config file under ``root``)."""
    monkeypatch.setenv("HANDFORGE_CONFIG", str(root / "none.toml"))
    monkeypatch.setenv("HANDFORGE_SD_MODEL", str(sd))
    for name, folder in (("HANDFORGE_IMAGE_GUIDANCE", guidance), ("HANDFORGE_CONTROLNETS", controlnets)):
        if folder is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, str(folder))


def fist_in_view(eye=(-0.08, -0.35, 0.06), target=(-0.08, 0.0, 0.0)) -> dict[str, np.ndarray]:
    """The arrays of an image job: a right fist and a camera at ``eye`` looking at ``target`` (m), IMAGE_SIZE square."""
    from handforge.render.camera import look_at
    from handforge_shared import pose_library
    from handforge_shared.client import pose_arrays

    R, t = look_at(list(eye), list(target))
    return {"camera.K": np.array([[150.0, 0, IMAGE_SIZE / 2], [0, 150.0, IMAGE_SIZE / 2], [0, 0, 1]]), "camera.R": R,
            "camera.t": t, **pose_arrays({"right": pose_library.get("fist", side="right")})}


def run_image_job(kind: str, params: dict, arrays: dict[str, np.ndarray], models=None, progress=None):
    """``image.generate`` or ``image.transfer`` run in process as the server runs it (the request validated and
    checked, then the handler; ``models`` a ``ModelCache`` shared between calls), IMAGE_SIZE square, a grey
    source image for a transfer; ``progress(message)`` for each progress message. Its ``JobResult``."""
    from handforge.engines.image import jobs as image_jobs
    from handforge.engines.transfer import jobs as transfer_jobs
    from handforge.server.builtin_jobs import default_registry
    from handforge.server.jobs import JobContext

    given = dict(arrays)
    if kind == "image.transfer":
        given["source.image"] = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 128, np.uint8)
    registered = default_registry().kind(kind)
    valid = registered.schema.validate({"width": IMAGE_SIZE, "height": IMAGE_SIZE, **params}, given)
    registered.check(valid, given)
    said = (lambda fraction, message, previews: progress(message)) if progress else (lambda *_: None)
    handler = image_jobs.generate if kind == "image.generate" else transfer_jobs.transfer_job
    return handler(JobContext("j", kind, said, models=models), valid, given)


def _byte_characters() -> list[str]:
    """CLIP's (GPT-2's) printable stand-ins for the 256 byte values."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tokenizer(folder: Path) -> int:
    """vocab.json + merges.txt + tokenizer_config.json of a CLIP BPE tokenizer; returns its size."""
    folder.mkdir(parents=True, exist_ok=True)
    base = _byte_characters()
    tokens = base + [c + "</w>" for c in base] + ["".join(m.split()) for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(dict.fromkeys(tokens))}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    return len(dict.fromkeys(tokens))


def tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(folder))


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.2) -> None:
    """Random weights everywhere (ControlNet's zero convolutions too, so that control matters): matrices
    and kernels ~ N(0, scale²/fan_in), biases ~ N(0, 0.02²), normalisation gains left at 1."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                continue
            noise = torch.randn(p.shape, generator=generator)
            p.copy_(noise * scale / max(1.0, p[0].numel() ** 0.5) if p.ndim > 1 else noise * 0.02)


def unet_config() -> dict:
    return dict(sample_size=IMAGE_SIZE // 8, in_channels=4, out_channels=4, layers_per_block=1,
                block_out_channels=(32, 32, 64), norm_num_groups=8, cross_attention_dim=32, attention_head_dim=4,
                down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))


def build_sd(folder: Path, seed: int = 0) -> Path:
    """A tiny SD 1.x in the diffusers layout (model_index.json, unet/, vae/, text_encoder/, tokenizer/,
    scheduler/), as ``StableDiffusionPipeline.save_pretrained`` writes it."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    vocab = write_tokenizer(folder / "tokenizer-src")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_config())
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=4, sample_size=IMAGE_SIZE)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, max_position_embeddings=77, bos_token_id=vocab - 2,
                                        eos_token_id=vocab - 1, pad_token_id=vocab - 1, projection_dim=32))
    _randomise(unet, seed + 1)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer(folder / "tokenizer-src"),
                                   unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    # SD 1.5's folders hold the tokenizer as vocab.json + merges.txt: use that layout, not tokenizer.json
    shutil.rmtree(folder / "tokenizer")
    (folder / "tokenizer-src").rename(folder / "tokenizer")
    return folder


def build_sd15_shaped(folder: Path, seed: int = 0) -> Path:
    """``build_sd`` with a UNet and VAE built as SD 1.5's, narrower: two layers per block, no attention in the
    UNet's lowest level (DownBlock2D / UpBlock2D), the VAE's channels changing between levels (its resnets'
    shortcuts). The layout of an original SD 1.5 checkpoint, to the names' numbers (output_blocks.11)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    folder = build_sd(folder, seed)
    unet = UNet2DConditionModel(**dict(unet_config(), layers_per_block=2, block_out_channels=(16, 32, 32, 32),
                                       down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                                       up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16, 16, 16),
                        layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, sample_size=IMAGE_SIZE)
    for model, part, offset in ((unet, "unet", 1), (vae, "vae", 2)):
        _randomise(model, seed + offset)
        model.save_pretrained(str(folder / part))
    return folder


def build_controlnet(folder: Path, sd: Path, seed: int = 1) -> Path:
    """A tiny SD 1.x ControlNet (the UNet's encoder copied, then randomised) in the diffusers layout."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(Path(sd) / "unet"))
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    _randomise(net, seed)
    net.save_pretrained(str(folder))
    return Path(folder)


# --- A tiny SD whose self-attention carries the image: reference attention's effect at the output ---
# Random weights give self-attention almost no say in the output, so they cannot show that injecting
# a source's tokens moves the *image* toward the source. This model is set by hand instead (no training,
# deterministic): the VAE maps each 8×8 pixel block to its mean colour (latent = RGB, 0) and back, and the
# UNet predicts the clean sample (prediction_type "sample") as the mean of the tokens its one
# self-attention layer attends to (query and key zero: uniform weights) — the best guess of a denoiser
# for flat-colour images. Every other path (resnets, cross-attention, feed-forward, the ControlNet's
# zero convolutions) adds nothing. With reference attention that layer also attends to the source's
# tokens, so the sampled colour is pulled toward the source's.
#
# Normalisation layers are made linear by a constant channel BIG that dominates their statistics
# (their std is then fixed: BIG·√(C-1)/C over C channels) and by reading every value as its difference
# with an all-zero channel (the mean they subtract cancels); SiLU is linear far on its positive side.
BIG_CHANNEL, ZERO_CHANNEL, MEAN = 4, 5, 8  # channel roles; channels 0-3 carry the latents (0-2: RGB)
BIG, SILU_SHIFT = 100.0, 30.0


def _std(channels: int) -> float:
    """The std a normalisation over ``channels`` sees: one channel at BIG, the rest ~0."""
    return BIG * (channels - 1) ** 0.5 / channels


def _pick(layer, pairs, scale: float = 1.0) -> None:
    """A linear layer or conv (centre tap) sending input channel i to output channel o, ×scale, for (o, i) in pairs."""
    for o, i in pairs:
        if layer.weight.ndim == 4:
            k = layer.weight.shape[-1] // 2
            layer.weight[o, i, k, k] = scale
        else:
            layer.weight[o, i] = scale


def _zero(module) -> None:
    for name, p in module.named_parameters():
        p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)


def _linear_readout(norm, conv, sources: list[int]) -> None:
    """GroupNorm → SiLU → conv as the identity from channels ``sources`` to the conv's outputs 0, 1, ..."""
    norm.bias.fill_(SILU_SHIFT)
    for o, i in enumerate(sources):
        _pick(conv, [(o, i)], _std(norm.num_channels))
        _pick(conv, [(o, ZERO_CHANNEL)], -_std(norm.num_channels))


@torch.no_grad()
def mean_colour_vae():
    """An AutoencoderKL whose latents are the mean RGB of each 8×8 block (4th channel 0), scaling 1, and
    whose decoder repeats each latent's RGB over its block."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        norm_num_groups=1, sample_size=IMAGE_SIZE, scaling_factor=1.0)
    _zero(vae)  # resnets' conv2 and the mid attention's output at zero: each block is its skip connection
    enc, dec = vae.encoder, vae.decoder
    _pick(enc.conv_in, [(c, c) for c in range(3)])
    enc.conv_in.bias[BIG_CHANNEL] = BIG
    for block in enc.down_blocks:
        for down in block.downsamplers or ():  # padded (0, 1, 0, 1), stride 2: taps [0:2, 0:2] are the 2×2 block
            for c in range(8):
                down.conv.weight[c, c, :2, :2] = 0.25
    _linear_readout(enc.conv_norm_out, enc.conv_out, list(range(4)))
    _pick(vae.quant_conv, [(c, c) for c in range(8)])
    _pick(vae.post_quant_conv, [(c, c) for c in range(4)])
    _pick(dec.conv_in, [(c, c) for c in range(4)])
    dec.conv_in.bias[BIG_CHANNEL] = BIG
    for block in dec.up_blocks:
        for up in block.upsamplers or ():  # nearest ×2, then this conv
            _pick(up.conv, [(c, c) for c in range(8)])
    _linear_readout(dec.conv_norm_out, dec.conv_out, list(range(3)))
    return vae


@torch.no_grad()
def mean_attending_unet():
    """A one-level UNet predicting the clean sample as the mean of the tokens its down block's
    self-attention attends to (its own, and the source's under reference attention)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel(**dict(unet_config(), block_out_channels=(32,), norm_num_groups=1,
                                       down_block_types=("CrossAttnDownBlock2D",),
                                       up_block_types=("CrossAttnUpBlock2D",)))
    _zero(unet)  # resnets, cross-attention, feed-forward and every proj_out but one add nothing
    _pick(unet.conv_in, [(c, c) for c in range(4)])
    unet.conv_in.bias[BIG_CHANNEL] = BIG
    for name, m in unet.named_modules():
        if name.endswith("conv_shortcut"):  # the up block's resnets: keep the path, drop the skip
            _pick(m, [(c, c) for c in range(m.weight.shape[0])])
    channels = unet.config.block_out_channels[0]
    tf = unet.down_blocks[0].attentions[0]
    block = tf.transformer_blocks[0]
    # GroupNorm then proj_in: latents / std, BIG / std; the LayerNorm after it then has std 1
    _pick(tf.proj_in, [(c, c) for c in range(5)])
    _pick(tf.proj_in, [(c, ZERO_CHANNEL) for c in range(5)], -1.0)
    _pick(block.attn1.to_v, [(c, c) for c in range(4)])
    _pick(block.attn1.to_v, [(c, ZERO_CHANNEL) for c in range(4)], -1.0)
    _pick(block.attn1.to_out[0], [(MEAN + c, c) for c in range(4)], _std(channels))  # back to latent units
    _pick(tf.proj_out, [(MEAN + c, MEAN + c) for c in range(4)])
    _linear_readout(unet.conv_norm_out, unet.conv_out, [MEAN + c for c in range(4)])
    return unet


def build_mean_colour_sd(folder: Path) -> tuple[Path, Path]:
    """The SD folder (``build_sd``'s text encoder, tokenizer; the VAE and UNet above; DDIM predicting
    the sample) and a ControlNet folder for it (``from_unet``: zero convolutions, no effect)."""
    import json

    from diffusers import ControlNetModel

    folder = Path(folder)
    sd = build_sd(folder / "sd")
    unet = mean_attending_unet()
    unet.save_pretrained(str(sd / "unet"))
    mean_colour_vae().save_pretrained(str(sd / "vae"))
    config = sd / "scheduler" / "scheduler_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "prediction_type": "sample"}))
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16)).save_pretrained(
        str(folder / "cn"))
    return sd, folder / "cn"
