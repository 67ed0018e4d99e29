"""The training-free pose-transfer engine on tiny random SD 1.x + ControlNet weights, loaded through
the users' code path: reference attention pulls each self-attention layer's output toward the
source's, changes the sampled output at a fixed seed, and leaves the shared pipeline as it was."""

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


def test_one_source_image_at_a_time(pipe):
    latents = torch.zeros(2, 4, SIZE // 8, SIZE // 8)
    with pytest.raises(ValueError, match="one source image"), inject(pipe.unet, pipe.scheduler, latents, latents):
        pass
