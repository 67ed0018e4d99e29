"""``handforge eval transfer``: pose transfer on held-out pairs (``pairs.py``), both engines.

Each pair's source image goes to the engine with the target's camera and pose; the result is
compared with the pair's ground-truth target image:

- appearance kept: PSNR (dB) and SSIM (Wang et al. 2004, https://doi.org/10.1109/TIP.2003.819861, scikit-image's)
  inside the target hands' projected box and outside it (the background);
- pose agreement: PCK — the share of the target's visible keypoints whose detected position lies
  within ``--pck`` × the box's diagonal of our projected keypoint. Detection needs a hand landmark
  detector: ``handforge.evaluation.landmarks`` (MediaPipe Hands, the ``landmarks`` extra) when it is
  installed, else the pose score is left out and the report says why.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from handforge.arguments import SEED, EachOnce, at_least, given_path, number_in, report_file, torch_device, whole_number, write_report
from handforge.engines.image.jobs import AUTO
from handforge.engines.image.loading import TRAIN_TIMESTEPS
from handforge.engines.transfer.jobs import GUIDES
from handforge.engines.transfer.train import add_pair_arguments, requested_spec, write_requested_pairs


def box_mask(box: list[float] | None, height: int, width: int) -> np.ndarray:
    """(H, W) bool: the pixels whose centres lie in ``box`` [x, y, w, h]."""
    mask = np.zeros((height, width), bool)
    if box is not None:
        x, y, w, h = box
        mask[max(0, round(y)):max(0, round(y + h)), max(0, round(x)):max(0, round(x + w))] = True
    return mask


PSNR_CAP_DB = 100.0  # identical pixels: a finite best score, so that a perfect image raises the mean


def psnr(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float | None:
    """PSNR in dB of two uint8 images over the pixels ``where``, at most ``PSNR_CAP_DB`` (reached when they
    are equal: inf would drop out of a mean, and the perfect pairs with it); None without pixels."""
    if not where.any():
        return None
    error = float(np.mean((a[where].astype(np.float64) - b[where].astype(np.float64)) ** 2))
    return PSNR_CAP_DB if error == 0 else min(PSNR_CAP_DB, float(10 * np.log10(255.0 ** 2 / error)))


def ssim(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float | None:
    """Mean SSIM of two uint8 (H, W, 3) images over the pixels ``where`` (1: equal); None without pixels. The
    local SSIM map is made on the whole images (7×7 windows, colour channels averaged), then averaged over
    ``where``: a box's border pixels see a little of its surroundings, as the eye does."""
    if not where.any():
        return None
    from skimage.metrics import structural_similarity

    _, local = structural_similarity(a, b, channel_axis=-1, data_range=255, full=True)
    return float(local.mean(-1)[where].mean())


def pose_scores(detected: list, hands: dict, threshold: float) -> list[float]:
    """Per labelled hand, PCK@``threshold`` (of its box's diagonal) over its visible keypoints against the
    detection paired with it (``evaluation.landmarks``: ``match`` by 2D proximity, ``keypoint_errors``,
    as ``handforge eval image`` measures); a hand without a detection scores 0. A hand with no visible
    keypoint (occluded, or outside the image: no ``bbox_projected``) is left out, as ``eval image`` leaves
    it: it cannot be found, and it scored 0 when nothing was detected but NaN (dropped) when something was."""
    from handforge.evaluation.landmarks import keypoint_errors, match

    in_view = {s: h for s, h in hands.items() if h.get("bbox_projected") is not None and np.any(h["visible"])}
    labelled = {s: np.array(h["keypoints_2d"], np.float64) for s, h in in_view.items()}
    paired = match(detected, labelled)  # (after the filter: a hand out of view must not take a detection)
    return [keypoint_errors(paired[s].keypoints, labelled[s], h["bbox_projected"], np.array(h["visible"], bool),
                            threshold).pck if s in paired else 0.0 for s, h in in_view.items()]


