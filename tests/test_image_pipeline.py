"""Hand image generation on tiny random SD 1.x / ControlNet / CLIP components saved in the diffusers
layout and loaded through the users' code path: token choice, TAS, the whole pipeline, and agreement
with diffusers' StableDiffusionControlNetPipeline when TAS is off."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from handforge.engines.image import tas
from handforge.engines.image.loading import WeightsError, build_pipeline, load_sd
from handforge.engines.image.tokens import hand_tokens, split_words
from handforge.server.model_cache import model_bytes

from tests.support import tiny_sd

PROMPT = "a man holding two hands"
SIZE = tiny_sd.IMAGE_SIZE


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    sd = tiny_sd.build_sd(root / "sd")
    return sd, tiny_sd.build_controlnet(root / "guidance", sd, seed=1), tiny_sd.build_controlnet(root / "depth", sd, seed=2)


@pytest.fixture(scope="module")
def pipe(weights):
    sd, guidance, _ = weights
    return build_pipeline(sd, [guidance])


def control(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)


def test_without_nltk_data_or_lemminflect_tas_says_what_to_install(weights, monkeypatch):
    """An environment set up before lemminflect joined the backend extra: every TAS job ended in a bare
    ModuleNotFoundError."""
    monkeypatch.setitem(sys.modules, "lemminflect", None)
    monkeypatch.setitem(sys.modules, "nltk", None)
    with pytest.raises(ImportError, match="needs lemminflect: pip install lemminflect"):
        hand_tokens(PROMPT, tiny_sd.tokenizer(weights[0] / "tokenizer"))


def test_the_truncation_warning_holds_no_broken_or_control_characters(weights):
    """The part dropped was decoded from whole tokens: a character cut between two came out as U+FFFD, and NULs went
    raw into the warning (the fuzzing of 2026-12-07)."""
    from handforge.engines.image.tokens import truncated

    tok = tiny_sd.tokenizer(weights[0] / "tokenizer")
    for prompt in ("\U0001F590" * 600, "\x00" * 200, "a " * 80 + "\x07bell"):
        (warning,) = truncated(tok, prompt)
        assert "\ufffd" not in warning and warning.isprintable(), repr(warning)


def test_every_bpe_piece_of_each_hand_word_and_never_the_word_before(weights):
    tok = tiny_sd.tokenizer(weights[0] / "tokenizer")
    chosen, tagger = hand_tokens(PROMPT, tok)
    assert tagger == "lexicon"  # NLTK's tagger data is not installed here
    ids = tok(PROMPT).input_ids
    pieces = {w: tok.tokenize(w) for w in split_words(PROMPT)}
    assert len(pieces["holding"]) == 4 and len(pieces["man"]) == 2 and len(pieces["hands"]) == 2
    # a(1) ma n(2,3) h ol d ing(4-7) two(8) hand s(9,10)
    assert [c.index for c in chosen] == [4, 5, 6, 7, 9, 10]
    assert [c.word for c in chosen] == ["holding"] * 4 + ["hands"] * 2
    assert [ids[c.index] for c in chosen] == tok.convert_tokens_to_ids(pieces["holding"] + pieces["hands"])
    assert hand_tokens("a painting of a fist", tok)[0] == []  # "a painting" is a noun: nothing to attend
    # only verbs' -ing forms: the rule took any word of 5+ letters ending in "ing"; one the lexicon does not
    # know at all ("texting") is still taken as one
    assert [c.word for c in hand_tokens("sterling silver ring, sibling hands clapping", tok)[0]] == (
        ["hands"] * len(tok.tokenize("hands")) + ["clapping"] * len(tok.tokenize("clapping")))
    assert [c.word for c in hand_tokens("a girl texting", tok)[0]] == ["texting"] * len(tok.tokenize("texting"))
    assert [c.word for c in hand_tokens("Waving, FINGERS spread", tok)[0]] == ["waving"] * 4 + ["fingers"] * len(tok.tokenize("fingers"))
    long = "b " * 73 + "holding"  # start + 73 + 4 pieces + end: two pieces fit in the 77-token window
    assert [c.index for c in hand_tokens(long, tok)[0]] == [74, 75]
    assert [c.index for c in hand_tokens("a " * 80 + "hand", tok)[0]] == []
    # whole words name the hand: not "handsome", "chandelier" or "handle"
    assert hand_tokens("a handsome chandelier by the door handle", tok)[0] == []
    # a decomposed accent (NFD) is one letter to the tokenizer: the words still align (it raised before)
    assert [c.word for c in hand_tokens("cafe\u0301 with a hand", tok)[0]] == ["hand"] * len(tok.tokenize("hand"))
    # the separators \x1c-\x1f are whitespace to str.split and characters to CLIP: aligned (an internal error
    # before, the fuzzing of 2026-12-07), and so is every other whitespace character
    for space in ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0", "\u2003", "\u3000", "\t\n"]:
        words = [c.word for c in hand_tokens(f"a hand{space}holding a cup", tok)[0]]
        assert "hand" in words and "holding" in words, (repr(space), words)
    # the tokenizer's special tokens (pasted from another tool) are one token each: aligned (it raised before)
    pasted = "two<|endoftext|> hands<|startoftext|>waving"
    chosen = hand_tokens(pasted, tok)[0]
    assert [c.word for c in chosen] == ["hands"] * 2 + ["waving"] * 4
    assert [tok(pasted).input_ids[c.index] for c in chosen] == tok.convert_tokens_to_ids(tok.tokenize("hands waving"))


def test_tas_raises_the_attention_of_the_chosen_tokens(pipe):
    chosen, _ = hand_tokens(PROMPT, pipe.tokenizer)
    indices = [c.index for c in chosen]
    text, length = pipe.encode_text(PROMPT, "cpu")
    assert length == 10
    pipe.scheduler.set_timesteps(20)
    t = pipe.scheduler.timesteps[0]
    latents = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    text = text.repeat(2, 1, 1)
    with torch.no_grad():
        before = tas.attention_scores(pipe.unet, latents, t, text, length, indices)
    assert before.shape == (2, len(indices)) and torch.all((before > 0) & (before <= 1))
    updated, loss, skipped = tas.tas_update(pipe.unet, latents, t, text, length, indices, alpha=tas.DEFAULT_STRENGTH)
    assert not skipped.any()
    with torch.no_grad():
        after = tas.attention_scores(pipe.unet, updated, t, text, length, indices)
    assert torch.allclose(loss, tas.tas_loss(before))
    assert torch.all(tas.tas_loss(after) < tas.tas_loss(before))  # the weakest chosen token gained
    assert after.mean() > before.mean()
    assert not torch.equal(updated, latents)
    # the recording processors are gone again: sampling keeps its fast attention
    assert not any(isinstance(p, tas.RecordingProcessor) for p in pipe.unet.attn_processors.values())


def test_tas_runs_beside_attention_slicing(pipe):
    """The job's attention_slicing swaps the UNet's processors for sliced ones, which take no ``temb``:
    the recording layers passed it to every layer they do not record, and each image failed as internal."""
    chosen = [c.index for c in hand_tokens(PROMPT, pipe.tokenizer)[0]]
    text, length = pipe.encode_text(PROMPT, "cpu")
    pipe.scheduler.set_timesteps(20)
    latents = torch.randn(1, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(0))
    t = pipe.scheduler.timesteps[0]
    with torch.no_grad():
        plain = tas.attention_scores(pipe.unet, latents, t, text, length, chosen)
        pipe.enable_attention_slicing(1)
        try:
            sliced = tas.attention_scores(pipe.unet, latents, t, text, length, chosen)
            updated, _, _ = tas.tas_update(pipe.unet, latents, t, text, length, chosen, alpha=tas.DEFAULT_STRENGTH)
        finally:
            pipe.disable_attention_slicing()
    assert torch.allclose(plain, sliced, atol=1e-5) and not torch.equal(updated, latents)


def test_tas_reads_the_maps_of_latents_of_any_size(pipe):
    """Latents whose sides are not multiples of 4 (images multiples of 8, not of 32: a 1920×1080 camera):
    the UNet's downsamplings round up, and TAS finds its layers (it failed on 17×13 latents)."""
    chosen = [c.index for c in hand_tokens(PROMPT, pipe.tokenizer)[0]]
    text, length = pipe.encode_text(PROMPT, "cpu")
    pipe.scheduler.set_timesteps(20)
    latents = torch.randn(1, 4, 17, 13, generator=torch.Generator().manual_seed(0))
    assert tas.map_size(17, 13) == (5, 4) and tas.map_size(135, 240) == (34, 60) and tas.map_size(64, 64) == (16, 16)
    with torch.no_grad():
        scores = tas.attention_scores(pipe.unet, latents, pipe.scheduler.timesteps[0], text, length, chosen)
    assert scores.shape == (1, len(chosen)) and torch.all((scores > 0) & (scores <= 1))


