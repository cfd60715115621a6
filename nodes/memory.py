"""Handing models to ComfyUI's model management, so a refiner and a video model can evict each other
from VRAM instead of both staying there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

import comfy.model_management as mm
import comfy.model_patcher


class PhyPromptModules(torch.nn.Module):
    """The torch modules of one PhyPrompt model, as one module for a ModelPatcher. (ModelPatcher also
    records the device by setting `.device` on what it manages, which transformers and diffusers
    models expose read-only.)"""

    def __init__(self, modules: dict[str, torch.nn.Module]):
        super().__init__()
        self.parts = torch.nn.ModuleDict(modules)


@dataclass
class Managed:
    """What travels on a PhyPrompt model socket: the library object and how ComfyUI manages it.

    With a patcher, ComfyUI moves the weights to the GPU before a run and may offload them when
    another model needs the memory. Without one (bitsandbytes weights, diffusers' own CPU offload),
    other models are evicted before a run and `after_run` frees this one's memory after it.
    """

    model: Any
    patcher: comfy.model_patcher.ModelPatcher | None = None
    after_run: Callable[[], None] | None = field(default=None)

    def ready(self):
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher], force_full_load=True)
        else:
            mm.unload_all_models()
            mm.soft_empty_cache()
        return self.model

    def done(self) -> None:
        if self.after_run is not None:
            self.after_run()


def managed(model: Any, modules: dict[str, torch.nn.Module] | None, load_device: torch.device,
            offload_device: torch.device, after_run: Callable[[], None] | None = None) -> Managed:
    """`modules` None: ComfyUI cannot move this model (see Managed)."""
    if modules is None:
        return Managed(model, None, after_run)
    holder = PhyPromptModules(modules)
    patcher = comfy.model_patcher.ModelPatcher(
        holder, load_device=load_device, offload_device=offload_device, size=mm.module_size(holder)
    )
    return Managed(model, patcher, after_run)


def progress_bar(total: int) -> Callable[[int, int], None]:
    """A progress callback (phyprompt's protocol) that drives ComfyUI's bar; its hook, and the check
    here, raise ComfyUI's interrupt when the user presses Cancel."""
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def progress(done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return progress
