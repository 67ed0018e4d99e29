"""The training-free pose-transfer engine on tiny random SD 1.x + ControlNet weights, loaded through
the users' code path: reference attention pulls each self-attention layer's output toward the
source's, changes the sampled output at a fixed seed, and leaves the shared pipeline as it was; on a
tiny SD set by hand so that its self-attention carries the image, it moves the decoded image toward
the source."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from handforge.engines.image.loading import build_pipeline
from handforge.engines.transfer.pipeline import encode_image, transfer
from handforge.engines.transfer.reference import inject, self_attention_names

from tests.support import tiny_sd

SIZE = tiny_sd.IMAGE_SIZE


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    root = tmp_path_factory.mktemp("transfer")
    sd = tiny_sd.build_sd(root / "sd")
    return build_pipeline(sd, [tiny_sd.build_controlnet(root / "cn", sd)])


def images():
    rng = np.random.default_rng(0)
    source = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    control = np.zeros((SIZE, SIZE, 3), np.uint8)
    control[40:90, 50:80] = 200  # a stand-in for the target pose's mesh image
    return source, control


def test_self_attention_outputs_move_toward_the_source_features(pipe):
    source, _ = images()
    latents = encode_image(pipe, source, "cpu")
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    sample = torch.randn(latents.shape, generator=torch.Generator().manual_seed(2))
    text, _ = pipe.encode_text("two hands", "cpu")
    t = pipe.scheduler.config.num_train_timesteps // 2
    layers = [m for n, m in pipe.unet.named_modules() if n.endswith("attn1")]
    assert len(layers) == len(self_attention_names(pipe.unet)) > 0
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: outputs.append(out)) for m in layers]
    try:
        with torch.no_grad(), inject(pipe.unet, pipe.scheduler, latents, noise) as injection:
            injection.enabled = False
            pipe.unet(sample, t, encoder_hidden_states=text)
            off = outputs[:]
            outputs.clear()
            injection.write(t, text)
            from_source = outputs[:]
            outputs.clear()
            injection.enabled = True
            pipe.unet(sample, t, encoder_hidden_states=text)  # the pre-hook writes again, then the main pass
            on = outputs[len(layers):]
    finally:
        for hook in hooks:
            hook.remove()
    # the first layer sees the same inputs in both passes; deeper ones see the already-moved features
    closer = [float((a - s).pow(2).mean()) < float((b - s).pow(2).mean()) for a, b, s in zip(on, off, from_source)]
    assert closer[0] and sum(closer) == len(closer), closer


def test_injection_changes_the_output_at_a_fixed_seed_and_leaves_the_pipeline_as_it_was(pipe):
    source, control = images()
    processors = dict(pipe.unet.attn_processors)

    def run(**kw):
        latents = []
        transfer(pipe, source, [control], "two hands", num_inference_steps=2, guidance_scale=2.0,
                 generator=torch.Generator().manual_seed(5), on_step=lambda i, n, lat: latents.append(lat), **kw)
        return latents[-1]

    off, on = run(reference=False), run(reference=True)
    assert not torch.equal(on, off)
    assert torch.equal(run(reference=True, reference_scale=0.0), off)  # scale 0: plain self-attention
    assert dict(pipe.unet.attn_processors) == processors  # image.generate shares this pipeline
    plain = []
    pipe("two hands", [control], num_inference_steps=2, guidance_scale=2.0,
         generator=torch.Generator().manual_seed(5), on_step=lambda i, n, lat: plain.append(lat))
    assert torch.equal(plain[-1], off)
    pipe.enable_attention_slicing()  # the job's memory option: another attention processor underneath
    try:
        assert torch.allclose(run(reference=True), on, atol=1e-4)
    finally:
        pipe.disable_attention_slicing()


@pytest.fixture(scope="module")
def mean_colour_pipe(tmp_path_factory):
    sd, controlnet = tiny_sd.build_mean_colour_sd(tmp_path_factory.mktemp("mean-colour"))
    return build_pipeline(sd, [controlnet])


def test_injection_moves_the_decoded_image_toward_the_source_at_fixed_seeds(mean_colour_pipe):
    """The output-level check of reference attention, on ``tiny_sd.build_mean_colour_sd``: a VAE that
    keeps each 8×8 block's mean colour and a UNet predicting the clean sample as the mean of the tokens
    its self-attention attends to, every other path set to add nothing (random weights leave
    self-attention almost no say: there the output moves ~0.005 in a seed-dependent direction). So
    pixel distance is colour distance, and what reaches the image from the source goes through the
    injected tokens alone. For 3 seeds × 2 sources (textured, a warm and a blue colour), with the same
    seed and the injection on: the image's RMS pixel distance to the source is under 0.6× that with it
    off (measured 0.45-0.54×: 26-33 against 48-74 of 255; the floor is the source's texture inside
    each block, std 20), and under 0.5× the distance to the source of the image made with the other
    source injected (measured 0.30-0.34×): it moves toward *this* source, not toward any image. A
    write pass at the wrong noise level, or a source negated, passes the tests above and fails this."""
    size = tiny_sd.IMAGE_SIZE
    rng = np.random.default_rng(0)
    sources = [np.clip(np.float32(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
               for colour in ((210, 150, 120), (40, 70, 160))]
    _, control = images()
    flat = np.full((size, size, 3), (210, 150, 120), np.uint8)  # the VAE keeps colours: pixels measure them
    back = mean_colour_pipe.vae.decode(encode_image(mean_colour_pipe, flat, "cpu"), return_dict=False)[0]
    assert torch.allclose((back + 1) * 127.5, torch.tensor([210.0, 150.0, 120.0])[:, None, None], atol=0.5)

    def image(seed, source, **kw):
        return transfer(mean_colour_pipe, source, [control], "two hands", num_inference_steps=6,
                        guidance_scale=2.0, generator=torch.Generator().manual_seed(seed), **kw).images[0]

    def distance(a, b):
        return float(np.sqrt(((a.astype(np.float32) - b) ** 2).mean()))

    measured = []
    for seed in (0, 1, 2):
        off = image(seed, sources[0], reference=False)  # the source plays no part with the injection off
        on = [image(seed, source) for source in sources]
        for k, source in enumerate(sources):
            measured.append((seed, k, distance(off, source), distance(on[k], source), distance(on[1 - k], source)))
    assert all(d_on < 0.6 * d_off and d_on < 0.5 * d_other for _, _, d_off, d_on, d_other in measured), measured


def test_one_source_image_at_a_time(pipe):
    latents = torch.zeros(2, 4, SIZE // 8, SIZE // 8)
    with pytest.raises(ValueError, match="one source image"), inject(pipe.unet, pipe.scheduler, latents, latents):
        pass


def test_the_processor_attends_to_its_own_tokens_and_the_sources_and_blends_by_scale():
    """One self-attention layer against attention written out by hand (softmax(q kᵀ / √d) v, then the output
    projection): while reading, the keys and values are the layer's own tokens *and* the kept source tokens
    (the reference-only idea: the generated image attends to itself and the source); a scale s between 0 and 1
    is s × that + (1 − s) × plain self-attention. Before: attending to the source tokens alone, or a blend
    weighted the other way round, passed every test above."""
    from diffusers.models.attention_processor import Attention, AttnProcessor
    from handforge.engines.transfer.reference import ReferenceAttnProcessor, _Bank

    torch.manual_seed(0)
    attn = Attention(query_dim=8, heads=1, dim_head=8).eval()
    hidden, source = torch.randn(2, 5, 8), torch.randn(1, 3, 8)  # a batch of 2 (guidance), one source

    def by_hand(keys):
        q, k, v = attn.to_q(hidden), attn.to_k(keys), attn.to_v(keys)
        weights = torch.softmax(q @ k.transpose(1, 2) / 8 ** 0.5, dim=-1)
        return attn.to_out[0](weights @ v)

    with torch.no_grad():
        plain = by_hand(hidden)
        both = by_hand(torch.cat([hidden, source.expand(2, -1, -1)], dim=1))
        for scale, expected in ((1.0, both), (0.25, 0.25 * both + 0.75 * plain), (0.0, plain)):
            bank = _Bank(scale=scale, tokens={"layer": source})
            got = ReferenceAttnProcessor("layer", AttnProcessor(), bank)(attn, hidden)
            assert torch.allclose(got, expected, atol=1e-5), scale
        bank = _Bank(writing=True)  # the write pass: plain self-attention, its input kept
        got = ReferenceAttnProcessor("layer", AttnProcessor(), bank)(attn, hidden)
        assert torch.allclose(got, plain, atol=1e-5) and torch.equal(bank.tokens["layer"], hidden)
