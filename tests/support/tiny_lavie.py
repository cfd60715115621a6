"""A tiny, randomly initialised LaVie written in the original release's layouts: `lavie_base.pt` (a torch.save
of the UNet's state dict, plain or under `ema`) and a Stable Diffusion 1.4 diffusers folder (model_index.json,
unet/config.json, vae, text_encoder, tokenizer, scheduler) — loaded by exactly the code that loads the real
YaohuiW/LaVie checkpoint with CompVis/stable-diffusion-v1-4.

The UNet has SD1.4's block structure at tiny widths: two levels (32 and 64 channels, one head each, so the
rotary embedding turns all of the first level's 32 head channels and half of the second's), one layer per
block. The SD folder holds no UNet weights (LaVie reads only its config); every other weight is random.
"""

from __future__ import annotations

import json
import os

# what the tests render: a few frames at 16x16 (8x8 latents: the tiny VAE halves the size), two steps
SETTINGS = dict(steps=2, frames=3, width=16, height=16)
# SD1.4's unet/config.json with tiny widths; the keys are the real file's
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "attention_head_dim": 1,
    "block_out_channels": [32, 64],
    "center_input_sample": False,
    "cross_attention_dim": 32,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 1,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 8,
    "out_channels": 4,
    "sample_size": 8,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
}
# CompVis/stable-diffusion-v1-4's scheduler/scheduler_config.json (LaVie overrides it with its DDPM settings)
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
    "clip_sample": False, "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True,
    "steps_offset": 1, "trained_betas": None,
}
MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "feature_extractor": ["transformers", "CLIPImageProcessor"],
    "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
    "scheduler": ["diffusers", "PNDMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
# a few BPE merges on top of the byte alphabet, so common words are fewer tokens than letters, as in CLIP's
START, END = "<|startoftext|>", "<|endoftext|>"
MERGES = [("t", "h"), ("th", "e</w>"), ("a", "l"), ("l", "l</w>"), ("o", "n</w>"), ("i", "n"), ("in", "g</w>")]


def write_tokenizer(folder: str) -> None:
    """A CLIP tokenizer folder as SD1.4's (vocab.json, merges.txt, tokenizer_config.json): the 256 byte symbols,
    each also with CLIP's `</w>` word end, MERGES, and the start and end tokens (the end token pads)."""
    from tokenizers import pre_tokenizers

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in MERGES] + [START, END]
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({t: i for i, t in enumerate(tokens)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
                   "bos_token": START, "eos_token": END, "unk_token": END, "pad_token": END}, f, indent=2)


def _randomise(module, generator, scale: float = 0.1) -> None:
    """Random weights everywhere, zero-initialised layers (the temporal output) and norms included, so that
    every layer changes the output."""
    import torch

    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name.endswith("rotary_emb.freqs"):
                continue  # a fixed table in the original, saved with the weights
            noise = torch.randn(tensor.shape, generator=generator) * scale
            tensor.copy_(noise + 1.0 if "norm" in name and name.endswith("weight") else noise)


def write_sd_folder(folder: str | os.PathLike, seed: int = 0) -> str:
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = os.fspath(folder)
    for name, data in (("model_index.json", MODEL_INDEX), ("unet/config.json", UNET_CONFIG),
                       ("scheduler/scheduler_config.json", SCHEDULER_CONFIG)):
        os.makedirs(os.path.dirname(os.path.join(folder, name)), exist_ok=True)
        with open(os.path.join(folder, name), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1, sample_size=16)
    vae.save_pretrained(os.path.join(folder, "vae"), safe_serialization=True)
    write_tokenizer(os.path.join(folder, "tokenizer"))
    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(folder, "tokenizer"))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=UNET_CONFIG["cross_attention_dim"], intermediate_size=37,
        num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77, hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    ))
    text_encoder.save_pretrained(os.path.join(folder, "text_encoder"), safe_serialization=True)
    return folder


def build_unet(seed: int = 0):
    import torch

    from phyprompt.video.lavie.config import UNetConfig
    from phyprompt.video.lavie.unet import LaVieUNet

    unet = LaVieUNet(UNetConfig.from_sd(UNET_CONFIG))
    _randomise(unet, torch.Generator().manual_seed(seed))
    return unet


def write_checkpoint(path: str | os.PathLike, seed: int = 0, ema: bool = False) -> str:
    """lavie_base.pt's layout: the UNet state dict, or {"ema": state dict} as the original's training saves."""
    import torch

    state_dict = build_unet(seed).state_dict()
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    torch.save({"ema": state_dict} if ema else state_dict, path)
    return os.fspath(path)


def write_tiny_lavie(checkpoint_path: str | os.PathLike, sd_folder: str | os.PathLike, seed: int = 0,
                     ema: bool = False) -> tuple[str, str]:
    return write_checkpoint(checkpoint_path, seed, ema), write_sd_folder(sd_folder, seed)


def write_tiny_lavie_model(folder: str | os.PathLike, seed: int = 0) -> tuple[str, dict[str, str]]:
    """`folder`/lavie_base.pt and `folder`/stable-diffusion-v1-4: the checkpoint path and the load keywords
    naming its component folder, as the backend contract tests take them."""
    checkpoint, sd = write_tiny_lavie(os.path.join(folder, "lavie_base.pt"),
                                      os.path.join(folder, "stable-diffusion-v1-4"), seed)
    return checkpoint, {"sd_folder": sd}
