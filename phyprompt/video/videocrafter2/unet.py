"""VideoCrafter2's 3D UNet (lvdm `openaimodel3d.UNetModel` as configured for text-to-video 2.0).

The module tree mirrors the original's names (`input_blocks.N.M`, `temopral_conv` typo included), so the
checkpoint's `model.diffusion_model.*` tensors load by name alone. Video tensors are (batch, channels, frames,
height, width); inside, frames travel folded into the batch ((b·t), c, h, w) except through the temporal
layers. Attention is diffusers' `BasicTransformerBlock` (scaled_dot_product_attention, exact GELU in GEGLU,
LayerNorm eps 1e-5: the original's math), the temporal convolution diffusers' `TemporalConvLayer` (the same
modelscope block under the same names), the sinusoidal embeddings diffusers' `get_timestep_embedding`
with [cos, sin] order.
"""

from __future__ import annotations

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.resnet import TemporalConvLayer
from torch import nn
from torch.nn import functional as F

from .config import UNetConfig

GROUPS = 32  # lvdm's normalization(): GroupNorm with 32 groups everywhere in the UNet


class GroupNorm32(nn.GroupNorm):
    """The ResBlocks' and output's GroupNorm (eps 1e-5), computed in fp32 as the original does."""

    def __init__(self, channels: int):
        super().__init__(GROUPS, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def timestep_embedding(values: torch.Tensor, dim: int) -> torch.Tensor:
    """lvdm's sinusoidal embedding of timesteps (and of the fps): [cos, sin], frequencies 10000^(-i/half)."""
    return get_timestep_embedding(values, dim, flip_sin_to_cos=True, downscale_freq_shift=0)


class ResBlock(nn.Module):
    def __init__(self, channels: int, emb_channels: int, out_channels: int, temporal_conv: bool):
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1))
        if temporal_conv:  # GroupNorm over the whole clip (c·t·h·w per group), eps 1e-5
            self.temopral_conv = TemporalConvLayer(out_channels, out_channels, dropout=0.1, norm_num_groups=GROUPS)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        h = self.skip_connection(x) + self.out_layers(h)
        if hasattr(self, "temopral_conv"):
            h = self.temopral_conv(h, num_frames=frames)
        return h


class SpatialTransformer(nn.Module):
    """Self-attention over each frame's pixels, then cross-attention to the text, then GEGLU."""

    def __init__(self, channels: int, heads: int, head_dim: int, depth: int, context_dim: int, use_linear: bool):
        super().__init__()
        inner = heads * head_dim
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, head_dim, cross_attention_dim=context_dim, activation_fn="geglu")
            for _ in range(depth))
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        if not self.use_linear:
            y = self.proj_in(y)
        y = y.flatten(2).transpose(1, 2)  # (b, h·w, c)
        if self.use_linear:
            y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, encoder_hidden_states=context)
        if self.use_linear:
            y = self.proj_out(y)
        y = y.transpose(1, 2).reshape(b, -1, h, w)
        if not self.use_linear:
            y = self.proj_out(y)
        return y + x


