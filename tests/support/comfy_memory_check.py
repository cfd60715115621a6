"""Run inside a ComfyUI tree (its folder on sys.path), with nodes/memory.py's path and a refiner folder as
the arguments: a real LocalRefiner kept loaded stays in ComfyUI's model management; one unloaded after each
run leaves it, its weights are freed (nothing holds them any more, and nothing was copied to the offload
device on the way out), and the next run loads them again and refines. Prints "freed" when all holds.

A process of its own: importing ComfyUI's model management sets global state the test process must not get.
"""

import gc
import importlib.util
import sys
import weakref

import comfy.options

comfy.options.enable_args_parsing()
memory_py, refiner_folder = sys.argv[1:3]
sys.argv[1:] = ["--cpu"]
import comfy.model_management as mm  # noqa: E402

# nodes/memory.py alone: the pack's package would import all of the nodes
spec = importlib.util.spec_from_file_location("phyprompt_memory", memory_py)
memory = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)

import phyprompt.refiners.local as local  # noqa: E402


def loaded() -> list:
    return [m.model for m in mm.current_loaded_models]


device = mm.get_torch_device()
kept, dropped = local.LocalRefiner.load(refiner_folder, device="cpu"), local.LocalRefiner.load(refiner_folder, device="cpu")
reloads = []  # every read from disk after the first load
read_from_disk = local.load_model_and_tokenizer
local.load_model_and_tokenizer = lambda spec: reloads.append(spec) or read_from_disk(spec)
keep = memory.manage(kept, device, device)
unload = memory.manage(dropped, device, device, unload_after_run=True)
for run in range(2):
    keep.ready(), keep.done()
    unload.ready()
    [result] = dropped.refine("a ball rolls", max_new_tokens=2)
    assert result.prompt == "a ball rolls"  # a random refiner writes no contract answer
    patcher, weights = unload.patcher, weakref.ref(dropped.model)
    moved = []
    patcher.model.to = lambda *args, **kwargs: moved.append(sum(p.numel() for p in patcher.model.parameters()))
    assert patcher in loaded() and keep.patcher in loaded()
    unload.done()
    assert patcher not in loaded() and keep.patcher in loaded(), "only the unloaded model leaves"
    assert not any(moved), f"{moved} parameters were copied to the offload device before being freed"
    del patcher
    gc.collect()
    assert weights() is None, f"the unloaded weights are still held by {gc.get_referrers(weights())}"
assert len(reloads) == 1, reloads  # read again for the second run only; the kept one never
del keep, unload  # before interpreter shutdown, where ModelPatcher.__del__ would find its modules gone
print("freed")
