"""Load Stable Diffusion 1.x and ControlNets from local files only (never a download).

SD 1.x comes as a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``, e.g. a copy of the stable-diffusion-v1-5 repository) or as one ``.safetensors``
checkpoint in the original layout, read with diffusers' ``from_single_file`` against a local
diffusers folder for its configs. ControlNets are diffusers ``ControlNetModel`` folders. Sampling
uses DDIM built from the model's scheduler config.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from handforge.engines.checkpoints import (
    WEIGHTS_NAME,
    config_and_shapes,
    config_json,
    count_problem,
    damaged_weights,
    extra_weights,
    first_non_finite,
    folder_size_problem,
    header_shapes,
    overflowed,
)

SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
# SD 1.x's UNet learned 1000 noise levels; DDIM samples up to that many steps (eval's --steps), each at
# one of them, so a scheduler config of fewer (0, a damaged file) cannot drive it
TRAIN_TIMESTEPS = 1000


class WeightsError(RuntimeError):
    """Weights that are missing or unreadable; the message names the path and what to do. ``path``: the
    file or folder at fault (None when it is no one path), so a job can name the setting that holds it."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else Path(path).expanduser()


def _torchvision_note(record: logging.LogRecord) -> bool:
    return "requires torchvision (not installed)" not in record.getMessage()


def _ema_note(record: logging.LogRecord) -> bool:
    # diffusers' notes of which UNet copy a single file gave, whose advice names its conversion script's flag
    return "EMA" not in record.getMessage()


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Without transformers' lines that are no news to the user: its note that image processors fall
    back to PIL without torchvision (printed when diffusers' SD pipeline is imported; SD here uses none
    of them), diffusers' notes of a single file's EMA weights, its "Loading weights" bar and diffusers' "Loading
    pipeline components" (a single file's) bar (a job reports its own progress; ``train --quiet`` is quiet)."""
    logging.getLogger("transformers.utils.import_utils").addFilter(_torchvision_note)  # once: a set
    logging.getLogger("diffusers.loaders.single_file_utils").addFilter(_ema_note)
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    shown = [lib for lib in (transformers_logging, diffusers_logging) if lib.is_progress_bar_enabled()]
    for lib in shown:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib in shown:
            lib.enable_progress_bar()


