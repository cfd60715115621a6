"""A tiny, random VideoCrafter2 written at test time in the ORIGINAL release's layout: `model.ckpt` (a
torch.save pickle of {"state_dict": ..., "epoch": ...} with LatentDiffusion's names: model.diffusion_model.*,
first_stage_model.* in LDM's autoencoder names, cond_stage_model.model.* in OpenCLIP's names with packed q/k/v
and the text tower's unused last block and contrastive head, and the schedule buffers) and `model.yaml` beside
it in the original inference YAML's shape.

The names are produced by undoing the port's key map here, independently of phyprompt's keys.py, so loading
the file exercises that map; the text tower uses the real OpenCLIP vocabulary size (49,408 rows of 64), as
the port's tokenizer is the real one.
"""

from __future__ import annotations

import os
import re

# 2 UNet levels (latents a multiple of 2), a VAE with 4 levels (x8, as the real one): 64x64 pixels is 8x8 latents
UNET = dict(in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[2, 1], num_res_blocks=1,
            channel_mult=[1, 2], num_head_channels=16, transformer_depth=1, context_dim=64, use_linear=True,
            use_checkpoint=True, temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
            use_relative_position=False, use_causal_attention=False, temporal_length=3, addition_attention=True,
            fps_cond=True)
DDCONFIG = dict(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32, ch_mult=[1, 1, 1, 1],
                num_res_blocks=1, attn_resolutions=[], dropout=0.0)
TEXT_WIDTH, TEXT_LAYERS = 64, 3
# OpenCLIP has no tower this small: the YAML names an architecture of its own and describes it beside the params
# (text_cfg), as the port reads one that OpenCLIP does not ship
TEXT_ARCH = "tiny-text-64"
SETTINGS = dict(steps=2, frames=3, width=64, height=64)  # what tests render


def yaml_document() -> dict:
    return {"model": {"target": "lvdm.models.ddpm3d.LatentDiffusion", "params": {
        "linear_start": 0.00085, "linear_end": 0.012, "num_timesteps_cond": 1, "timesteps": 1000,
        "first_stage_key": "video", "cond_stage_key": "caption", "cond_stage_trainable": False,
        "conditioning_key": "crossattn", "image_size": [8, 8], "channels": 4, "scale_by_std": False,
        "scale_factor": 0.18215, "use_ema": False, "uncond_type": "empty_seq", "use_scale": True, "scale_b": 0.7,
        "unet_config": {"target": "lvdm.modules.networks.openaimodel3d.UNetModel", "params": dict(UNET)},
        "first_stage_config": {"target": "lvdm.models.autoencoder.AutoencoderKL", "params": {
            "embed_dim": 4, "monitor": "val/rec_loss", "ddconfig": dict(DDCONFIG),
            "lossconfig": {"target": "torch.nn.Identity"}}},
        "cond_stage_config": {"target": "lvdm.modules.encoders.condition.FrozenOpenCLIPEmbedder",
                              "params": {"arch": TEXT_ARCH, "freeze": True, "layer": "penultimate"},
                              "text_cfg": {"width": TEXT_WIDTH, "heads": 1, "layers": TEXT_LAYERS}},
    }}}


