"""Checks on model folders before a loader touches them: missing, incomplete or damaged files become
one clear error naming the folder and the fix, instead of a deep traceback from transformers or
diffusers."""

from __future__ import annotations

import json
import os
import struct

WEIGHT_SUFFIXES = (".safetensors", ".bin")


class ModelFolderError(ValueError):
    """A model folder is missing, incomplete or damaged; the message says what to do."""


def check_safetensors(path: str, error: type[ModelFolderError] = ModelFolderError) -> None:
    """Catch truncated or garbled safetensors files by reading only their header."""
    size = os.path.getsize(path)
    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError("header longer than the file")
            header = json.loads(f.read(header_len))
        data_end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as exc:
        raise error(f"{name} is not a valid safetensors file ({exc}); download it again") from exc
    if 8 + header_len + data_end > size:
        raise error(f"{name} is truncated ({size} bytes, needs {8 + header_len + data_end}); download it again")


def read_folder_json(folder: str, filename: str, what: str, kind: str,
                     error: type[ModelFolderError] = ModelFolderError) -> dict:
    """The JSON file that marks `folder` as a `kind` (model_index.json, adapter_config.json, …)."""
    if not os.path.isdir(folder):
        raise error(f"{what} folder not found: {folder}")
    path = os.path.join(folder, filename)
    if not os.path.isfile(path):
        raise error(f"{folder} has no {filename}, so it is not {kind}")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def check_weights_folder(folder: str, what: str, error: type[ModelFolderError] = ModelFolderError,
                         hint: str = "") -> None:
    """`folder` exists and holds a config.json and complete, readable weights."""
    if not os.path.isdir(folder):
        raise error(f"{what} folder not found: {folder}")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise error(f"{folder} has no config.json, so it is not a Hugging Face model folder{hint}")
    weights = [f for f in os.listdir(folder) if f.endswith(WEIGHT_SUFFIXES)]
    if not weights:
        raise error(f"{folder} holds no weights (*.safetensors or *.bin); copy the model's weight files into it")
    for index in (f for f in os.listdir(folder) if f.endswith(".index.json")):
        with open(os.path.join(folder, index), encoding="utf-8") as f:
            shards = set(json.load(f).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not os.path.isfile(os.path.join(folder, s)))
        if missing:
            raise error(f"{folder} is missing weight shards: {', '.join(missing)}")
    for name in weights:
        if name.endswith(".safetensors"):
            check_safetensors(os.path.join(folder, name), error)
