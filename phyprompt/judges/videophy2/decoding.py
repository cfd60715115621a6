"""Greedy decoding of several prompts at once from their embeddings.

Prompts of different lengths are left-padded; the attention mask hides the padding and position ids count
only real tokens, so each prompt is decoded as if it were alone (as the reference decodes one at a time).
Like transformers 4.28's `generate(inputs_embeds=…, max_length=256)`, which starts its output with a <s>
it counts towards max_length, at most `max_length - 1` tokens are generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: the reference's generate(max_length=256), which counts the leading <s>
MAX_LENGTH = 256


@dataclass
class Decoded:
    #: generated ids per prompt, up to and without the first </s>
    ids: list[list[int]]
    #: float32 logits [prompts, vocab] at the first answer position
    first_logits: torch.Tensor


@torch.inference_mode()
def greedy_decode(language_model, embeds: list[torch.Tensor], *, eos_id: int,
                  max_length: int = MAX_LENGTH) -> Decoded:
    from transformers import DynamicCache

    if max_length < 2:
        raise ValueError(f"max_length counts the leading <s>, so it must be at least 2, not {max_length}")
    count, width = len(embeds), embeds[0].shape[-1]
    longest = max(e.shape[0] for e in embeds)
    device, dtype = embeds[0].device, embeds[0].dtype
    inputs = torch.zeros(count, longest, width, device=device, dtype=dtype)
    mask = torch.zeros(count, longest, device=device, dtype=torch.long)
    for row, embed in enumerate(embeds):
        inputs[row, longest - embed.shape[0]:] = embed
        mask[row, longest - embed.shape[0]:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    cache = DynamicCache(config=language_model.config)
    logits = language_model(inputs_embeds=inputs, attention_mask=mask, position_ids=positions, cache=cache,
                            use_cache=True, logits_to_keep=1).logits[:, -1].float()
    first_logits = logits
    next_position = mask.sum(-1, keepdim=True)
    finished = torch.zeros(count, dtype=torch.bool, device=device)
    steps = []
    for step in range(max_length - 1):
        token = logits.argmax(-1).masked_fill(finished, eos_id)
        steps.append(token)
        finished |= token == eos_id
        if bool(finished.all()) or step == max_length - 2:
            break
        mask = torch.cat([mask, mask.new_ones(count, 1)], dim=1)
        logits = language_model(input_ids=token[:, None], attention_mask=mask, position_ids=next_position,
                                cache=cache, use_cache=True).logits[:, -1].float()
        next_position = next_position + 1
    generated = torch.stack(steps, dim=1).tolist()
    ids = [row[:row.index(eos_id)] if eos_id in row else row for row in generated]
    return Decoded(ids, first_logits)