class TemporalTransformer(nn.Module):
    """Attention along time at every pixel: two self-attentions (the second takes no text: the 2.0 model's
    `temporal_selfatt_only`), then GEGLU. Projections are 1x1 Conv1d unless `use_linear`."""

    def __init__(self, channels: int, heads: int, head_dim: int, depth: int, use_linear: bool):
        super().__init__()
        inner = heads * head_dim
        self.use_linear = use_linear
        self.norm = nn.GroupNorm(GROUPS, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner, heads, head_dim, double_self_attention=True, activation_fn="geglu")
            for _ in range(depth))
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv1d(inner, channels, 1)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        b = bt // frames
        # ((b t), c, h, w) -> ((b h w), c, t): one sequence of frames per pixel
        y = self.norm(x.reshape(b, frames, c, h, w).transpose(1, 2)).permute(0, 3, 4, 1, 2).reshape(-1, c, frames)
        if not self.use_linear:
            y = self.proj_in(y)
        y = y.transpose(1, 2)  # (b h w, t, c)
        if self.use_linear:
            y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y)
        if self.use_linear:
            y = self.proj_out(y)
        else:
            y = self.proj_out(y.transpose(1, 2)).transpose(1, 2)
        y = y.reshape(b, h, w, frames, c).permute(0, 3, 4, 1, 2).reshape(bt, c, h, w)
        return y + x


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Block(nn.ModuleList):
    """One `input_blocks` / `output_blocks` entry: layers applied in order, each with what it needs."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, frames)
            elif isinstance(layer, SpatialTransformer):
                x = layer(x, context)
            elif isinstance(layer, TemporalTransformer):
                x = layer(x, frames)
            else:
                x = layer(x)
        return x


class UNet3D(nn.Module):
    """eps = unet(latents (b, c, t, h, w), timesteps (b,), context (b, tokens, context_dim), fps (b,))."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        ch = c.model_channels
        emb = ch * 4
        self.time_embed = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        if c.fps_cond:
            self.fps_embedding = nn.Sequential(nn.Linear(ch, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([Block([nn.Conv2d(c.in_channels, ch, 3, padding=1)])])
        if c.addition_attention:  # 8 heads regardless of width, Conv1d projections (use_linear is not passed)
            self.init_attn = Block([TemporalTransformer(ch, 8, c.num_head_channels, c.transformer_depth, False)])

        def attention(channels: int) -> list[nn.Module]:
            heads = channels // c.num_head_channels
            layers = [SpatialTransformer(channels, heads, c.num_head_channels, c.transformer_depth, c.context_dim,
                                         c.use_linear)]
            if c.temporal_attention:
                layers.append(TemporalTransformer(channels, heads, c.num_head_channels, c.temporal_transformer_depth,
                                                  c.use_linear))
            return layers

        skips = [ch]
        scale = 1
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers = [ResBlock(ch, emb, mult * c.model_channels, c.temporal_conv)]
                ch = mult * c.model_channels
                if scale in c.attention_resolutions:
                    layers += attention(ch)
                self.input_blocks.append(Block(layers))
                skips.append(ch)
            if level != len(c.channel_mult) - 1:
                self.input_blocks.append(Block([Downsample(ch)]))
                skips.append(ch)
                scale *= 2
        self.middle_block = Block([ResBlock(ch, emb, ch, c.temporal_conv), *attention(ch),
                                   ResBlock(ch, emb, ch, c.temporal_conv)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), emb, c.model_channels * mult, c.temporal_conv)]
                ch = c.model_channels * mult
                if scale in c.attention_resolutions:
                    layers += attention(ch)
                if level and i == c.num_res_blocks:
                    layers.append(Upsample(ch))
                    scale //= 2
                self.output_blocks.append(Block(layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(c.model_channels, c.out_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                fps: torch.Tensor | None = None) -> torch.Tensor:
        b, _, t, _, _ = x.shape
        ch = self.config.model_channels
        emb = self.time_embed(timestep_embedding(timesteps, ch).to(self.time_embed[0].weight.dtype))
        if self.config.fps_cond:
            fps = torch.full_like(timesteps, 16) if fps is None else fps  # the original's default
            emb = emb + self.fps_embedding(timestep_embedding(fps, ch).to(emb.dtype))
        context = context.repeat_interleave(t, dim=0)
        emb = emb.repeat_interleave(t, dim=0)
        h = x.transpose(1, 2).reshape(b * t, *x.shape[1:2], *x.shape[3:]).to(emb.dtype)
        skips = []
        for index, block in enumerate(self.input_blocks):
            h = block(h, emb, context, t)
            if index == 0 and self.config.addition_attention:
                h = self.init_attn(h, emb, context, t)
            skips.append(h)
        h = self.middle_block(h, emb, context, t)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context, t)
        y = self.out(h)
        return y.reshape(b, t, *y.shape[1:]).transpose(1, 2).to(x.dtype)