def _local(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{what}: {path} does not exist", path)
    return path


def load_sd(path: str | Path, config: str | Path | None = None, dtype: Any = None,
            check: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The SD 1.x components (vae, text_encoder, tokenizer, unet, scheduler: DDIM), on the CPU. ``check()``
    runs between the models' loads of a diffusers folder and may raise to abandon the load (a job's
    ``check_cancelled``: the UNet alone takes seconds to minutes)."""
    with _quiet_loading():
        return _load_sd(path, config, dtype, check)


def _load_sd(path: str | Path, config: str | Path | None, dtype: Any, check: Callable[[], None]) -> dict[str, Any]:
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    path = _local(path, "Stable Diffusion weights")
    stopped = False
    try:
        if path.is_file():
            if path.suffix.lower() != ".safetensors":  # diffusers would unpickle a .ckpt
                raise WeightsError(f"{path}: only .safetensors weights are read, never pickles (.ckpt, .bin, .pt); "
                                   "convert it to .safetensors or use a diffusers folder", path)
            if config is None:
                raise WeightsError(f"{path} is a single-file checkpoint: set image.sd_config to a local diffusers "
                                   "SD 1.x folder for its configs and tokenizer (nothing is downloaded)", path)
            config = _local(config, "SD config folder")
            lacks = sd_config_missing(config)
            if lacks:
                raise WeightsError(f"image.sd_config = {config} has {lacks}: it must be a whole diffusers SD 1.x "
                                   "folder (model_index.json beside unet/, vae/, text_encoder/, tokenizer/, scheduler/; "
                                   "their weights are not read), e.g. handforge models fetch sd15", config)
            scheduler_config(config)  # (the pipeline's scheduler is built from its file)
            problem = single_file_problem(path, config)
            if problem:
                raise WeightsError(problem, path)
            # the components SD here never uses are not loaded: from_single_file loads each one model_index.json
            # names, and SD 1.5's names a feature extractor whose files `handforge models fetch` leaves out.
            # extract_ema: a file holding the UNet's EMA copy too (SD 1.5's v1-5-pruned) gives that copy, the one
            # its authors give for inference (v1-5-pruned-emaonly is it alone); diffusers reads the other unless
            # asked (its notes of which copy it read are left out: ``_ema_note``)
            pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(config), extract_ema=True,
                                                            local_files_only=True, torch_dtype=dtype,
                                                            safety_checker=None, feature_extractor=None,
                                                            image_encoder=None, requires_safety_checker=False)
            parts = {"vae": pipe.vae, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer,
                     "unet": pipe.unet, "scheduler": pipe.scheduler}
        else:
            missing = [p for p in SD_PARTS if not (path / p).is_dir()]
            if missing:
                raise WeightsError(f"{path} is not a diffusers SD 1.x folder: no {', '.join(missing)}/ in it", path)
            kw = {"local_files_only": True, "torch_dtype": dtype}
            parts = {}
            for name, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
                try:
                    check()
                except BaseException:
                    stopped = True  # the caller's to handle (a cancelled job), not a damaged file
                    raise
                _check_sizes(path / name, "model.safetensors" if name == "text_encoder" else WEIGHTS_NAME)
                loaded = cls.from_pretrained(str(path), subfolder=name, output_loading_info=True, **kw)
                # the UNet's weights beyond its config (one of fewer layers or transformer blocks) were dropped
                # unsaid, and it sampled without them (not the text encoder's: SD's carry an unused position_ids)
                extra = extra_weights(loaded[1]) if name == "unet" else ""
                if extra:
                    raise WeightsError(f"{path / name} {extra}; correct it, or copy the folder again", path / name)
                parts[name] = _complete(loaded, path / name)
            parts.update(tokenizer=CLIPTokenizer.from_pretrained(str(path), subfolder="tokenizer", local_files_only=True),
                         scheduler=DDIMScheduler.from_config(scheduler_config(path)))
    except WeightsError:
        raise
    except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds (SingleFileComponentError, ...)
        if stopped:
            raise
        raise WeightsError(f"cannot load Stable Diffusion from {path}: {_reason(exc)}; {_recheck(path)}",
                           path) from None
    parts["scheduler"] = DDIMScheduler.from_config(parts["scheduler"].config)
    if parts["unet"].config.cross_attention_dim != parts["text_encoder"].config.hidden_size:
        raise WeightsError(f"{path}: the UNet attends {parts['unet'].config.cross_attention_dim}-wide text but the "
                           f"text encoder gives {parts['text_encoder'].config.hidden_size}; is it an SD 1.x model?",
                           path)
    problem = latent_problem(parts["unet"].config, parts["vae"].config)
    if problem:  # (it loaded, and every job failed at its first step in torch's words, naming no file)
        where = path / "unet" if path.is_dir() else Path(config) / "unet"
        raise WeightsError(f"{where} {problem}", path)
    for name in ("unet", "vae", "text_encoder"):
        if path.is_file():
            _refuse_non_finite(parts[name], path, dtype, path, part=name)
        else:
            weights = "model.safetensors" if name == "text_encoder" else WEIGHTS_NAME
            _refuse_non_finite(parts[name], path / name / weights, dtype, path / name)
    return parts


def latent_problem(unet: Mapping[str, Any], vae: Mapping[str, Any]) -> str:
    """Why a UNet of config ``unet`` cannot sample text-to-image in the latents of a VAE of config ``vae`` ('' when
    it can, or when a value is no whole number: diffusers' load says why), said of the UNet's folder: SD 1.x's takes
    and gives the VAE's latent channels, an inpainting UNet takes 9 (the latents, a mask, the masked image's), and
    it reads the text alone (no added or class embeddings, as SDXL's takes)."""
    # SDXL's UNet (and unCLIP's, an upscaler's) takes embeddings besides the text that SD 1.x's sampling does not
    # give: it loaded, made the engines ready, and every job failed at its first step ("argument of type 'NoneType'
    # is not iterable"), an internal error naming no file
    extra = [f"{key} {unet[key]!r}" for key in ("addition_embed_type", "class_embed_type") if unet.get(key)]
    if extra:
        return (f"is an SDXL or other UNet that takes more conditioning than SD 1.x's text ({', '.join(extra)}): "
                "give an SD 1.x text-to-image model")
    latent = vae.get("latent_channels", 4)  # (diffusers' defaults, for a config.json that leaves one out)
    for key in ("in_channels", "out_channels"):
        value = unet.get(key, 4)
        if _whole(value) and _whole(latent) and value != latent:
            return (f"is an inpainting or other non-text-to-image UNet ({key} {value}, its VAE's latent_channels "
                    f"{latent}): give an SD 1.x text-to-image model")
    return ""


def sd_latent_problem(sd: str | Path, sd_config: str | Path | None = None) -> str:
    """``latent_problem`` of the SD model ``sd`` (a diffusers folder, or one file with its configs in ``sd_config``),
    said of its UNet's folder, from the config.json files alone (no torch: the engines' status lines call it, which
    said "ready" for an inpainting model until every job failed at its first step); '' when it fits, or when a
    config cannot be read (the load says why)."""
    sd = Path(sd).expanduser()
    if sd.is_file() and sd_config is None:
        return ""
    folder = Path(sd_config).expanduser() if sd.is_file() else sd
    try:
        unet, vae = config_json(folder / "unet" / "config.json"), config_json(folder / "vae" / "config.json")
    except (OSError, ValueError, RecursionError):
        return ""
    if not isinstance(unet, dict) or not isinstance(vae, dict):
        return ""
    problem = latent_problem(unet, vae)
    return f"{folder / 'unet'} {problem}" if problem else ""


def sd_config_missing(folder: Path) -> str:
    """What the diffusers folder ``folder`` lacks as a single-file SD model's configs ('' when nothing): diffusers'
    from_single_file reads model_index.json for the pipeline's parts, then each part's config (a copy of the parts
    alone failed each load as "no file named model_index.json", said of the weights file)."""
    lacks = [f"{p}/" for p in SD_PARTS if not (folder / p).is_dir()]
    lacks += [f"{p}/config.json" for p in ("unet", "vae", "text_encoder")
              if (folder / p).is_dir() and not (folder / p / "config.json").is_file()]
    if not (folder / "model_index.json").is_file():
        lacks.insert(0, "model_index.json")
    return f"no {', '.join(lacks)}" if lacks else ""


# an original-layout SD 1.x checkpoint's tensor name prefix of each part (CompVis/LDM: the UNet, the VAE, the CLIP
# text encoder), as diffusers' from_single_file reads them
SINGLE_FILE_PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
                        "text_encoder": "cond_stage_model.transformer."}


def single_file_problem(file: str | Path, config: str | Path) -> str:
    """Where the original-layout SD 1.x checkpoint ``file`` lacks a tensor of the UNet, VAE or text encoder that the
    diffusers folder ``config`` describes, or holds one of another shape ('' when it does neither), from its header
    alone (no tensor is read; unreadable: '', the load says why), its names converted by diffusers' own single-file
    conversions. diffusers left a missing tensor unset and failed mid-load ("Cannot copy out of meta tensor"), or
    at the text encoder's first use, naming no tensor; a part missing whole it called a component error."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    file, config = Path(file), Path(config)
    try:
        shapes = header_shapes(file)
    except Exception:  # noqa: BLE001 - safetensors raises its own error types
        return ""
    tensors = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    for part in ("unet", "vae", "text_encoder"):
        prefix = SINGLE_FILE_PREFIXES[part]
        if not any(name.startswith(prefix) for name in shapes):
            return (f"{file} holds no {part} (no {prefix}* tensor): not a whole SD 1.x checkpoint in the original "
                    "layout (a UNet, a LoRA or an SD 2.x/SDXL file?)")
        try:
            with init_empty_weights():
                if part == "text_encoder":
                    model = CLIPTextModel(CLIPTextConfig.from_pretrained(str(config), subfolder=part,
                                                                         local_files_only=True))
                    found = convert_ldm_clip_checkpoint(tensors)
                    if not hasattr(model, "text_model"):  # (transformers 5.6 on: no such level, as diffusers reads it)
                        found = {k.removeprefix("text_model."): v for k, v in found.items()}
                else:
                    cls = UNet2DConditionModel if part == "unet" else AutoencoderKL
                    settings = cls.load_config(str(config), subfolder=part, local_files_only=True)
                    model = cls.from_config(settings)
                    convert = convert_ldm_unet_checkpoint if part == "unet" else convert_ldm_vae_checkpoint
                    found = convert(tensors, settings)
        except Exception:  # noqa: BLE001 - a config no model is built from, or a layout diffusers cannot convert:
            return ""  # the load says why in diffusers' words
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        missing = sorted(set(expected) - set(found))
        if missing:
            return (f"{file} lacks {len(missing)} of the {part}'s {len(expected)} tensors that image.sd_config's "
                    f"{config / part / 'config.json'} makes, e.g. {missing[0]} (diffusers' name): a damaged or pruned "
                    "checkpoint, or one of another model than that folder's")
        wrong = sorted(k for k in expected if k in found and tuple(found[k].shape) != expected[k])
        if wrong:
            k = wrong[0]
            return (f"{file}: the {part}'s {k} is {tuple(found[k].shape)} there, image.sd_config's "
                    f"{config / part / 'config.json'} makes it {expected[k]}: give the diffusers folder of this "
                    "checkpoint's model as image.sd_config (SD 2.x, inpainting and SDXL checkpoints are not SD 1.5's)")
    return ""


def _refuse_non_finite(model: Any, file: Path, dtype: Any, at: Path, part: str = "") -> None:
    """Refuse a loaded model holding a NaN or infinity, naming its weights ``file`` (``at``: the path the error
    blames): diffusers and transformers load them without a word, and every image came out black or noise. Cheap
    next to sampling (``first_non_finite``: 0.05 s for an SD 1.5 ControlNet, 0.1-0.3 s for its UNet on 2 CPU cores,
    where one sampling step of the two took 17 s), so every load checks. ``part``: the SD part of a single-file
    checkpoint the model is (its tensors have other names in that file)."""
    name = first_non_finite(model)
    if not name:
        return
    overflow = "" if part else overflowed(model, file, dtype)  # (finite in the file, beyond float16 once loaded)
    if overflow:
        raise WeightsError(f"{file} {overflow}", at)
    which = f"the {part} model's {name}" if part else name
    unsure = f"; if its values are finite, the {dtype} it was loaded in cannot hold them: load it in float32" \
        if part and dtype is not None else ""
    raise WeightsError(f"{file} holds weights that are not finite (NaN or infinity), e.g. {which}: every image made "
                       f"with them would come out black or noise{unsure}; copy or download it again, or train it "
                       "again", at)


def scheduler_config(folder: Path) -> dict[str, Any]:
    """The scheduler config of a diffusers SD folder, refused where it cannot sample SD 1.x (diffusers
    failed inside the load or the sampling, on an IndexError or a ValueError that named no file)."""
    from diffusers import DDIMScheduler

    loaded = DDIMScheduler.load_config(str(folder), subfolder="scheduler")
    if not isinstance(loaded, dict):  # a JSON string or list: an AttributeError below, naming no file
        raise WeightsError(f"{folder / 'scheduler' / 'scheduler_config.json'}: not a JSON object (a scheduler config); "
                           "copy the file from the model's repository again", folder)
    steps = loaded.get("num_train_timesteps", TRAIN_TIMESTEPS)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < TRAIN_TIMESTEPS:
        raise WeightsError(f"{folder / 'scheduler' / 'scheduler_config.json'}: num_train_timesteps is {steps!r}, "
                           f"SD 1.x is sampled over its {TRAIN_TIMESTEPS} training noise levels; set it to "
                           f"{TRAIN_TIMESTEPS} or copy the file from the model's repository again", folder)
    return loaded


def _complete(loaded: tuple[Any, Mapping[str, Any]], folder: Path) -> Any:
    """The model of a ``from_pretrained(..., output_loading_info=True)``, refused when its weights file lacked
    some of its tensors (diffusers and transformers only warn, and leave them random or unset)."""
    from handforge.engines.checkpoints import missing_weights

    model, info = loaded
    problem = missing_weights(info)
    if problem:
        raise WeightsError(f"{folder} {problem} (an interrupted copy?); copy the folder again", folder)
    return model


PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt")  # weights files HandForge never reads (diffusers would unpickle a .bin)


def variant_fix(folder: str | Path, weights: str = WEIGHTS_NAME) -> str:
    """What to do when ``folder`` holds a variant of its weights file ``weights`` but not the file itself ('' when
    it holds none): a folder downloaded with the fp16 files only (``diffusion_pytorch_model.fp16.safetensors``, as
    ``--include "*.fp16.*"`` or ``variant="fp16"`` fetch them) was said to lack its weights, "never pickles"."""
    stem = weights.removesuffix(".safetensors")
    found = sorted(p.name for p in Path(folder).glob(f"{stem}.*.safetensors") if p.is_file())
    if not found:
        return ""
    return (f"{', '.join(found)} there {'is a variant' if len(found) == 1 else 'are variants'} of it: rename "
            f"{'it' if len(found) == 1 else 'one'} to {weights} (its weights load in the precision the job asks for)")


def weights_file_problem(folder: str | Path, weights: str = WEIGHTS_NAME) -> str:
    """That ``folder`` has no safetensors file ``weights`` ('' when it has), naming the pickled weights beside it: with
    no safetensors diffusers fell back to a .bin and unpickled it, or said that no .bin was found in the folder,
    and a ControlNet folder without its weights made a ready engine, whose jobs failed so."""
    folder = Path(folder)
    if (folder / weights).is_file() or (folder / f"{weights}.index.json").is_file():  # (or sharded)
        return ""
    variant = variant_fix(folder, weights)
    if variant:
        return f"{folder} has no {weights} (its weights); {variant}"
    pickles = sorted({p.name for pattern in PICKLES for p in folder.glob(pattern)})
    return (f"{folder} has no {weights} (its weights)" + (
        f"; {', '.join(pickles)} there {'is a pickle' if len(pickles) == 1 else 'are pickles'}, which HandForge "
        "never reads: convert it to .safetensors (or copy the folder again)" if pickles else
        ": copy or import the folder again"))


def _check_sizes(folder: Path, weights: str = WEIGHTS_NAME) -> None:
    """Refuse a part without its safetensors file (``weights_file_problem``), and a config whose sizes its weights
    cannot have, before diffusers builds the model from it (``layers_per_block: 100000`` kept a job's worker busy
    for good)."""
    problem = weights_file_problem(folder, weights) or folder_size_problem(folder, weights)
    if problem:
        raise WeightsError(problem, folder)


def sd_parts_on(parts: dict[str, Any], device: str) -> dict[str, Any]:
    """``load_sd``'s parts with its models on ``device`` (the tokenizer and the scheduler stay as they are)."""
    return {k: v.to(device) if k not in ("tokenizer", "scheduler") else v for k, v in parts.items()}


def load_controlnet(path: str | Path, dtype: Any = None):
    """One ControlNetModel from a diffusers folder (``config.json`` + its weights)."""
    from diffusers import ControlNetModel

    path = _local(path, "ControlNet weights")
    if path.is_file():  # an original-layout file needs a config diffusers would fetch from the Hub
        raise WeightsError(f"{path} is one file: ControlNets are read from diffusers folders (config.json + "
                           "diffusion_pytorch_model.safetensors); convert it once with diffusers "
                           "(ControlNetModel.from_single_file(...).save_pretrained(FOLDER)), or take the diffusers "
                           "repository (handforge models fetch)", path)
    from handforge.engines.checkpoints import run_folder_hint, saved_class

    if (path / "model_index.json").is_file() and not (path / "config.json").is_file():
        # (a Stable Diffusion folder given where a ControlNet belongs was called a damaged file)
        raise WeightsError(f"{path} is a diffusers pipeline folder (model_index.json), not a ControlNet: give a "
                           "ControlNetModel folder (config.json + diffusion_pytorch_model.safetensors, e.g. the "
                           "model/ folder of handforge train guidance)", path)
    if run_folder_hint(path) and not (path / "config.json").is_file():  # (said to be a damaged file, as above)
        raise WeightsError(f"{path}: not a ControlNet folder, it has no config.json{run_folder_hint(path)}", path)
    saved_as = saved_class(path)
    if saved_as not in (None, "ControlNetModel"):  # diffusers would build a default ControlNet, all random
        raise WeightsError(f"{path} holds a model of another class ({saved_as}, not ControlNetModel): give a ControlNetModel folder "
                           "(e.g. one written by handforge train guidance, its model/ folder)", path)
    problem = controlnet_problem(path)
    if problem:
        raise WeightsError(problem, path)
    try:
        loaded = ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype,
                                                 output_loading_info=True)
    except Exception as exc:  # noqa: BLE001 - diffusers raises many kinds; each is a weights problem here
        raise WeightsError(f"cannot load the ControlNet {path}: {_reason(exc)}; {_recheck(path)}", path) from None
    extra = extra_weights(loaded[1])  # (a count the header check does not read: diffusers dropped those weights)
    if extra:
        raise WeightsError(f"{path} {extra}", path)
    net = _complete(loaded, path)
    _refuse_non_finite(net, path / WEIGHTS_NAME, dtype, path)
    return net


