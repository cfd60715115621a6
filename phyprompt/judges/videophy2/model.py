"""The whole AutoEval network: vision tower -> abstractor -> 65 video tokens, spliced into the prompt's
embeddings of transformers' own `LlamaForCausalLM`. Parameter names are the released checkpoint's."""

from __future__ import annotations

import torch
from torch import nn

from .abstractor import VisualAbstractor
from .config import AutoEvalConfig
from .vision import VisionModel


class AutoEvalModel(nn.Module):
    def __init__(self, config: AutoEvalConfig):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = config
        width = config.abstractor.hidden_size
        self.vision_model = VisionModel(config.vision)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, width))
        self.temporal_query_tokens = nn.Parameter(torch.zeros(1, config.num_query_tokens, width))
        self.abstractor = VisualAbstractor(config.abstractor, config.text["hidden_size"])
        self.language_model = LlamaForCausalLM(config.llama_config())

    @property
    def dtype(self) -> torch.dtype:
        return self.query_tokens.dtype

    @property
    def device(self) -> torch.device:
        return self.query_tokens.device

    def encode_videos(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels [B, 3, T, H, W] (see `frames.autoeval_pixels`) -> video tokens [B, 65, text width]."""
        features = self.vision_model(pixels.to(self.device, self.dtype))
        batch = features.shape[0]
        return self.abstractor(self.query_tokens.expand(batch, -1, -1),
                               self.temporal_query_tokens.expand(batch, -1, -1), features)

    def embed_prompt(self, before: list[int], video: torch.Tensor, after: list[int]) -> torch.Tensor:
        """Embeddings [len(before) + 65 + len(after), width] of a prompt whose video tokens are `video`
        ([65, width]) between the token ids `before` and `after`."""
        table = self.language_model.get_input_embeddings()
        ids = torch.tensor(before + after, dtype=torch.long, device=self.device)
        text = table(ids)
        return torch.cat([text[:len(before)], video.to(text.dtype), text[len(before):]], dim=0)
