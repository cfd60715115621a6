"""Where refiner models and adapters live: `models/LLM/` and every `LLM` path from extra_model_paths.yaml."""

from __future__ import annotations

import os

import folder_paths

FOLDER_KIND = "LLM"
_MAX_DEPTH = 3  # models/LLM/<org>/<name>/ is as deep as people nest them

# ComfyUI core has no LLM folder kind; extra_model_paths.yaml may already have added paths to it, and
# the default models/LLM comes first either way (a no-op when it is already there)
folder_paths.add_model_folder_path(FOLDER_KIND, os.path.join(folder_paths.models_dir, FOLDER_KIND), is_default=True)


def _folders_holding(marker: str) -> dict[str, str]:
    """{name relative to its base path: absolute path} for every folder under the LLM paths with `marker`."""
    found: dict[str, str] = {}
    for base in folder_paths.get_folder_paths(FOLDER_KIND):
        if not os.path.isdir(base):
            continue
        for root, dirs, files in os.walk(base, followlinks=True):
            depth = os.path.relpath(root, base).count(os.sep) + 1
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if marker in files and root != base:
                found.setdefault(os.path.relpath(root, base).replace(os.sep, "/"), root)
                dirs[:] = []  # a model's own sub-folders are not models
            elif depth >= _MAX_DEPTH:
                dirs[:] = []
    return dict(sorted(found.items()))


def refiner_models() -> dict[str, str]:
    return _folders_holding("config.json")


def refiner_adapters() -> dict[str, str]:
    return _folders_holding("adapter_config.json")


def resolve(name: str, folders: dict[str, str], what: str) -> str:
    try:
        return folders[name]
    except KeyError:
        paths = ", ".join(folder_paths.get_folder_paths(FOLDER_KIND))
        raise ValueError(
            f"{what} {name!r} not found under the LLM model folders ({paths}); put the Hugging Face folder "
            "there and press R to refresh"
        ) from None