def controlnet_problem(path: str | Path) -> str:
    """What ``load_controlnet`` refuses in a ControlNet folder's config.json before building it ('' when nothing),
    from its files' text and the weights' header (no torch: the engines' status lines call it, so that they refuse
    what every job's load would; they checked the widths alone, and a NaN norm_eps or an absurd size was ready).
    Not the weights' values (hundreds of MB a ControlNet): a NaN in them is refused by the load and
    `handforge models check`."""
    path = Path(path)
    damaged = damaged_weights(path / WEIGHTS_NAME)  # (the checks below pass over a file they cannot read)
    if damaged:
        return f"{path / WEIGHTS_NAME} is damaged ({damaged}): train, import or download it again"
    problem = weights_file_problem(path) or folder_size_problem(path)
    if problem:
        return problem
    problem = _controlnet_config_problem(path) or controlnet_shape_problem(path)
    if problem:
        return f"{path / 'config.json'} {problem}: correct it, or train or import the ControlNet again"
    return controlnet_count_problem(path)


def _controlnet_config_problem(path: Path) -> str:
    """What in a ControlNet's config.json diffusers builds a model from without a word that then fails or
    draws NaN mid-generation ('' when nothing): a number that is not finite, a norm_eps not above 0, an
    unknown conditioning channel order. (Wrong sizes are refused by ``_check_sizes`` and the weights' shapes.)"""
    try:
        config = config_json(path / "config.json")
    except (OSError, ValueError):
        return ""  # diffusers' loading names what is wrong
    if not isinstance(config, dict):
        return ""
    for key, value in config.items():
        for number in value if isinstance(value, list) else [value]:
            if isinstance(number, float) and not math.isfinite(number):
                return f"sets {key} to {value!r}, not a finite number"
    eps = config.get("norm_eps", 1e-5)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
        return f"sets norm_eps to {eps!r}, not a number above 0 (diffusers' default is 1e-05)"
    order = config.get("controlnet_conditioning_channel_order", "rgb")
    if order not in ("rgb", "bgr"):
        return f"sets controlnet_conditioning_channel_order to {order!r}, not 'rgb' or 'bgr'"
    return ""


