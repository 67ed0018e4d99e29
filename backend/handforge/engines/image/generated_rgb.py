"""Generated images as the labelled export's RGB (``[render] engine = "generate"``): a labelled
dataset of generated images is one ``handforge export`` command.

``GeneratedRGB`` is the export's ``rgb(scene, camera, hands)`` callable: it draws the control images
of the sample's hands through the sample's camera with ``conditioning.render_view`` (the same GL
renderer and camera model as the labels, so they agree pixel for pixel) and runs the image engine's
``HandImagePipeline`` on them. The prompt and the noise seed come from the sample's own generator,
after everything the labels use has been drawn: a sample's image is the same whichever worker makes
it, and its labels are those of the same spec with ``engine = "none"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from handforge import config
from handforge.engines.image.settings import CONTROLNETS, GUIDANCE, SD_CONFIG, SD_MODEL
from handforge.export.spec import GenerateSettings, SpecError
from handforge.runtime import default_device, torch_dtype, torch_threads


def _what_it_holds(value: str | None, folder: bool = False) -> str:
    """What a weights setting holds now, and why it does not do ("now /nope" said neither)."""
    if not value:
        return "it is unset"
    path = Path(value).expanduser()
    why = "which is not there" if not path.exists() else "which is a file, not a folder" if folder else ""
    return f"it is {value}, {why}".rstrip(", ")


def engine_weights(settings: GenerateSettings) -> tuple[list[str], list[str]]:
    """The ControlNet weights of ``settings.engine`` and the render kind each takes; a SpecError that
    names the setting to configure when they are missing."""
    from handforge.engines.image.controls import ControlError, resolve

    sd = config.value(SD_MODEL.key)
    if not sd or not Path(sd).expanduser().exists():
        raise SpecError(f"generate.engine = {settings.engine!r} needs Stable Diffusion 1.x weights: set "
                        f"{SD_MODEL.key} (env {SD_MODEL.env}); {_what_it_holds(sd)} (`handforge models list` says "
                        "what each engine needs)")
    if settings.engine == "attentionhand":
        guidance = config.value(GUIDANCE.key)
        if not guidance or not Path(guidance).expanduser().exists():
            raise SpecError(f"generate.engine = 'attentionhand' needs the guidance module: set {GUIDANCE.key} "
                            f"(env {GUIDANCE.env}); {_what_it_holds(guidance)}")
        return [str(guidance)], ["mesh"]
    folder = config.value(CONTROLNETS.key)
    if not folder or not Path(folder).expanduser().is_dir():
        raise SpecError(f"generate.engine = 'controlnet' needs ControlNets: set {CONTROLNETS.key} (env "
                        f"{CONTROLNETS.env}) to a folder of ControlNet folders; {_what_it_holds(folder, folder=True)}")
    try:
        controls = resolve(list(settings.controls), folder)
    except ControlError as exc:
        raise SpecError(f"generate.controls: {exc}") from None
    return [str(c.path) for c in controls], [c.kind for c in controls]


def prompt_warnings(settings: GenerateSettings) -> list[str]:
    """A warning per prompt (and the negative prompt) longer than the text encoder reads: its end is
    dropped from every image while the labels and the card record it whole. None when the tokenizer
    cannot be read (the pipeline's load then says why)."""
    from transformers import CLIPTokenizer

    from handforge.engines.image.tokens import truncated

    sd = Path(str(config.value(SD_MODEL.key))).expanduser()
    folder = sd if sd.is_dir() else Path(str(config.value(SD_CONFIG.key) or "")).expanduser()
    try:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), subfolder="tokenizer", local_files_only=True)
    except Exception:  # noqa: BLE001 - transformers and tokenizers raise many kinds
        return []
    from transformers.utils import logging as transformers_logging

    named = [(f"generate.prompts[{k}]", p) for k, p in enumerate(settings.prompts)]
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its own "sequence length is longer" note: ours says more
    try:
        return [w for name, text in named + [("generate.negative_prompt", settings.negative_prompt)]
                for w in truncated(tokenizer, text, name)]
    finally:
        transformers_logging.set_verbosity(verbosity)


def weights_identity(settings: GenerateSettings, device: str | None = None) -> dict[str, Any]:
    """Which weights make a dataset's generated images: the SD model and the ControlNets or guidance
    module, as resolved paths (a resume with others would mix two models' images under one card), and the
    kind of device and the dtype they run in (``device``: where the images are made, default this process's
    ``default_device``): the same seed draws other noise on a GPU than on the CPU, in float16 there, so a
    dataset begun on one and resumed on the other mixed images its seeds cannot reproduce. Paths, not
    contents: weights replaced in place are not seen."""
    weights, _ = engine_weights(settings)
    resolved = lambda path: str(Path(path).expanduser().resolve())  # noqa: E731
    device = device or default_device()
    return {"sd_model": resolved(config.value(SD_MODEL.key)), "sd_config": str(config.value(SD_CONFIG.key) or ""),
            "controlnets": [resolved(w) for w in weights], "device": device.split(":")[0],
            "dtype": str(torch_dtype("auto", device)).removeprefix("torch.")}


