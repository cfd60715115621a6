"""The visual abstractor: learned queries that read the video's features and become the LLaMA's 65 video
tokens.

Parameter names are the released checkpoint's (`abstractor.…`). As in the reference: each layer normalises
the queries (norm1) and the visual features (normk), and attends from the normalised queries to the
normalised queries prepended to the visual features; its residual starts from the normalised queries, not
the layer's input. The 64 spatial and 64 temporal queries run together; at the end `visual_fc(spatial) +
temporal_visual_fc(temporal)` gives 64 tokens and the learned `vit_eos` is appended. The reference's attention
masks are all ones (adding zero) and its dropout is off at inference, so neither appears here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AbstractorConfig
from .layers import Fp32LayerNorm, attention


class AbstractorMLP(nn.Module):
    """SwiGLU with a LayerNorm before the down-projection."""

    def __init__(self, config: AbstractorConfig):
        super().__init__()
        width, hidden = config.hidden_size, config.mlp_size
        self.w1 = nn.Linear(width, hidden)
        self.w2 = nn.Linear(hidden, width)
        self.w3 = nn.Linear(width, hidden)
        self.ffn_ln = Fp32LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self.ffn_ln(F.silu(self.w1(x)) * self.w3(x)))


class CrossAttention(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.encoder_hidden_size, config.hidden_size)
        self.value = nn.Linear(config.encoder_hidden_size, config.hidden_size)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        def heads(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

        out = attention(heads(self.query(queries)), heads(self.key(context)), heads(self.value(context)))
        return out.transpose(1, 2).flatten(2)


class CrossOutput(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm2 = Fp32LayerNorm(config.hidden_size)  # eps 1e-5 (torch's default), as in the reference
        self.mlp = AbstractorMLP(config)

    def forward(self, attended: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        x = residual + self.out_proj(attended)
        return x + self.mlp(self.norm2(x))


class AbstractorBlock(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.attention = CrossAttention(config)
        self.output = CrossOutput(config)
        self.norm1 = Fp32LayerNorm(config.hidden_size)
        self.normk = Fp32LayerNorm(config.hidden_size)

    def forward(self, queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        queries = self.norm1(queries)
        context = torch.cat([queries, self.normk(visual)], dim=1)
        return self.output(self.attention(queries, context), queries)


class AbstractorLayer(nn.Module):
    def __init__(self, config: AbstractorConfig):
        super().__init__()
        self.crossattention = AbstractorBlock(config)

    def forward(self, queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        return self.crossattention(queries, visual)


class VisualAbstractor(nn.Module):
    def __init__(self, config: AbstractorConfig, text_width: int):
        super().__init__()
        self.encoder = nn.ModuleDict({"layers": nn.ModuleList(AbstractorLayer(config)
                                                              for _ in range(config.num_hidden_layers))})
        self.visual_fc = nn.Linear(config.hidden_size, text_width)
        self.temporal_visual_fc = nn.Linear(config.hidden_size, text_width)
        self.vit_eos = nn.Parameter(torch.zeros(1, 1, text_width))

    def forward(self, queries: torch.Tensor, temporal_queries: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """queries, temporal_queries [B, Q, width], visual [B, T, tokens, width] -> [B, Q + 1, text_width]"""
        frames, count = visual.shape[1], queries.shape[1]
        x = queries if frames == 1 else torch.cat([queries, temporal_queries], dim=1)
        visual = visual.flatten(1, 2)
        for layer in self.encoder["layers"]:
            x = layer(x, visual)
        tokens = self.visual_fc(x[:, :count])
        if frames > 1:
            tokens = tokens + self.temporal_visual_fc(x[:, count:])
        return torch.cat([tokens, self.vit_eos.expand(tokens.shape[0], -1, -1).to(tokens.dtype)], dim=1)
