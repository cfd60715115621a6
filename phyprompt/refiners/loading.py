"""Loading a refiner: a Hugging Face causal-LM folder or a GGUF file (llama.cpp, Ollama), optionally with a
PEFT LoRA adapter. GGUF weights are dequantised to float by transformers on load.

Every failure a user can cause (a wrong folder, missing or damaged weights, an adapter for another
model, a quantization backend that is not installed) becomes one `RefinerLoadError` whose message
names the problem and the fix. `trust_remote_code` is never enabled.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import struct
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..infra.checkpoints import check_weights_folder, read_folder_json
from ..infra.console import first_line
from ..infra.devices import resolve_device, resolve_dtype
from .base import RefinerLoadError
from .builtin import ADAPTER_DIR, BUILTIN_MODEL, is_builtin, smollm2_gguf
from .hub import resolve_hub_id

if TYPE_CHECKING:  # annotations only: the CLI reads QUANTIZATIONS and DEFAULT_MODEL without importing torch
    import torch

log = logging.getLogger(__name__)

QUANTIZATIONS = ("none", "8bit", "4bit")
DEFAULT_MODEL = BUILTIN_MODEL  # works offline, with nothing downloaded from a hub (see builtin.py)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GGUF_SUFFIX = ".gguf"


@dataclass(frozen=True)
class LoadSpec:
    """Everything needed to (re)load a refiner, so a released model can come back from disk."""

    model: str  # a model folder, a .gguf file, or (with allow_download) a Hugging Face hub id
    adapter: str | None = None
    dtype: str = "auto"  # resolved for `device`, where the model runs
    device: str = "auto"
    # Where the weights are put at load time, when that differs from `device`: ComfyUI loads onto its
    # offload device and moves the model to the GPU itself when the model is needed.
    load_on: str | None = None
    quantization: str = "none"
    merge_adapter: bool = False
    allow_download: bool = False


def is_hub_id(name: str) -> bool:
    """`name` has a hub id's shape (owner/name) and nothing says it is a local path instead."""
    return bool(_HUB_ID.match(name)) and not looks_like_path(name)


def looks_like_path(name: str) -> bool:
    """A local path by its look: it exists, starts with . / ~ or \\, ends in .gguf, or its first part is a
    folder here (so `models/SmolLM2`, a typo'd path, is not taken for a hub id and looked for online)."""
    return (os.path.exists(name) or name.startswith((".", "/", "~", "\\")) or is_gguf(name)
            or local_first_part(name) is not None)


def local_first_part(name: str) -> str | None:
    """The first part of `name` (`models` in `models/SmolLM2`) when it is a folder here, else None."""
    first = re.split(r"[\\/]", name, maxsplit=1)[0]
    return first if first and os.path.isdir(first) else None


def is_gguf(name: str) -> bool:
    return name.lower().endswith(GGUF_SUFFIX)


def check_model_folder(folder: str) -> None:
    """Fail early, with a useful message, on a folder (or GGUF file) that cannot hold a loadable refiner."""
    if is_gguf(folder):
        check_gguf_file(folder)
        return
    hint = ""
    if os.path.isfile(os.path.join(folder, "adapter_config.json")):
        hint = " (it looks like a PEFT adapter: choose it as the adapter)"
    check_weights_folder(folder, "refiner", RefinerLoadError, hint)


def check_gguf_file(path: str) -> None:
    """`path` is a complete, single-part GGUF file and the gguf package that reads it is installed."""
    if not os.path.isfile(path):
        raise RefinerLoadError(f"GGUF file not found: {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise RefinerLoadError(f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)")
    if importlib.util.find_spec("gguf") is None:
        raise RefinerLoadError(f"loading {os.path.basename(path)} needs the gguf package: pip install gguf")
    from gguf import GGUFReader

    try:
        # reads the header and maps every tensor: a file cut short fails here, not deep inside transformers
        reader = GGUFReader(path)
    except (ValueError, IndexError, struct.error) as exc:
        raise RefinerLoadError(f"{path} is truncated or damaged ({first_line(exc)}); copy or download it "
                               "again") from exc
    split = reader.fields.get("split.count")
    parts = int(split.parts[split.data[0]][0]) if split is not None else 1
    if parts > 1:
        # transformers reads one file: the tensors in the other parts would be left randomly initialised
        raise RefinerLoadError(f"{path} is one part of a GGUF split into {parts} files; merge them into one "
                               "first: llama-gguf-split --merge FIRST_PART OUT.gguf")


