"""Opening the released AutoEval folder as it is: config.json, the sharded `.bin` weights with their
`pytorch_model.bin.index.json`, and the sentencepiece `tokenizer.model`.

Weights go through `phyprompt.infra.checkpoints` (weights_only unpickling, memory-mapped shards, damage reported in
one line) and load strictly by name: the only tolerated difference is the old LLaMA format's rotary
`inv_freq` buffers, which transformers now computes instead of storing. The model is built on the meta
device and takes the file's tensors as its own, so a 7B model is never held twice.
"""

from __future__ import annotations

import os

import torch

from ...infra.checkpoints import ModelFolderError, load_into, load_state_dict, read_folder_json
from .config import AutoEvalConfig
from .model import AutoEvalModel
from .tokenizer import PromptTokenizer

TOKENIZER_FILE = "tokenizer.model"
#: checkpoint keys expected in the released file and not kept by the module
IGNORED_KEYS = (r"^language_model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$",)
WHAT = "VideoPhy-2 AutoEval"


def load_autoeval(folder: str | os.PathLike, *, device: torch.device,
                  dtype: torch.dtype) -> tuple[AutoEvalModel, PromptTokenizer]:
    folder = os.fspath(folder)
    raw = read_folder_json(folder, "config.json", WHAT, "a model folder (videophysics/videophy_2_auto)")
    config = AutoEvalConfig.from_dict(raw, where=os.path.join(folder, "config.json"))
    tokenizer_file = os.path.join(folder, TOKENIZER_FILE)
    if not os.path.isfile(tokenizer_file):
        raise ModelFolderError(f"{folder} has no {TOKENIZER_FILE}; copy the LLaMA tokenizer file of "
                               "videophysics/videophy_2_auto into it")
    tokenizer = PromptTokenizer(tokenizer_file)
    if tokenizer.vocab_size > config.text["vocab_size"]:
        raise ModelFolderError(f"{TOKENIZER_FILE} has {tokenizer.vocab_size} tokens but the model only "
                               f"{config.text['vocab_size']}: the tokenizer belongs to another model")

    with torch.device("meta"):
        model = AutoEvalModel(config)
    state_dict = load_state_dict(folder)
    load_into(model, state_dict, ignore=IGNORED_KEYS, assign=True, source=f"the weights in {folder}", target=WHAT)
    del state_dict
    # The rotary embedding's frequencies are a computed buffer, left on the meta device by the build; it is
    # recreated after the cast so that they stay in float32 (see _rebuild_rotary).
    del model.language_model.model.rotary_emb
    model.to(device=device, dtype=dtype)
    _rebuild_rotary(model, device)
    model.eval().requires_grad_(False)
    return model, tokenizer


def _rebuild_rotary(model: AutoEvalModel, device: torch.device) -> None:
    """The LLaMA's rotary embedding, frequencies in float32: rounded to bf16 they would turn a position like
    500 by a visibly wrong angle, while transformers 4.28 computed the angles in float32 and only rounded
    the cos/sin tables."""
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

    backbone = model.language_model.model
    backbone.rotary_emb = LlamaRotaryEmbedding(config=model.language_model.config).to(device)
