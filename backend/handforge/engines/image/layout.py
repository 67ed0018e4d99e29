"""What a weights setting's folder must hold, read from its layout and its weights files' headers alone (no
tensor is read; the headers cached): cheap enough for the server's availability checks and ``handforge models
list``; ``weights.check_sd`` and ``weights.check_controlnet`` read the files themselves (``handforge models
check``)."""

from __future__ import annotations

from pathlib import Path

from handforge import config
from handforge.engines.image.settings import CONTROLNETS, SD_CONFIG, SD_MODEL

SD_PARTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # a diffusers SD 1.x folder's
# the parts with weights, and their files (the only weights HandForge reads: safetensors, never a pickled .bin)
PART_WEIGHTS = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
                "text_encoder": "model.safetensors"}


def missing_parts(key: str, path: Path) -> str:
    """What the path setting ``key`` holds plainly lacks; '' when nothing. (An empty folder was listed as
    [ok], and made the engines available.)"""
    from handforge.engines.image.controls import available

    if key == SD_MODEL.key:
        if path.is_file():
            if path.suffix.lower() != ".safetensors":
                return "not a .safetensors file"
            return _damaged(path.parent, [path.name], SD_FIX) or _sd_config_missing()
        parts = [p for p in SD_PARTS if not (path / p).is_dir()]
        if parts:
            return f"no {', '.join(p + '/' for p in parts)}"
        # (a part without its weights file made a ready engine, whose first job failed on it)
        unweighted = [f"{part}/{name}" for part, name in PART_WEIGHTS.items() if not _has_weights(path / part, name)]
        if unweighted:
            return f"no {', '.join(unweighted)} (weights)"
        return _damaged(path, [f"{part}/{name}" for part, name in PART_WEIGHTS.items()], SD_FIX)
    if key == CONTROLNETS.key:
        return "" if available(path) else "no ControlNet folder (with a config.json) in it"
    if not (path / "config.json").is_file():  # the guidance module: a ControlNet folder
        return "no config.json"
    if not _has_weights(path, PART_WEIGHTS["unet"]):
        return f"no {PART_WEIGHTS['unet']} (weights)"
    return _damaged(path, [PART_WEIGHTS["unet"]], "train, import or download it again")


SD_FIX = "download or copy the SD model again (handforge models fetch sd15)"


def _damaged(folder: Path, names: list[str], fix: str) -> str:
    """The first of the weights files ``names`` in ``folder`` that is damaged (a download or copy cut short was
    [ok], its engine ready, until a job loaded it), with ``fix``; '' when none is."""
    from handforge.engines.checkpoints import damaged_weights

    found = next(((name, problem) for name in names if (problem := damaged_weights(folder / name))), None)
    return f"{found[0]} is damaged ({found[1]}): {fix}" if found else ""


def _has_weights(folder: Path, name: str) -> bool:
    """Whether ``folder`` holds its weights file ``name``, whole or sharded (its index)."""
    return (folder / name).is_file() or (folder / f"{name}.index.json").is_file()


def sd_config_not_a_folder(folder) -> str:
    """What ``image.sd_config = folder`` is when it is no folder: missing, or a file (an original SD config such as
    v1-inference.yaml, which was said not to exist)."""
    if not Path(folder).expanduser().is_file():
        return f"{SD_CONFIG.key} = {folder} does not exist"
    return (f"{SD_CONFIG.key} = {folder} is a file, not a folder: give a diffusers SD 1.x folder (model_index.json, "
            "unet/, vae/, text_encoder/, tokenizer/, scheduler/) for its configs and tokenizer, e.g. handforge models "
            "fetch sd15 (an original .yaml config is not read)")


def _sd_config_missing() -> str:
    """A single-file SD model's configs and tokenizer come from image.sd_config (its load refuses it without)."""
    folder = config.value(SD_CONFIG.key)
    if folder is None:
        return (f"one .safetensors file, and {SD_CONFIG.key} is not set (a diffusers SD 1.x folder for its configs "
                "and tokenizer)")
    if not Path(folder).expanduser().is_dir():
        return sd_config_not_a_folder(folder)
    from handforge.engines.image.loading import sd_config_missing

    lacks = sd_config_missing(Path(folder))
    return f"{SD_CONFIG.key} = {folder} has {lacks}" if lacks else ""
