"""Tiny random Stable Diffusion 1.x components (UNet, VAE, CLIP text encoder, a CLIP BPE tokenizer
from a vocabulary written here, DDIM) and ControlNets, saved in the diffusers folder layout that
real SD 1.5 / ControlNet weights come in, so tests load them through the users' code path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

IMAGE_SIZE = 128  # VAE factor 8 → 16×16 latents → 4×4 maps at TAS's resolution (latent / 4)
# A few merges: "hand" and "a" become single tokens; "holding", "waving", "man" stay several pieces.
MERGES = ["h a", "ha n", "han d</w>", "han d", "m a", "o l", "i n", "in g</w>", "t w", "tw o</w>"]


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


def build_controlnet(folder: Path, sd: Path, seed: int = 1) -> Path:
    """A tiny SD 1.x ControlNet (the UNet's encoder copied, then randomised) in the diffusers layout."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(str(Path(sd) / "unet"))
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 16, 16))
    _randomise(net, seed)
    net.save_pretrained(str(folder))
    return Path(folder)