def landmark_detector():
    """image (H, W, 3) uint8 → the detected hands (``evaluation.landmarks.detect``); None without MediaPipe."""
    import importlib.util

    if importlib.util.find_spec("mediapipe") is None:
        return None
    from handforge.evaluation import landmarks

    return landmarks.detect


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="a pairs folder (handforge train transfer --write-pairs); "
                                                      "evaluate on pairs the model was not trained on")
    add_pair_arguments(parser, default_pairs=100)
    parser.add_argument("--engines", nargs="+", choices=("reference", "ihpt"), default=["reference", "ihpt"],
                        action=EachOnce, help="the engines to evaluate, a row each")
    parser.add_argument("--sd", type=given_path("an SD 1.x folder"), help="SD 1.x folder (default: image.sd_model)")
    parser.add_argument("--controlnets", type=given_path("the folder of ControlNets"), help="reference: the folder of ControlNets (default: image.controlnets)")
    parser.add_argument("--controls", nargs="*", default=[], help="reference: which of them, 'name' or "
                                                                  "'name:kind' (default: all)")
    parser.add_argument("--guide", choices=(AUTO, *GUIDES), default=AUTO,
                        help="reference: where the target pose's render goes, as the image.transfer job's guide "
                             "(auto: the ControlNets when there are any, else the guidance module)")
    parser.add_argument("--guidance", type=given_path("a guidance module folder"),
                        help="reference, guide attentionhand: the guidance module (default: image.guidance)")
    parser.add_argument("--target-generator", type=given_path("a model folder"), help="ihpt: the model folder (default: transfer.target_generator)")
    parser.add_argument("--limit", type=at_least(1), default=100, help="pairs to evaluate")
    parser.add_argument("--steps", type=whole_number(1, TRAIN_TIMESTEPS), default=20,
                        help=f"DDIM steps (SD 1.x has {TRAIN_TIMESTEPS})")
    parser.add_argument("--seed", type=SEED, default=0, help="random seed")
    parser.add_argument("--pck", type=number_in(0.0, 1.0, low_open=True), default=0.1, help="PCK threshold, a fraction of the box diagonal")
    parser.add_argument("--out", type=report_file, help="write the report here (JSON)")
    parser.add_argument("--device", type=torch_device, default=None, help="cpu, cuda or cuda:N (default: cuda when "
                                                                          "there is one); float16 on CUDA")


def _mean(values) -> float | None:
    kept = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(kept)) if kept else None


def evaluate_pairs(engines: dict, dataset, limit: int, steps: int, seed: int, threshold: float, detect) -> dict:
    """``engines``: name → fn(source_image, source_labels, target_labels, steps, seed) → (H, W, 3) uint8."""
    from handforge.export.labels import union_box
    from handforge.export.samples import finished_image, read_labels

    report = {"pairs": 0, "pose": f"PCK@{threshold:g} over visible keypoints" if detect else
              "not measured: no hand landmark detector (MediaPipe: pip install 'handforge[landmarks]')", "engines": {}}
    rows = {name: [] for name in engines}
    for index in dataset.indices[:limit]:
        source_sample = dataset.folder / "source" / "samples" / index
        source = np.asarray(finished_image(source_sample / "rgb.png", "fix or remove that pair").convert("RGB"))
        source_labels = read_labels(source_sample)
        sample = dataset.folder / "target" / "samples" / index
        truth = np.asarray(finished_image(sample / "rgb.png", "fix or remove that pair").convert("RGB"))
        labels = read_labels(sample)
        box = union_box([h["bbox_projected"] for h in labels["hands"].values()])
        inside = box_mask(box, *truth.shape[:2])
        for name, run in engines.items():
            result = run(source, source_labels, labels, steps, seed)
            row = {"psnr_hands": psnr(result, truth, inside), "psnr_background": psnr(result, truth, ~inside),
                   "ssim_hands": ssim(result, truth, inside), "ssim_background": ssim(result, truth, ~inside)}
            if detect is not None:
                row["pck"] = _mean(pose_scores(detect(result), labels["hands"], threshold))
            rows[name].append(row)
        report["pairs"] += 1
    for name, engine_rows in rows.items():
        report["engines"][name] = {key: _mean(r[key] for r in engine_rows) for key in engine_rows[0]} if engine_rows else {}
    return report


