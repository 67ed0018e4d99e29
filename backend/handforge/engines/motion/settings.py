"""The motion engine's settings (declared here so config finds them without importing the engine)."""

from __future__ import annotations

from pathlib import Path

from handforge import config

SHIPPED_CHECKPOINT = Path(__file__).resolve().parent / "assets" / "motion_v6"

CHECKPOINT = config.register(config.Setting(
    key="motion.checkpoint",
    env="HANDFORGE_MOTION_CHECKPOINT",
    help="the motion denoiser's checkpoint folder (written by `handforge train motion`, RUN/model); "
         "the learned engine falls back to the spline engine when it is missing",
    default=str(SHIPPED_CHECKPOINT),
))

__all__ = ["CHECKPOINT", "SHIPPED_CHECKPOINT"]
