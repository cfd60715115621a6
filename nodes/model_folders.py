"""Where PhyPrompt's models live in ComfyUI's model folders (extra_model_paths.yaml included), as each model's
description says.

Refiners and judges: what each kind's `KindInfo.source` names (`ModelFiles`: the local refiner's Hugging Face
folders and GGUF files under `models/LLM/`, VideoPhy-2's AutoEval and the video-language models under
`models/judges/`), and the files and folders its path options take (a PEFT adapter under `models/LLM/`). Video
models: where each backend's description says (`BackendInfo.weights`): diffusers pipeline folders
(CogVideoX: `models/diffusers/` or `models/CogVideo/`, where the established CogVideoX pack puts them) or
single checkpoint files and the folders a backend's converter made of them (VideoCrafter2: `models/videocrafter/`).
"""

from __future__ import annotations

import json
import os

import folder_paths

from ..phyprompt.infra.kinds import KindInfo, LoadOption, ModelFiles, descriptions
from ..phyprompt.judges import JUDGES
from ..phyprompt.refiners import REFINERS
from ..phyprompt.video.backend import BackendInfo, Weights, backend_info, backend_names


def weight_kinds(info: BackendInfo) -> tuple[str, ...]:
    """The model folder kinds a backend's weights and their component folders are looked for in."""
    components = (kind for c in info.components for kind in c.weights.folder_kinds)
    return tuple(dict.fromkeys((*info.weights.folder_kinds, *components)))


def _folder_kinds(info: KindInfo) -> tuple[str, ...]:
    # read by what it says, not by its class: a plugin describes itself with its own copy of the library
    sources = () if info.on_server else info.source.folder_kinds
    return (*sources, *(kind for option in info.options for kind in option.folder_kinds))


VIDEO_KINDS = tuple(dict.fromkeys(kind for name in backend_names() for kind in weight_kinds(backend_info(name))))
MODEL_KINDS = tuple(dict.fromkeys(kind for family in (REFINERS, JUDGES) for info, _ in descriptions(family)
                                  for kind in _folder_kinds(info)))
_MAX_DEPTH = 3  # models/LLM/<org>/<name>/ is as deep as people nest them

# Core ComfyUI has no LLM (or CogVideo) folder kind; extra_model_paths.yaml may already have added
# paths to them, and the default folder comes first either way (a no-op when it is already there).
for _kind in (*MODEL_KINDS, *VIDEO_KINDS):
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


def sources(source: ModelFiles) -> dict[str, str]:
    """{name: what a spec is given} of a kind's models: its built-in ones first (nothing to put in a folder),
    then its files and the folders holding its marker, under its folder kinds (the local refiner: Hugging
    Face folders and the GGUF files llama.cpp and Ollama users have, under models/LLM)."""
    found = files(source.suffixes, source.folder_kinds) if source.suffixes else {}
    if source.marker:
        found |= _folders_holding(source.marker, source.folder_kinds)
    return {**dict(source.builtins), **dict(sorted(found.items()))}


def option_paths(option: LoadOption) -> dict[str, str]:
    """{name: absolute path} of what a file or folder option takes (a PEFT adapter: folders holding
    adapter_config.json; VideoCrafter2's config: .yaml files)."""
    if option.suffixes:
        return files(option.suffixes, option.folder_kinds)
    return _folders_holding(option.marker, option.folder_kinds)


def video_models(weights: Weights) -> dict[str, str]:
    """Diffusers folders whose model_index.json names the pipeline class, or checkpoint files with the
    layout's suffixes, under the layout's folder kinds."""
    # duck-typed: a plugin backend may describe itself with another copy of the library's classes
    if hasattr(weights, "pipeline_class"):
        return _folders_naming("model_index.json", weights.pipeline_class, weights.folder_kinds)
    found = files(weights.suffixes, weights.folder_kinds)
    if getattr(weights, "folder_class", ""):  # folders the backend's converter wrote
        found.update(_folders_naming("config.json", weights.folder_class, weights.folder_kinds))
    return dict(sorted(found.items()))


def files(suffixes: tuple[str, ...], kinds: tuple[str, ...]) -> dict[str, str]:
    """{name: absolute path} of the files with these suffixes under the folder kinds (the first of a name wins)."""
    found: dict[str, str] = {}
    for kind in kinds:
        for name in folder_paths.get_filename_list(kind):
            if name.lower().endswith(suffixes):
                found.setdefault(name, folder_paths.get_full_path(kind, name))
    return dict(sorted(found.items()))


def _folders_naming(marker: str, class_name: str, kinds: tuple[str, ...]) -> dict[str, str]:
    """Folders holding a JSON `marker` file whose `_class_name` is `class_name`."""
    def names_class(path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f).get("_class_name") == class_name
        except (OSError, ValueError, AttributeError):
            return False

    return _folders_holding(marker, kinds, names_class)


def resolve(name: str, folders: dict[str, str], what: str, kinds: tuple[str, ...]) -> str:
    try:
        return folders[name]
    except KeyError:
        paths = ", ".join(p for kind in kinds for p in folder_paths.get_folder_paths(kind))
        raise ValueError(
            f"{what} {name!r} not found under the model folders ({paths}); put the folder there and press R "
            "to refresh"
        ) from None