def test_step_size_falls_from_strength_to_half():
    assert tas.step_size(0, 50) == 20 and tas.step_size(49, 50) == pytest.approx(10)
    assert tas.step_size(10, 50) > tas.step_size(11, 50)
    k = tas.gaussian_kernel()
    assert k.shape == (3, 3) and float(k.sum()) == pytest.approx(1.0) and k[1, 1] == k.max()


def test_pipeline_runs_with_tas_and_is_seeded(pipe):
    chosen = [c.index for c in hand_tokens(PROMPT, pipe.tokenizer)[0]]
    steps = []
    kw = dict(num_inference_steps=4, guidance_scale=7.5, num_images=2, tas_tokens=chosen, tas_steps=2)
    out = pipe(PROMPT, [control()], generator=torch.Generator().manual_seed(1),
               on_step=lambda i, n, latents: steps.append((i, n, tuple(latents.shape))), **kw)
    assert out.images.shape == (2, SIZE, SIZE, 3) and out.images.dtype == np.uint8
    assert steps == [(i, 4, (2, 4, SIZE // 8, SIZE // 8)) for i in range(4)]
    assert len(out.tas_losses) == 2 and all(len(step) == 2 for step in out.tas_losses)
    again = pipe(PROMPT, [control()], generator=torch.Generator().manual_seed(1), **kw)
    assert np.array_equal(out.images, again.images)
    no_tas = pipe(PROMPT, [control()], generator=torch.Generator().manual_seed(1), **{**kw, "tas_steps": 0})
    assert not np.array_equal(out.images, no_tas.images) and no_tas.tas_losses == []
    other_control = pipe(PROMPT, [control(5)], generator=torch.Generator().manual_seed(1), **{**kw, "tas_steps": 0})
    assert not np.array_equal(other_control.images, no_tas.images)  # the guidance module is used


def test_tas_off_equals_diffusers_controlnet_pipeline(weights, pipe):
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    sd, guidance, depth = weights
    for nets in ([guidance], [guidance, depth]):
        ours = pipe if len(nets) == 1 else build_pipeline(sd, nets)
        reference = StableDiffusionControlNetPipeline(
            vae=ours.vae, text_encoder=ours.text_encoder, tokenizer=ours.tokenizer, unet=ours.unet,
            controlnet=ours.controlnets if len(nets) > 1 else ours.controlnet, scheduler=ours.scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        reference.set_progress_bar_config(disable=True)
        images = [control(k) for k in range(len(nets))]
        scales = [1.0, 0.6][:len(nets)]
        expected = reference(PROMPT, image=[Image.fromarray(i) for i in images] if len(nets) > 1 else
                             Image.fromarray(images[0]), num_inference_steps=3, guidance_scale=6.0,
                             negative_prompt="blurry", controlnet_conditioning_scale=scales if len(nets) > 1 else 1.0,
                             num_images_per_prompt=2, generator=torch.Generator().manual_seed(3), output_type="np").images
        got = ours(PROMPT, images, negative_prompt="blurry", num_inference_steps=3, guidance_scale=6.0,
                   control_scales=scales, num_images=2, generator=torch.Generator().manual_seed(3))
        assert np.abs(got.images.astype(int) - np.round(expected * 255).astype(int)).max() <= 1


def test_the_control_scale_of_one_controlnet_is_diffusers_conditioning_scale(weights, pipe):
    """image.generate's control_scale with one ControlNet (the attentionhand engine's guidance module, and the
    controlnet engine with one control), as a plain number: the last latents equal those of diffusers'
    StableDiffusionControlNetPipeline with that controlnet_conditioning_scale. Before this test, a single
    ControlNet run at scale 1 whatever was asked passed the comparison above (it checks one net at scale 1)."""
    from diffusers import StableDiffusionControlNetPipeline
    from PIL import Image

    reference = StableDiffusionControlNetPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
        controlnet=pipe.controlnet, scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    reference.set_progress_bar_config(disable=True)
    image = control(4)
    last = {}
    for scale in (0.3, 1.0):
        latents = []
        pipe(PROMPT, [image], negative_prompt="blurry", num_inference_steps=3, guidance_scale=6.0,
             control_scales=scale, generator=torch.Generator().manual_seed(3),
             on_step=lambda i, n, lat: latents.append(lat))
        last[scale] = latents[-1]
    expected = reference(PROMPT, image=Image.fromarray(image), num_inference_steps=3, guidance_scale=6.0,
                         negative_prompt="blurry", controlnet_conditioning_scale=0.3,
                         generator=torch.Generator().manual_seed(3), output_type="latent").images
    assert torch.allclose(last[0.3], expected, atol=1e-5)
    assert not torch.allclose(last[1.0], expected, atol=1e-3)  # the scale matters at this size: the check can fail


def test_missing_and_wrong_weights_are_named(tmp_path, weights):
    with pytest.raises(WeightsError, match="does not exist"):
        load_sd(tmp_path / "nothing")
    (tmp_path / "half" / "unet").mkdir(parents=True)
    with pytest.raises(WeightsError, match="no vae, text_encoder, tokenizer, scheduler"):
        load_sd(tmp_path / "half")
    single = tmp_path / "model.safetensors"
    single.write_bytes(b"")
    with pytest.raises(WeightsError, match="image.sd_config"):
        load_sd(single)


def test_a_controlnet_folder_given_twice_is_loaded_once(weights, tmp_path):
    # before: "depth:depth" and "depth:normals" (or the folder by another name) loaded the ControlNet twice,
    # each copy taking its memory in the model cache
    sd, _, depth = weights
    alias = tmp_path / "depth_again"
    alias.symlink_to(depth)
    pipe = build_pipeline(sd, [depth, str(depth) + "/", alias])
    nets = pipe.controlnets
    assert len(nets) == 3 and nets[0] is nets[1] is nets[2]
    assert model_bytes(pipe) == model_bytes(build_pipeline(sd, [depth]))
    out = pipe(PROMPT, [control(0), control(1), control(2)], num_inference_steps=1,
               generator=torch.Generator().manual_seed(0))  # each render still drives the shared module
    assert out.images.shape == (1, SIZE, SIZE, 3)


def test_with_cpu_offload_a_sampling_stopped_mid_way_still_frees_the_models(weights):
    # before: maybe_free_model_hooks (which, with cpu_offload, puts every model back on the CPU) ran only when the
    # call ended normally, so a cancel, a timeout or an error mid-sampling left the UNet and the ControlNets on the
    # GPU, holding its memory. No GPU here: the offload is armed on the CPU, and the free is counted as it runs
    sd, guidance, depth = weights
    pipe = build_pipeline(sd, [guidance, depth])
    pipe.enable_model_cpu_offload(device="cpu")
    freed = []
    free = pipe.maybe_free_model_hooks
    pipe.maybe_free_model_hooks = lambda: (freed.append(True), free())

    class Cancelled(Exception):
        pass

    def cancel(i, total, latents):
        raise Cancelled  # as a job's check_cancelled does from its step callback

    with pytest.raises(Cancelled):
        pipe(PROMPT, [control(0), control(1)], num_inference_steps=3, on_step=cancel)
    assert freed == [True]
    assert pipe(PROMPT, [control(0), control(1)], num_inference_steps=1).images.shape == (1, SIZE, SIZE, 3)
    assert freed == [True, True]


def test_attention_slicing_reaches_each_controlnet_of_several(weights):
    # before: diffusers slices the components that have set_attention_slice, and the MultiControlNetModel of two or
    # more ControlNets has none: the job's attention_slicing left their attention whole (one ControlNet was sliced)
    from diffusers.models.attention_processor import SlicedAttnProcessor

    sd, guidance, depth = weights

    def sliced(model) -> set[bool]:
        return {isinstance(p, SlicedAttnProcessor) for p in model.attn_processors.values()}

    for nets in ([guidance], [guidance, depth]):
        pipe = build_pipeline(sd, nets)
        pipe.enable_attention_slicing()
        assert sliced(pipe.unet) == {True}
        for net in pipe.controlnets:
            assert sliced(net) == {True}, nets
        pipe.disable_attention_slicing()  # (a cached pipeline serves jobs with it off too)
        assert all(sliced(model) == {False} for model in [pipe.unet, *pipe.controlnets])


def test_tas_moves_each_image_by_its_own_loss(pipe):
    """X̂_t = X_t − α ∇L with each image's own L: an image moves as it would alone, whatever the batch (the
    gradient of the batch's mean loss moved each image by α / batch)."""
    chosen = [c.index for c in hand_tokens(PROMPT, pipe.tokenizer)[0]]
    text, length = pipe.encode_text(PROMPT, "cpu")
    pipe.scheduler.set_timesteps(20)
    t = pipe.scheduler.timesteps[0]
    latents = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(4))
    both, losses, _ = tas.tas_update(pipe.unet, latents, t, text.repeat(2, 1, 1), length, chosen,
                                     alpha=tas.DEFAULT_STRENGTH)
    moved = both - latents
    assert moved.abs().max() > 0
    for k in range(2):
        alone, loss, _ = tas.tas_update(pipe.unet, latents[k:k + 1], t, text, length, chosen, alpha=tas.DEFAULT_STRENGTH)
        assert torch.allclose(moved[k:k + 1], alone - latents[k:k + 1], rtol=1e-2, atol=1e-3 * float(moved.abs().max()))
        assert torch.allclose(losses[k:k + 1], loss, atol=1e-6)


def test_the_pipeline_applies_tas_to_the_prompt_at_the_first_steps_with_a_step_size_over_all_steps(pipe, monkeypatch):
    """At each of the first tas_steps steps TAS gets the latents, the prompt's own embeddings and token count (not
    the negative prompt's, nor the guidance batch) and α_t = step_size(i, steps, tas_strength): falling from
    tas_strength to half of it over all the sampling steps, not over the TAS steps only. The first latents it sees
    are the seed's noise. (The outputs alone could not tell: the pipeline test checks only that TAS changes them.)"""
    calls = []
    real = tas.tas_update

    def watched(unet, latents, t, text, length, indices, alpha):  # the real update, its arguments kept
        calls.append((latents.clone(), text.clone(), length, list(indices), alpha))
        return real(unet, latents, t, text, length, indices, alpha)

    monkeypatch.setattr(tas, "tas_update", watched)
    chosen = [c.index for c in hand_tokens(PROMPT, pipe.tokenizer)[0]]
    out = pipe(PROMPT, [control()], negative_prompt="blurry", num_inference_steps=5, guidance_scale=7.5,
               num_images=2, generator=torch.Generator().manual_seed(2), tas_tokens=chosen, tas_strength=12.0,
               tas_steps=3)
    assert [c[4] for c in calls] == pytest.approx([12.0, 10.5, 9.0])  # 12 → 6 over the 5 steps
    assert [c[4] for c in calls] == pytest.approx([tas.step_size(i, 5, 12.0) for i in range(3)])
    text, length = pipe.encode_text(PROMPT, "cpu")
    for latents, embeddings, count, indices, _ in calls:
        assert torch.equal(embeddings, text.repeat(2, 1, 1)) and count == length == 10 and indices == chosen
    noise = torch.randn(2, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(calls[0][0], noise * pipe.scheduler.init_noise_sigma)
    with torch.no_grad():
        pipe.scheduler.set_timesteps(5)
        first = tas.tas_loss(tas.attention_scores(pipe.unet, noise, pipe.scheduler.timesteps[0], text.repeat(2, 1, 1),
                                                  length, chosen))
    assert out.tas_losses[0] == pytest.approx(first.tolist(), abs=1e-5)


def test_the_offline_vbg_rule_leaves_out_ing_nouns_and_ing_words_after_a_determiner(weights):
    """The lexicon rule's two exceptions: not right after a determiner ("the clapping crowd": an adjective there,
    "a crowd clapping" a verb), and not a common noun or preposition in -ing ("during", which the lexicon does
    not know, and "clothing", which it knows as "clothe" too). Before this test either could go unnoticed: the
    one example, "a painting", is both."""
    tok = tiny_sd.tokenizer(weights[0] / "tokenizer")

    def words(prompt: str) -> list[str]:
        chosen, tagger = hand_tokens(prompt, tok)
        assert tagger == "lexicon"
        return list(dict.fromkeys(c.word for c in chosen))

    assert words("the clapping crowd") == [] and words("a crowd clapping") == ["clapping"]
    assert words("hands up during warm clothing") == ["hands"]


def test_init_images_run_only_the_last_strength_of_the_steps_from_them(pipe):
    """Image-to-image (refine_hands' second pass): with init_images and strength s only the last round(s · steps)
    steps run, from the init images noised to that point, so the result depends on them. (The pipeline ran all
    the steps from the init images unnoticed here: only the job test's progress messages would tell.)"""
    def run(init, strength):
        steps = []
        out = pipe(PROMPT, [control()], num_inference_steps=4, generator=torch.Generator().manual_seed(5),
                   init_images=init, strength=strength, on_step=lambda i, n, latents: steps.append((i, n)))
        return out.images, steps

    start = control(7)[None]
    images, steps = run(start, 0.5)
    assert steps == [(0, 2), (1, 2)]
    assert run(start, 0.75)[1] == [(0, 3), (1, 3), (2, 3)] and len(run(start, 0.1)[1]) == 1
    assert np.array_equal(run(start, 0.5)[0], images)  # seeded
    assert not np.array_equal(run(control(9)[None], 0.5)[0], images)  # the init image is used


def diffusers_pipeline(pipe, kind: str):
    """diffusers' own ``StableDiffusionControlNetPipeline`` or ``StableDiffusionImg2ImgPipeline`` on ``pipe``'s parts:
    the oracle of what their models are given."""
    import diffusers

    parts = dict(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                 scheduler=pipe.scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    if kind == "controlnet":
        return diffusers.StableDiffusionControlNetPipeline(controlnet=pipe.controlnet, **parts)
    return diffusers.StableDiffusionImg2ImgPipeline(**parts)


def test_the_control_image_goes_to_the_controlnet_as_diffusers_prepares_it(pipe):
    """RGB in [0, 1], one copy per image and guidance half: what diffusers' StableDiffusionControlNetPipeline gives
    its ControlNets (its own prepare_image, not a processor set up here: its control image processor does not
    normalise to [−1, 1]). Compared directly: the tiny ControlNets barely feel their input's range, so the
    comparisons of whole pipelines above pass with a [−1, 1] control image."""
    from PIL import Image

    image = control(6)
    expected = diffusers_pipeline(pipe, "controlnet").prepare_image(
        Image.fromarray(image), width=SIZE, height=SIZE, batch_size=2, num_images_per_prompt=1, device="cpu",
        dtype=torch.float32, do_classifier_free_guidance=True)
    got = pipe.control_tensor(image, 4, "cpu", torch.float32)
    assert got.shape == expected.shape == (4, 3, SIZE, SIZE)
    assert torch.allclose(got, expected, atol=1e-6)
    assert float(got.min()) >= 0 and float(got.max()) > 0.9  # (the oracle itself in [0, 1])


def test_the_init_images_go_to_the_vae_as_diffusers_img2img_prepares_them(pipe, monkeypatch):
    """refine_hands' image-to-image pass encodes its init images in [−1, 1], as diffusers' StableDiffusionImg2-
    ImgPipeline's image processor gives its VAE. (The test of init_images checks only that they change the result,
    which images in [0, 1] would too.)"""
    from PIL import Image

    seen = []
    real = type(pipe.vae).encode

    def watched(vae, pixels, *args, **kwargs):
        seen.append(pixels.clone())
        return real(vae, pixels, *args, **kwargs)

    monkeypatch.setattr(type(pipe.vae), "encode", watched)
    images = np.stack([control(7), control(8)])
    pipe(PROMPT, [control()], num_inference_steps=2, num_images=2, generator=torch.Generator().manual_seed(5),
         init_images=images, strength=0.5)
    expected = diffusers_pipeline(pipe, "img2img").image_processor.preprocess([Image.fromarray(i) for i in images])
    assert len(seen) == 1 and seen[0].shape == expected.shape == (2, 3, SIZE, SIZE)
    assert torch.allclose(seen[0], expected, atol=1e-6)
    assert float(expected.min()) < -0.9  # (the oracle itself in [−1, 1])


def test_cancel_points_end_a_step_within_its_blocks_and_go_with_their_block(pipe):
    """A job's check runs before each ResNet block and attention of the UNet and ControlNets: a step at 2048² on a
    CPU took 4½ minutes, and a cancel or timeout waited for its end (the fuzzing of 2026-12-07)."""
    from handforge.engines.image.cancel_points import cancel_points

    class Stopped(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) == 5:  # the fifth block of the first step's first network
            raise Stopped

    with pytest.raises(Stopped), cancel_points(check, pipe.unet, *pipe.controlnets):
        pipe(PROMPT, [control()], num_inference_steps=2, generator=torch.Generator().manual_seed(1))
    assert len(calls) == 5
    with cancel_points(lambda: calls.append(1), pipe.unet, *pipe.controlnets):  # every block of both networks
        pipe(PROMPT, [control()], num_inference_steps=1, generator=torch.Generator().manual_seed(1))
    per_step = len(calls) - 5
    blocks = sum(type(m).__name__ in ("ResnetBlock2D", "Attention") for net in (pipe.unet, *pipe.controlnets)
                 for m in net.modules())
    assert per_step >= blocks > 5, (per_step, blocks)
    pipe(PROMPT, [control()], num_inference_steps=1, generator=torch.Generator().manual_seed(1))
    assert len(calls) - 5 == per_step  # the hooks went with their block
