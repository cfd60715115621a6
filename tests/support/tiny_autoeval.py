"""A tiny, randomly initialised VideoPhy-2 AutoEval written in the released folder's layout: config.json (an
mPLUG-Owl config with vision, abstractor and LLaMA sub-configs, shaped like the real one), two sharded
`.bin` files with `pytorch_model.bin.index.json`, the old LLaMA format's rotary `inv_freq` buffers, bf16
tensors, and a sentencepiece `tokenizer.model` trained here with <unk>=0, <s>=1, </s>=2 like LLaMA's."""

from __future__ import annotations

import io
import json
import os
import re

SHARDS = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
INDEX = "pytorch_model.bin.index.json"
VOCAB = 320

_CORPUS = [
    "The following is a conversation between a curious human and an AI assistant.",
    "The assistant gives helpful, detailed, and polite answers to the user's questions.",
    "Human: Does this video match the description? Please rate the video on a scale from 1 to 5,",
    "where 5 indicates a perfect match and 1 indicates no relevance. AI: 4",
    "Human: Does this video adhere to the physical laws? Rate the video on a scale from 1 to 5,",
    "where 5 means full compliance and 1 means significant violations. AI: 3",
    "Human: Does the video follow the physical rule? Choose 0 if not, 1 if valid, or 2 if indeterminate.",
    "A red ball falls from a table and bounces on the floor; water pours from a glass into a bowl.",
    "A cat jumps onto a kitchen counter. Gravity, friction, momentum and contact forces. 0 1 2 3 4 5",
]


def tiny_config(vocab_size: int = VOCAB, patch_size: int = 28) -> dict:
    """config.json as transformers 4.28 wrote the released one, with tiny sizes (64 queries and 224 px as
    released; 28 px patches, 8×8 per frame, keep the tests fast, the released 14 works too)."""
    return {
        "architectures": ["MplugOwlForConditionalGeneration"],
        "model_type": "mplug-owl",
        "num_query_tokens": 64,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.28.1",
        "vision_config": {
            "model_type": "mplug_owl_vision_model", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 4, "image_size": 224, "patch_size": patch_size,
            "layer_norm_eps": 1e-6, "hidden_act": "quick_gelu", "projection_dim": 32,
        },
        "visual_abstractor_config": {
            "model_type": "mplug_owl_visual_abstract", "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 64, "encoder_hidden_size": 32, "layer_norm_eps": 1e-6,
        },
        "text_config": {
            "model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": vocab_size,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "hidden_act": "silu", "max_position_embeddings": 2048, "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        },
    }


def train_tokenizer(path: str, vocab_size: int = VOCAB) -> None:
    """A LLaMA-style sentencepiece BPE model trained on a few lines: digits split, byte fallback, and LLaMA's
    normalizer (none: spaces are kept as they are, a "▁" is prefixed)."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        split_digits=True, byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, minloglevel=2)
    with open(path, "wb") as f:
        f.write(model.getvalue())


def random_state_dict(config: dict, seed: int = 0) -> dict:
    """Random weights under the released checkpoint's names (built from the port's own modules), plus the
    `inv_freq` buffers the old LLaMA format stored."""
    import torch

    from phyprompt.judges.videophy2.config import AutoEvalConfig
    from phyprompt.judges.videophy2.model import AutoEvalModel

    with torch.device("meta"):
        names = {k: v.shape for k, v in AutoEvalModel(AutoEvalConfig.from_dict(config)).state_dict().items()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in names.items():
        noise = torch.randn(shape, generator=generator)
        is_norm = len(shape) == 1 and re.search(r"(norm\w*|ln)\.weight$", key)
        state[key] = 1 + 0.1 * noise if is_norm else 0.05 * noise
    text = config["text_config"]
    head = text["hidden_size"] // text["num_attention_heads"]
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head, 2).float() / head))
    for layer in range(text["num_hidden_layers"]):
        state[f"language_model.model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = inv_freq.clone()
    return state


def save_release_layout(folder: str, state: dict, config: dict, dtype=None) -> None:
    """Two `.bin` shards (vision and abstractor, then the language model) in `dtype` (bf16 as released when
    None), their index, config.json."""
    import torch

    dtype = dtype or torch.bfloat16
    os.makedirs(folder, exist_ok=True)
    weight_map = {key: SHARDS[key.startswith("language_model.")] for key in state}
    for shard in SHARDS:
        torch.save({k: v.to(dtype) for k, v in state.items() if weight_map[k] == shard}, os.path.join(folder, shard))
    total = sum(v.numel() for v in state.values()) * torch.finfo(dtype).bits // 8
    with open(os.path.join(folder, INDEX), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(folder, "config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)


def write_tiny_autoeval(folder: str | os.PathLike, seed: int = 0) -> str:
    folder = os.fspath(folder)
    config = tiny_config()
    save_release_layout(folder, random_state_dict(config, seed), config)
    train_tokenizer(os.path.join(folder, "tokenizer.model"))
    return folder
