"""Sampling: Stable Diffusion 1.x + ControlNet-style guidance (+ optional TAS), a diffusers pipeline.

``HandImagePipeline`` is a ``diffusers.DiffusionPipeline`` (so attention slicing, model CPU offload
and device moves come from diffusers) whose loop is diffusers' ``StableDiffusionControlNetPipeline``
loop (classifier-free guidance with the negative prompt first, control residuals added to the UNet,
the scheduler's step) plus one thing: at the first ``tas_steps`` steps the latents are moved by the
text attention stage (``tas.py``) before the step, as AttentionHand places TAS before its visual
attention stage (Park et al., ECCV 2024, arXiv:2407.18034, Fig. 3). With TAS off the outputs equal
diffusers' pipeline's for the same weights, seed and steps (``benchmarks/image.py`` checks it).

For the ``attentionhand`` engine, ``controlnet`` is the guidance module (one ControlNetModel: the
paper's global and local branches share its weights) and the control image the mesh image; for the
``controlnet`` engine it is any list of SD 1.x ControlNets with their control images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel
from diffusers.utils.torch_utils import randn_tensor

from handforge.engines.image import tas

# Linear latent → RGB approximation of SD 1.x's VAE for cheap previews (factors fitted by Keturn,
# https://discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204).
LATENT_RGB = torch.tensor([[0.298, 0.207, 0.208], [0.187, 0.286, 0.173], [-0.158, 0.189, 0.264],
                           [-0.184, -0.271, -0.473]])


def latent_preview(latents: torch.Tensor) -> np.ndarray:
    """(N, h, w, 3) uint8 previews at latent resolution (an eighth of the image's side)."""
    rgb = torch.einsum("nchw,cr->nhwr", latents.float().cpu(), LATENT_RGB)
    return ((rgb + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).numpy()


@dataclass
class Generated:
    images: np.ndarray                 # (N, H, W, 3) uint8
    # per TAS step, per image: L before the update, or None where the update was skipped (a loss or gradient not
    # finite: float16 overflow); None, not NaN, as the job's result is JSON and refuses NaN
    tas_losses: list[list[float | None]] = field(default_factory=list)


class HandImagePipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->unet->vae"

    def __init__(self, vae, text_encoder, tokenizer, unet, controlnet, scheduler) -> None:
        super().__init__()
        if isinstance(controlnet, (list, tuple)):
            controlnet = MultiControlNetModel(list(controlnet))
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              controlnet=controlnet, scheduler=scheduler)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        for module in (vae, text_encoder, unet, controlnet):
            module.requires_grad_(False)  # frozen: TAS differentiates the latents only

    @property
    def controlnets(self) -> list:
        net = self.controlnet
        return list(net.nets) if isinstance(net, MultiControlNetModel) else [net]

    def set_attention_slice(self, slice_size: int | str | None) -> None:
        """diffusers' attention slicing (``enable_attention_slicing``, and off with None), reaching each ControlNet
        of several too: diffusers slices the components that have this method, and MultiControlNetModel has none
        (two or more ControlNets computed their attention whole)."""
        super().set_attention_slice(slice_size)
        if isinstance(self.controlnet, MultiControlNetModel):
            for net in self.controlnets:
                net.set_attention_slice(slice_size)

    def encode_text(self, prompt: str, device) -> tuple[torch.Tensor, int]:
        """(1, 77, d) embeddings and the prompt's token count (start/end tokens excluded, truncated)."""
        ids = self.tokenizer(prompt, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        length = len(self.tokenizer(prompt, truncation=True, max_length=self.tokenizer.model_max_length)
                         .input_ids) - 2
        return self.text_encoder(ids.to(device))[0], length

    def control_tensor(self, image: np.ndarray, count: int, device, dtype) -> torch.Tensor:
        """(H, W, 3) uint8 → (count, 3, H, W) in [0, 1] (ControlNet's input range)."""
        tensor = torch.tensor(image, dtype=torch.float32).permute(2, 0, 1).div(255.0)  # a copy: inputs may be read-only
        return tensor[None].expand(count, -1, -1, -1).to(device=device, dtype=dtype)

    @torch.no_grad()
    def __call__(self, prompt: str, control_images: Sequence[np.ndarray], negative_prompt: str = "",
                 num_inference_steps: int = 20, guidance_scale: float = 7.5,
                 control_scales: float | Sequence[float] = 1.0, num_images: int = 1,
                 generator: torch.Generator | list[torch.Generator] | None = None, tas_tokens: Sequence[int] = (),
                 tas_strength: float = tas.DEFAULT_STRENGTH, tas_steps: int = 0,
                 on_step: Callable[[int, int, torch.Tensor], None] | None = None, eta: float = 0.0,
                 init_images: np.ndarray | None = None, strength: float = 1.0) -> Generated:
        """``init_images`` (num_images, H, W, 3) uint8 with ``strength`` < 1: start from them noised to
        that fraction of the schedule (image-to-image, as diffusers' img2img pipelines) and run only
        the remaining steps. ``generator``: one, or one per image (as diffusers' pipelines take them), each image then
        drawing from its own only."""
        nets = self.controlnets
        if len(control_images) != len(nets):
            raise ValueError(f"{len(nets)} ControlNet(s) need as many control images, got {len(control_images)}")
        height, width = control_images[0].shape[:2]
        if height % 8 or width % 8:
            raise ValueError(f"image size {width}×{height}: both sides must be multiples of 8")
        # with cpu_offload the models go back to the CPU after a cancel, a timeout or an error too (they were
        # left on the GPU, the UNet and ControlNets holding its memory until the next job)
        try:
            device, dtype = self._execution_device, self.unet.dtype
            cfg = guidance_scale > 1.0
            text, text_length = self.encode_text(prompt, device)
            negative, _ = self.encode_text(negative_prompt, device)
            cond = text.repeat(num_images, 1, 1).to(dtype)
            embeddings = torch.cat([negative.repeat(num_images, 1, 1).to(dtype), cond]) if cfg else cond
            copies = 2 * num_images if cfg else num_images
            controls = [self.control_tensor(img, copies, device, self.controlnet.dtype) for img in control_images]
            scales = list(control_scales) if isinstance(control_scales, Sequence) else \
                [float(control_scales)] * len(nets)

            self.scheduler.set_timesteps(num_inference_steps, device=device)
            shape = (num_images, self.unet.config.in_channels, height // self.vae_scale_factor,
                     width // self.vae_scale_factor)
            timesteps = self.scheduler.timesteps
            noise = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
            if init_images is None:
                latents = noise * self.scheduler.init_noise_sigma
            else:
                kept = min(len(timesteps), max(1, round(len(timesteps) * strength)))
                timesteps = timesteps[len(timesteps) - kept:]
                pixels = image_tensor(init_images).permute(0, 3, 1, 2).to(device, self.vae.dtype)
                encoded = self.vae.encode(pixels / 127.5 - 1.0).latent_dist.sample(generator)
                latents = self.scheduler.add_noise(encoded.to(dtype) * self.vae.config.scaling_factor, noise,
                                                   timesteps[:1])
            step_kwargs = {"eta": eta, "generator": generator} if "eta" in _step_parameters(self.scheduler) else {}
            tas_losses = []
            for i, t in enumerate(timesteps):
                if tas_tokens and i < tas_steps:
                    alpha = tas.step_size(i, len(timesteps), tas_strength)
                    latents, loss, skipped = tas.tas_update(self.unet, latents, t, cond, text_length, tas_tokens,
                                                            alpha)
                    tas_losses.append([None if s else v for v, s in zip(loss.float().cpu().tolist(),
                                                                         skipped.cpu().tolist())])
                model_input = torch.cat([latents] * 2) if cfg else latents
                model_input = self.scheduler.scale_model_input(model_input, t)
                if len(nets) == 1:
                    down, mid = nets[0](model_input, t, encoder_hidden_states=embeddings, controlnet_cond=controls[0],
                                        conditioning_scale=scales[0], return_dict=False)
                else:
                    down, mid = self.controlnet(model_input, t, encoder_hidden_states=embeddings,
                                                controlnet_cond=controls, conditioning_scale=scales, return_dict=False)
                noise = self.unet(model_input, t, encoder_hidden_states=embeddings,
                                  down_block_additional_residuals=down, mid_block_additional_residual=mid,
                                  return_dict=False)[0]
                if cfg:
                    uncond, conditioned = noise.chunk(2)
                    noise = uncond + guidance_scale * (conditioned - uncond)
                latents = self.scheduler.step(noise, t, latents, **step_kwargs, return_dict=False)[0]
                if on_step is not None:
                    on_step(i, len(timesteps), latents)
            decoded = self.vae.decode(latents / self.vae.config.scaling_factor, return_dict=False,
                                      generator=generator)[0]
            images = ((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
            return Generated(images.permute(0, 2, 3, 1).cpu().numpy(), tas_losses)
        finally:
            self.maybe_free_model_hooks()


def _step_parameters(scheduler) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)


def image_tensor(pixels: np.ndarray) -> torch.Tensor:
    """A tensor copy of uint8 pixels: arrays from the wire are read-only, and ``torch.from_numpy`` of one warned
    (UserWarning: "The given NumPy array is not writable") in the server's log at the first image of a run."""
    return torch.tensor(np.asarray(pixels))


def image_generators(seed: int, batch: int, device) -> list[torch.Generator]:
    """One generator per image of a batch, the k-th seeded seed + k, which a refine pass goes on drawing from: each
    image depends on its own seed only, whatever the batch (image.generate's and image.transfer's). (One generator
    for the batch drew each image's noise after the images before it, so an image changed with the batch size.)"""
    return [torch.Generator(device=device).manual_seed(seed + k) for k in range(batch)]


__all__ = ["LATENT_RGB", "Generated", "HandImagePipeline", "image_generators", "image_tensor", "latent_preview"]
