"""Handing a refiner to ComfyUI's model management, so a video model loaded later can evict it."""

from __future__ import annotations

from dataclasses import dataclass

import torch

import comfy.model_management as mm
import comfy.model_patcher

from ..phyprompt.refiner import Refiner


class PhyPromptRefinerModel(torch.nn.Module):
    """ModelPatcher records the device on the module it manages by setting `.device`, which a
    transformers model exposes read-only; a plain module around it takes that attribute instead."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model


@dataclass
class ManagedRefiner:
    """What travels on a PHYPROMPT_REFINER socket."""

    refiner: Refiner
    patcher: comfy.model_patcher.ModelPatcher | None  # None for quantized models, which cannot move

    def __post_init__(self):
        self.name = self.refiner.name

    def ready(self) -> Refiner:
        """The refiner, its weights on the compute device (evicting other models if needed)."""
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher], force_full_load=True)
        return self.refiner

    def done(self) -> None:
        """After a run. bitsandbytes weights cannot be offloaded with `.to()`, so a quantized refiner is
        released outright to give its VRAM to the video model; the next run reloads it from disk."""
        if self.patcher is None:
            self.refiner.release()


def manage(refiner: Refiner, load_device: torch.device, offload_device: torch.device) -> ManagedRefiner:
    if refiner.spec is not None and refiner.spec.quantization != "none":
        return ManagedRefiner(refiner, None)
    holder = PhyPromptRefinerModel(refiner.model)
    patcher = comfy.model_patcher.ModelPatcher(
        holder, load_device=load_device, offload_device=offload_device, size=mm.module_size(holder)
    )
    return ManagedRefiner(refiner, patcher)
