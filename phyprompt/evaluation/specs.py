"""What an evaluation compares, by value: refiners, video backends and the judge, each with an `identity()`
that goes into cache keys.

An identity names the weights by content, not by path: a folder or file is fingerprinted (`fingerprint`),
so a retrained adapter written over the old one misses the cache, and a copied model folder still hits it.
A model on a server cannot be fingerprinted: its identity is the address and the model name, so a server
that swaps the weights behind a name must be given a new name (or a new cache folder).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cache

from ..infra.endpoint import DEFAULT_API_KEY_ENV, chat_completions_url

ORIGINAL = "original"  # the label of "no refinement": the user's caption goes to the video model as is
_EDGE = 1 << 20  # a file is fingerprinted by its size and its first and last MiB


@cache
def fingerprint(path: str) -> str:
    """A content fingerprint of a file or a folder (every file under it but hidden ones, by relative path):
    sha256 over each file's size and its first and last MiB. Reads at most 2 MiB a file, so a 15 GB model
    folder is fingerprinted in well under a second; any retraining changes the weights those MiB hold."""
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file or folder: {path}")
    digest = hashlib.sha256()
    files = [("", path)] if os.path.isfile(path) else sorted(
        (os.path.relpath(os.path.join(root, name), path), os.path.join(root, name))
        for root, folders, names in os.walk(path)
        if not _hidden_under(root, path) for name in names if not name.startswith("."))
    for relative, full in files:
        size = os.path.getsize(full)
        digest.update(f"{relative}\0{size}\0".encode())
        with open(full, "rb") as handle:
            digest.update(handle.read(_EDGE))
            if size > 2 * _EDGE:
                handle.seek(-_EDGE, os.SEEK_END)
                digest.update(handle.read())
    return digest.hexdigest()


def file_name(label: str) -> str:
    """A label (a refiner's, a backend's) as a safe part of a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def _hidden_under(folder: str, top: str) -> bool:
    return any(part.startswith(".") for part in os.path.relpath(folder, top).split(os.sep) if part != ".")


@dataclass(frozen=True)
class RefinerSpec:
    """`original`, a local refiner (a model folder or .gguf file, or `builtin`, with an optional adapter)
    or a model on an OpenAI-compatible server (`url` and `model`)."""

    label: str
    kind: str  # "original", "local" or "api"
    model: str = ""
    adapter: str | None = None
    url: str = ""
    api_key_env: str = DEFAULT_API_KEY_ENV

    def identity(self) -> dict:
        if self.kind == "api":
            return {"kind": "api", "url": chat_completions_url(self.url), "model": self.model}
        if self.kind == "local":
            from ..refiners.loading import LoadSpec, resolve_builtin

            spec = resolve_builtin(LoadSpec(model=self.model, adapter=self.adapter))
            return {"kind": "local", "model": fingerprint(spec.model),
                    "adapter": fingerprint(spec.adapter) if spec.adapter else None}
        return {"kind": ORIGINAL}

    def open(self, *, device: str, dtype: str):
        from ..refiners import refiner_class

        if self.kind == "api":
            return refiner_class("api").load(self.url, self.model, api_key_env=self.api_key_env)
        return refiner_class("local").load(self.model, self.adapter, device=device, dtype=dtype)


@dataclass(frozen=True)
class BackendSpec:
    """A registered video backend (`name`) and its weights (`path`), with load options."""

    label: str
    name: str
    path: str
    options: dict = field(default_factory=dict)

    def identity(self) -> dict:
        return {"backend": self.name, "model": fingerprint(self.path), "options": dict(sorted(self.options.items()))}


@dataclass(frozen=True)
class JudgeSpec:
    """The judge `open_judge` opens from `spec` (a folder or an address, with `model` for a server)."""

    spec: str
    model: str | None = None
    frames: int | None = None
    batch_size: int = 1
    api_key_env: str = DEFAULT_API_KEY_ENV

    @property
    def is_server(self) -> bool:
        from ..judges.opening import is_url

        return is_url(self.spec)

    def identity(self) -> dict:
        weights = ({"url": self.spec.strip(), "model": self.model} if self.is_server
                   else {"model": fingerprint(self.spec)})
        return {**weights, "frames": self.frames}

    def open(self, *, device: str, dtype: str):
        from ..judges import open_judge

        return open_judge(os.path.expanduser(self.spec), device=device, precision=dtype, frames=self.frames,
                          model=self.model, api_key_env=self.api_key_env)