# diffusers' ControlNetModel defaults of the config keys read here, for a config.json that leaves one out
CONTROLNET_DEFAULTS = {"in_channels": 4, "conditioning_channels": 3, "cross_attention_dim": 1280,
                       "block_out_channels": [320, 640, 1280, 1280],
                       "conditioning_embedding_out_channels": [16, 32, 96, 256],
                       "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "layers_per_block": 2,
                       "transformer_layers_per_block": 1}


def controlnet_shape_problem(path: str | Path) -> str:
    """Where a ControlNet's config.json does not fit its weights ('' when it does, or when either cannot be read:
    the load says why), from the weights file's header alone (no torch: the engine status lines call it): the widths
    its input, conditioning, text and last layers are built with. diffusers refused such a folder only at load, in
    its own words (a shape mismatch and its ignore_mismatched_sizes advice), and the engine was "ready" till then."""
    read = config_and_shapes(path)
    if read is None:
        return ""
    config, shapes = read

    def value(key: str) -> Any:
        return config.get(key, CONTROLNET_DEFAULTS[key])

    blocks, embedding = value("block_out_channels"), value("conditioning_embedding_out_channels")
    # weight: ((out, in) channels the config makes it, None where it does not say), the keys that make them
    expected: dict[str, tuple[tuple[Any, Any], str]] = {}
    if isinstance(blocks, list) and blocks:
        expected["conv_in.weight"] = ((blocks[0], value("in_channels")), "block_out_channels, in_channels")
        expected["controlnet_mid_block.weight"] = ((blocks[-1], blocks[-1]), "block_out_channels")
    if isinstance(embedding, list) and embedding:
        expected["controlnet_cond_embedding.conv_in.weight"] = (
            (embedding[0], value("conditioning_channels")),
            "conditioning_embedding_out_channels, conditioning_channels")
        if isinstance(blocks, list) and blocks:
            expected["controlnet_cond_embedding.conv_out.weight"] = (
                (blocks[0], embedding[-1]), "block_out_channels, conditioning_embedding_out_channels")
    text = value("cross_attention_dim")
    if isinstance(text, int):
        expected |= {name: ((None, text), "cross_attention_dim") for name in sorted(shapes)
                     if name.endswith("attn2.to_k.weight")}
    for name, (made, keys) in expected.items():
        got = shapes.get(name)
        if got is None or len(got) < 2 or all(m is None or m == g for m, g in zip(made, got)):
            continue
        said = [f"{'out' if i == 0 else 'in'} {m}" for i, m in enumerate(made) if m is not None and m != got[i]]
        return (f"does not fit its weights: {name} has {got[0]} out and {got[1]} in channels in "
                f"{WEIGHTS_NAME}, its {keys} make it {', '.join(said)}")
    return ""


