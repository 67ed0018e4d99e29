"""Settings of the interaction engine (light: the server and ``handforge doctor`` import it)."""

from __future__ import annotations

from pathlib import Path

from handforge import config

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "interaction_v4"

CHECKPOINT = config.register(config.Setting(
    key="interaction.checkpoint",
    env="HANDFORGE_INTERACTION_CHECKPOINT",
    help="interaction denoiser checkpoint folder (the run's model/ from `handforge train interaction`); "
         "default: the one shipped with HandForge",
    default=SHIPPED_CHECKPOINT,
))

__all__ = ["CHECKPOINT", "SHIPPED_CHECKPOINT"]
