"""Train AttentionHand's guidance module (``handforge train guidance``, or ``handforge train image``).

The objective of Park et al., ECCV 2024 (arXiv:2407.18034), Eqs. 7-9: L = λG·LG + λL·LL, the
ε-prediction error of the frozen SD 1.x UNet steered by the guidance module (a ControlNetModel,
one set of weights for both branches) on the global latents with the global mesh image and on the
local latents with the local mesh image. Each branch draws its own noise and timestep.

The published training code noises the *global* latent in the local branch (and takes it as the
local target); here the local branch noises and predicts the local latents, as Eq. 8 says. It
also uses the fixed prompt "hand" there; we use the sample's caption, as the paper's K.

``--tas`` moves the noisy latents by one TAS update before the prediction and regresses the
residual noise ε̂ = (X̂_t − √ᾱ_t X_0) / √(1 − ᾱ_t), as Sec. 3.3 describes (the published code runs 50
TAS iterations per training step; one is ours, for cost).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from handforge.arguments import (POSITIVE, SEED, at_least, existing_path, given_path, multiple_of, number_in,
                                 only_with, output_folder, sentence)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=existing_path(folder=True), help="a folder in the export format (samples/NNNNNN/rgb.png, mesh.png, "
                                                      "labels.json, optional caption.txt)")
    parser.add_argument("--init", type=given_path("a guidance module folder"), help="start from this guidance module (default: a copy of the SD UNet's encoder)")
    parser.add_argument("--out", type=output_folder, required=True, help="run folder (log, checkpoints; model/ is the guidance module)")
    parser.add_argument("--size", type=multiple_of(8, 64), default=512, help="training resolution (pixels, square; a "
                                                                           "multiple of 8, the VAE's factor)")
    parser.add_argument("--caption", default="two hands", type=sentence,
                        help="caption of samples without caption.txt")
    parser.add_argument("--lambda-global", type=number_in(0.0), default=0.5, help="weight of the global branch's loss (λG)")
    parser.add_argument("--lambda-local", type=number_in(0.0), default=0.5, help="weight of the local (hands' box) branch's loss (λL)")
    parser.add_argument("--tas", action="store_true", help="one TAS update of the noisy latents per branch")
    parser.add_argument("--tas-strength", type=number_in(0.0, low_open=True), help="with --tas: its step size at the "
                                                                               "first step (default: 20.0)")
    add_sd_run_arguments(parser, batch_size=1, lr=1e-5, lr_help="AttentionHand's 1e-5")


# ---------------------------------------------------------------- shared by the trainers on frozen SD 1.x parts
def add_sd_run_arguments(parser: argparse.ArgumentParser, batch_size: int, lr: float, lr_help: str | None = None) -> None:
    """The options of a training run on frozen SD 1.x weights (this engine's and the transfer engine's)."""
    parser.add_argument("--sd", type=given_path("an SD 1.x folder"), help="SD 1.x diffusers folder (default: the image.sd_model setting)")
    parser.add_argument("--steps", type=at_least(1), default=20000, help="optimiser steps")
    parser.add_argument("--batch-size", type=at_least(1), default=batch_size, help="samples a step")
    parser.add_argument("--lr", type=POSITIVE, default=lr, help=f"learning rate{f' ({lr_help})' if lr_help else ''}")
    parser.add_argument("--mixed-precision", choices=("no", "fp16", "bf16"), default="no",
                        help="fp16 needs a GPU; bf16 runs on the CPU too")
    parser.add_argument("--ema-decay", type=number_in(0.0, 1.0, low_open=True, high_open=True), default=None,
                        help="EMA decay of the weights, between 0 and 1 (default: none)")
    parser.add_argument("--checkpoint-every", type=at_least(1), default=1000, help="steps between checkpoints (a rerun resumes from the last)")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def sd_run_settings(args: argparse.Namespace, sd_path: str, data_options: dict):
    """The training loop's settings from ``add_sd_run_arguments``' options; ``data_options``, the
    engine's options that shape the data and the loss, and the SD weights (``sd_record``) are what a resume must keep."""
    from handforge.training.loop import TrainSettings

    return TrainSettings(out=args.out, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         mixed_precision=args.mixed_precision, ema_decay=args.ema_decay,
                         checkpoint_every=args.checkpoint_every, log_every=max(1, min(10, args.steps // 10)),
                         progress=not args.quiet, data_options={**data_options, "sd": sd_record(args.out, sd_path)})


def sd_record(out: str, sd_path: str) -> str:
    """What a run records of its SD weights: their fingerprint (``training.fingerprint.weights_fingerprint``: other
    weights put in the same folder were trained against unsaid, the same ones copied elsewhere refused). A run
    begun when the folder's path was recorded resumes from that folder as before."""
    from handforge import config
    from handforge.engines.image.settings import SD_CONFIG
    from handforge.engines.image.weights import SD_FILES
    from handforge.training.fingerprint import weights_fingerprint
    from handforge.training.loop import TrainingError, recorded_settings

    try:
        recorded = recorded_settings(out) or {}
    except (TrainingError, OSError):  # (the resume says why)
        recorded = {}
    if (recorded.get("data_options") or {}).get("sd") == os.path.realpath(sd_path):
        return os.path.realpath(sd_path)
    said = weights_fingerprint(Path(sd_path), SD_FILES)
    configs = config.value(SD_CONFIG.key)  # a single file's architecture and tokenizer: part of the weights it is
    if Path(sd_path).is_file() and configs is not None:
        said += f"; its configs {weights_fingerprint(Path(configs), SD_FILES)}"
    return said


def sd_weights_path(args: argparse.Namespace, command: str) -> str | None:
    """``--sd``, else the configured image.sd_model; None (after saying what to set) when neither is there."""
    from handforge import config
    from handforge.engines.image.settings import SD_MODEL, pass_or_set

    path = args.sd or config.value(SD_MODEL.key)
    if path is None:
        print(f"handforge train {command}: no SD weights: {pass_or_set('--sd', SD_MODEL)}", file=sys.stderr)
    return path


class GuidanceObjective:
    """loss_fn(model, batch) of the training loop; holds the frozen SD parts."""

    def __init__(self, sd: dict, lambda_global: float, lambda_local: float, tas_strength: float | None) -> None:
        from diffusers import DDPMScheduler

        self.vae, self.text_encoder, self.unet = sd["vae"], sd["text_encoder"], sd["unet"]
        self.tokenizer = sd["tokenizer"]
        for part in (self.vae, self.text_encoder, self.unet):
            part.requires_grad_(False).eval()
        self.noise = DDPMScheduler.from_config(sd["scheduler"].config)
        self.weights = (lambda_global, lambda_local)
        self.tas_strength = tas_strength

    def _to(self, device) -> None:
        if self.unet.device != device:
            for part in (self.vae, self.text_encoder, self.unet):
                part.to(device)

    def __call__(self, model, batch):
        import torch

        device = batch["rgb"].device
        self._to(device)
        with torch.no_grad():
            text = self.text_encoder(batch["input_ids"])[0]
            latents = {branch: self.vae.encode(batch[key]).latent_dist.sample() * self.vae.config.scaling_factor
                       for branch, key in (("global", "rgb"), ("local", "rgb_local"))}
        losses = {}
        for branch, mesh in (("global", batch["mesh"]), ("local", batch["mesh_local"])):
            x0 = latents[branch]
            noise = torch.randn_like(x0)
            t = torch.randint(0, self.noise.config.num_train_timesteps, (x0.shape[0],), device=device)
            noisy = self.noise.add_noise(x0, noise, t)
            target = noise
            if self.tas_strength:
                noisy, target = self._tas(noisy, x0, t, text, batch["input_ids"])
            down, mid = model(noisy, t, encoder_hidden_states=text, controlnet_cond=mesh, return_dict=False)
            pred = self.unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                             mid_block_additional_residual=mid, return_dict=False)[0]
            losses[branch] = torch.nn.functional.mse_loss(pred.float(), target.float())
        total = self.weights[0] * losses["global"] + self.weights[1] * losses["local"]
        return total, {k: float(v.detach()) for k, v in losses.items()}

    def _tas(self, noisy, x0, t, text, input_ids):
        """One TAS update per sample (its own hand tokens) and the residual noise it leaves."""

        from handforge.engines.image import tas
        from handforge.engines.image.tokens import hand_tokens

        moved = noisy.clone()
        for i in range(noisy.shape[0]):
            prompt = self.tokenizer.decode(input_ids[i], skip_special_tokens=True)
            indices = [c.index for c in hand_tokens(prompt, self.tokenizer)[0]]
            length = len(self.tokenizer(prompt, truncation=True).input_ids) - 2
            moved[i:i + 1], _, _ = tas.tas_update(self.unet, noisy[i:i + 1], t[i], text[i:i + 1], length, indices,
                                                  self.tas_strength)
        alpha = self.noise.alphas_cumprod.to(noisy.device)[t].view(-1, 1, 1, 1)
        return moved, (moved - alpha.sqrt() * x0) / (1 - alpha).sqrt()


TAGGERS = {"nltk": "NLTK's tagger",
           "lexicon": "the offline rule on lemminflect's lexicon (NLTK or its averaged_perceptron_tagger_eng data is "
                      "not installed)"}


def run(args: argparse.Namespace, command: str = "image") -> int:
    """``handforge train image``, or ``train guidance`` (``command``: the name errors are said under)."""
    import torch
    from diffusers import ControlNetModel

    from handforge import config
    from handforge.engines.image.data import GuidancePairs
    from handforge.engines.image.loading import WeightsError, load_controlnet, load_sd, mismatch
    from handforge.engines.image.settings import GUIDANCE, SD_CONFIG
    from handforge.training.loop import TrainingError, check_settings, train

    if args.lambda_global == 0 and args.lambda_local == 0:  # (it trained for hours on a loss of 0)
        print(f"handforge train {command}: --lambda-global and --lambda-local are both 0, so nothing would be "
              "learned: give either a weight above 0 (the paper's objective weighs both)", file=sys.stderr)
        return 2
    try:
        only_with(args, "--tas", {"tas_strength": 20.0}, "without it the training makes no TAS update")
    except ValueError as exc:
        print(f"handforge train {command}: {exc}", file=sys.stderr)
        return 2
    sd_path = sd_weights_path(args, command)
    if sd_path is None:
        return 2
    torch.manual_seed(args.seed)  # before the new layers are initialised: one seed, one model
    tagger = None
    if args.tas:  # which words TAS attends: NLTK's tagger or the offline rule (a resume with the other would change them)
        from handforge.engines.image.tokens import tag_vbg

        tagger = tag_vbg(["holding"])[1]
        if not args.quiet:
            print(f"TAS attends the hand-related words tagged by {TAGGERS[tagger]}", file=sys.stderr)
    settings = sd_run_settings(args, sd_path, {
        "tas_tagger": tagger,
        "size": args.size, "caption": args.caption, "lambda_global": args.lambda_global,
        "lambda_local": args.lambda_local, "tas_strength": args.tas_strength if args.tas else None,
        # the weights a run starts from: a resume with another --init (or none) was silently another start
        "init": os.path.realpath(args.init) if args.init else None})
    try:
        check_settings(settings, ControlNetModel)  # before the SD weights are loaded (minutes) and the data read
        sd = load_sd(sd_path, config.value(SD_CONFIG.key))
        net = load_controlnet(args.init) if args.init else ControlNetModel.from_unet(sd["unet"])
        if mismatch(sd["unet"].config, net.config):
            raise WeightsError(f"--init {args.init} does not fit {sd_path}: {mismatch(sd['unet'].config, net.config)}")
        dataset = GuidancePairs(args.data, sd["tokenizer"], size=args.size, default_caption=args.caption)
        settings.data_statistics = dataset.fingerprint()  # a resume on another folder of as many samples is refused
    except (TrainingError, WeightsError, ValueError) as exc:  # (a file error: worded by the command line's handler)
        print(f"handforge train {command}: {exc}", file=sys.stderr)
        return 2
    objective = GuidanceObjective(sd, args.lambda_global, args.lambda_local, args.tas_strength if args.tas else None)
    try:
        result = train(net, dataset, objective, settings)
    except TrainingError as exc:
        print(f"handforge train {command}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.model_dir} (last loss {result.last_loss:.4g}{'; ' + result.note() if result.note() else ''}); "
          "to use it, " + GUIDANCE.how_to_set(os.path.abspath(result.model_dir)))
    return 0
