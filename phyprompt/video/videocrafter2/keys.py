"""The original checkpoint's tensor names mapped onto this port's modules.

The original (`model.ckpt`, a LatentDiffusion state dict)       this port (`VideoCrafter2` module)
    model.diffusion_model.*                                      unet.*            (same names below)
    first_stage_model.*    (LDM autoencoder)                     vae.*             (diffusers AutoencoderKL)
    cond_stage_model.model.* (OpenCLIP text tower)               text_encoder.* (CLIPTextModel's names)
    betas, alphas_cumprod, …, scale_arr                          schedule.*

Besides renaming: OpenCLIP packs q/k/v into `attn.in_proj_weight`/`in_proj_bias` (split in three), and the
autoencoder's middle attention uses 1x1 convolutions where diffusers uses linear layers (squeezed).

Three groups of original tensors are used by nothing the original computes, and are the only ones left out
(`UNUSED`): the text tower's last block (the "penultimate" layer is taken), its `text_projection` and
`logit_scale` (CLIP's contrastive head). Everything else must fit exactly (checkpoints.load_into).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from ...infra.checkpoints import CheckpointError, rename_keys
from .schedule import BUFFERS

UNET, VAE, TEXT = "model.diffusion_model.", "first_stage_model.", "cond_stage_model.model."
SCHEDULE = (*BUFFERS, "scale_arr")
DEEPSPEED_PREFIX = "_forward_module."  # what the original strips from a DeepSpeed checkpoint's `module` keys

_TEXT_RULES = [
    (r"^token_embedding\.", "embeddings.token_embedding."),
    (r"^positional_embedding$", "embeddings.position_embedding.weight"),
    (r"^transformer\.resblocks\.(\d+)\.", r"encoder.layers.\1."),
    (r"\.ln_1\.", ".layer_norm1."), (r"\.ln_2\.", ".layer_norm2."),
    (r"\.attn\.out_proj\.", ".self_attn.out_proj."), (r"\.attn\.in_proj_", ".self_attn.in_proj_"),
    (r"\.mlp\.c_fc\.", ".mlp.fc1."), (r"\.mlp\.c_proj\.", ".mlp.fc2."),
    (r"^ln_final\.", "final_layer_norm."),
]


def _vae_rules(levels: int) -> list:
    return [
        (r"^encoder\.down\.(\d+)\.block\.", r"encoder.down_blocks.\1.resnets."),
        (r"^encoder\.down\.(\d+)\.downsample\.", r"encoder.down_blocks.\1.downsamplers.0."),
        # the LDM decoder numbers its levels from the bottom, diffusers in the order they run
        (r"^decoder\.up\.(\d+)\.block\.", lambda m: f"decoder.up_blocks.{levels - 1 - int(m[1])}.resnets."),
        (r"^decoder\.up\.(\d+)\.upsample\.", lambda m: f"decoder.up_blocks.{levels - 1 - int(m[1])}.upsamplers.0."),
        (r"\.mid\.block_(\d)\.", lambda m: f".mid_block.resnets.{int(m[1]) - 1}."),
        (r"\.mid\.attn_1\.norm\.", ".mid_block.attentions.0.group_norm."),
        (r"\.mid\.attn_1\.([qkv])\.", r".mid_block.attentions.0.to_\1."),
        (r"\.mid\.attn_1\.proj_out\.", ".mid_block.attentions.0.to_out.0."),
        (r"\.nin_shortcut\.", ".conv_shortcut."),
        (r"\.norm_out\.", ".conv_norm_out."),
    ]


def unused_text_keys(state_dict: Mapping[str, torch.Tensor], layers: int) -> list[str]:
    """The original text tower's tensors the encoding never reads (see the module docstring)."""
    last = f"{TEXT}transformer.resblocks.{layers - 1}."
    return [k for k in state_dict
            if k.startswith(last) or k in (TEXT + "text_projection", TEXT + "logit_scale")]


def original_tensors(state_dict: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """A loaded checkpoint's tensors under the original names (a DeepSpeed `module`'s prefix dropped, as the
    original does). Raises CheckpointError for a checkpoint that is not a VideoCrafter text-to-video model
    (e.g. Stable Diffusion: no temporal layers, no OpenCLIP tower)."""
    if not any(k.startswith(UNET) for k in state_dict):
        state_dict = {k.removeprefix(DEEPSPEED_PREFIX): v for k, v in state_dict.items()}
    _check_model_kind(state_dict)
    return state_dict


def is_videocrafter2(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """Whether a checkpoint's tensor names are VideoCrafter2 text-to-video's (what `original_tensors` takes):
    another backend given this file by mistake asks, to say what the file is."""
    try:
        original_tensors(state_dict)
    except CheckpointError:
        return False
    return True


def to_port(state_dict: Mapping[str, torch.Tensor], vae_levels: int, text_layers_used: int) -> dict[str, torch.Tensor]:
    """`original_tensors` under this port's names."""
    blocks = {k.split(".")[4] for k in state_dict if k.startswith(TEXT + "transformer.resblocks.")}
    skip = set(unused_text_keys(state_dict, len(blocks))) if len(blocks) > text_layers_used else set()
    ported: dict[str, torch.Tensor] = {}
    leftover: dict[str, torch.Tensor] = {}
    text: dict[str, torch.Tensor] = {}
    vae: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key in skip:
            continue
        if key.startswith(UNET):
            ported["unet." + key[len(UNET):]] = tensor
        elif key.startswith(VAE):
            vae[key[len(VAE):]] = tensor
        elif key.startswith(TEXT):
            text[key[len(TEXT):]] = tensor
        elif key in SCHEDULE:
            ported["schedule." + key] = tensor
        else:
            leftover[key] = tensor  # reported as unexpected by the strict load
    for key, tensor in rename_keys(vae, _vae_rules(vae_levels)).items():
        if re.search(r"mid_block\.attentions\.0\.(to_[qkv]|to_out\.0)\.weight$", key):
            tensor = tensor.reshape(tensor.shape[:2])  # 1x1 conv -> linear
        ported["vae." + key] = tensor
    for key, tensor in rename_keys(text, _TEXT_RULES).items():
        if ".self_attn.in_proj_" in key:
            stem, kind = key.split(".self_attn.in_proj_")
            for name, part in zip(("q", "k", "v"), tensor.chunk(3, dim=0)):  # copies: safetensors refuses views
                ported[f"text_encoder.{stem}.self_attn.{name}_proj.{kind}"] = part.clone()
        else:
            ported["text_encoder." + key] = tensor
    return ported | leftover


def _check_model_kind(state_dict: Mapping[str, torch.Tensor]) -> None:
    if not any(k.startswith(UNET) for k in state_dict):
        raise CheckpointError("this is not an LDM checkpoint: no model.diffusion_model.* tensors (is it a "
                              "VideoCrafter2 model.ckpt?)")
    if not any(".temopral_conv." in k or ".init_attn." in k for k in state_dict):
        what = ("a Stable Diffusion (image) checkpoint" if any(k.startswith("cond_stage_model.transformer.")
                                                                for k in state_dict)
                else "an image model: its UNet has no temporal layers")
        raise CheckpointError(f"this is {what}, not VideoCrafter2 text-to-video; load VideoCrafter/VideoCrafter2 "
                              "model.ckpt")
    if not any(k.startswith(TEXT) for k in state_dict):
        raise CheckpointError("this checkpoint has no OpenCLIP text encoder (cond_stage_model.model.*); it is not "
                              "VideoCrafter2 text-to-video")
