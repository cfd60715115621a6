"""A tiny, randomly initialised Qwen2 refiner with an in-process trained tokenizer, written as a normal
Hugging Face folder. It goes through exactly the code that loads a real Qwen2.5 checkpoint."""

from __future__ import annotations

import os

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = """\
A glass of water tips over and the water spills across the wooden table, spreading into a thin sheet.
A red rubber ball falls from a balcony, accelerating under gravity, bounces on the pavement and loses height.
A cat jumps onto a kitchen table, pushing off with its hind legs and landing softly on its front paws.
An ice cube melts in a pan of hot oil, hissing as the water boils away into steam.
Sunlight refracts through a prism and splits into a rainbow on the white wall; shadows stretch.
<think> gravity friction momentum contact elastic collision buoyancy viscosity torque </think>
<prompt> physically plausible motion, the ball rebounds lower after each bounce </prompt>
You rewrite prompts for a text-to-video model so that the video obeys real-world physics.
Target video model text encoder reads at most tokens words; keep the prompt within that budget.
猫がテーブルに飛び乗る。一只猫跳上桌子。 قطة تقفز على الطاولة 🐱🎈💧🔥
"""


def build_tokenizer(chat_template: str | None = CHATML_TEMPLATE):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token=None))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    # the instruction's own text is in the corpus so it encodes to few tokens: short sequences keep
    # the tests (and the fine-tune in write_trained_tiny_refiner) fast
    from phyprompt.language.instruction import SYSTEM_PROMPT, USER_TEMPLATE

    core.train_from_iterator((_CORPUS + SYSTEM_PROMPT + USER_TEMPLATE).splitlines() * 4, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=4096
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_model(tokenizer, hidden_size: int = 32, layers: int = 2, seed: int = 0, context: int = 4096,
                tie_word_embeddings: bool = True):
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        tie_word_embeddings=tie_word_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def write_tiny_refiner(folder: str | os.PathLike, *, chat_template: str | None = CHATML_TEMPLATE,
                       **model_options) -> str:
    """Write a tiny refiner folder (config, safetensors, tokenizer) and return its path."""
    folder = os.fspath(folder)
    tokenizer = build_tokenizer(chat_template)
    model = build_model(tokenizer, **model_options)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_adapter(base_folder: str, folder: str | os.PathLike, seed: int = 1, **lora) -> str:
    """A LoRA adapter for a tiny refiner, with non-zero weights so it changes the output (`lora`: LoraConfig
    settings other than the default r=4, alpha=8 on q_proj and v_proj)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = os.fspath(folder)
    model = AutoModelForCausalLM.from_pretrained(base_folder)
    settings = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]} | lora
    peft_model = get_peft_model(model, LoraConfig(**settings))
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(folder)
    return folder


TRAINED_REASONING = "Gravity pulls the cat down after its jump, so it lands softly on its paws."
TRAINED_PROMPT = "A cat jumps onto a table and lands softly on its paws."


def write_trained_tiny_refiner(folder: str | os.PathLike, steps: int = 80) -> str:
    """A tiny refiner taught, by a few seconds of real fine-tuning, to answer every prompt with the
    same well-formed contract answer (TRAINED_REASONING / TRAINED_PROMPT), so tests can follow a
    *successful* refinement through the nodes and the CLI."""
    import torch

    from phyprompt.language.instruction import answer_continuation, build_messages, render_prompt

    folder = os.fspath(folder)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer, hidden_size=64, seed=3)
    # the refiner starts the assistant turn with "<think>\n" itself (ASSISTANT_PREFIX)
    answer = answer_continuation(TRAINED_REASONING, TRAINED_PROMPT) + tokenizer.eos_token
    examples = []
    for prompt, target in (("a cat jumps onto a table", "cogvideox"), ("water pours into a glass", "lavie"),
                           ("a ball rolls down a ramp", "videocrafter2"), ("猫が跳ぶ 🐱", "generic")):
        context = tokenizer(render_prompt(tokenizer, build_messages(prompt, target)), add_special_tokens=False)
        target_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = torch.tensor([context["input_ids"] + target_ids])
        labels = ids.clone()
        labels[0, : len(context["input_ids"])] = -100
        examples.append((ids, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        ids, labels = examples[step % len(examples)]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build_looping_model(tokenizer, cycle: list[int], detour: list[int] = (), hidden_size: int = 128):
    """A tiny Qwen2 that loops like an untrained base model: whatever the prompt, it writes the tokens
    of `cycle` round and round for ever. With a `detour` it instead takes, with even odds when
    sampling, a path through the `detour` tokens and then ends (end of sequence).

    Every layer's output projection (attention o_proj, MLP down_proj) is zeroed, so the last hidden
    state is the current token's embedding and the next token depends on the current one only; the
    embeddings give each cycle/detour token its own direction (all other tokens share one) and the
    untied lm_head maps each direction to its successor.
    """
    import torch

    states = list(cycle) + list(detour)
    assert len(set(states)) == len(states) and len(states) < hidden_size, "cycle/detour tokens must be distinct"
    assert tokenizer.eos_token_id not in states
    model = build_model(tokenizer, hidden_size=hidden_size)
    successor = {0: [cycle[0]] + ([detour[0]] if detour else [])}  # direction 0: any other token
    for i, token in enumerate(cycle):
        successor[1 + i] = [cycle[(i + 1) % len(cycle)]]
    for i, token in enumerate(detour):
        successor[1 + len(cycle) + i] = [detour[i + 1] if i + 1 < len(detour) else tokenizer.eos_token_id]
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        embed = torch.zeros_like(model.model.embed_tokens.weight)
        embed[:, 0] = 1.0
        for direction, token in enumerate(states, start=1):
            embed[token] = 0.0
            embed[token, direction] = 1.0
        head = torch.zeros_like(embed)
        for direction, targets in successor.items():
            for token in targets:
                head[token, direction] = 10.0
        model.model.embed_tokens.weight = torch.nn.Parameter(embed)
        model.lm_head.weight = torch.nn.Parameter(head)  # untied from the embeddings
    model.config.tie_word_embeddings = False
    return model.eval()
