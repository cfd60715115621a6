"""Write a small random checkpoint that ComfyUI's CheckpointLoaderSimple loads as Stable Diffusion 1.5.

    python tests/support/tiny_sd15.py COMFYUI_TREE OUT.safetensors

It lets a test run core ComfyUI's text-to-image graph (CLIPTextEncode → KSampler → VAEDecode → SaveImage)
on a CPU. ComfyUI recognises SD1.5 by the UNet's base width (320) and text width (768) and reads depth
and level count from the weights, so the UNet here has one level with one block (a few million
parameters) and is built with ComfyUI's own UNet class, in a subprocess with the ComfyUI tree on the path.
ComfyUI builds the VAE and the CLIP-L text encoder at their fixed real sizes, so those are full size.
Weights are random (fp16 on disk, ~465 MB); the images are noise, the code paths are real.
"""

from __future__ import annotations

import sys


def _randomise(module, generator) -> None:
    """ComfyUI's layers skip weight initialisation (weights come from checkpoints), so fill them here."""
    import torch

    for name, parameter in module.named_parameters():
        with torch.no_grad():
            if "norm" in name and name.endswith(".weight"):
                parameter.fill_(1.0)
            elif name.endswith(".bias"):
                parameter.zero_()
            else:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.02)


def main(tree: str, out: str) -> None:
    sys.path.insert(0, tree)
    import torch
    from comfy.cli_args import args
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    args.cpu = True  # before comfy.model_management is imported: no GPU is probed
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    generator = torch.Generator().manual_seed(0)
    unet = UNetModel(
        image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1], channel_mult=[1],
        num_heads=8, use_spatial_transformer=True, transformer_depth=[1], transformer_depth_output=[1, 1],
        transformer_depth_middle=1, context_dim=768, use_linear_in_transformer=False, legacy=False,
    )
    _randomise(unet, generator)
    vae = AutoencoderKL(
        ddconfig={"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                  "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0},
        embed_dim=4,
    )
    _randomise(vae, generator)
    torch.manual_seed(0)
    clip = CLIPTextModel(CLIPTextConfig(  # CLIP ViT-L/14's text tower, as SD1.5 uses it
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
    ))
    state = {}
    for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae),
                           ("cond_stage_model.transformer.", clip)):
        state.update({prefix + k: v.to(torch.float16).contiguous() for k, v in module.state_dict().items()
                      if not k.endswith("position_ids")})
    save_file(state, out)


if __name__ == "__main__":
    main(*sys.argv[1:3])
