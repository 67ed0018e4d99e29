"""Config key of the pose-transfer engines (``handforge doctor`` lists it). The training-free
engine needs only the image engine's keys (image.sd_model + image.controlnets or image.guidance)."""

from __future__ import annotations

from handforge import config

TARGET_GENERATOR = config.register(config.Setting(
    key="transfer.target_generator", env="HANDFORGE_TRANSFER_TARGET_GENERATOR",
    help="IHPT target generator: a model/ folder written by `handforge train transfer` (config.json + safetensors)"))

# the kind of weights `handforge models check/import` takes for this engine, and the setting that names it
WEIGHT_KINDS = {"target_generator": TARGET_GENERATOR}

__all__ = ["TARGET_GENERATOR", "WEIGHT_KINDS"]
