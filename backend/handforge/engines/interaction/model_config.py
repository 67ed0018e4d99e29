"""What an InteractionDenoiser's config.json must keep to (``checkpoints.ModelConfig``), importable without
torch: the engine's status line checks the configured checkpoint against it (model.py imports torch and
diffusers, seconds), in the words ``load_model`` refuses it with. model.py takes its limits and
``__init__`` defaults from here (their one home)."""

from __future__ import annotations

from handforge.engines.checkpoints import FRACTION, ModelConfig, among, at_least, dividing

VECTOR_DIM = 64  # representation.VECTOR_DIM (kept literal: this module stays light, that one imports torch)

INTERACTION_DENOISER = ModelConfig(
    "InteractionDenoiser",
    defaults={"vector_dim": VECTOR_DIM, "width": 128, "hidden": 256, "layers": 5, "heads": 4, "attention_layers": 2,
              "dropout": 0.1, "skips": (1, 3), "num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
              "condition_dropout": 0.15},
    # what else a config.json must keep to (load_model refuses it); skips index the MLP's layers from 0, and the
    # schedules are those of DDIM, which samples it (another loaded, then failed in every job)
    limits={"heads": (at_least(1), dividing("width")), "skips": (at_least(0),), "dropout": FRACTION,
            "condition_dropout": FRACTION, "beta_schedule": (among("linear", "scaled_linear", "squaredcos_cap_v2"),)},
    counts={"layers": ("mlp",), "attention_layers": ("attention.layers",)})  # (the blocks these numbers make)

__all__ = ["INTERACTION_DENOISER", "VECTOR_DIM"]