def controlnet_count_problem(path: str | Path) -> str:
    """Where a ControlNet's config.json sets another number of down blocks, or of layers or transformer blocks in
    them, than its weights hold ('' when it does not, or when either cannot be read: the load says why), from the
    weights file's header alone (``checkpoints.count_problem``, as ``load_model`` counts): diffusers built the model
    the config describes, then refused the weights it had no place for (fewer layers) or lacked (more), and the
    engine was "ready" till a job loaded it."""
    path = Path(path)
    read = config_and_shapes(path)
    if read is None:
        return ""
    config, shapes = read
    setting = {**CONTROLNET_DEFAULTS, **config}
    blocks = setting["down_block_types"]
    attentions = sorted({found[1] for found in map(_ATTENTION.match, shapes) if found})
    counts = {"down_block_types": ("down_blocks",), "block_out_channels": ("down_blocks",),  # (a list: its length)
              "layers_per_block": tuple(f"down_blocks.{i}.resnets" for i in range(len(blocks) if isinstance(
                  blocks, list) else 0)),
              "transformer_layers_per_block": tuple(f"{prefix}.transformer_blocks" for prefix in attentions)}
    for key, prefixes in counts.items():
        value = setting[key]  # (of another type: diffusers refuses it in its words)
        if key == "transformer_layers_per_block" and isinstance(value, list):
            problem = _per_block_transformers_problem(path, value, blocks, attentions, shapes)
        elif isinstance(value, list) if key in _LISTS else _whole(value):
            problem = count_problem(path, "ControlNetModel", key, value, prefixes, shapes)
        else:
            problem = ""
        if problem:
            return problem
    return ""