def _engines(args, sd_path: str, names: list[str], device: str) -> tuple[dict, dict]:
    import torch

    from handforge import config
    from handforge.engines.checkpoints import load_model
    from handforge.engines.image.conditioning import condition
    from handforge.engines.image.controls import ControlError, resolve
    from handforge.runtime import torch_dtype
    from handforge.engines.image.loading import build_pipeline, load_sd, sd_parts_on
    from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_CONFIG, pass_or_set
    from handforge.engines.transfer.model import TargetGenerator, check_fits, pose_vector
    from handforge.engines.transfer.pipeline import sample_target, transfer
    from handforge.engines.transfer.settings import TARGET_GENERATOR
    from handforge.export.labels import label_poses
    from handforge.hands import load_hand_model
    from handforge.render.camera import Camera

    def target_view(labels):
        hands = label_poses(labels)
        return hands, condition(load_hand_model(labels.get("hand_model", "open")), hands,
                                Camera.from_dict(labels["camera"])).global_view

    sd_config, dtype = config.value(SD_CONFIG.key), torch_dtype("auto", device)

    def generator(seed: int):
        return torch.Generator(device=device).manual_seed(seed)

    engines, models = {}, {}  # the models each engine ran with, for the report
    target_generator = args.target_generator or config.value(TARGET_GENERATOR.key)
    if "ihpt" in names and target_generator is None:  # (said before the reference engine's weights load: minutes)
        raise ValueError("ihpt: no target generator: " + pass_or_set("--target-generator", TARGET_GENERATOR))
    if "reference" in names:
        guide = _guide(args, sd_path)
        if guide == "attentionhand":
            folder = args.guidance or config.value(GUIDANCE.key)
            if folder is None:
                raise ValueError("reference: guide attentionhand: no guidance module: "
                                 + pass_or_set("--guidance", GUIDANCE))
            if args.controls:  # (the job's refusal: controls choose ControlNets)
                raise ValueError("reference: --controls choose ControlNets of the controlnet guide: leave them "
                                 "out for --guide attentionhand, or pass --guide controlnet")
            weights, kinds = [str(folder)], ["mesh"]
            models["reference"] = {"guide": guide, "guidance": _absolute(folder)}
        else:
            folder = args.controlnets or config.value(CONTROLNETS.key)
            if folder is None:
                raise ValueError("reference: guide controlnet: no ControlNets: "
                                 + pass_or_set("--controlnets", CONTROLNETS))
            try:
                controls = resolve(args.controls, folder)
            except ControlError as exc:
                raise ValueError(f"reference: {exc}") from None
            weights, kinds = [str(c.path) for c in controls], [c.kind for c in controls]
            models["reference"] = {"guide": guide, "controlnets": {c.kind: _absolute(c.path) for c in controls}}
        pipe = build_pipeline(sd_path, weights, sd_config, dtype=dtype, device=device)

        def reference(source, source_labels, labels, steps, seed):
            _, view = target_view(labels)
            return transfer(pipe, source, [view.images[k] for k in kinds], num_inference_steps=steps,
                            generator=generator(seed)).images[0]

        engines["reference"] = reference
    if "ihpt" in names:
        folder = target_generator
        parts = sd_parts_on(load_sd(sd_path, sd_config, dtype), device)
        model = load_model(TargetGenerator, folder, device=device)
        check_fits(model, folder, parts["unet"], sd_path)  # (the job's check: else a matmul error mid-evaluation)
        models["ihpt"] = {"target_generator": _absolute(folder)}

        def ihpt(source, source_labels, labels, steps, seed):
            hands, source_hands = label_poses(labels), label_poses(source_labels)
            camera = labels["camera"]
            return sample_target(parts, model, source, pose_vector(source_hands, np.asarray(source_labels["camera"]["R"])),
                                 pose_vector(hands, np.asarray(camera["R"])), camera["width"],
                                 camera["height"], steps, 1, generator(seed))[0]

        engines["ihpt"] = ihpt
    return engines, models


def _guide(args, sd_path: str) -> str:
    """--guide, with auto read as the image.transfer job reads its guide (``image.jobs.ready_engine``: the
    ControlNets when --controls names some or they are ready, else the guidance module when it is), of the
    weights given here or set."""
    from handforge import config
    from handforge.engines.image.jobs import ready_engine
    from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_MODEL

    given = {SD_MODEL: sd_path, CONTROLNETS: args.controlnets, GUIDANCE: args.guidance}
    with config.given({s: _absolute(path) if path is not None else None for s, path in given.items()}):
        return ready_engine(args.guide, GUIDES, args.controls)


