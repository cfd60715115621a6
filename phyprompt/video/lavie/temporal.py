"""LaVie's temporal attention: self-attention across the frames at each spatial position of a transformer
block, with a rotary embedding on the first 32 channels of every head and a learned relative position bias.

- Rotary embedding: channel pairs (0, 1), (2, 3), … of the first 32 channels of a head turn by
  frame index × frequency, frequencies 10000^(-2i/32); the remaining channels pass unchanged. The original
  shares one such module between all blocks, so the checkpoint holds the frequencies once per block
  (`rotary_emb.freqs`); they are loaded like any weight.
- Relative position bias: T5's bucketing of (query frame − key frame) into 32 buckets (16 per direction:
  8 exact distances, then logarithmic up to 32 frames), each bucket a learned bias per head, added to the
  attention logits unscaled.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

ROTARY_CHANNELS = 32
ROTARY_THETA = 10_000.0
BIAS_BUCKETS = 32
BIAS_MAX_DISTANCE = 32


class RotaryEmbedding(nn.Module):
    def __init__(self, channels: int = ROTARY_CHANNELS, theta: float = ROTARY_THETA):
        super().__init__()
        self.channels = channels
        self.register_buffer("freqs", 1.0 / theta ** (torch.arange(0, channels, 2).float() / channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` [..., frames, head channels], rotated by frame index."""
        frames, head_channels = x.shape[-2:]
        if head_channels < self.channels:
            raise ValueError(f"LaVie's rotary embedding turns {self.channels} channels per head; "
                             f"these heads have {head_channels}")
        # angles in fp32 whatever the model's dtype: positions and frequencies lose too much in fp16
        angles = torch.arange(frames, device=x.device, dtype=torch.float32)[:, None] * self.freqs.float()
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        turned, rest = x[..., :self.channels], x[..., self.channels:]
        even, odd = turned[..., 0::2], turned[..., 1::2]
        rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
        return torch.cat((rotated, rest), dim=-1)


class RelativePositionBias(nn.Module):
    def __init__(self, heads: int, buckets: int = BIAS_BUCKETS, max_distance: int = BIAS_MAX_DISTANCE):
        super().__init__()
        self.buckets = buckets
        self.max_distance = max_distance
        self.relative_attention_bias = nn.Embedding(buckets, heads)

    def bucket(self, frames: int, device: torch.device | None = None) -> torch.Tensor:
        """[query frame, key frame] -> bucket index."""
        position = torch.arange(frames, device=device)
        offset = position[:, None] - position[None, :]  # > 0: the key frame lies in the past
        half = self.buckets // 2
        exact = half // 2
        distance = offset.abs()
        # clamp: log(0) is never used (distance 0 is exact) but must not produce NaN on the way
        far = exact + (torch.log(distance.clamp(min=1).float() / exact) / math.log(self.max_distance / exact)
                       * (half - exact)).long()
        far = far.clamp(max=half - 1)
        return (offset < 0).long() * half + torch.where(distance < exact, distance, far)

    def forward(self, frames: int, device: torch.device | None = None) -> torch.Tensor:
        """[heads, query frame, key frame] biases."""
        return self.relative_attention_bias(self.bucket(frames, device)).permute(2, 0, 1)


class TemporalAttention(nn.Module):
    """`attn_temp`: q/k/v without bias, output with bias (diffusers' attention key names)."""

    def __init__(self, channels: int, heads: int, head_channels: int):
        super().__init__()
        inner = heads * head_channels
        self.heads = heads
        self.to_q = nn.Linear(channels, inner, bias=False)
        self.to_k = nn.Linear(channels, inner, bias=False)
        self.to_v = nn.Linear(channels, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels)])
        self.time_rel_pos_bias = RelativePositionBias(heads)
        self.rotary_emb = RotaryEmbedding()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`x` [sequences, frames, channels]: each sequence is one spatial position of one video."""
        sequences, frames, _ = x.shape
        q, k, v = (project(x).view(sequences, frames, self.heads, -1).transpose(1, 2)
                   for project in (self.to_q, self.to_k, self.to_v))
        bias = self.time_rel_pos_bias(frames, x.device).to(q.dtype)
        out = F.scaled_dot_product_attention(self.rotary_emb(q), self.rotary_emb(k), v, attn_mask=bias)
        return self.to_out[0](out.transpose(1, 2).reshape(sequences, frames, -1))