_LISTS = ("down_block_types", "block_out_channels")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _per_block_transformers_problem(path: Path, value: list, blocks: Any, attentions: list[str],
                                    shapes: dict[str, tuple[int, ...]]) -> str:
    """``transformer_layers_per_block`` given per down block, as diffusers takes it too: entry i for down block i
    (a whole number, or one per attention of that block), the last for the middle block. It was counted only as
    one whole number, so a list was 'ready' whatever it said, and every job's load refused it (weights lacking) or
    failed (a list shorter than the down blocks: an IndexError)."""
    key = "transformer_layers_per_block"
    if isinstance(blocks, list) and len(value) < len(blocks):
        return (f"{path / 'config.json'} sets {key} to {value!r}, {len(value)} entries for its {len(blocks)} down "
                "blocks (one each, the last also the middle block's): correct it, or train or import the ControlNet "
                "again")
    for attention in attentions:  # down_blocks.<i>.attentions.<j>, mid_block.attentions.<j>
        block, _, index = attention.rpartition(".attentions.")
        i = -1 if block == "mid_block" else int(block.rpartition(".")[2])
        entry, name = value[i] if i < len(value) else None, f"{key}[{i}]"
        if isinstance(entry, list):
            entry, name = entry[int(index)] if int(index) < len(entry) else None, f"{name}[{index}]"
        if _whole(entry):
            problem = count_problem(path, "ControlNetModel", name, entry, (f"{attention}.transformer_blocks",), shapes)
            if problem:
                return problem
    return ""


