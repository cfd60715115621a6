"""A tiny, randomly initialised Qwen2.5-VL video-language model with an in-process trained tokenizer, written
as a normal Hugging Face folder (config, safetensors, tokenizer, image and video processor configs, chat
template). It goes through exactly the code that loads a real Qwen2.5-VL checkpoint. `write_tiny_qwen3_vl`
writes the same for Qwen3-VL, the architecture of Cosmos-Reason2.

`write_tiny_vlm(folder, scripted=True)` instead writes one whose first answer token is scripted: it puts the
probabilities `ANSWER_LOGITS` on the tokens "1".."5" whatever the video and question, then ends, so tests
can check the parsed score and the expected score exactly.
"""

from __future__ import annotations

import os

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]

# Qwen2-VL's own chat template (a system turn, then each message's text and vision placeholders)
CHAT_TEMPLATE = (
    "{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = """\
Does this video match the description? Please rate the video on a scale from 1 to 5, where 5 indicates a perfect
match and 1 indicates no relevance. Does this video adhere to the physical laws? Rate the video on a scale from
1 to 5, where 5 means full compliance and 1 means significant violations. Does the video follow the physical rule?
Choose 0 if not, 1 if valid, or 2 if indeterminate. You are a helpful assistant. system user assistant
A ball falls and bounces on the floor. Water pours into a glass. 0 1 2 3 4 5 6 7 8 9
"""

# The scripted model's logits for the tokens "1".."5" at its first answer position ("4" wins).
ANSWER_LOGITS = (0.0, 1.0, 2.0, 4.0, 3.0)

_HIDDEN = 64  # 4 heads of 16: Qwen2.5-VL's multimodal rope splits 16 / 2 = 8 frequencies as 4 + 2 + 2


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    # digits are split off one by one, as Qwen's own pre-tokenizer does, so "1".."5" are single tokens
    core.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                  pre_tokenizers.ByteLevel(add_prefix_space=False)])
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    core.train_from_iterator(_CORPUS.splitlines() * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        model_max_length=32768)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer):
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # few pixels per frame: 56x56 is 2x2 merged patches, so a 16-frame video is 8 x 4 = 32 video tokens
    pixels = {"min_pixels": 56 * 56, "max_pixels": 56 * 56}
    return Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(**pixels), tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(**pixels), chat_template=CHAT_TEMPLATE)


def build_model(tokenizer, seed: int = 0):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=_HIDDEN, intermediate_size=2 * _HIDDEN, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2]},
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        ),
        vision_config=dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=_HIDDEN,
                           fullatt_block_indexes=[0], window_size=56),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    model = Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def write_tiny_qwen3_vl(folder: str | os.PathLike, seed: int = 0) -> str:
    """A tiny random Qwen3-VL folder (16-pixel patches, interleaved multimodal rope, deepstack features)."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    folder = os.fspath(folder)
    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    torch.manual_seed(seed)
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=_HIDDEN, intermediate_size=2 * _HIDDEN, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [4, 2, 2],
                             "mrope_interleaved": True},
        ),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=_HIDDEN,
                           deepstack_visual_indexes=[1], num_position_embeddings=64),
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )
    Qwen3VLForConditionalGeneration(config).save_pretrained(folder)
    pixels = {"size": {"shortest_edge": 64 * 64, "longest_edge": 64 * 64}}  # 2x2 merged 16-pixel patches
    processor = Qwen3VLProcessor(image_processor=Qwen2VLImageProcessor(patch_size=16, **pixels), tokenizer=tokenizer,
                                 video_processor=Qwen3VLVideoProcessor(**pixels), chat_template=CHAT_TEMPLATE)
    processor.save_pretrained(folder)
    return folder


def script_answer(model, tokenizer) -> None:
    """Make `model` answer "4" (with ANSWER_LOGITS over "1".."5") and then end, whatever it is shown. Works
    on a VLM's language model and on a plain causal LM with untied embeddings.

    Every text layer's output projections are zeroed, so the last hidden state is the current token's
    embedding: every token but "4" shares direction 0, "4" has direction 1; the head maps direction 0 to
    ANSWER_LOGITS and direction 1 to the end of the turn. The final RMSNorm scales a one-hot embedding to
    sqrt(hidden), which the head divides back out.
    """
    import torch

    language = getattr(model.model, "language_model", model.model)
    hidden = language.embed_tokens.weight.shape[1]
    digits = [tokenizer.convert_tokens_to_ids(str(d)) for d in range(1, 6)]
    with torch.no_grad():
        for layer in language.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = torch.zeros_like(language.embed_tokens.weight)
        embed[:, 0] = 1.0
        embed[digits[3]] = 0.0
        embed[digits[3], 1] = 1.0
        language.embed_tokens.weight.copy_(embed)
        head = torch.zeros_like(model.lm_head.weight)
        head[:, 0] = -10.0  # every other token far below the digits
        for token, logit in zip(digits, ANSWER_LOGITS):
            head[token, 0] = logit
        head[tokenizer.eos_token_id, 1] = 10.0
        model.lm_head.weight.copy_(head / hidden**0.5)


def write_tiny_vlm(folder: str | os.PathLike, *, scripted: bool = False, seed: int = 0) -> str:
    """Write a tiny Qwen2.5-VL folder and return its path; `scripted` answers "4" (see `script_answer`)."""
    folder = os.fspath(folder)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, seed)
    if scripted:
        script_answer(model, tokenizer)
    model.save_pretrained(folder)
    build_processor(tokenizer).save_pretrained(folder)
    return folder


def expected_answer() -> float:
    """The expected score the scripted model's ANSWER_LOGITS give."""
    import math

    weights = [math.exp(logit) for logit in ANSWER_LOGITS]
    return sum(score * weight for score, weight in zip(range(1, 6), weights)) / sum(weights)
