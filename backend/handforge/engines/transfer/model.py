"""IHPT's target image generator (Park, Hwang and Kang, "Diffusion-based Interacting Hand Pose
Transfer", ECCV 2024 HANDS workshop, Sec. 2.3), the part in front of a frozen SD 1.x UNet:

    f_source = backbone(I_source)                  a strided conv feature map
    e_source = feature_encoder(f_source)           transformer encoder over its tokens
    e_pose   = pose_encoder(P_source, P_target)    an MLP → pose tokens (wrists seen from each image's camera)
    c        = feature_decoder(f_source, e_pose)   learned queries attending to f_source and e_pose

ε_θ(z_t, t, c, e_source, e_pose) is the UNet with [c, e_source, e_pose] (projected to its width) as
its cross-attention context, in place of CLIP text. The paper states no sizes; these are ours.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from handforge_shared.poses import HandPose
from handforge_shared.skeleton import SIDES
from torch import nn

from handforge.engines.transfer.model_config import (
    HAND_DIM,
    POSE_DIM,
    TARGET_GENERATOR,
    feature_grid,
    width_problem,
)


def pose_vector(hands: dict[str, HandPose], camera_rotation: np.ndarray | None = None) -> np.ndarray:
    """(POSE_DIM,) float32: per side (SIDES order) present, global_orient, hand_pose; zeros for a missing hand.
    With ``camera_rotation`` (world → camera R) the wrists' orientation is the camera's view of it: what
    the image shows, whichever world frame the poses came in."""
    from handforge_shared.rotations import axis_angle_to_matrix, matrix_to_axis_angle

    out = np.zeros((len(SIDES), HAND_DIM), np.float32)
    for k, side in enumerate(SIDES):
        pose = hands.get(side)
        if pose is not None:
            orient = np.ravel(pose.global_orient).astype(np.float64)
            if camera_rotation is not None:
                orient = matrix_to_axis_angle(np.asarray(camera_rotation, np.float64) @ axis_angle_to_matrix(orient))
            out[k] = np.concatenate([[1.0], np.ravel(orient), np.ravel(pose.hand_pose)])
    return out.ravel()


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU(),
                         nn.Conv2d(c_out, c_out, 3, 1, 1), nn.GroupNorm(min(8, c_out), c_out), nn.SiLU())


_D = TARGET_GENERATOR.defaults  # the defaults' one home: the status line reads them without torch


class TargetGenerator(ModelMixin, ConfigMixin):
    config_limits = TARGET_GENERATOR.limits  # (there, light, for the engine's status line, as the defaults below)
    config_counts = TARGET_GENERATOR.counts

    @register_to_config
    def __init__(self, cross_attention_dim: int = _D["cross_attention_dim"], image_size: int = _D["image_size"],
                 backbone_channels: tuple[int, ...] = _D["backbone_channels"], feature_dim: int = _D["feature_dim"],
                 num_layers: int = _D["num_layers"], num_heads: int = _D["num_heads"],
                 num_queries: int = _D["num_queries"], pose_tokens: int = _D["pose_tokens"],
                 pose_dim: int = _D["pose_dim"], trained_size: int | None = _D["trained_size"]) -> None:
        # trained_size: the SD image size (train transfer's --size) it learnt, kept in its config.json so that a
        # model/ copied out of its run still says it (the ihpt engine warns at another); None: not recorded
        super().__init__()
        channels = [3, *backbone_channels]
        self.backbone = nn.Sequential(*(_conv_block(a, b) for a, b in itertools.pairwise(channels)))
        grid = feature_grid(image_size, len(backbone_channels))
        self.feature_proj = nn.Linear(channels[-1], feature_dim)
        self.feature_position = nn.Parameter(torch.zeros(1, grid * grid, feature_dim))

        def layer(kind):
            return kind(feature_dim, num_heads, 4 * feature_dim, dropout=0.0, batch_first=True, norm_first=True)

        self.feature_encoder = nn.TransformerEncoder(layer(nn.TransformerEncoderLayer), num_layers,
                                                     enable_nested_tensor=False)
        self.pose_encoder = nn.Sequential(nn.Linear(2 * pose_dim, feature_dim), nn.SiLU(),
                                          nn.Linear(feature_dim, pose_tokens * feature_dim))
        self.queries = nn.Parameter(torch.randn(1, num_queries, feature_dim) * 0.02)
        self.feature_decoder = nn.TransformerDecoder(layer(nn.TransformerDecoderLayer), num_layers)
        self.to_context = nn.Sequential(nn.LayerNorm(feature_dim), nn.Linear(feature_dim, cross_attention_dim))

    def forward(self, source_image: torch.Tensor, source_pose: torch.Tensor, target_pose: torch.Tensor) -> torch.Tensor:
        """source_image (B, 3, H, W) in [-1, 1]; poses (B, pose_dim) → (B, tokens, cross_attention_dim)."""
        size = self.config.image_size
        if source_image.shape[-2:] != (size, size):
            source_image = nn.functional.interpolate(source_image, (size, size), mode="bilinear", antialias=True,
                                                     align_corners=False)
        f_source = self.backbone(source_image).flatten(2).transpose(1, 2)            # (B, grid², C)
        f_source = self.feature_proj(f_source) + self.feature_position
        e_source = self.feature_encoder(f_source)
        e_pose = self.pose_encoder(torch.cat([source_pose, target_pose], dim=1))
        e_pose = e_pose.view(e_pose.shape[0], self.config.pose_tokens, -1)
        queries = self.queries.expand(source_image.shape[0], -1, -1)
        c = self.feature_decoder(queries, torch.cat([f_source, e_pose], dim=1))
        return self.to_context(torch.cat([c, e_source, e_pose], dim=1))


def check_fits(model: TargetGenerator, folder, unet, sd) -> None:
    """Refuse (``WeightsError`` naming ``folder``) a target generator whose context the SD model ``sd``'s
    ``unet`` cannot attend to: its width is the UNet's it was trained on (else a matmul error mid-sampling)."""
    from handforge.engines.image.loading import WeightsError

    problem = width_problem(folder, model.config.cross_attention_dim, sd, unet.config.cross_attention_dim)
    if problem:
        raise WeightsError(problem, folder)


__all__ = ["HAND_DIM", "POSE_DIM", "TargetGenerator", "check_fits", "pose_vector"]
