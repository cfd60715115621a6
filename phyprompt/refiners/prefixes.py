"""Instruction prefixes' key/value caches kept on disk beside the prepared built-in refiner.

Every refinement for a target starts with the same instruction, about 350 tokens, whose keys and values
`LocalRefiner` computes once per process (`_prefix_cache`). On two cores that forward pass is 0.8 s of a
10-second quick-start refine, repeated by every new process. A prepared folder is named by its sources'
fingerprints, so what is saved in it stays valid as long as the folder does: each prefix is saved there
the first time it is computed, and read back (15 MB, milliseconds) by later processes. The tensors are the
ones the forward pass made, so answers are the same either way.

One file per prefix, device type and dtype, named by a digest of the three and holding the prefix's ids, so
a file for another prefix never loads. A file that cannot be read, or does not match, is computed again and
saved over; a folder that cannot be written keeps nothing, with no error: it only saves time.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..infra.files import atomic_path

log = logging.getLogger(__name__)

FOLDER = "prefixes"


class PrefixStore:
    """Prefix caches saved in `folder/prefixes/`, for one model (the folder's)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder) / FOLDER

    def _path(self, prefix: tuple[int, ...], device: torch.device, dtype: torch.dtype) -> Path:
        key = f"{device.type}/{dtype}/" + ",".join(map(str, prefix))
        return self.folder / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"

    def load(self, prefix: tuple[int, ...], model, device: torch.device):
        """The saved cache of `prefix` for `model` on `device`, as a DynamicCache, or None."""
        from transformers import DynamicCache

        path = self._path(prefix, device, model.dtype)
        if not path.is_file():
            return None
        try:
            tensors = load_file(path, device=str(device))
        except (OSError, SafetensorError) as error:
            log.debug("prefix cache %s unreadable (%s); computing it again", path, error)
            return None
        layers = model.config.get_text_config().num_hidden_layers
        expected = {"prefix", *(f"{i}.{part}" for i in range(layers) for part in ("keys", "values"))}
        if set(tensors) != expected or tensors["prefix"].tolist() != list(prefix):
            return None
        cache = DynamicCache(config=model.config)
        for i in range(layers):
            keys, values = tensors[f"{i}.keys"], tensors[f"{i}.values"]
            if keys.shape[-2] != len(prefix) or keys.dtype != model.dtype:
                return None
            cache.update(keys, values, i)
        return cache

    def save(self, prefix: tuple[int, ...], cache, model, device: torch.device) -> None:
        tensors = {"prefix": torch.tensor(prefix, dtype=torch.long)}
        for i, layer in enumerate(cache.layers):
            tensors[f"{i}.keys"] = layer.keys.contiguous()
            tensors[f"{i}.values"] = layer.values.contiguous()
        try:
            with atomic_path(self._path(prefix, device, model.dtype)) as partial:
                save_file({name: t.cpu() for name, t in tensors.items()}, partial)
        except OSError as error:
            log.debug("could not save the prefix cache in %s (%s)", self.folder, error)
