"""A diffusers SD 1.x folder (``tiny_sd``'s) written as ONE ``.safetensors`` in the original
CompVis/LDM layout that single-file SD 1.x checkpoints come in (``v1-5-pruned-emaonly.safetensors``):
``model.diffusion_model.*`` (the UNet), ``first_stage_model.*`` (the VAE), ``cond_stage_model.transformer.*``
(the CLIP text encoder), beside the LDM's noise-schedule buffers. The names are renamed from the diffusers
ones by the layout alone (no model is built), the reverse of what diffusers' ``from_single_file`` reads."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

UNET, VAE, TEXT = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer."

# A diffusers resnet's layers in an LDM ResBlock: in_layers = (GroupNorm, SiLU, conv), emb_layers = (SiLU,
# Linear), out_layers = (GroupNorm, SiLU, Dropout, conv); the skip's 1x1 conv where the channels change
UNET_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
               "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}
# The VAE's mid-block attention: separate 1x1 convs in the LDM, linear layers in diffusers
VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(rest: str, names: dict[str, str]) -> str:
    """``rest`` (``layer.param``) with its layer named as in ``names``."""
    layer, param = rest.rsplit(".", 1)
    return f"{names.get(layer, layer)}.{param}"


def unet_keys(state: dict[str, torch.Tensor], layers_per_block: int, up_attention: set[int]) -> dict[str, torch.Tensor]:
    """The UNet's tensors under their LDM names. The LDM numbers the down path's modules in one list
    (``input_blocks``: conv_in, then per level its resnets (+ attentions) and its downsampler) and the up
    path's in another (``output_blocks``: per level its ``layers_per_block + 1`` resnets, the level's
    upsampler after the last one's attention, if any). ``up_attention``: the up levels with attentions."""
    step = layers_per_block + 1
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    out = {}
    for key, tensor in state.items():
        part = key.split(".")
        if part[0] == "down_blocks":
            level, kind = int(part[1]), part[2]
            if kind == "downsamplers":  # down_blocks.L.downsamplers.0.conv.* -> its own input block's "op"
                name = f"input_blocks.{1 + level * step + layers_per_block}.0.op.{'.'.join(part[5:])}"
            else:
                block = f"input_blocks.{1 + level * step + int(part[3])}"
                rest = ".".join(part[4:])
                name = f"{block}.0.{_rename(rest, UNET_RESNET)}" if kind == "resnets" else f"{block}.1.{rest}"
        elif part[0] == "up_blocks":
            level, kind = int(part[1]), part[2]
            if kind == "upsamplers":  # after the level's last resnet (and its attention)
                slot = 2 if level in up_attention else 1
                name = f"output_blocks.{level * step + layers_per_block}.{slot}.conv.{'.'.join(part[5:])}"
            else:
                block = f"output_blocks.{level * step + int(part[3])}"
                rest = ".".join(part[4:])
                name = f"{block}.0.{_rename(rest, UNET_RESNET)}" if kind == "resnets" else f"{block}.1.{rest}"
        elif part[0] == "mid_block":  # middle_block: resnet, attention, resnet
            index = {"resnets": {"0": 0, "1": 2}, "attentions": {"0": 1}}[part[1]][part[2]]
            rest = ".".join(part[3:])
            name = f"middle_block.{index}.{_rename(rest, UNET_RESNET) if part[1] == 'resnets' else rest}"
        else:
            layer, param = key.rsplit(".", 1)
            name = f"{fixed[layer]}.{param}"
        out[UNET + name] = tensor
    return out


