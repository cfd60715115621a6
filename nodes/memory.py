"""Handing models to ComfyUI's model management, so a refiner and a video model can evict each other
from VRAM instead of both staying there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import comfy.model_management as mm
import comfy.model_patcher
import torch


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
    other models are evicted before a run and `after_run` frees this one's memory after it. `remote`:
    the weights live in another process (a refiner on a server), so ComfyUI's model management is
    never touched for it. `repatch` (see `manage`): a patched model whose weights `after_run`
    drops; it leaves ComfyUI's model management after each run and comes back through a new patcher.
    """

    model: Any
    patcher: comfy.model_patcher.ModelPatcher | None = None
    after_run: Callable[[], None] | None = field(default=None)
    remote: bool = False
    repatch: Callable[[], comfy.model_patcher.ModelPatcher] | None = None

    def ready(self):
        if self.remote:
            return self.model
        if self.patcher is None and self.repatch is not None:
            self.patcher = self.repatch()
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher], force_full_load=True)
        else:
            mm.unload_all_models()
            mm.soft_empty_cache()
        return self.model

    def done(self) -> None:
        if self.repatch is not None and self.patcher is not None:
            # Drop the weights from the patcher first: unloading would otherwise copy all of them to the
            # offload device (RAM) just before after_run frees them.
            self.patcher.model.parts.clear()
            _unload(self.patcher)
            self.patcher = None
        if self.after_run is not None:
            self.after_run()


def _unload(patcher: comfy.model_patcher.ModelPatcher) -> None:
    """Take one model out of ComfyUI's loaded models and leave the others (as newer cores'
    unload_model_and_clones does; 0.3.75 lacks it)."""
    others = [loaded for loaded in mm.current_loaded_models if loaded.model is not patcher]
    mm.free_memory(1e30, patcher.load_device, keep_loaded=others)


def _patcher(modules: dict[str, torch.nn.Module], load_device: torch.device,
             offload_device: torch.device) -> comfy.model_patcher.ModelPatcher:
    holder = PhyPromptModules(modules)
    return comfy.model_patcher.ModelPatcher(
        holder, load_device=load_device, offload_device=offload_device, size=mm.module_size(holder)
    )


def manage(model: Any, load_device: torch.device | None = None, offload_device: torch.device | None = None, *,
           unload_after_run: bool = False) -> Managed:
    """Any PhyPrompt model (a refiner, a video backend, a judge) in ComfyUI's model management, through the
    one lifecycle they share (phyprompt.infra.lifecycle): a model on a server is left alone; one whose torch
    modules ComfyUI can move gets a patcher; `unload_after_run`: its weights are released after every run,
    freeing RAM and VRAM for the nodes after it, and using it again loads them back (a patched model then
    comes back through a new patcher, since `modules()` are new). The devices are for a model in this process."""
    if not model.in_process:
        return Managed(model, remote=True)
    modules = model.modules()
    after_run = model.release if unload_after_run else None
    if modules is None:  # it moves its own weights (bitsandbytes, diffusers' CPU offload)
        return Managed(model, None, after_run)
    if not unload_after_run:
        return Managed(model, _patcher(modules, load_device, offload_device))

    def repatch() -> comfy.model_patcher.ModelPatcher:
        return _patcher(model.modules(), load_device, offload_device)

    return Managed(model, _patcher(modules, load_device, offload_device), after_run, repatch=repatch)


def progress_bar(total: int) -> Callable[[int, int], None]:
    """A progress callback (phyprompt's protocol) that drives ComfyUI's bar; its hook, and the check
    here, raise ComfyUI's interrupt when the user presses Cancel."""
    import comfy.utils

    bar = comfy.utils.ProgressBar(total)

    def progress(done: int, total: int) -> None:
        mm.throw_exception_if_processing_interrupted()
        bar.update_absolute(done, total)

    return progress
