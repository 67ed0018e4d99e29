"""Load Stable Diffusion 1.x and ControlNets from local files only (never a download).

SD 1.x comes as a diffusers folder (``unet/``, ``vae/``, ``text_encoder/``, ``tokenizer/``,
``scheduler/``, e.g. a copy of the stable-diffusion-v1-5 repository) or as one ``.safetensors``
checkpoint in the original layout, read with diffusers' ``from_single_file`` against a local
diffusers folder for its configs. ControlNets are diffusers ``ControlNetModel`` folders (or single
files likewise). Sampling uses DDIM built from the model's scheduler config.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


class WeightsError(RuntimeError):
    """Weights that are missing or unreadable; the message names the path and what to do."""


def _local(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{what}: {path} does not exist")
    return path


def load_sd(path: str | Path, config: str | Path | None = None, dtype: Any = None) -> dict[str, Any]:
    """The SD 1.x components (vae, text_encoder, tokenizer, unet, scheduler: DDIM), on the CPU."""
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTokenizer

    path = _local(path, "Stable Diffusion weights")
    try:
        if path.is_file():
            if config is None:
                raise WeightsError(f"{path} is a single-file checkpoint: set image.sd_config to a local diffusers "
                                   "SD 1.x folder for its configs and tokenizer (nothing is downloaded)")
            pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(_local(config, "SD config folder")),
                                                            local_files_only=True, torch_dtype=dtype,
                                                            safety_checker=None, requires_safety_checker=False)
            parts = {"vae": pipe.vae, "text_encoder": pipe.text_encoder, "tokenizer": pipe.tokenizer,
                     "unet": pipe.unet, "scheduler": pipe.scheduler}
        else:
            missing = [p for p in SD_PARTS if not (path / p).is_dir()]
            if missing:
                raise WeightsError(f"{path} is not a diffusers SD 1.x folder: no {', '.join(missing)}/ in it")
            kw = {"local_files_only": True, "torch_dtype": dtype}
            parts = {"unet": UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", **kw),
                     "vae": AutoencoderKL.from_pretrained(str(path), subfolder="vae", **kw),
                     "text_encoder": CLIPTextModel.from_pretrained(str(path), subfolder="text_encoder", **kw),
                     "tokenizer": CLIPTokenizer.from_pretrained(str(path), subfolder="tokenizer", local_files_only=True),
                     "scheduler": DDIMScheduler.from_pretrained(str(path), subfolder="scheduler")}
    except WeightsError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"cannot load Stable Diffusion from {path}: {type(exc).__name__}: {exc}") from None
    parts["scheduler"] = DDIMScheduler.from_config(parts["scheduler"].config)
    if parts["unet"].config.cross_attention_dim != parts["text_encoder"].config.hidden_size:
        raise WeightsError(f"{path}: the UNet attends {parts['unet'].config.cross_attention_dim}-wide text but the "
                           f"text encoder gives {parts['text_encoder'].config.hidden_size}; is it an SD 1.x model?")
    return parts


def load_controlnet(path: str | Path, dtype: Any = None, config: str | Path | None = None):
    """One ControlNetModel from a diffusers folder (or a single file with ``config``, a folder)."""
    from diffusers import ControlNetModel

    path = _local(path, "ControlNet weights")
    try:
        if path.is_file():
            kwargs = {"config": str(config)} if config else {}
            return ControlNetModel.from_single_file(str(path), local_files_only=True, torch_dtype=dtype, **kwargs)
        return ControlNetModel.from_pretrained(str(path), local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"cannot load the ControlNet {path}: {type(exc).__name__}: {exc}") from None


def build_pipeline(sd: str | Path, controlnets: Sequence[str | Path], sd_config: str | Path | None = None,
                   dtype: Any = None, device: str = "cpu"):
    """A ``HandImagePipeline`` of the SD weights and the ControlNets, on ``device``."""
    from handforge.engines.image.pipeline import HandImagePipeline

    parts = load_sd(sd, sd_config, dtype)
    nets = [load_controlnet(p, dtype) for p in controlnets]
    if not nets:
        raise WeightsError("no ControlNet given: the guidance module or at least one ControlNet is needed")
    pipe = HandImagePipeline(controlnet=nets if len(nets) > 1 else nets[0], **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


__all__ = ["SD_PARTS", "WeightsError", "build_pipeline", "load_controlnet", "load_sd"]
