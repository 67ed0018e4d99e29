"""What a TargetGenerator's config.json must keep to (``checkpoints.ModelConfig``), importable without torch:
the ihpt engine's status checks the configured checkpoint against it (model.py imports torch and diffusers,
seconds), in the words ``load_model`` refuses it with. model.py takes its limits, pose size and
``__init__`` defaults from here (their one home)."""

from __future__ import annotations

from handforge.engines.checkpoints import Limit, ModelConfig, at_least, dividing
from handforge_shared.skeleton import SIDES

HAND_DIM = 1 + 3 + 45  # present, global_orient, hand_pose
POSE_DIM = HAND_DIM * len(SIDES)


def block_on_one_pixel(image_size: int, backbone_channels: tuple[int, ...] | list[int]) -> tuple[int, int] | None:
    """The first backbone block (numbered from 1, with its width) that would see a 1×1 map with one channel in each
    of its GroupNorm's groups (a width of 8 or less): one value a group, which torch refuses for one image
    ("Expected more than 1 value per channel"), so such a model trains at larger batches and then cannot run (the
    evaluation and the ihpt engine run one image at a time). None when no block does."""
    grid = image_size
    for block, width in enumerate(backbone_channels, 1):
        grid = (grid + 1) // 2  # each block's stride-2 convolution (padding 1) gives ceil(n / 2)
        if grid == 1 and width <= 8:
            return block, width
    return None


RUNS_ONE_IMAGE: Limit = (lambda value, config: block_on_one_pixel(value, config["backbone_channels"]) is None,
                         "large enough for backbone_channels {backbone_channels} that no block of width 8 or less sees "
                         "a 1×1 map (one value in each GroupNorm group: it cannot run one image at a time)")

TARGET_GENERATOR = ModelConfig(
    "TargetGenerator",
    defaults={"cross_attention_dim": 768, "image_size": 224, "backbone_channels": (64, 128, 256, 512),
              "feature_dim": 512, "num_layers": 2, "num_heads": 8, "num_queries": 16, "pose_tokens": 4,
              "pose_dim": POSE_DIM, "trained_size": None},
    limits={"num_heads": (at_least(1), dividing("feature_dim")),  # what else load_model refuses in a config
            "image_size": (at_least(1), RUNS_ONE_IMAGE)},
    counts={"backbone_channels": ("backbone",), "num_layers": ("feature_encoder.layers", "feature_decoder.layers")})



def width_problem(folder, width: int, sd, sd_width: int) -> str:
    """Why a target generator whose context is ``width`` wide cannot drive the SD model ``sd``'s UNet, which attends
    ``sd_width`` ('' when it can): the words of the job's load and of the engine's status alike."""
    if width == sd_width:
        return ""
    return (f"{folder} was trained for a {width}-wide UNet context, {sd} attends {sd_width}: train it on this SD "
            "model, or use the SD model it was trained on")


__all__ = ["HAND_DIM", "POSE_DIM", "RUNS_ONE_IMAGE", "TARGET_GENERATOR", "block_on_one_pixel", "width_problem"]
