"""LaVie's UNet (`base/models/unet.py` UNet3DConditionModel): Stable Diffusion 1.x's UNet applied to
videos, with a temporal attention sub-layer in every transformer block.

Video tensors are (batch, channels, frames, height, width). Convolutions see every frame on its own, and so
does the transformers' GroupNorm; the ResNet blocks' `norm1`/`norm2` and the output `conv_norm_out` normalise
each video over all its frames together (GroupNorm on the 5-D tensor), as the original does. Running SD's 2-D
UNet frame by frame is therefore not the same model, even with the temporal layers added.

Module and key names are diffusers' `UNet2DConditionModel`'s (`down_blocks.0.attentions.0.transformer_blocks.0
.attn1.to_q.weight`, …) plus, per transformer block, `norm_temp` and `attn_temp` (temporal.py). Attention is
diffusers' `Attention` (scaled_dot_product_attention), the feed-forward diffusers' GEGLU `FeedForward`, the
timestep embedding diffusers' `Timesteps` + `TimestepEmbedding`: the same math as the original's copies.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn
from torch.nn import functional as F

from .config import UNetConfig
from .temporal import TemporalAttention

TRANSFORMER_NORM_EPS = 1e-6  # the transformers' input GroupNorm; the ResNets use the config's norm_eps


def per_frame(layer: nn.Module, video: torch.Tensor, **kwargs) -> torch.Tensor:
    """Apply a 2-D layer to every frame of a (b, c, f, h, w) video."""
    b, c, f, h, w = video.shape
    out = layer(video.transpose(1, 2).reshape(b * f, c, h, w), **kwargs)
    return out.view(b, f, *out.shape[1:]).transpose(1, 2)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, embedding_channels: int, config: UNetConfig,
                 output_scale_factor: float = 1.0):
        super().__init__()
        groups, eps = config.norm_num_groups, config.norm_eps
        self.output_scale_factor = output_scale_factor
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.time_emb_proj = nn.Linear(embedding_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, video: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        # norm1/norm2 see the 5-D video: statistics over all frames together
        hidden = per_frame(self.conv1, F.silu(self.norm1(video)))
        hidden = hidden + self.time_emb_proj(F.silu(embedding))[:, :, None, None, None]
        hidden = per_frame(self.conv2, F.silu(self.norm2(hidden)))
        skip = video if self.conv_shortcut is None else per_frame(self.conv_shortcut, video)
        return (skip + hidden) / self.output_scale_factor


class TransformerBlock(nn.Module):
    """Spatial self-attention, cross-attention to the text, temporal attention, feed-forward; each pre-norm
    with a residual."""

    def __init__(self, channels: int, heads: int, context_channels: int):
        super().__init__()
        head_channels = channels // heads
        self.norm1 = nn.LayerNorm(channels)
        self.attn1 = Attention(channels, heads=heads, dim_head=head_channels)
        self.norm2 = nn.LayerNorm(channels)
        self.attn2 = Attention(channels, cross_attention_dim=context_channels, heads=heads, dim_head=head_channels)
        self.norm_temp = nn.LayerNorm(channels)
        self.attn_temp = TemporalAttention(channels, heads, head_channels)
        self.norm3 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, activation_fn="geglu")

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """`x` [(b f), positions, channels], `context` [(b f), tokens, context channels]."""
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), encoder_hidden_states=context) + x
        videos, positions, channels = x.shape[0] // frames, x.shape[1], x.shape[2]
        # [(b f), p, c] -> [(b p), f, c]: one sequence of frames per spatial position
        sequences = x.view(videos, frames, positions, channels).transpose(1, 2).reshape(-1, frames, channels)
        sequences = self.attn_temp(self.norm_temp(sequences)) + sequences
        x = sequences.view(videos, positions, frames, channels).transpose(1, 2).reshape(-1, positions, channels)
        return self.ff(self.norm3(x)) + x


class Transformer(nn.Module):
    """diffusers' Transformer2DModel layout (GroupNorm, 1x1 conv in and out), run on every frame."""

    def __init__(self, channels: int, heads: int, config: UNetConfig):
        super().__init__()
        self.norm = nn.GroupNorm(config.norm_num_groups, channels, eps=TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.transformer_blocks = nn.ModuleList([TransformerBlock(channels, heads, config.cross_attention_dim)])
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, video: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = video.shape
        frames = video.transpose(1, 2).reshape(b * f, c, h, w)
        x = self.proj_in(self.norm(frames)).permute(0, 2, 3, 1).reshape(b * f, h * w, c)
        context = context.repeat_interleave(f, dim=0)  # every frame reads the same text
        for block in self.transformer_blocks:
            x = block(x, context, f)
        x = self.proj_out(x.view(b * f, h, w, c).permute(0, 3, 1, 2)) + frames
        return x.view(b, f, c, h, w).transpose(1, 2)


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return per_frame(self.conv, video)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, video: torch.Tensor, size: tuple[int, int] | None) -> torch.Tensor:
        scale = None if size else 2.0
        video = per_frame(F.interpolate, video, size=size, scale_factor=scale, mode="nearest")
        return per_frame(self.conv, video)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, heads: int, cross_attention: bool, downsample: bool,
                 embedding_channels: int, config: UNetConfig):
        super().__init__()
        layers = config.layers_per_block
        self.resnets = nn.ModuleList(
            ResnetBlock(in_channels if i == 0 else out_channels, out_channels, embedding_channels, config)
            for i in range(layers))
        self.attentions = (nn.ModuleList(Transformer(out_channels, heads, config) for _ in range(layers))
                           if cross_attention else None)
        self.downsamplers = nn.ModuleList([Downsample(out_channels)]) if downsample else None

    def forward(self, video, embedding, context) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, resnet in enumerate(self.resnets):
            video = resnet(video, embedding)
            if self.attentions is not None:
                video = self.attentions[i](video, context)
            skips.append(video)
        if self.downsamplers is not None:
            video = self.downsamplers[0](video)
            skips.append(video)
        return video, skips


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, previous_channels: int, heads: int,
                 cross_attention: bool, upsample: bool, embedding_channels: int, config: UNetConfig):
        super().__init__()
        layers = config.layers_per_block + 1
        self.resnets = nn.ModuleList(
            ResnetBlock((previous_channels if i == 0 else out_channels)
                        + (in_channels if i == layers - 1 else out_channels), out_channels, embedding_channels,
                        config)
            for i in range(layers))
        self.attentions = (nn.ModuleList(Transformer(out_channels, heads, config) for _ in range(layers))
                           if cross_attention else None)
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if upsample else None

    def forward(self, video, embedding, context, skips: list[torch.Tensor], size) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            video = resnet(torch.cat([video, skips.pop()], dim=1), embedding)
            if self.attentions is not None:
                video = self.attentions[i](video, context)
        if self.upsamplers is not None:
            video = self.upsamplers[0](video, size)
        return video


