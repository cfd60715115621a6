"""Run inside a ComfyUI tree (its folder on sys.path), with nodes/memory.py's path as the argument: a model
kept loaded stays in ComfyUI's model management; one unloaded after each run leaves it, its weights are
freed (nothing holds them any more), and the next run loads them again. Prints "freed" when all holds.

A process of its own: importing ComfyUI's model management sets global state the test process must not get.
"""

import gc
import importlib.util
import sys
import weakref

import comfy.options

comfy.options.enable_args_parsing()
memory_py = sys.argv[1]
sys.argv[1:] = ["--cpu"]
import comfy.model_management as mm  # noqa: E402
import torch  # noqa: E402

# nodes/memory.py alone: the pack's package would import all of the nodes
spec = importlib.util.spec_from_file_location("phyprompt_memory", memory_py)
memory = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)


class Weights:
    """Stands for LocalRefiner: weights it can drop, and reads again when they are used."""

    def __init__(self):
        self.module, self.loads = None, 0

    def current(self) -> dict:
        if self.module is None:
            self.module, self.loads = torch.nn.Linear(256, 256), self.loads + 1
        return {"refiner": self.module}

    def release(self) -> None:
        self.module = None
        gc.collect()


def loaded() -> list:
    return [m.model for m in mm.current_loaded_models]


device = mm.get_torch_device()
kept, dropped = Weights(), Weights()
keep = memory.managed(kept, kept.current(), device, device)
unload = memory.unloaded_after_run(dropped, dropped.current, device, device, dropped.release)
for run in range(2):
    keep.ready(), keep.done()
    unload.ready()
    patcher, weights = unload.patcher, weakref.ref(dropped.module)
    assert patcher in loaded() and keep.patcher in loaded()
    unload.done()
    assert patcher not in loaded() and keep.patcher in loaded(), "only the unloaded model leaves"
    del patcher
    assert weights() is None, f"the unloaded weights are still held by {gc.get_referrers(weights())}"
assert (kept.loads, dropped.loads) == (1, 2), (kept.loads, dropped.loads)
del keep, unload  # before interpreter shutdown, where ModelPatcher.__del__ would find its modules gone
print("freed")