def original_state_dict(seed: int = 0) -> dict:
    """Random tensors under the original checkpoint's names."""
    import tempfile

    import torch
    import yaml

    from phyprompt.video.videocrafter2.config import read_yaml
    from phyprompt.video.videocrafter2.model import VideoCrafter2, port_state_dict

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(yaml_document(), f)
        config, text = read_yaml(path)
    model = VideoCrafter2(config, text)
    with torch.no_grad():  # random everywhere, the zero-initialised output layers too
        for name, p in model.named_parameters():
            p.copy_(1 + 0.1 * torch.randn_like(p) if "norm" in name and name.endswith("weight")
                    else torch.randn_like(p) * 0.05)
    levels = len(DDCONFIG["ch_mult"])
    original = {}
    for key, tensor in port_state_dict(model).items():
        section, rest = key.split(".", 1)
        if section == "unet":
            original["model.diffusion_model." + rest] = tensor
        elif section == "schedule":
            original[rest] = tensor
        elif section == "vae":
            if re.search(r"mid_block\.attentions\.0\.(to_[qkv]|to_out\.0)\.weight$", rest):
                tensor = tensor[:, :, None, None]
            original["first_stage_model." + _ldm_vae_name(rest, levels)] = tensor
        else:
            original.update(_open_clip_tensors(rest, tensor))
    # what the original holds and never reads: the last text block and CLIP's contrastive head
    last = f"cond_stage_model.model.transformer.resblocks.{TEXT_LAYERS - 1}."
    w = TEXT_WIDTH
    for name, shape in (("ln_1.weight", (w,)), ("ln_1.bias", (w,)), ("attn.in_proj_weight", (3 * w, w)),
                        ("attn.in_proj_bias", (3 * w,)), ("attn.out_proj.weight", (w, w)), ("attn.out_proj.bias", (w,)),
                        ("ln_2.weight", (w,)), ("ln_2.bias", (w,)), ("mlp.c_fc.weight", (4 * w, w)),
                        ("mlp.c_fc.bias", (4 * w,)), ("mlp.c_proj.weight", (w, 4 * w)), ("mlp.c_proj.bias", (w,))):
        original[last + name] = torch.randn(shape) * 0.05
    original["cond_stage_model.model.text_projection"] = torch.randn(w, 32) * 0.05
    original["cond_stage_model.model.logit_scale"] = torch.tensor(4.6)
    return original


_VAE_BACK = [
    (r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block."),
    (r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample."),
    (r"\.mid_block\.resnets\.(\d)\.", lambda m: f".mid.block_{int(m[1]) + 1}."),
    (r"\.mid_block\.attentions\.0\.group_norm\.", ".mid.attn_1.norm."),
    (r"\.mid_block\.attentions\.0\.to_([qkv])\.", r".mid.attn_1.\1."),
    (r"\.mid_block\.attentions\.0\.to_out\.0\.", ".mid.attn_1.proj_out."),
    (r"\.conv_shortcut\.", ".nin_shortcut."),
    (r"\.conv_norm_out\.", ".norm_out."),
]


def _ldm_vae_name(name: str, levels: int) -> str:
    name = re.sub(r"^decoder\.up_blocks\.(\d+)\.resnets\.", lambda m: f"decoder.up.{levels - 1 - int(m[1])}.block.", name)
    name = re.sub(r"^decoder\.up_blocks\.(\d+)\.upsamplers\.0\.",
                  lambda m: f"decoder.up.{levels - 1 - int(m[1])}.upsample.", name)
    for pattern, replacement in _VAE_BACK:
        name = re.sub(pattern, replacement, name)
    return name


_packed: dict[str, dict[str, object]] = {}


def _open_clip_tensors(name: str, tensor) -> dict:
    import torch

    prefix = "cond_stage_model.model."
    if name == "embeddings.position_embedding.weight":
        return {prefix + "positional_embedding": tensor}
    if name == "embeddings.token_embedding.weight":
        return {prefix + "token_embedding.weight": tensor}
    if name.startswith("final_layer_norm."):
        return {prefix + "ln_final." + name.split(".", 1)[1]: tensor}
    layer, rest = re.match(r"encoder\.layers\.(\d+)\.(.*)", name).groups()
    block = f"{prefix}transformer.resblocks.{layer}."
    match = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
    if match:  # OpenCLIP packs q, k, v into one in_proj tensor
        parts = _packed.setdefault(block + match[2], {})
        parts[match[1]] = tensor
        if len(parts) < 3:
            return {}
        del _packed[block + match[2]]
        return {f"{block}attn.in_proj_{match[2]}": torch.cat([parts["q"], parts["k"], parts["v"]])}
    for ours, theirs in (("layer_norm1.", "ln_1."), ("layer_norm2.", "ln_2."), ("self_attn.out_proj.", "attn.out_proj."),
                         ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj.")):
        rest = rest.replace(ours, theirs)
    return {block + rest: tensor}


def write_tiny_videocrafter2(path: str | os.PathLike, seed: int = 0) -> str:
    """Write `path` (a .ckpt; a folder is given model.ckpt inside) and `<name>.yaml` beside it; returns the .ckpt."""
    import torch
    import yaml

    path = os.fspath(path)
    if not path.endswith(".ckpt"):
        path = os.path.join(path, "model.ckpt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"state_dict": original_state_dict(seed), "epoch": 1, "global_step": 10}, path)
    with open(os.path.splitext(path)[0] + ".yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(yaml_document(), f, sort_keys=False)
    return path
