"""VideoCrafter2's text encoder: the OpenCLIP text tower its config names (ViT-H-14 in the release; lvdm
`FrozenOpenCLIPEmbedder`) on transformers' `CLIPTextModel`, and OpenCLIP's tokenizer.

- Tokens: OpenCLIP's `tokenize`: start token, the lower-cased byte-level BPE of the text, end token, cut to 77
  (the end token kept last) and padded with id 0 — not with the end token as Hugging Face CLIP tokenizers do.
  Id 0 is "!", so the padding is added here: a tokenizer with `pad_token="!"` would also read every "!" in a
  prompt as that special token (id 0 instead of OpenCLIP's 256, "!</w>"). The BPE merges ship with this module (`clip_merges.txt.gz`: the first
  48,894 merges of OpenCLIP's `bpe_simple_vocab_16e6`, the vocabulary every CLIP text tower was trained on);
  the vocabulary is built from them in OpenCLIP's order, so a bare `model.ckpt` needs no tokenizer download.
- Encoding: token + positional embeddings, the causal transformer without its last block ("penultimate"),
  then `ln_final`; the whole 77 positions, padding included, are the UNet's context (no padding mask).
  A `CLIPTextModel` with one layer fewer than the checkpoint computes exactly that as its last hidden state.
"""

from __future__ import annotations

import functools
import gzip
import os

import torch

from .config import TextConfig

MERGES = os.path.join(os.path.dirname(__file__), "clip_merges.txt.gz")
START, END = "<|startoftext|>", "<|endoftext|>"


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for bytes, in the order CLIP numbers them."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


@functools.cache
def _vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    with gzip.open(MERGES, "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().splitlines() if line]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [START, END]
    return {token: index for index, token in enumerate(tokens)}, merges


def load_tokenizer(context_length: int = 77):
    """OpenCLIP's tokenizer as a transformers `CLIPTokenizer` (cutting at `context_length` tokens; `tokenize`
    pads)."""
    from transformers import CLIPTokenizer

    vocab, merges = _vocabulary()
    return CLIPTokenizer(vocab=dict(vocab), merges=list(merges), bos_token=START, eos_token=END, unk_token=END,
                         pad_token=END, model_max_length=context_length)


def tokenize(tokenizer, prompts: list[str], context_length: int) -> torch.Tensor:
    """Token ids (len(prompts), context_length), as OpenCLIP's `tokenize` makes them: zero-padded."""
    ids = tokenizer(prompts, max_length=context_length, truncation=True)["input_ids"]
    return torch.tensor([row + [0] * (context_length - len(row)) for row in ids])


def build_text_encoder(config: TextConfig):
    """A `CLIPTextModel` holding the layers the encoding uses (all but the last for "penultimate")."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        vocab_size=config.vocab_size, hidden_size=config.width, intermediate_size=config.width * 4,
        num_hidden_layers=config.used_layers, num_attention_heads=config.heads,
        max_position_embeddings=config.context_length, hidden_act=config.activation, layer_norm_eps=1e-5,
        bos_token_id=config.vocab_size - 2, eos_token_id=config.vocab_size - 1, pad_token_id=0,
    ))


def transformer(text_encoder):
    """The module holding embeddings/encoder/final_layer_norm: transformers 4 nests it as `text_model`, 5 does
    not. The port's tensor names (and converted folders) are those of the inner module, in every version."""
    return getattr(text_encoder, "text_model", text_encoder)


def encode(text_encoder, tokens: torch.Tensor) -> torch.Tensor:
    """The UNet's context (batch, 77, width) for token ids."""
    return text_encoder(input_ids=tokens).last_hidden_state
