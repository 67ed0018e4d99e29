"""What a TargetGenerator's config.json must keep to (``checkpoints.ModelConfig``), importable without torch:
the ihpt engine's status checks the configured checkpoint against it (model.py imports torch and diffusers,
seconds), in the words ``load_model`` refuses it with. model.py takes its limits, pose size and
``__init__`` defaults from here (their one home)."""

from __future__ import annotations

import math
from pathlib import Path

from handforge.engines.checkpoints import CONFIG_NAME, Limit, ModelConfig, at_least, config_json, dividing, weights_shapes
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


def runs_one_image(config: dict) -> bool:
    return block_on_one_pixel(config["image_size"], config["backbone_channels"]) is None


RUNS_ONE_IMAGE: Limit = (lambda value, config: runs_one_image(config),
                         "large enough for backbone_channels {backbone_channels} that no block of width 8 or less sees "
                         "a 1×1 map (one value in each GroupNorm group: it cannot run one image at a time)")

TARGET_GENERATOR = ModelConfig(
    "TargetGenerator",
    defaults={"cross_attention_dim": 768, "image_size": 224, "backbone_channels": (64, 128, 256, 512),
              "feature_dim": 512, "num_layers": 2, "num_heads": 8, "num_queries": 16, "pose_tokens": 4,
              "pose_dim": POSE_DIM, "trained_size": None},
    limits={"num_heads": (at_least(1), dividing("feature_dim")),  # what else load_model refuses in a config
            "image_size": (at_least(1), RUNS_ONE_IMAGE),
            "backbone_channels": (at_least(1),)},  # (a config.json without image_size: its default's checked)
    counts={"backbone_channels": ("backbone",), "num_layers": ("feature_encoder.layers", "feature_decoder.layers")})


def feature_grid(image_size: int, blocks: int) -> int:
    """The side of the backbone's feature map: each block's stride-2 convolution (padding 1) gives ceil(n / 2)."""
    for _ in range(blocks):
        image_size = (image_size + 1) // 2
    return image_size


def target_generator_problem(folder, finite: bool = False) -> str:
    """Why the folder's TargetGenerator checkpoint cannot load ('' when it can): its files, config and (``finite``)
    weights' values (``checkpoint_problem``), then its feature map against its weights (``feature_map_problem``)."""
    from handforge.engines.checkpoints import checkpoint_problem

    return checkpoint_problem(folder, TARGET_GENERATOR, finite=finite) or feature_map_problem(folder)


def feature_map_problem(folder) -> str:
    """Why the checkpoint in ``folder`` (one ``checkpoint_problem`` passes) builds a feature map of another size than
    its weights' ``feature_position`` holds ('' when they agree, or its weights are sharded), from its config.json
    and the weights' header (without torch): a config.json without image_size (or with the size under another key,
    sample_size, which the model does not read) builds the default 224's. The engine's status said ready, and each
    job's load refused it in the words of a config edited at random."""
    raw = config_json(Path(folder) / CONFIG_NAME)
    shapes = weights_shapes(folder)
    if shapes is None or len(shapes.get("feature_position", ())) != 3:
        return ""
    settings = {**TARGET_GENERATOR.defaults, **raw}
    size, blocks = settings["image_size"], len(settings["backbone_channels"])
    grid, held = feature_grid(size, blocks), shapes["feature_position"][1]
    if held == grid * grid:
        return ""
    side = math.isqrt(held)
    trained = (f"one of {side}×{side} (image_size {(side - 1) * 2 ** blocks + 1} to {side * 2 ** blocks})"
               if side * side == held and side > 0 else f"{held} positions (no square map)")
    sets = f"sets image_size to {size}" if "image_size" in raw else f"sets no image_size, so the default {size}"
    others = [key for key in ("sample_size", "resolution", "size") if key in raw]
    unread = f" (its {others[0]} the model does not read)" if others else ""
    return (f"{folder}: cannot load the {TARGET_GENERATOR.name} checkpoint: its {CONFIG_NAME} {sets}{unread}, a "
            f"feature map of {grid}×{grid} after its {blocks} backbone blocks, and its weights' feature_position "
            f"holds {trained}; set image_size in {CONFIG_NAME} to the size it was trained at")


def width_problem(folder, width: int, sd, sd_width: int) -> str:
    """Why a target generator whose context is ``width`` wide cannot drive the SD model ``sd``'s UNet, which attends
    ``sd_width`` ('' when it can): the words of the job's load and of the engine's status alike."""
    if width == sd_width:
        return ""
    return (f"{folder} was trained for a {width}-wide UNet context, {sd} attends {sd_width}: train it on this SD "
            "model, or use the SD model it was trained on")


__all__ = ["HAND_DIM", "POSE_DIM", "RUNS_ONE_IMAGE", "TARGET_GENERATOR", "block_on_one_pixel",
           "feature_grid", "feature_map_problem", "runs_one_image", "target_generator_problem",
           "width_problem"]