def _check_engines_options(args) -> None:
    """An engine's options given without that engine in --engines (or of the other guide) are refused, naming
    them: they were ignored, unsaid, paths to nothing included."""
    options = {"ihpt": {"--target-generator": args.target_generator},
               "reference": {"--controlnets": args.controlnets, "--controls": args.controls or None,
                             "--guide": None if args.guide == AUTO else args.guide, "--guidance": args.guidance}}
    for engine, given in options.items():
        named = [name for name, value in given.items() if value is not None]
        if engine not in args.engines and named:
            raise ValueError(f"{', '.join(named)}: the {engine} engine's, which --engines {' '.join(args.engines)} "
                             f"leaves out: add {engine} to --engines, or leave {'them' if len(named) > 1 else 'it'} out")
    other = {"attentionhand": ("--controlnets", args.controlnets), "controlnet": ("--guidance", args.guidance)}
    if "reference" in args.engines and args.guide in other and other[args.guide][1] is not None:
        raise ValueError(f"{other[args.guide][0]}: not read by --guide {args.guide}: leave it out, or pass the guide "
                         "that reads it")


def _check_size(width: int, height: int, what: str) -> None:
    """Both engines draw each pair at its target's size, which SD's VAE needs in multiples of 8: refused
    here, before the pairs are written and the weights load (it was a traceback at the first pair)."""
    if width % 8 or height % 8:
        raise ValueError(f"{what}: {width}×{height} pixels; the engines draw images whose sides are multiples "
                         "of 8: write the pairs from a spec whose width and height are")


def _absolute(path) -> str:
    """A path as the report records it: absolute, so that a report read from elsewhere names its files."""
    return str(Path(path).expanduser().absolute())


def run(args: argparse.Namespace) -> int:
    from handforge import config
    from handforge.engines.image.settings import SD_MODEL, pass_or_set
    from handforge.engines.transfer.pairs import PosePairs
    from handforge.export.samples import read_labels

    from handforge.engines.checkpoints import CheckpointError
    from handforge.engines.image.loading import WeightsError
    from handforge.runtime import default_device

    import torch

    sd_path = args.sd or config.value(SD_MODEL.key)
    device = args.device or default_device()
    try:
        if not args.write_pairs and not Path(args.data).expanduser().is_dir():  # said first: a typo, not the weights
            raise ValueError(f"--data {args.data}: no such folder (a pairs folder; --write-pairs SPEC writes one)")
        if device != "cpu" and not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no CUDA device; use --device cpu")
        # the inputs said before the weights, one fix at a time (a missing --write-pairs spec or a damaged pair came
        # to light only once the weights were set)
        _check_engines_options(args)
        spec = requested_spec(args)
        if spec is not None:
            _check_size(spec.width, spec.height, f"--write-pairs {args.write_pairs}")

        def checked_pairs() -> PosePairs:
            pairs = PosePairs(args.data)
            for index in pairs.indices[:args.limit]:  # (the one labels reader: a damaged file named, not a KeyError)
                camera = read_labels(pairs.folder / "target" / "samples" / index)["camera"]
                _check_size(camera["width"], camera["height"], f"pair {index} of {args.data}")
            return pairs

        dataset = checked_pairs() if spec is None else None
        if sd_path is None:
            raise ValueError("no SD weights: " + pass_or_set("--sd", SD_MODEL))
        if dataset is None:
            write_requested_pairs(args, spec)
            dataset = checked_pairs()
        engines, models = _engines(args, str(sd_path), args.engines, device)
    except (ValueError, OSError, CheckpointError, WeightsError) as exc:
        print(f"handforge eval transfer: {exc}", file=sys.stderr)
        return 2
    scores = evaluate_pairs(engines, dataset, args.limit, args.steps, args.seed, args.pck, landmark_detector())
    # what was measured, so that a report read later says which weights it is about
    report = {"run": {"sd": _absolute(sd_path), "models": models, "data": _absolute(args.data), "steps": args.steps,
                      "seed": args.seed, "limit": args.limit, "device": device}, **scores}
    if args.out:
        write_report(args.out, report)
    print(json.dumps(report, indent=1))
    return 0


__all__ = ["add_arguments", "box_mask", "evaluate_pairs", "pose_scores", "psnr", "run"]
