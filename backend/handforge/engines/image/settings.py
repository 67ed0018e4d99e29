"""Config keys of the image engines (``handforge doctor`` lists them). Paths only: nothing is downloaded."""

from __future__ import annotations

from handforge import config

SD_MODEL = config.register(config.Setting(
    key="image.sd_model", env="HANDFORGE_SD_MODEL",
    help="Stable Diffusion 1.x weights: a diffusers folder (model_index.json, unet/, vae/, text_encoder/, "
         "tokenizer/, scheduler/) or one .safetensors checkpoint (then also set image.sd_config)"))
SD_CONFIG = config.register(config.Setting(
    key="image.sd_config", env="HANDFORGE_SD_CONFIG",
    help="for a single-file SD checkpoint: a diffusers SD 1.x folder holding the configs and tokenizer "
         "(the weights in it are not needed)"))
GUIDANCE = config.register(config.Setting(
    key="image.guidance", env="HANDFORGE_IMAGE_GUIDANCE",
    help="AttentionHand guidance module: a diffusers ControlNetModel folder trained on "
         "mesh images (handforge train guidance)"))
CONTROLNETS = config.register(config.Setting(
    key="image.controlnets", env="HANDFORGE_CONTROLNETS",
    help="folder of SD 1.x ControlNet folders (diffusers layout), one per model, e.g. "
         "control_v11f1p_sd15_depth/; the name says which render it takes (depth, normal, openpose, skeleton, "
         "mesh), or a job names it as folder:kind"))
MODELS_DIR = config.register(config.Setting(
    key="image.models_dir", env="HANDFORGE_MODELS_DIR",
    help="where `handforge models import/fetch` put weights (default ~/.cache/handforge/models)"))



# the kinds of weights `handforge models check/import` takes for this engine, and the setting that names each
# (controlnet: the folder of ControlNets); `handforge models` finds them here, in every engine with a weights.py
WEIGHT_KINDS = {"sd": SD_MODEL, "guidance": GUIDANCE, "controlnet": CONTROLNETS}


def pass_or_set(option: str, setting: config.Setting) -> str:
    """How to give a command the weights ``setting`` names, in one line (a command's refusal is one line):
    ``option``, or the setting (``Setting.how_to_set`` spreads it over the config file's lines, as the doctor
    lists it)."""
    return f"pass {option} or {setting.how_to_set_in_line('<path>')}"


__all__ = ["CONTROLNETS", "GUIDANCE", "MODELS_DIR", "SD_CONFIG", "SD_MODEL", "WEIGHT_KINDS", "pass_or_set"]
