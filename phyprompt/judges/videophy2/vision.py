"""The vision tower: CLIP ViT-L/14 at 224 px with a temporal adapter in front of every layer.

Parameter names are the released checkpoint's (`vision_model.…`). Facts the numbers depend on, all from the
reference: the packed query/key/value projection is laid out per head (q, k, v of head 0, then head 1, …);
the adapter's LayerNorm keeps torch's default eps 1e-5 while the tower's use the config's 1e-6; the adapter
returns the CLS token unchanged next to its patch output, so the residual sum doubles CLS in every layer;
the adapter only runs for more than one frame.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import VisionConfig
from .layers import Fp32LayerNorm, attention, quick_gelu


class VisionEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        width = config.hidden_size
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.patch_embed = nn.Conv2d(3, width, config.patch_size, stride=config.patch_size, bias=False)
        self.position_embedding = nn.Parameter(torch.zeros(1, config.grid ** 2 + 1, width))
        self.pre_layernorm = Fp32LayerNorm(width, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> [B, T, 1 + patches, width]"""
        batch, frames = pixels.shape[0], pixels.shape[2]
        patches = self.patch_embed(pixels.transpose(1, 2).flatten(0, 1)).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(patches.shape[0], 1, -1).to(patches.dtype)
        tokens = torch.cat([cls, patches], dim=1) + self.position_embedding.to(patches.dtype)
        return self.pre_layernorm(tokens).unflatten(0, (batch, frames))


class TemporalAdapter(nn.Module):
    """A bottleneck that mixes each patch with the same patch in the neighbouring frames: 1×1×1 down-projection,
    a depthwise convolution over 3 frames, QuickGELU, 1×1×1 up-projection. The weights keep their Conv3d
    shapes; the pointwise convolutions run as matrix products on channel-last tensors and the 3-frame
    convolution as three shifted multiply-adds (depthwise Conv3d has no bf16 kernel on some GPUs, which is why
    the reference moves it to the CPU)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        width, bottleneck = config.hidden_size, config.hidden_size // 2
        self.ln = Fp32LayerNorm(width)  # eps 1e-5, unlike the rest of the tower
        self.down_proj = nn.Conv3d(width, bottleneck, kernel_size=1)
        self.conv = nn.Conv3d(bottleneck, bottleneck, kernel_size=(3, 1, 1), padding=(1, 0, 0), groups=bottleneck)
        self.up_proj = nn.Conv3d(bottleneck, width, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, 1 + patches, width] -> the same shape: CLS unchanged, patches adapted."""
        cls, patches = x[:, :, :1], x[:, :, 1:]
        h = F.linear(self.ln(patches), self.down_proj.weight.flatten(1), self.down_proj.bias)
        h = quick_gelu(self._temporal_conv(h))
        h = F.linear(h, self.up_proj.weight.flatten(1), self.up_proj.bias)
        return torch.cat([cls, h], dim=2)

    def _temporal_conv(self, h: torch.Tensor) -> torch.Tensor:
        """Depthwise convolution over frames (axis 1) with zero padding, on [B, T, patches, channels]."""
        w = self.conv.weight.view(-1, 3)  # [channels, 3]: frame t-1, t, t+1
        padded = F.pad(h, (0, 0, 0, 0, 1, 1))
        return padded[:, :-2] * w[:, 0] + padded[:, 1:-1] * w[:, 1] + padded[:, 2:] * w[:, 2] + self.conv.bias


class VisionAttention(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.query_key_value = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = x.shape
        # Per head: its query, key and value sit side by side in the packed projection.
        qkv = self.query_key_value(x).view(batch, tokens, self.heads, 3, width // self.heads)
        q, k, v = qkv.permute(3, 0, 2, 1, 4).unbind(0)
        return self.dense(attention(q, k, v).transpose(1, 2).reshape(batch, tokens, width))


class VisionMLP(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(quick_gelu(self.fc1(x)))


class VisionLayer(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.temporal = TemporalAdapter(config)
        self.self_attn = VisionAttention(config)
        self.input_layernorm = Fp32LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = VisionMLP(config)
        self.post_attention_layernorm = Fp32LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, tokens, width]: temporal mixing, then attention within each frame."""
        batch, frames = x.shape[:2]
        if frames > 1:
            x = x + self.temporal(x)
        h = x.flatten(0, 1)
        h = h + self.self_attn(self.input_layernorm(h))
        h = h + self.mlp(self.post_attention_layernorm(h))
        return h.unflatten(0, (batch, frames))


class VisionModel(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.embeddings = VisionEmbeddings(config)
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList(VisionLayer(config)
                                                              for _ in range(config.num_hidden_layers))})
        self.post_layernorm = Fp32LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, T, H, W] -> per-frame features [B, T, 1 + patches, width]"""
        x = self.embeddings(pixels)
        for layer in self.encoder["layers"]:
            x = layer(x)
        return self.post_layernorm(x)