def _quantization_config(quantization: str, dtype: torch.dtype, device: torch.device):
    if quantization == "none":
        return None
    if quantization not in QUANTIZATIONS:
        raise RefinerLoadError(f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)}")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise RefinerLoadError(
            f"{quantization} quantization needs bitsandbytes: pip install bitsandbytes (or choose quantization none)"
        )
    if device.type != "cuda":
        raise RefinerLoadError(f"{quantization} quantization runs on CUDA GPUs only; choose quantization none")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_type="nf4")


def resolve_builtin(spec: LoadSpec) -> LoadSpec:
    """The built-in refiner's spec as files (the SmolLM2 GGUF and the shipped adapter); others unchanged."""
    if not is_builtin(spec.model):
        return spec
    if spec.adapter:
        raise RefinerLoadError("the built-in refiner brings its own adapter: choose adapter none, or another model")
    return replace(spec, model=smollm2_gguf(RefinerLoadError), adapter=ADAPTER_DIR)


def load_model_and_tokenizer(spec: LoadSpec):
    """The (model, tokenizer) pair a spec describes, in eval mode on its device."""
    source = spec.model
    local = not (spec.allow_download and is_hub_id(source))
    if not local:  # before transformers is imported: a hub that cannot be asked is said in seconds
        source = resolve_hub_id(source)  # the id, or its cached copy's folder when the hub cannot be asked
        local = source != spec.model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if local:
        check_model_folder(source)
    gguf = is_gguf(spec.model)
    if gguf and spec.quantization != "none":
        raise RefinerLoadError(f"{spec.quantization} quantization does not apply to a GGUF file (it is loaded "
                               "dequantised to float); choose quantization none")
    device = resolve_device(spec.device, RefinerLoadError)
    dtype = resolve_dtype(spec.dtype, device, RefinerLoadError)
    quantization = _quantization_config(spec.quantization, dtype, device)
    if quantization is None and spec.load_on is not None:
        device = resolve_device(spec.load_on, RefinerLoadError)
    log.info("loading refiner %s%s", spec.model, f" with adapter {spec.adapter}" if spec.adapter else "")
    common = dict(local_files_only=local, trust_remote_code=False)
    if gguf:
        # transformers reads the config, tokenizer and chat template out of the GGUF file itself; an absolute
        # path, because a bare file name is looked for in the working directory before the folder
        common["gguf_file"] = os.path.abspath(spec.model)
        source = os.path.dirname(common["gguf_file"])
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **common)
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=dtype,
            quantization_config=quantization,
            device_map={"": device} if quantization is not None else None,
            **common,
        )
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise RefinerLoadError(f"could not load refiner {spec.model}: {first_line(exc)}") from exc
    if quantization is None:
        model.to(device)
    if spec.adapter:
        model = _apply_adapter(model, spec.adapter, spec.merge_adapter, local)
    model.eval()
    return model, tokenizer


def _apply_adapter(model, adapter: str, merge: bool, local: bool):
    from peft import PeftModel

    if local:
        config = read_folder_json(adapter, "adapter_config.json", "adapter", "a PEFT adapter", RefinerLoadError)
        base = config.get("base_model_name_or_path") or "an unknown base model"
    else:
        base = "its base model"
    try:
        model = PeftModel.from_pretrained(model, adapter, local_files_only=local, is_trainable=False)
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise RefinerLoadError(
            f"adapter {adapter} does not fit this refiner (it was trained for {base}): {first_line(exc)}"
        ) from exc
    return model.merge_and_unload() if merge else model
