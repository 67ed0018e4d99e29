"""Hand image generation: HandForge's pipeline vs diffusers' StableDiffusionControlNetPipeline.

Both run on the same components (SD 1.x UNet, VAE, CLIP text encoder, one ControlNet, DDIM), the
same seed, steps and control image; calls are interleaved. Prints the largest pixel difference
(TAS off: the outputs must agree), the median seconds per image of each and their ratio, and TAS's
own cost (ours with TAS at the first half of the steps).

Weights: ``--sd DIR --controlnet DIR`` (diffusers folders), else random weights of the tests'
tiny architecture, or with ``--full`` of the full-size SD 1.5 architecture (860M-parameter UNet:
use a GPU). On CUDA, ``--fast`` puts the UNet and ControlNet in channels_last and compiles them.

    .venv/bin/python benchmarks/image.py [--full] [--device cuda] [--dtype float16] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from handforge.scratch import scratch_folder

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "a man holding a mug with both hands, kitchen, morning light"


def full_size_weights(folder: Path) -> tuple[Path, Path]:
    """Random weights of SD 1.5's architecture (configs as in stable-diffusion-v1-5) + a ControlNet."""
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from tests.support import tiny_sd

    vocab = tiny_sd.write_tokenizer(folder / "tokenizer-src")  # a small BPE vocabulary: timing only
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=max(vocab, 49408), hidden_size=768, intermediate_size=3072,
                                        num_attention_heads=12, num_hidden_layers=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", bos_token_id=vocab - 2, eos_token_id=vocab - 1,
                                        pad_token_id=vocab - 1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tiny_sd.tokenizer(folder / "tokenizer-src"), unet=unet,
                            scheduler=scheduler, safety_checker=None, feature_extractor=None,
                            requires_safety_checker=False).save_pretrained(str(folder / "sd"))
    ControlNetModel.from_unet(unet).save_pretrained(str(folder / "controlnet"))
    return folder / "sd", folder / "controlnet"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sd")
    parser.add_argument("--controlnet")
    parser.add_argument("--full", action="store_true", help="random weights of the full-size SD 1.5 architecture")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--size", type=int, default=None, help="image side (default 512 full size, 128 tiny)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fast", action="store_true", help="channels_last + torch.compile (CUDA)")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile's backend for --fast ('eager': traced, not compiled: a quick CPU check)")
    args = parser.parse_args(argv)

    from diffusers import StableDiffusionControlNetPipeline
    from handforge.engines.image.loading import build_pipeline
    from handforge.engines.image.tokens import hand_tokens
    from PIL import Image

    from tests.support import tiny_sd

    dtype = getattr(torch, args.dtype or ("float16" if args.device.startswith("cuda") else "float32"))
    began = time.perf_counter()

    def say(what: str) -> None:  # as it goes: a run stopped by a time limit (a lent GPU's) still says how far it got
        print(f"[{time.perf_counter() - began:6.1f} s] {what}", flush=True)

    tmp = scratch_folder("bench-image", remove_at_exit=True)  # (random full-size weights are GBs)
    if args.sd:
        sd, net, what = Path(args.sd), Path(args.controlnet), "given weights"
    elif args.full:
        (sd, net), what = full_size_weights(tmp), "random SD 1.5-size weights"
    else:
        sd = tiny_sd.build_sd(tmp / "sd")
        net, what = tiny_sd.build_controlnet(tmp / "controlnet", sd), "random tiny weights (the tests')"
    size = args.size or (512 if (args.full or args.sd) else tiny_sd.IMAGE_SIZE)
    say(f"{what} ready")
    ours = build_pipeline(sd, [net], dtype=dtype, device=args.device)
    say(f"loaded on {args.device} in {str(dtype).removeprefix('torch.')}")
    if args.fast:
        for module in (ours.unet, ours.controlnet):
            module.to(memory_format=torch.channels_last)
        ours.unet = torch.compile(ours.unet, backend=args.compile_backend)
        ours.controlnet = torch.compile(ours.controlnet, backend=args.compile_backend)
    theirs = StableDiffusionControlNetPipeline(vae=ours.vae, text_encoder=ours.text_encoder, tokenizer=ours.tokenizer,
                                               unet=ours.unet, controlnet=ours.controlnet, scheduler=ours.scheduler,
                                               safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    theirs.set_progress_bar_config(disable=True)
    control = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    tokens = [t.index for t in hand_tokens(PROMPT, ours.tokenizer)[0]]

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def run_ours(tas_steps: int = 0) -> tuple[float, np.ndarray]:
        sync()
        start = time.perf_counter()
        out = ours(PROMPT, [control], num_inference_steps=args.steps, guidance_scale=7.5, tas_tokens=tokens,
                   tas_steps=tas_steps, generator=torch.Generator(args.device).manual_seed(0))
        sync()
        return time.perf_counter() - start, out.images[0]

    def run_theirs() -> tuple[float, np.ndarray]:
        sync()
        start = time.perf_counter()
        out = theirs(PROMPT, image=Image.fromarray(control), num_inference_steps=args.steps, guidance_scale=7.5,
                     generator=torch.Generator(args.device).manual_seed(0), output_type="np").images[0]
        sync()
        return time.perf_counter() - start, np.round(out * 255).astype(np.uint8)

    for name, warm_up in (("ours", run_ours), ("diffusers", run_theirs),
                          ("ours + TAS", lambda: run_ours(args.steps // 2))):
        warm_up()  # first calls (and with --fast, each one's compilation) are not measured
        say(f"warm-up: {name}")
    times = {"ours": [], "diffusers": [], "ours + TAS": []}
    diff = 0
    ratios = []
    for repeat in range(args.repeats):
        # interleaved, the side that goes first alternating: a load change hits both alike
        if repeat % 2:
            t_theirs, b = run_theirs()
            t_ours, a = run_ours()
        else:
            t_ours, a = run_ours()
            t_theirs, b = run_theirs()
        t_tas, _ = run_ours(args.steps // 2)
        times["ours"].append(t_ours)
        times["diffusers"].append(t_theirs)
        times["ours + TAS"].append(t_tas)
        ratios.append(t_ours / t_theirs)
        diff = max(diff, int(np.abs(a.astype(int) - b.astype(int)).max()))
        say(f"repeat {repeat + 1}/{args.repeats}: ours {t_ours:.3f} s, diffusers {t_theirs:.3f} s, "
            f"ours + TAS {t_tas:.3f} s")
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    print(f"{what}, {size}², {args.steps} DDIM steps, CFG 7.5, {args.device} {str(dtype).removeprefix('torch.')}"
          f"{', channels_last + compile' if args.fast else ''}, {args.repeats} interleaved repeats")
    print(f"largest pixel difference ours vs diffusers (TAS off): {diff}")
    print(f"ours min {best['ours']:.3f} / median {med['ours']:.3f} s/image, diffusers StableDiffusionControlNetPipeline "
          f"min {best['diffusers']:.3f} / median {med['diffusers']:.3f} s/image; ratio of the mins "
          f"{best['ours'] / best['diffusers']:.3f}, median of the pairs' ratios {statistics.median(ratios):.3f}")
    print(f"TAS at the first {args.steps // 2} steps ({len(tokens)} tokens): {med['ours + TAS']:.3f} s/image, "
          f"{med['ours + TAS'] - med['ours']:+.3f} s ({med['ours + TAS'] / med['ours']:.2f}×)")
    return 0 if diff <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
