"""What a TargetGenerator's config.json must keep to (``checkpoints.ModelConfig``), importable without torch:
the ihpt engine's status checks the configured checkpoint against it (model.py imports torch and diffusers,
seconds), in the words ``load_model`` refuses it with. model.py takes its limits, pose size and
``__init__`` defaults from here (their one home)."""

from __future__ import annotations

from handforge.engines.checkpoints import ModelConfig, at_least, dividing
from handforge_shared.skeleton import SIDES

HAND_DIM = 1 + 3 + 45  # present, global_orient, hand_pose
POSE_DIM = HAND_DIM * len(SIDES)

TARGET_GENERATOR = ModelConfig(
    "TargetGenerator",
    defaults={"cross_attention_dim": 768, "image_size": 224, "backbone_channels": (64, 128, 256, 512),
              "feature_dim": 512, "num_layers": 2, "num_heads": 8, "num_queries": 16, "pose_tokens": 4,
              "pose_dim": POSE_DIM, "trained_size": None},
    limits={"num_heads": (at_least(1), dividing("feature_dim"))},  # what else load_model refuses in a config
    counts={"backbone_channels": ("backbone",), "num_layers": ("feature_encoder.layers", "feature_decoder.layers")})



def width_problem(folder, width: int, sd, sd_width: int) -> str:
    """Why a target generator whose context is ``width`` wide cannot drive the SD model ``sd``'s UNet, which attends
    ``sd_width`` ('' when it can): the words of the job's load and of the engine's status alike."""
    if width == sd_width:
        return ""
    return (f"{folder} was trained for a {width}-wide UNet context, {sd} attends {sd_width}: train it on this SD "
            "model, or use the SD model it was trained on")


__all__ = ["HAND_DIM", "POSE_DIM", "TARGET_GENERATOR", "width_problem"]
