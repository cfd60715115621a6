"""VideoCrafter2's image autoencoder: Stable Diffusion's KL VAE (lvdm `AutoencoderKL`, the same math) on
diffusers' `AutoencoderKL`, decoding a video one frame at a time as the original does
(`decode_first_stage_2DAE`): memory stays that of one frame, whatever the clip's length."""

from __future__ import annotations

import torch

from .config import VAEConfig


def build_vae(config: VAEConfig):
    from diffusers import AutoencoderKL

    levels = len(config.ch_mult)
    return AutoencoderKL(
        in_channels=config.in_channels, out_channels=config.out_ch, latent_channels=config.embed_dim,
        down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.ch * m for m in config.ch_mult), layers_per_block=config.num_res_blocks,
        norm_num_groups=32,
    )


def decode(vae, latents: torch.Tensor, scale_factor: float) -> torch.Tensor:
    """Pixels (b, 3, t, H, W) in about -1..1 from sampled latents (b, c, t, h, w), frame by frame."""
    latents = latents / scale_factor
    weight = next(vae.parameters())
    frames = [vae.decode(latents[:, :, i].to(weight)).sample.float() for i in range(latents.shape[2])]
    return torch.stack(frames, dim=2)
