"""Small interaction-engine fixtures: synthetic two-hand pairs and a tiny denoiser fitted to them.

Pairs are library poses (``handforge_shared.pose_library``) of the open hand with random wrist
rotations, the right hand's wrist a few centimetres from the left one's, so the hands often overlap:
what the anti-penetration guidance has to fix."""

from __future__ import annotations

import numpy as np
import torch

from handforge.engines.interaction.data import Pairs
from handforge.engines.interaction.model import InteractionDenoiser, training_loss
from handforge.hands.wrists import WristJoints
from handforge_shared import pose_library


def random_rotations(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    return scale * rng.normal(0.0, 0.6, size=(n, 3))


def synthetic_pairs(n: int, seed: int = 0, spread: float = 0.04) -> Pairs:
    rng = np.random.default_rng(seed)
    names = pose_library.names()
    poses = {side: np.stack([np.asarray(pose_library.get(str(rng.choice(names)), side=side).hand_pose)
                             for _ in range(n)]) for side in ("left", "right")}
    orient = np.stack([random_rotations(rng, n, 0.5), random_rotations(rng, n)], axis=1)
    transl = np.stack([rng.normal(0.0, 0.02, (n, 3)), rng.normal(0.0, spread, (n, 3))], axis=1)
    transl[:, 1, 0] -= 0.02  # the right wrist near the left one: the hands overlap
    betas = np.repeat(rng.normal(0.0, 1.0, (n, 1, 10)), 2, axis=1)
    t = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    return Pairs({"global_orient": t(orient), "hand_pose": t(np.stack([poses["left"], poses["right"]], 1)),
                  "betas": t(betas), "transl": t(transl)})


def tiny_denoiser(hand_model, seed: int = 0, steps: int = 200) -> InteractionDenoiser:
    """A small denoiser fitted for ``steps`` Adam steps to synthetic pairs (a plain loop: seconds)."""
    torch.manual_seed(seed)
    net = InteractionDenoiser(width=32, hidden=64, layers=3, heads=2, attention_layers=1, dropout=0.0,
                              num_train_timesteps=100)
    anchors, others = synthetic_pairs(512, seed).vectors(WristJoints.of(hand_model))
    net.fit_normalisation(anchors, others)
    scheduler, optimiser = net.noise_scheduler(), torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        rows = torch.randint(0, len(anchors), (128,))
        loss, _ = training_loss(net, anchors[rows], others[rows], scheduler)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return net.eval()


__all__ = ["random_rotations", "synthetic_pairs", "tiny_denoiser"]