def vae_keys(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """The VAE's tensors under their LDM names: ``down.L.block.J`` / ``up.L.block.J`` with the decoder's
    levels numbered from the lowest resolution up (diffusers' up_blocks.0 is the LDM's up.{levels-1}),
    ``mid.block_1/2`` and ``mid.attn_1`` (whose linear layers are 1x1 convs there), ``norm_out``."""
    out = {}
    for key, tensor in state.items():
        part = key.split(".")
        coder = part[0]
        if part[1] in ("down_blocks", "up_blocks"):
            level = int(part[2]) if part[1] == "down_blocks" else levels - 1 - int(part[2])
            path = "down" if part[1] == "down_blocks" else "up"
            if part[3] in ("downsamplers", "upsamplers"):
                name = f"{coder}.{path}.{level}.{'downsample' if path == 'down' else 'upsample'}.conv.{part[-1]}"
            else:
                rest = ".".join(part[5:]).replace("conv_shortcut", "nin_shortcut")
                name = f"{coder}.{path}.{level}.block.{part[4]}.{rest}"
        elif part[1] == "mid_block":
            if part[2] == "resnets":
                name = f"{coder}.mid.block_{int(part[3]) + 1}.{'.'.join(part[4:])}"
            else:
                name = f"{coder}.mid.attn_1.{_rename('.'.join(part[4:]), VAE_ATTENTION)}"
                if tensor.ndim == 2:
                    tensor = tensor[:, :, None, None]
        elif part[1] == "conv_norm_out":
            name = f"{coder}.norm_out.{part[2]}"
        else:  # encoder/decoder conv_in, conv_out; quant_conv, post_quant_conv: the same names
            name = key
        out[VAE + name] = tensor
    return out


def text_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The CLIP text encoder's tensors as the LDM's FrozenCLIPEmbedder held the transformers model: under
    ``transformer.text_model.`` (transformers 5 saves the model without the ``text_model.`` level), with the
    ``position_ids`` buffer SD 1.x checkpoints carry."""
    out = {TEXT + (key if key.startswith("text_model.") else f"text_model.{key}"): t for key, t in state.items()}
    positions = out[TEXT + "text_model.embeddings.position_embedding.weight"].shape[0]
    out[TEXT + "text_model.embeddings.position_ids"] = torch.arange(positions)[None]
    return out


def schedule_buffers(steps: int = 1000) -> dict[str, torch.Tensor]:
    """A few of the LDM's noise-schedule buffers (SD 1.x's scaled-linear betas), top level in its checkpoints:
    a loader must pass over them."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, steps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, 0)
    return {"betas": betas.float(), "alphas_cumprod": alphas_cumprod.float(),
            "sqrt_one_minus_alphas_cumprod": (1 - alphas_cumprod).sqrt().float()}


def ema_keys(unet: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The UNet's original-layout tensors as the LDM's EMA copy names them beside the trained ones (SD 1.x's
    'v1-5-pruned.safetensors': ``model_ema.`` and the name after ``model.`` without its dots), with its
    ``decay`` and ``num_updates``."""
    return {"model_ema." + k[len("model."):].replace(".", ""): t for k, t in unet.items()} | {
        "model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(470000, dtype=torch.int32)}


def write_single_file(sd: Path, file: Path, dtype: torch.dtype | None = None, ema: Path | None = None) -> Path:
    """The diffusers SD 1.x folder ``sd`` as one original-layout ``file`` (its floats in ``dtype``, as saved
    when None); ``ema``: another such folder whose UNet is added as the EMA copy (``ema_keys``)."""
    sd = Path(sd)
    unet = json.loads((sd / "unet" / "config.json").read_text())
    vae = json.loads((sd / "vae" / "config.json").read_text())

    def unet_of(folder: Path) -> dict[str, torch.Tensor]:
        return unet_keys(load_file(folder / "unet" / "diffusion_pytorch_model.safetensors"), unet["layers_per_block"],
                         {i for i, kind in enumerate(unet["up_block_types"]) if "CrossAttn" in kind})

    tensors = {
        **unet_of(sd),
        **(ema_keys(unet_of(Path(ema))) if ema is not None else {}),
        **vae_keys(load_file(sd / "vae" / "diffusion_pytorch_model.safetensors"), len(vae["block_out_channels"])),
        **text_keys(load_file(sd / "text_encoder" / "model.safetensors")),
        **schedule_buffers(),
    }
    if dtype is not None:
        tensors = {k: t.to(dtype) if t.is_floating_point() else t for k, t in tensors.items()}
    save_file({k: t.contiguous() for k, t in tensors.items()}, file)
    return Path(file)
