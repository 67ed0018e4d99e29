"""``hands.lbs.skin``, the blend of every open-hand forward, against the textbook formula written per vertex in numpy:
v' = (Σ_j w_vj T_j) [v; 1], for the batch shapes the hand layers and the bake give it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handforge.hands.lbs import skin


def per_vertex(vertices: np.ndarray, weights: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """The oracle, (B, V, 3), one vertex at a time in float64."""
    batch = max(len(transforms), len(vertices) if vertices.ndim == 3 else 1)
    vertices = np.broadcast_to(vertices, (batch, *vertices.shape[-2:]))
    transforms = np.broadcast_to(transforms, (batch, *transforms.shape[1:]))
    out = np.empty(vertices.shape)
    for b in range(batch):
        for v in range(vertices.shape[1]):
            blended = np.tensordot(weights[v], transforms[b], axes=1)  # (3, 4)
            out[b, v] = blended @ np.append(vertices[b, v], 1.0)
    return out


@pytest.mark.parametrize("vertex_batch, transform_batch", [(3, 3), (None, 3), (1, 3), (3, 1), (0, 0)])
def test_skin_is_the_weighted_blend_of_the_joint_transforms_for_every_batch_shape(vertex_batch, transform_batch):
    rng = np.random.default_rng(0)
    weights = rng.random((40, 16))
    weights /= weights.sum(1, keepdims=True)
    vertices = rng.normal(size=(40, 3) if vertex_batch is None else (vertex_batch, 40, 3))
    transforms = rng.normal(size=(transform_batch, 16, 3, 4))
    made = skin(*(torch.tensor(a, dtype=torch.float32) for a in (vertices, weights, transforms)))
    assert made.shape == (max(transform_batch, vertex_batch or 0), 40, 3)
    np.testing.assert_allclose(made.numpy(), per_vertex(vertices, weights, transforms), atol=1e-5)


def test_skin_is_differentiable_in_vertices_weights_and_transforms():
    rng = np.random.default_rng(1)
    inputs = [torch.tensor(rng.normal(size=shape), dtype=torch.float64, requires_grad=True)
              for shape in ((2, 6, 3), (6, 4), (2, 4, 3, 4))]
    assert torch.autograd.gradcheck(skin, inputs)
