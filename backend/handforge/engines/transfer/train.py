"""Train IHPT's target generator (``handforge train transfer``).

The objective is the paper's Eq. 3 (Park, Hwang and Kang, "Diffusion-based Interacting Hand Pose
Transfer", ECCV 2024 HANDS workshop): ‖ε − ε_θ(z_t, t, c, e_source, e_pose)‖², with z_0 the SD VAE
latent of the target image and ε_θ the frozen SD 1.x UNet attending to the target generator's
context (``model.py``). Only the target generator learns here; the paper leaves open which parts it
trains. Data: pairs that share appearance and differ in pose (``pairs.py``), written from an
export spec with ``--write-pairs``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from handforge.arguments import at_least, layer_count, multiple_of, only_with, output_folder
from handforge.engines.image.train import add_sd_run_arguments
from handforge.engines.transfer.model_config import block_on_one_pixel


def add_pair_arguments(parser: argparse.ArgumentParser, default_pairs: int) -> None:
    """Writing pairs before a command reads them (training, and evaluation on pairs of another seed)."""
    parser.add_argument("--write-pairs", metavar="SPEC", help="first write --pairs pairs from this export spec "
                                                              "(TOML/JSON, the labelled export's) into --data")
    parser.add_argument("--pairs", type=at_least(1), help=f"how many pairs --write-pairs writes (default: {default_pairs})")
    parser.add_argument("--shading", choices=("blender", "gl"), help="RGB of written pairs: the spec's Blender "
                                                                     "engine, or our GL shading (fast, plain) (default: blender)")
    parser.set_defaults(default_pairs=default_pairs)  # --pairs's with --write-pairs (requested_spec)


def requested_spec(args: argparse.Namespace):
    """The export spec ``--write-pairs`` names (None without it), read and ``--data`` checked: before the SD
    weights are loaded (minutes with real ones), a missing or bad spec was said only after them. A bad
    one is a ValueError."""
    only_with(args, "--write-pairs", {"pairs": args.default_pairs, "shading": "blender"},
              "they say how it writes pairs; --data's pairs are read as they are")
    if not args.write_pairs:
        return None
    from handforge.export.spec import load_spec  # its SpecError is a ValueError

    from handforge.engines.transfer.pairs import check_pairs_folder

    try:  # --data is written into only with --write-pairs: a file there was "[Errno 17] File exists"
        args.data = output_folder(args.data)  # (as meant: "a/../b" made a stray "a")
    except argparse.ArgumentTypeError as exc:
        raise ValueError(f"--data: {exc}") from None
    spec = load_spec(args.write_pairs)
    check_pairs_folder(args.data, spec, args.shading, args.pairs)  # pairs of another spec there: said now too
    return spec


def write_requested_pairs(args: argparse.Namespace, spec=None) -> None:
    """The pairs ``--write-pairs`` asks for, into ``--data`` (finished ones kept), from ``spec`` when it
    was read already (``requested_spec``); a bad spec is a ValueError."""
    if spec is None:
        spec = requested_spec(args)
    if spec is not None:
        from handforge.engines.transfer.pairs import write_pairs

        write_pairs(spec, args.data, args.pairs, shading=args.shading)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="pairs folder (source/samples/N, target/samples/N), or with "
                                                      "--interhand an InterHand2.6M root")
    parser.add_argument("--interhand", action="store_true", help="--data is InterHand2.6M: pairs of frames of one "
                                                                 "sequence and camera (needs the MANO files)")
    parser.add_argument("--interhand-split", choices=("train", "validation", "test"), help="(default: train)")
    parser.add_argument("--interhand-gap", type=at_least(1), help="frames between a pair's two images, at least "
                                                                  "(default: 30)")
    add_pair_arguments(parser, default_pairs=1000)
    parser.add_argument("--out", type=output_folder, required=True, help="run folder (log, checkpoints; model/ is the target generator)")
    parser.add_argument("--size", type=multiple_of(8, 64), default=512, help="training resolution of the target images "
                                                                           "(a multiple of 8, the VAE's factor)")
    parser.add_argument("--image-size", type=at_least(1), default=224, help="the backbone's input size")
    parser.add_argument("--channels", type=at_least(1), nargs="+", default=[64, 128, 256, 512],
                        help="backbone widths, each at most 8 or a multiple of 8")
    parser.add_argument("--feature-dim", type=at_least(1), default=512, help="a multiple of --heads")
    parser.add_argument("--layers", type=layer_count, default=2, help="transformer layers")
    parser.add_argument("--heads", type=at_least(1), default=8, help="attention heads")
    add_sd_run_arguments(parser, batch_size=4, lr=1e-4)


class TransferObjective:
    """loss_fn(model, batch) of the training loop; holds the frozen VAE and UNet."""

    def __init__(self, sd: dict) -> None:
        from diffusers import DDPMScheduler

        self.vae, self.unet = sd["vae"], sd["unet"]
        for part in (self.vae, self.unet):
            part.requires_grad_(False).eval()
        self.noise = DDPMScheduler.from_config(sd["scheduler"].config)

    def __call__(self, model, batch, generator=None):
        import torch

        device = batch["target"].device
        if self.unet.device != device:
            self.vae.to(device)
            self.unet.to(device)
        with torch.no_grad():
            z0 = self.vae.encode(batch["target"]).latent_dist.mean * self.vae.config.scaling_factor
        noise = torch.randn(z0.shape, generator=generator, device=device)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (z0.shape[0],), generator=generator, device=device)
        context = model(batch["source"], batch["source_pose"], batch["target_pose"])
        pred = self.unet(self.noise.add_noise(z0, noise, t), t, encoder_hidden_states=context, return_dict=False)[0]
        return torch.nn.functional.mse_loss(pred.float(), noise.float())


def _interhand(args: argparse.Namespace):
    from handforge.engines.transfer.pairs import InterHandPairs
    from handforge.hands import load_hand_model
    from handforge.hands.errors import HandModelError

    try:  # InterHand2.6M's poses are relative to MANO's mean hand; ours are flat
        hands_mean = load_hand_model("mano").hands_mean_arrays()
    except HandModelError as exc:
        raise ValueError(f"InterHand2.6M needs the MANO model files: {exc}") from None
    return InterHandPairs(args.data, hands_mean, args.interhand_split, args.size, args.interhand_gap)


def _resumes_a_run_without_trained_size(out) -> bool:
    """Whether ``out`` holds a run begun before the model's config recorded its --size (its settings.json's
    model_config lacks trained_size): resumed with it, its model config would differ and the resume be refused;
    the size stays in its settings.json, where the ihpt engine reads it for such a model."""
    from handforge.training.loop import recorded_settings

    recorded = recorded_settings(out)
    model_config = recorded.get("model_config") if recorded is not None else None
    return isinstance(model_config, dict) and "trained_size" not in model_config


def run(args: argparse.Namespace) -> int:
    import torch

    from handforge import config
    from handforge.engines.image.loading import WeightsError, load_sd
    from handforge.engines.image.settings import SD_CONFIG
    from handforge.engines.image.train import sd_run_settings, sd_weights_path
    from handforge.engines.transfer.model import TargetGenerator
    from handforge.engines.transfer.pairs import PosePairs
    from handforge.engines.transfer.settings import TARGET_GENERATOR
    from handforge.training.loop import TrainingError, check_settings, train

    if args.feature_dim % args.heads:
        print(f"handforge train transfer: --feature-dim {args.feature_dim} must be a multiple of --heads {args.heads}",
              file=sys.stderr)
        return 2
    # each block's GroupNorm has min(8, width) groups: torch refused 12 only after the SD load and --write-pairs
    odd = [width for width in args.channels if width > 8 and width % 8]
    if odd:
        print(f"handforge train transfer: --channels {odd[0]}: a backbone width above 8 must be a multiple of 8 (each "
              "block's GroupNorm splits its channels into 8 groups)", file=sys.stderr)
        return 2
    tiny = block_on_one_pixel(args.image_size, args.channels)
    if tiny is not None:  # (torch's "Expected more than 1 value per channel" traceback, at the first step with
        # --batch-size 1, else in `eval transfer` and the ihpt engine, which run one image at a time)
        block, width = tiny
        print(f"handforge train transfer: --image-size {args.image_size} is too small for --channels "
              f"{' '.join(map(str, args.channels))}: block {block} (width {width}) would see a 1×1 map, one value "
              f"in each of its GroupNorm's groups: give --image-size {2 ** block + 1} or more, or that block a "
              "width of 16 or more", file=sys.stderr)
        return 2
    if args.interhand and args.write_pairs:  # the pairs went into the InterHand2.6M copy, and were not trained on
        print("handforge train transfer: --write-pairs writes pairs into --data, which --interhand makes your "
              "InterHand2.6M copy: give one of them (--write-pairs into a pairs folder, or --interhand alone)",
              file=sys.stderr)
        return 2
    try:
        only_with(args, "--interhand", {"interhand_split": "train", "interhand_gap": 30},
                  "they choose InterHand2.6M's pairs; --data is a pairs folder without it")
    except ValueError as exc:
        print(f"handforge train transfer: {exc}", file=sys.stderr)
        return 2
    sd_path = sd_weights_path(args, "transfer")
    if sd_path is None:
        return 2
    torch.manual_seed(args.seed)  # before the model is initialised: one seed, one model
    settings = sd_run_settings(args, sd_path, {
        "size": args.size, "interhand": args.interhand,
        "interhand_split": args.interhand_split if args.interhand else None,
        "interhand_gap": args.interhand_gap if args.interhand else None})
    try:
        # before the SD weights are loaded (minutes) and pairs written; with the model's options known without them
        options = {"image_size": args.image_size, "backbone_channels": tuple(args.channels),
                   "feature_dim": args.feature_dim, "num_layers": args.layers, "num_heads": args.heads}
        spec = requested_spec(args)
        data, out = Path(args.data).resolve(), Path(args.out).resolve()
        if spec is not None and (data == out or out in data.parents):  # (refused by train(), once they were written)
            raise ValueError(f"--data {args.data} is --out {args.out} or inside it: --write-pairs would write the pairs "
                             "into the run folder, which holds the run's files only: give --data a folder outside it")
        # --pairs is the data's count once written: a resume on another count is refused before a pair is written
        # (it was written, and then neither count resumed the run)
        check_settings(settings, TargetGenerator, options, dataset_size=args.pairs if spec is not None else None)
        sd = load_sd(sd_path, config.value(SD_CONFIG.key))  # before any pair is written
        write_requested_pairs(args, spec)
        dataset = _interhand(args) if args.interhand else PosePairs(args.data, size=args.size)
        settings.data_statistics = dataset.fingerprint()  # a resume on another folder of as many pairs is refused
        model = TargetGenerator(**options, cross_attention_dim=sd["unet"].config.cross_attention_dim,
                                trained_size=None if _resumes_a_run_without_trained_size(args.out) else args.size)
    except (TrainingError, WeightsError, ValueError, OSError) as exc:
        from handforge_shared.files import file_error

        said = file_error(exc, "choose another folder") if isinstance(exc, OSError) and exc.errno else exc
        print(f"handforge train transfer: {said}", file=sys.stderr)
        return 2
    try:
        result = train(model, dataset, TransferObjective(sd), settings)
    except TrainingError as exc:
        print(f"handforge train transfer: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {result.model_dir} (last loss {result.last_loss:.4g}{'; ' + result.note() if result.note() else ''}); "
          "to use it, " + TARGET_GENERATOR.how_to_set(os.path.abspath(result.model_dir)))
    return 0


__all__ = ["TransferObjective", "add_arguments", "add_pair_arguments", "requested_spec", "run",
           "write_requested_pairs"]
