"""Where PhyPrompt's models live in ComfyUI's model folders (extra_model_paths.yaml included).

Refiners and their adapters: Hugging Face folders under `models/LLM/`. Video models: diffusers pipeline
folders under `models/diffusers/` or `models/CogVideo/` (where the established CogVideoX pack puts them).
"""

from __future__ import annotations

import json
import os

import folder_paths

LLM = "LLM"
VIDEO_KINDS = ("diffusers", "CogVideo")
_MAX_DEPTH = 3  # models/LLM/<org>/<name>/ is as deep as people nest them

# Core ComfyUI has no LLM (or CogVideo) folder kind; extra_model_paths.yaml may already have added
# paths to them, and the default folder comes first either way (a no-op when it is already there).
for _kind in (LLM, *VIDEO_KINDS):
    folder_paths.add_model_folder_path(_kind, os.path.join(folder_paths.models_dir, _kind), is_default=True)


def _folders_holding(marker: str, kinds: tuple[str, ...], accept=lambda path: True) -> dict[str, str]:
    """{name relative to its base path: absolute path} of every folder holding `marker` (and accepted)."""
    found: dict[str, str] = {}
    for kind in kinds:
        for base in folder_paths.get_folder_paths(kind):
            if not os.path.isdir(base):
                continue
            for root, dirs, files in os.walk(base, followlinks=True):
                depth = os.path.relpath(root, base).count(os.sep) + 1
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                if marker in files and root != base:
                    if accept(os.path.join(root, marker)):
                        found.setdefault(os.path.relpath(root, base).replace(os.sep, "/"), root)
                    dirs[:] = []  # a model's own sub-folders are not models
                elif depth >= _MAX_DEPTH:
                    dirs[:] = []
    return dict(sorted(found.items()))


def refiner_models() -> dict[str, str]:
    return _folders_holding("config.json", (LLM,))


def refiner_adapters() -> dict[str, str]:
    return _folders_holding("adapter_config.json", (LLM,))


def video_models(pipeline_class: str) -> dict[str, str]:
    """Diffusers folders whose model_index.json names `pipeline_class`."""
    def is_pipeline(index_path: str) -> bool:
        try:
            with open(index_path, encoding="utf-8") as f:
                return json.load(f).get("_class_name") == pipeline_class
        except (OSError, ValueError):
            return False

    return _folders_holding("model_index.json", VIDEO_KINDS, is_pipeline)


def resolve(name: str, folders: dict[str, str], what: str, kinds: tuple[str, ...] = (LLM,)) -> str:
    try:
        return folders[name]
    except KeyError:
        paths = ", ".join(p for kind in kinds for p in folder_paths.get_folder_paths(kind))
        raise ValueError(
            f"{what} {name!r} not found under the model folders ({paths}); put the folder there and press R "
            "to refresh"
        ) from None