_ATTENTION = re.compile(r"((?:down_blocks\.\d+|mid_block)\.attentions\.\d+)\.transformer_blocks\.")


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).strip().rstrip('.')}"


def _recheck(path: Path) -> str:
    """How to find and mend a damaged weights file (a truncated download or copy is the usual cause)."""
    return f"`handforge models check {path}` names the damaged file: copy or download it again"


# What a ControlNet must share with the UNet whose blocks it adds to: the text width its attention
# reads, the channels and layers of each down block (its residuals are added one by one), and the
# latents' channels (it reads the UNet's input).
MATCHING = ("cross_attention_dim", "block_out_channels", "layers_per_block", "in_channels")


def mismatched(unet: Mapping[str, Any], controlnet: Mapping[str, Any]) -> tuple[str, Any, Any] | None:
    """The first of ``MATCHING`` in which a ControlNet of config ``controlnet`` differs from a UNet of config
    ``unet``: (its key, the UNet's value, the ControlNet's); None when none differs."""
    for key in MATCHING:
        a, b = unet.get(key), controlnet.get(key)
        if a is not None and b is not None and (list(a) if isinstance(a, (list, tuple)) else a) != \
                (list(b) if isinstance(b, (list, tuple)) else b):
            return key, a, b
    return None


def mismatch(unet: Mapping[str, Any], controlnet: Mapping[str, Any]) -> str:
    """Why a ControlNet of config ``controlnet`` cannot drive a UNet of config ``unet`` ('' when it can)."""
    found = mismatched(unet, controlnet)
    if found is None:
        return ""
    key, a, b = found
    hint = {"cross_attention_dim": " (an SD 2.x model with SD 1.x ControlNets, or the reverse?)",
            "in_channels": " (a ControlNet of an inpainting model?)"}.get(key, "")
    return f"its {key} is {b}, the SD model's UNet has {a}{hint}"


