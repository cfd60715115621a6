"""`phyprompt convert videocrafter2 model.ckpt OUT_DIR [--dtype fp16] [--config model.yaml]`: the original
checkpoint as a folder the backend loads without unpickling anything: `model.safetensors` in this port's names,
`config.json` beside it (the architecture read from the YAML, text tower included).

The conversion builds the model from the checkpoint first (strictly, as loading does), so a checkpoint that
would not load is never converted, and what is written is exactly what the port holds. The schedule stays
float32 in any dtype (the sampler reads its alphas in float32, as the original does). The folder appears
complete or not at all (files.atomic_path).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from ...infra.files import atomic_path
from ..backend import VideoModelError
from .model import CLASS_NAME, CONFIG_FILE, FORMAT_VERSION, WEIGHTS_FILE, build, port_state_dict, read_original


def convert(source, out, *, dtype: str | None = None, config: str | None = None) -> Path:
    """Convert `source` (the original .ckpt/.safetensors, with its YAML `config`, else the .yaml beside it if
    any) into the folder `out`; `dtype` fp16, bf16 or fp32 (None: as stored). Returns the folder."""
    from safetensors.torch import save_file

    from ...infra.checkpoints import CheckpointError
    from ...infra.devices import PRECISIONS, torch_dtype

    source, out = os.fspath(source), Path(out)
    if dtype is not None and dtype not in PRECISIONS:
        raise VideoModelError(f"unknown dtype {dtype!r}; choose one of: {', '.join(PRECISIONS)}")
    if os.path.isdir(source):
        raise VideoModelError(f"{source} is a folder; convert the original checkpoint file (model.ckpt)")
    if not os.path.isfile(source):
        raise VideoModelError(f"VideoCrafter2 checkpoint not found: {source}")
    try:
        model = build(*read_original(source, config), source=os.path.basename(source))
    except CheckpointError as exc:
        raise VideoModelError(str(exc)) from exc
    target = torch_dtype(dtype) if dtype else None
    tensors = {}
    for key, tensor in port_state_dict(model).items():
        if target is not None and tensor.is_floating_point() and not key.startswith("schedule."):
            tensor = tensor.to(target)
        tensors[key] = tensor.contiguous()
    stored = {str(t.dtype).removeprefix("torch.") for k, t in tensors.items() if not k.startswith("schedule.")}
    config = {"_class_name": CLASS_NAME, "format_version": FORMAT_VERSION, "source": os.path.basename(source),
              "dtype": "/".join(sorted(stored)), "config": model.config.to_dict(),
              "text": asdict(model.text_config)}
    with atomic_path(out) as partial:
        partial.mkdir()
        save_file(tensors, os.fspath(partial / WEIGHTS_FILE), metadata={"format": "pt"})
        (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out