class MidBlock(nn.Module):
    def __init__(self, channels: int, heads: int, embedding_channels: int, config: UNetConfig):
        super().__init__()
        scale = config.mid_block_scale_factor
        self.resnets = nn.ModuleList(ResnetBlock(channels, channels, embedding_channels, config, scale)
                                     for _ in range(2))
        self.attentions = nn.ModuleList([Transformer(channels, heads, config)])

    def forward(self, video, embedding, context) -> torch.Tensor:
        video = self.resnets[0](video, embedding)
        return self.resnets[1](self.attentions[0](video, context), embedding)


class LaVieUNet(nn.Module):
    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        channels = config.block_out_channels
        embedding_channels = channels[0] * 4
        self.conv_in = nn.Conv2d(config.in_channels, channels[0], 3, padding=1)
        self.time_proj = Timesteps(channels[0], config.flip_sin_to_cos, config.freq_shift)
        self.time_embedding = TimestepEmbedding(channels[0], embedding_channels)
        levels = len(channels)
        self.down_blocks = nn.ModuleList(
            DownBlock(channels[max(i - 1, 0)], channels[i], config.heads[i], config.cross_attention[i],
                      i < levels - 1, embedding_channels, config)
            for i in range(levels))
        self.mid_block = MidBlock(channels[-1], config.heads[-1], embedding_channels, config)
        self.up_blocks = nn.ModuleList(
            UpBlock(channels[max(levels - 2 - i, 0)], channels[levels - 1 - i], channels[min(levels - i, levels - 1)],
                    config.heads[levels - 1 - i], config.cross_attention[levels - 1 - i], i < levels - 1,
                    embedding_channels, config)
            for i in range(levels))
        self.conv_norm_out = nn.GroupNorm(config.norm_num_groups, channels[0], eps=config.norm_eps)
        self.conv_out = nn.Conv2d(channels[0], config.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor | float | int,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        """Predicted noise for `sample` (b, c, f, h, w) at `timestep` given the text `encoder_hidden_states`
        (b, tokens, channels)."""
        timesteps = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(sample.shape[0])
        embedding = self.time_embedding(self.time_proj(timesteps).to(self.dtype))
        video = per_frame(self.conv_in, sample)
        skips = [video]
        for block in self.down_blocks:
            video, block_skips = block(video, embedding, encoder_hidden_states)
            skips += block_skips
        video = self.mid_block(video, embedding, encoder_hidden_states)
        # sizes that do not halve evenly: each upsampler scales to its skip's size instead of doubling
        uneven = any(s % 2 ** (len(self.up_blocks) - 1) for s in sample.shape[-2:])
        for block in self.up_blocks:
            layers = len(block.resnets)
            block_skips, skips = skips[-layers:], skips[:-layers]
            size = tuple(skips[-1].shape[-2:]) if uneven and block.upsamplers is not None else None
            video = block(video, embedding, encoder_hidden_states, block_skips, size)
        return per_frame(self.conv_out, F.silu(self.conv_norm_out(video)))
