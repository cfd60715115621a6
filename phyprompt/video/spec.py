"""What to open of a video backend: `BackendSpec`, built once where a user's input enters (the command line,
the loader nodes, the evaluation, the GRPO video reward) and then only opened or named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..infra.files import fingerprint
from .backend import VideoBackend, backend_class, load_backend


@dataclass(frozen=True)
class BackendSpec:
    """A registered video backend (`name`), its weights (`path`), where it runs, and its load options and
    component folders (`BackendInfo.load_keywords`)."""

    name: str
    path: str
    dtype: str = "auto"
    device: str = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, name: str, path: str, *, dtype: str = "auto", device: str = "auto", **options) -> BackendSpec:
        """The spec of backend `name` (ValueError for one that is not registered) with the options it takes
        (a None option is not given: the backend's own default)."""
        keywords = backend_class(name).info.load_keywords
        unknown = sorted(set(options) - set(keywords))
        if unknown:
            raise ValueError(f"{unknown[0]} is not an option of the {name} backend")
        return cls(name, path, dtype, device, {k: v for k, v in options.items() if v is not None})

    def open(self, **placement) -> VideoBackend:
        """The backend, loaded (able to load itself again after a release); `placement` is where a host puts
        its weights beyond the spec (ComfyUI's `load_on`)."""
        return load_backend(self.name, self.path, dtype=self.dtype, device=self.device, **self.options, **placement)

    def identity(self) -> dict:
        """The backend, its weights by content and its options, for cache keys (not the placement, which a
        host resolves and keys itself)."""
        return {"backend": self.name, "model": fingerprint(self.path), "options": dict(sorted(self.options.items()))}