def sd_fit(path: str | Path, sd: str | Path, sd_config: str | Path | None = None) -> tuple[str, Any, Any] | None:
    """Where the ControlNet folder ``path`` does not fit the SD model ``sd`` (``mismatched``), from the two
    config.json files alone (no torch: the engines' status lines call it, which said "ready" for SD 2.x ControlNets
    on SD 1.x until each job's load refused them); None when it fits, or when either cannot be read (the load says
    why)."""
    sd = Path(sd).expanduser()
    folder = Path(sd_config).expanduser() if sd.is_file() and sd_config is not None else sd
    try:
        unet, net = config_json(folder / "unet" / "config.json"), config_json(Path(path) / "config.json")
    except (OSError, ValueError, RecursionError):
        return None
    return mismatched(unet, net) if isinstance(unet, dict) and isinstance(net, dict) else None


def sd_fit_problem(path: str | Path, sd: str | Path, sd_config: str | Path | None = None) -> str:
    """Why the ControlNet folder ``path`` cannot drive the SD model ``sd`` (``sd_fit``, said as ``mismatch``);
    '' when it can, or when either config cannot be read."""
    found = sd_fit(path, sd, sd_config)
    if found is None:
        return ""
    key, a, b = found
    return f"{path} does not fit the SD model {Path(sd).expanduser()}: {mismatch({key: a}, {key: b})}"


def build_pipeline(sd: str | Path, controlnets: Sequence[str | Path], sd_config: str | Path | None = None,
                   dtype: Any = None, device: str = "cpu", check: Callable[[], None] = lambda: None):
    """A ``HandImagePipeline`` of the SD weights and the ControlNets, on ``device``. ``check()`` runs
    between the components' loads and may raise to abandon the load (a job's ``check_cancelled``:
    each component takes seconds to minutes)."""
    from handforge.engines.image.pipeline import HandImagePipeline

    parts = load_sd(sd, sd_config, dtype, check)
    # a folder given twice (one ControlNet on two renders, or one folder by two names) is one module:
    # its weights load and take memory once
    loaded: dict[Path, Any] = {}
    for path in controlnets:
        folder = Path(path).expanduser().resolve()
        if folder not in loaded:
            check()
            loaded[folder] = load_controlnet(path, dtype)
    nets = [loaded[Path(path).expanduser().resolve()] for path in controlnets]
    if not nets:
        raise WeightsError("no ControlNet given: the guidance module or at least one ControlNet is needed")
    for path, net in zip(controlnets, nets):
        reason = mismatch(parts["unet"].config, net.config)
        if reason:
            raise WeightsError(f"the ControlNet {path} does not fit {sd}: {reason}; use ControlNets trained for "
                               "this SD model", path)
    pipe = HandImagePipeline(controlnet=nets if len(nets) > 1 else nets[0], **parts)
    pipe.set_progress_bar_config(disable=True)
    check()
    # (silenced: diffusers logs that a float16 pipeline "cannot run" on the CPU, where it runs, slower; the job's
    # own warning says that)
    return pipe.to(device, silence_dtype_warnings=True)


__all__ = ["SD_PARTS", "TRAIN_TIMESTEPS", "WeightsError", "build_pipeline", "latent_problem", "load_controlnet",
           "load_sd", "mismatch", "mismatched", "scheduler_config", "sd_config_missing", "sd_fit", "sd_fit_problem",
           "sd_latent_problem", "sd_parts_on", "single_file_problem", "variant_fix", "weights_file_problem"]
