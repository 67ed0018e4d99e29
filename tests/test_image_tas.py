"""TAS's scores and loss (handforge.engines.image.tas) on synthetic attention maps, against values
worked out by hand from AttentionHand's Sec. 3.3 (arXiv:2407.18034) and Attend-and-Excite's kernel:
softmax over the prompt's text tokens only, a 3×3 Gaussian smoothing, s_n its maximum, L = max_n (1 − s_n)."""

from __future__ import annotations

import math

import pytest
import torch
from handforge.engines.image import tas

# Attend-and-Excite's kernel exp(−((x − μ)/(2σ))²) with σ = 0.5 at x − μ ∈ {−1, 0, 1}: (e⁻¹, 1, e⁻¹) per axis;
# the 3×3 kernel is their outer product normalised to sum 1, so its centre weight is 1 / (1 + 2/e)².
CENTRE = 1.0 / (1.0 + 2.0 * math.exp(-1.0)) ** 2  # ≈ 0.3319


def synthetic_maps(length: int, peak: int, other: int) -> torch.Tensor:
    """(1, 4, 4, 77) maps: the start token 0 far the largest everywhere (as in SD, where it soaks up most of the
    attention); token ``peak`` high at the one interior pixel (1, 1) and token ``other`` high everywhere else,
    so that among the text tokens ``peak`` owns (1, 1) and nothing else."""
    maps = torch.zeros(1, 4, 4, 77)
    maps[..., 0] = 3.0
    maps[..., other] = 1.0
    maps[0, 1, 1, other] = 0.0
    maps[0, 1, 1, peak] = 1.0
    return maps


def test_the_scores_are_of_the_text_tokens_only_the_start_token_left_out():
    """The softmax is over the prompt's tokens 1..L (the start token, which takes most of the attention, left out),
    and index p is token p: a one-pixel peak of token p scores the kernel's centre weight × 1, its neighbour
    token p − 1 (nowhere high) about 0. (Counting the start token in the softmax, or reading index p as token
    p − 1, gave about 0 for p: the start token wins every pixel.)"""
    length, p = 10, 5
    maps = synthetic_maps(length, p, other=8)
    scores = tas.token_scores(maps, length, [p])
    assert scores.shape == (1, 1)
    assert float(scores[0, 0]) == pytest.approx(CENTRE, abs=1e-4)
    assert float(tas.token_scores(maps, length, [p - 1])[0, 0]) == pytest.approx(0.0, abs=1e-4)
    # both at once, in the order asked; the first text token (index 1) too
    both = tas.token_scores(maps, length, [p - 1, p])
    assert both[0].tolist() == pytest.approx([0.0, CENTRE], abs=1e-4)
    first = tas.token_scores(synthetic_maps(length, 1, other=8), length, [1])
    assert float(first[0, 0]) == pytest.approx(CENTRE, abs=1e-4)


def test_the_kernel_is_attend_and_excites():
    k = tas.gaussian_kernel()
    edge, corner = math.exp(-1.0) * CENTRE, math.exp(-2.0) * CENTRE
    expected = torch.tensor([[corner, edge, corner], [edge, CENTRE, edge], [corner, edge, corner]])
    assert torch.allclose(k, expected, atol=1e-6)


def test_the_loss_is_the_weakest_tokens_shortfall():
    """L = max_n (1 − s_n) per sample (Eq. 3): the least attended chosen token decides, not the mean."""
    assert tas.tas_loss(torch.tensor([[0.9, 0.2]])).tolist() == pytest.approx([0.8])
    batch = tas.tas_loss(torch.tensor([[0.9, 0.2, 0.6], [0.5, 0.7, 0.95], [0.3, 0.3, 0.3]]))
    assert batch.shape == (3,)
    assert batch.tolist() == pytest.approx([0.8, 0.5, 0.7])
    assert tas.tas_loss(torch.tensor([[0.25]])).tolist() == pytest.approx([0.75])


def test_the_padding_tokens_after_the_prompt_are_left_out_of_the_softmax():
    """Only the prompt's tokens 1..L are softmaxed: the end and padding tokens after it (which in SD take much of
    the attention, like the start token) are left out. Counting them, the peak token lost its pixel to them."""
    length, p = 10, 5
    maps = synthetic_maps(length, p, other=8)
    maps[..., length + 1:] = 2.0  # end and padding tokens, high everywhere
    assert float(tas.token_scores(maps, length, [p])[0, 0]) == pytest.approx(CENTRE, abs=1e-4)


def test_the_maps_are_the_mean_over_the_recorded_layers_and_heads():
    """Sec. 3.3 averages the 16×16 cross-attention maps over layers and heads: a sum over either scaled the maps
    (and so sharpened the ×100 softmax) by the UNet's layer and head counts."""
    store = tas.AttentionStore((2, 2))
    first = torch.rand(1, 2, 4, 3, generator=torch.Generator().manual_seed(0))  # (batch, heads, queries, tokens)
    second = torch.rand(1, 2, 4, 3, generator=torch.Generator().manual_seed(1))
    store.add(first)
    store.add(second)
    expected = ((first.mean(dim=1) + second.mean(dim=1)) / 2).reshape(1, 2, 2, 3)
    assert torch.allclose(store.maps(), expected, atol=1e-6)


def test_the_smoothing_pads_by_reflection_so_a_token_along_the_border_is_not_cut_down():
    """Attend-and-Excite's smoothing pads by reflection: a token owning the two columns along the map's left edge
    scores 1 there, as it would inside. (Zero padding cut it to the kernel's weight inside the map, ≈ 0.79.)"""
    length, p = 10, 5
    maps = torch.zeros(1, 4, 4, 77)
    maps[..., 0] = 3.0
    maps[..., 8] = 1.0
    maps[:, :, :2, 8] = 0.0
    maps[:, :, :2, p] = 1.0
    assert float(tas.token_scores(maps, length, [p])[0, 0]) == pytest.approx(1.0, abs=1e-4)
