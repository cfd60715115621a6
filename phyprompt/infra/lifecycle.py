"""The one lifecycle of everything that holds weights: refiners, video backends and judges.

A model comes from its family's `load(...)` and then says three things about itself (`HoldsWeights`):
whether its weights live in this process (`in_process`; a model on a server holds none here), the torch
modules that hold them (`modules()`, for a host's memory management: ComfyUI moves them between devices;
None when the model moves its own weights, or holds none here), and `release()`: the memory is freed now and
the next call loads the weights again from what the model was loaded from. A host (ComfyUI's adapter, the
evaluation, a Ray worker) handles any member of any family through these three alone.

`LazyWeights` is that behaviour for a member to keep its weights in.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


class HoldsWeights(Protocol):
    name: str
    #: True when the weights live in this process (ComfyUI's model management can move them)
    in_process: bool

    def modules(self) -> dict[str, torch.nn.Module] | None:
        """The torch modules holding the weights as they are now (loaded again after a release); None when
        the model moves its weights itself (bitsandbytes, diffusers' CPU offload) or they live elsewhere."""

    def release(self) -> None:
        """Free the weights (and connections) now; the next call loads them again."""


class LazyWeights(Generic[T]):
    """Weights that `load()` makes, loaded at most once until `release()` drops them."""

    def __init__(self, load: Callable[[], T], loaded: T | None = None):
        self._load = load
        self._value = loaded

    def __call__(self) -> T:
        if self._value is None:
            self._value = self._load()
        return self._value

    @property
    def loaded(self) -> bool:
        return self._value is not None

    def release(self) -> None:
        self._value = None
        free_memory()


def free_memory() -> None:
    """Return freed tensors' memory: to the allocator now (cycles included), and the GPU's cache to the driver."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
