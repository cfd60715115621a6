"""The interface every video backend implements, and the registry that finds one by name.

The CLI, the nodes, training rewards and evaluation pick a backend with a string and never import a
backend module directly; VideoCrafter2 and LaVie plug in by adding a line to `_REGISTRY`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from ..budget import TokenCounter
from ..checkpoints import ModelFolderError
from ..progress import OptionalProgress

# name -> "module:Class", relative to this package; imported on first use
_REGISTRY = {
    "cogvideox": "cogvideox:CogVideoXBackend",
}
BACKEND_NAMES = tuple(_REGISTRY)
# Memory options a diffusers backend takes (diffusers' CPU offload; model and sequential need a CUDA GPU)
OFFLOAD_MODES = ("none", "model", "sequential")


class VideoModelError(ModelFolderError):
    """A video model folder is missing, incomplete, damaged or of the wrong kind."""


class VideoSettingsError(ValueError):
    """Sampling settings the model cannot do (size, frames, steps, guidance); the message names the fix."""


@dataclass(frozen=True)
class Video:
    """Frames as float [T, H, W, 3] in 0..1 (ComfyUI's IMAGE batch), and the rate to play them at."""

    frames: torch.Tensor
    fps: float


@dataclass(frozen=True)
class SampleRequest:
    """One video to render. Settings left as None take the backend's defaults."""

    prompt: str
    negative_prompt: str = ""
    seed: int = 0
    steps: int | None = None
    guidance: float | None = None
    frames: int | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None


@dataclass(frozen=True)
class SampleDefaults:
    steps: int
    guidance: float
    frames: int
    width: int
    height: int
    fps: float
    scheduler: str


class VideoBackend(Protocol):
    name: ClassVar[str]
    schedulers: ClassVar[tuple[str, ...]]

    @classmethod
    def load(cls, folder: str, *, dtype: str = "auto", device: str = "auto", **memory_options) -> "VideoBackend":
        """Load from a local folder; raises VideoModelError with a one-line reason."""

    @classmethod
    def load_token_counter(cls, folder: str) -> TokenCounter:
        """The text encoder's tokenizer alone, without any weights, counting exactly as `count` does: a
        prompt can be fitted to the model (the refiner's budget) before the model itself is loaded."""

    @property
    def defaults(self) -> SampleDefaults: ...

    @property
    def token_limit(self) -> int:
        """Tokens the text encoder reads; the rest of a longer prompt is cut off."""

    @property
    def description(self) -> str:
        """Short name of the text encoder's tokenizer, for token reports."""

    def count(self, text: str) -> int:
        """Tokens `text` takes in this model's text encoder (a TokenCounter, for the refiner's budget)."""

    def settings(self, request: SampleRequest) -> dict:
        """The request's settings with defaults filled in; VideoSettingsError for what the model can't do."""

    def sample(self, request: SampleRequest, progress: OptionalProgress = None) -> Video:
        """Render one video; `progress(step, steps)` after each denoising step may raise to cancel."""


def backend_class(name: str) -> type[VideoBackend]:
    try:
        module_name, class_name = _REGISTRY[name].split(":")
    except KeyError:
        raise ValueError(f"unknown video backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}") from None
    return getattr(importlib.import_module(f".{module_name}", __package__), class_name)


def load_backend(name: str, folder: str, **options) -> VideoBackend:
    return backend_class(name).load(folder, **options)
