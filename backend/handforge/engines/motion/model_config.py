"""What a MotionDenoiser's config.json must keep to (``checkpoints.ModelConfig``), importable without torch:
the engine's status line checks the configured checkpoint against it (model.py imports torch and diffusers,
seconds), in the words ``load_model`` refuses it with. model.py takes its limits and
``__init__`` defaults from here (their one home)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from handforge.engines.checkpoints import EVEN, FRACTION, ModelConfig, above, at_least, dividing
from handforge.engines.motion.representation import FRAME_DIM
from handforge_shared.poses import MOTION_MAX_FRAMES

MOTION_DENOISER = ModelConfig(
    "MotionDenoiser",
    defaults={"frame_dim": FRAME_DIM, "d_model": 192, "num_layers": 4, "num_heads": 4, "ff_size": 512, "dropout": 0.1,
              "max_frames": MOTION_MAX_FRAMES, "num_train_timesteps": 1000, "data_mean": None, "data_std": None,
              "observation_curve": "linear", "fps": 30.0},
    # what else a config.json must keep to (load_model refuses it): a hand-edited max_frames 0 loaded, then every
    # job refused its window as "longer than the model's 0 frames"; d_model even for its sinusoidal embeddings
    limits={"max_frames": (at_least(2),), "d_model": (at_least(2), EVEN),
            "num_heads": (at_least(1), dividing("d_model")), "dropout": FRACTION, "fps": (above(0),)},
    counts={"num_layers": ("encoder.layers",)})  # (its transformer's layers: encoder.layers.0.*, ...)


def representation_problem(folder: Any, config: Mapping[str, Any]) -> str:
    """Why a MotionDenoiser of this ``config`` (read from ``folder``) does not denoise the motion representation's
    frames ('' when it does), from its config alone: the load's check and the submit check say it alike. A model
    of another frame_dim (tests build small ones) loaded, then failed inside sampling with a tensor-size
    RuntimeError."""
    if config.get("frame_dim", FRAME_DIM) != FRAME_DIM:
        return (f"{folder} holds a MotionDenoiser of {config['frame_dim']} channels per frame, not the motion "
                f"representation's {FRAME_DIM}; give a model `handforge train motion` wrote")
    # the normalisation statistics live in config.json only (train motion always writes them): without them the
    # model ran on unit statistics and made wrong motion, unsaid
    missing = [key for key in ("data_mean", "data_std") if config.get(key) is None]
    if missing:
        return (f"{folder}/config.json has no {' or '.join(missing)} (the motion's normalisation statistics "
                "`handforge train motion` writes there): restore the file, or train again")
    return ""


__all__ = ["MOTION_DENOISER", "representation_problem"]