def card_fields(settings: GenerateSettings, samples: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """What the dataset card records of the generated images: engine, weights, prompts, sampling and,
    with ``keep_below_px``, which samples passed the alignment check (none is dropped). ``samples``:
    the labels, read once, and only with ``keep_below_px``."""
    weights, kinds = engine_weights(settings)
    card = {"engine": settings.engine, "sd_model": str(config.value(SD_MODEL.key)), "controlnets": weights,
            "controls": kinds, "prompts": list(settings.prompts), "negative_prompt": settings.negative_prompt,
            "steps": settings.steps, "guidance_scale": settings.guidance_scale,
            "control_scale": settings.control_scale, "tas": settings.tas, "seed": settings.seed}
    if settings.keep_below_px:
        checked, failed = 0, []
        for sample in samples:
            alignment = sample.get("generated", {}).get("alignment")
            if alignment is not None:
                checked += 1
                if not alignment["passed"]:
                    failed.append(sample["index"])
        card["alignment"] = {"keep_below_px": settings.keep_below_px, "checked": checked,
                             "passed": checked - len(failed), "failed_samples": failed}
    return {"generate": card}


# torch's CPU kernels split some sums by thread, so the float results (and after 20 steps, pixels)
# depend on the thread count, which the worker pools set by the number of workers: on the CPU the
# pipeline runs with this fixed count so the dataset is the same bytes however it is spread.
CPU_THREADS = 1


class GeneratedRGB:
    """``rgb(scene, camera, hands) -> (H, W, 4)`` float RGBA (alpha 1): one generated image per sample.
    The pipeline is loaded once, at construction. It is given the hands alone, as image.generate is
    (``export.run.draws_forearms``: no forearm for generated RGB)."""

    def __init__(self, settings: GenerateSettings, device: str | None = None):
        from handforge.engines.image.loading import WeightsError, build_pipeline

        self.settings = settings
        self.sample_labels: dict[str, Any] = {}  # the last image's prompt and seed, for its labels.json
        self.weights, self.kinds = engine_weights(settings)
        if settings.keep_below_px:  # fail before loading the pipeline, not at the first sample
            from handforge.evaluation.landmarks import LandmarkError, detect

            try:
                detect(np.zeros((8, 8, 3), np.uint8))
            except LandmarkError as exc:
                raise SpecError(f"generate.keep_below_px: {exc}") from None
        self.device = device or default_device()
        dtype = torch_dtype("auto", self.device)
        try:
            self.pipe = build_pipeline(config.value(SD_MODEL.key), self.weights, config.value(SD_CONFIG.key),
                                       dtype=dtype, device=self.device)
        except WeightsError as exc:
            raise SpecError(f"{exc} (check {SD_MODEL.key}, {GUIDANCE.key} and {CONTROLNETS.key}: "
                            "handforge models check)") from None

    def draw(self, scene) -> tuple[str, int]:
        """The sample's prompt and noise seed, from its own generator (the labels have drawn theirs)."""
        rng = getattr(scene, "rng", None) or np.random.default_rng(scene.index)
        prompt = self.settings.prompts[int(rng.integers(len(self.settings.prompts)))]
        return prompt, (self.settings.seed + int(rng.integers(2**62))) % 2**63  # a seed torch takes

    def __call__(self, scene, camera, hands) -> np.ndarray:
        import torch

        from handforge.engines.image.conditioning import render_view
        from handforge.engines.image.tokens import hand_tokens

        view = render_view(camera, hands)
        prompt, seed = self.draw(scene)
        tokens = hand_tokens(prompt, self.pipe.tokenizer)[0] if self.settings.tas else []
        steps = self.settings.steps
        with torch_threads(CPU_THREADS if self.device.startswith("cpu") else None):
            out = self.pipe(prompt, [view.images[k] for k in self.kinds], negative_prompt=self.settings.negative_prompt,
                            num_inference_steps=steps, guidance_scale=self.settings.guidance_scale,
                            control_scales=self.settings.control_scale,
                            generator=torch.Generator(device=self.device).manual_seed(seed),
                            tas_tokens=[t.index for t in tokens], tas_steps=steps // 2 if tokens else 0)
        self.sample_labels = {"prompt": prompt, "seed": seed, "engine": self.settings.engine, "controls": self.kinds}
        rgb = out.images[0].astype(np.float32) / 255.0
        return np.concatenate([rgb, np.ones(rgb.shape[:2] + (1,), np.float32)], axis=-1)

    def describe_sample(self, image: np.ndarray, record: dict[str, Any]) -> dict[str, Any]:
        """The ``generated`` entry of the last image's labels: prompt, seed, engine, controls and, with
        ``keep_below_px``, MediaPipe's agreement with the labels and whether it passed."""
        out = dict(self.sample_labels)
        if self.settings.keep_below_px:
            from handforge.evaluation.image_alignment import evaluate_image, passes

            result = evaluate_image(image, record)
            out["alignment"] = {**result, "keep_below_px": self.settings.keep_below_px,
                                "passed": passes(result, self.settings.keep_below_px)}
        return out

    def __enter__(self) -> "GeneratedRGB":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.pipe = None


def rgb_source(spec, blender_timeout: float | None = None, slow_hint: str | None = None):
    """The export's RGB source of ``spec`` as a context manager: Blender or the image engines.
    ``blender_timeout``: seconds Blender may take for one render before it is stopped as hung (``BlenderRGB``'s
    default unless given); ``slow_hint``: what to do if renders are that slow (``BlenderRGB``'s)."""
    if spec.render.engine == "generate":
        return GeneratedRGB(spec.generate)
    from handforge.render.blender import BlenderRGB

    return BlenderRGB(spec.render.engine, spec.render.samples, antialiasing=spec.render.antialiasing,
                      **({} if blender_timeout is None else {"timeout": blender_timeout}),
                      **({} if slow_hint is None else {"slow_hint": slow_hint}))


__all__ = ["GeneratedRGB", "card_fields", "engine_weights", "rgb_source"]
