"""TAS when its loss or gradient is not finite (float16 overflowing in the backward pass): the image's latents are
left as they were that step, the other images of the batch still move, sampling goes on to finite images, and the
job's result says so in JSON it can send. The overflow is forced here (float32 on the CPU never overflows with the
tiny models): the scores of chosen images pass through a function whose gradient is infinite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from handforge.engines.image import tas
from handforge.engines.image.loading import build_pipeline
from handforge.engines.image.tokens import hand_tokens

from tests.support import tiny_sd

PROMPT = "a man holding two hands"
SIZE = tiny_sd.IMAGE_SIZE


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    sd = tiny_sd.build_sd(root / "sd")
    return build_pipeline(sd, [tiny_sd.build_controlnet(root / "guidance", sd, seed=1)])


class OverflowingGradient(torch.autograd.Function):
    """The identity forward; an infinite gradient backward (what float16 gives when the backward pass overflows)."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


def overflow_at(monkeypatch, calls: set[int], images: set[int]) -> list[int]:
    """From now on the TAS scores of ``images`` overflow backward at the ``calls``-th TAS passes (0 first); returns
    the list of the passes made so far, counted as they come."""
    real, made = tas.attention_scores, []

    def scores(*args, **kwargs):
        out = real(*args, **kwargs)
        made.append(len(made))
        if made[-1] not in calls:
            return out
        return torch.stack([OverflowingGradient.apply(row) if k in images else row for k, row in enumerate(out)])

    monkeypatch.setattr(tas, "attention_scores", scores)
    return made


def chosen_tokens(pipe) -> tuple[list[int], torch.Tensor, int]:
    text, length = pipe.encode_text(PROMPT, "cpu")
    return [c.index for c in hand_tokens(PROMPT, pipe.tokenizer)[0]], text, length


def test_an_image_whose_gradient_is_not_finite_stays_and_the_others_move_as_alone(pipe, monkeypatch):
    """Each image's update is its own (X̂ = X − α ∇L_k): one image's overflow leaves that image as it was and the
    other moves as it would alone. (The whole batch was left unmoved for one image's overflow.)"""
    chosen, text, length = chosen_tokens(pipe)
    pipe.scheduler.set_timesteps(20)
    t = pipe.scheduler.timesteps[0]
    latents = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(4))
    alone, loss_alone, _ = tas.tas_update(pipe.unet, latents[:1], t, text, length, chosen, tas.DEFAULT_STRENGTH)
    overflow_at(monkeypatch, calls={0}, images={1})
    both, losses, skipped = tas.tas_update(pipe.unet, latents, t, text.repeat(2, 1, 1), length, chosen,
                                           tas.DEFAULT_STRENGTH)
    assert skipped.tolist() == [False, True]
    assert torch.equal(both[1], latents[1])  # left exactly as it was
    assert not torch.equal(both[0], latents[0])
    assert torch.allclose(both[:1], alone, atol=1e-5) and torch.allclose(losses[:1], loss_alone, atol=1e-6)
    assert torch.isfinite(both).all()


def test_sampling_goes_on_past_a_skipped_update_and_its_losses_say_which(pipe, monkeypatch):
    """At the TAS step whose gradient overflows for every image the latents go on to the step unmoved; the other TAS
    steps move them; the images come out of finite latents; and the step's losses are None (JSON null), not NaN:
    the job's result is JSON without NaN (the protocol refuses it), so a NaN loss failed the finished job."""
    chosen, _, _ = chosen_tokens(pipe)
    seen = []
    real = tas.tas_update

    def watched(*args):
        out = real(*args)
        seen.append((args[1].clone(), out[0].clone()))
        return out

    overflow_at(monkeypatch, calls={1}, images={0, 1})
    monkeypatch.setattr(tas, "tas_update", watched)
    last = []
    out = pipe(PROMPT, [np.full((SIZE, SIZE, 3), 90, np.uint8)], num_inference_steps=4, num_images=2,
               generator=torch.Generator().manual_seed(2), tas_tokens=chosen, tas_steps=3,
               on_step=lambda i, n, latents: last.append(latents))
    assert len(seen) == 3
    assert [torch.equal(before, after) for before, after in seen] == [False, True, False]
    assert len(last) == 4 and all(torch.isfinite(latents).all() for latents in last)
    assert out.images.shape == (2, SIZE, SIZE, 3) and out.images.std() > 0
    assert out.tas_losses[1] == [None, None]
    assert all(isinstance(v, float) and np.isfinite(v) for step in (0, 2) for v in out.tas_losses[step])
    json.dumps(out.tas_losses, allow_nan=False)


def test_a_loss_that_is_not_finite_is_skipped_too(pipe, monkeypatch):
    """An overflow in the forward pass (the loss itself NaN): the image stays, its loss is reported as skipped."""
    chosen, text, length = chosen_tokens(pipe)
    real = tas.attention_scores
    monkeypatch.setattr(tas, "attention_scores", lambda *a, **k: real(*a, **k) * torch.tensor([[1.0], [float("nan")]]))
    pipe.scheduler.set_timesteps(20)
    latents = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(4))
    moved, losses, skipped = tas.tas_update(pipe.unet, latents, pipe.scheduler.timesteps[0], text.repeat(2, 1, 1),
                                            length, chosen, tas.DEFAULT_STRENGTH)
    assert skipped.tolist() == [False, True] and torch.equal(moved[1], latents[1]) and torch.isfinite(moved).all()
