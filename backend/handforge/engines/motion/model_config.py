"""What a MotionDenoiser's config.json must keep to (``checkpoints.ModelConfig``), importable without torch:
the engine's status line checks the configured checkpoint against it (model.py imports torch and diffusers,
seconds), in the words ``load_model`` refuses it with. model.py takes its limits and
``__init__`` defaults from here (their one home)."""

from __future__ import annotations

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
            "num_heads": (at_least(1), dividing("d_model")), "dropout": FRACTION, "fps": (above(0),)})

__all__ = ["MOTION_DENOISER"]
