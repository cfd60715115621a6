"""Small pieces the vision tower and the abstractor share."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Fp32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 and returned in the input's dtype, as everywhere in the reference:
    half-precision mean and variance would drift from what the model was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.float(), self.normalized_shape, self.weight.float(), self.bias.float(),
                            self.eps).type_as(x)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """CLIP's GELU approximation, which the vision tower was trained with."""
    return x * torch.sigmoid(1.702 * x)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked softmax attention over [batch, heads, tokens, head_dim]. The reference spells out
    softmax(q kᵀ / √d) v; PyTorch's fused kernel computes the same (in fp32 to ~1e-7) without holding the
    [tokens × tokens] scores of 32 frames in memory."""
    return F.scaled_dot_product_attention(q, k, v)
