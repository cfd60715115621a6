"""The refiners' loader nodes (Load Physics Refiner, Physics Refiner (API), and one per kind from another package,
built from the kinds' descriptions), Physics Refine, Physics Refine (List) and (Variants)."""

from __future__ import annotations

from comfy_api.latest import io

from ..phyprompt.language.targets import TARGET_NAMES, TARGETS
from ..phyprompt.refiners import RefinerSpec
from .loaders import Family, loader_nodes
from .memory import Managed, manage, progress_bar
from .schema import REFINE, REFINE_ALIASES, node_schema

RefinerType = io.Custom("PHYPROMPT_REFINER")
KEEP_LOADED, UNLOAD = "keep loaded", "unload"
MAX_NEW_TOKENS = 4096
MAX_SEED = 0xFFFFFFFFFFFFFFFF

_TARGET_HELP = "; ".join(f"{t.name}: {t.label}, {t.token_limit} tokens" for t in TARGETS.values())


def _open(make, load_device, offload_device, after_run=KEEP_LOADED) -> Managed:
    """A refiner in this process, loaded onto the offload device and run on ComfyUI's: weights ComfyUI cannot
    move (bitsandbytes) are freed after each run, as are all with after_run `unload`."""
    refiner = make(device=str(load_device)).open(load_on=str(offload_device))
    unload = after_run == UNLOAD or refiner.modules() is None
    return manage(refiner, load_device, offload_device, unload_after_run=unload)


REFINERS_FAMILY = Family(
    RefinerSpec, REFINE, REFINE_ALIASES, RefinerType, "refiner", _open,
    # optional, and last: workflows saved before it existed (API format without it, or six widget values)
    # load with its default
    extra_inputs=(io.Combo.Input(
        "after_run", options=[KEEP_LOADED, UNLOAD], default=KEEP_LOADED, optional=True,
        tooltip="keep loaded: ready for the next run; ComfyUI offloads it when a video model needs the memory. "
                "unload: its weights are freed (RAM and VRAM) right after each refine and read from disk again on "
                "the next run."),),
)


def refiner_loaders() -> list[type[io.ComfyNode]]:
    """Load Physics Refiner, Physics Refiner (API), and a loader for each refiner kind of another package."""
    return loader_nodes(REFINERS_FAMILY)


def _refine_inputs(prompt_tooltip: str) -> list:
    return [
        RefinerType.Input("refiner"),
        io.String.Input("prompt", multiline=True, default="a cat jumps onto a kitchen table", tooltip=prompt_tooltip),
        io.Combo.Input("target", options=list(TARGET_NAMES), default="cogvideox",
                       tooltip=f"The video model the prompt is written for; sets the token budget. {_TARGET_HELP}."),
        io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True,
                     tooltip="Sampling seed; the same seed and inputs give the same prompt."),
        io.Float.Input("temperature", default=0.7, min=0.0, max=2.0, step=0.05,
                       tooltip="0 = greedy (deterministic, ignores the seed); higher = more varied."),
        io.Int.Input("max_new_tokens", default=512, min=1, max=MAX_NEW_TOKENS,
                     tooltip="Upper bound on reasoning + prompt tokens the refiner may write."),
    ]


def _refine_outputs(is_list: bool) -> list:
    return [
        io.String.Output(name, display_name=name, tooltip=tooltip, is_output_list=is_list)
        for name, tooltip in (
            ("refined", "The physics-explicit prompt (your original one if the refiner's answer was unusable)."),
            ("reasoning", "The refiner's physical reasoning."),
            ("report", "Tokens used / the target's limit, and any fallback or shortening."),
        )
    ]


def _list_outputs(results) -> io.NodeOutput:
    return io.NodeOutput([r.prompt for r in results], [r.reasoning for r in results], [r.report() for r in results])


def _run(refiner: Managed, prompts: list[str], target: str, seed: int, temperature: float,
         max_new_tokens: int):
    """Refine on ComfyUI's device, with its progress bar (whose hook raises the Cancel interrupt)."""
    try:
        return refiner.ready().refine(prompts, target, seed=seed, temperature=temperature,
                                      max_new_tokens=max_new_tokens, progress=progress_bar(max_new_tokens))
    finally:
        refiner.done()


class PhysicsRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptRefine",
            search_aliases=(*REFINE_ALIASES, "refine prompt", "CogVideoX", "text to video"),
            display_name="Physics Refine",
            category=REFINE,
            description="Rewrites a prompt so the video obeys physics (forces, gravity, momentum, contact, "
                        "materials, fluids) while keeping what you asked for. If the refiner's answer is "
                        "unusable, the original prompt comes out and the report says why.",
            inputs=_refine_inputs("The scene to render, in your own words."),
            outputs=_refine_outputs(is_list=False),
        )

    @classmethod
    def execute(cls, refiner, prompt, target, seed, temperature, max_new_tokens) -> io.NodeOutput:
        (result,) = _run(refiner, [prompt], target, seed, temperature, max_new_tokens)
        return io.NodeOutput(result.prompt, result.reasoning, result.report())


class PhysicsRefineList(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptRefineList",
            search_aliases=(*REFINE_ALIASES, "batch", "list", "prompt list"),
            display_name="Physics Refine (List)",
            category=REFINE,
            description="Refines one prompt per line as a single batch and outputs lists, so the nodes after "
                        "it run once per prompt. Line i uses seed + i.",
            inputs=_refine_inputs("One prompt per line; blank lines are skipped."),
            outputs=_refine_outputs(is_list=True),
        )

    @classmethod
    def execute(cls, refiner, prompt, target, seed, temperature, max_new_tokens) -> io.NodeOutput:
        prompts = [line.strip() for line in prompt.splitlines() if line.strip()]
        if not prompts:
            raise ValueError("the prompt list is empty: write one prompt per line")
        return _list_outputs(_run(refiner, prompts, target, seed, temperature, max_new_tokens))


class PhysicsRefineVariants(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptRefineVariants",
            search_aliases=(*REFINE_ALIASES, "best of n", "variants", "candidates"),
            display_name="Physics Refine (Variants)",
            category=REFINE,
            description="Refines one prompt N times (seeds seed … seed+N−1) and outputs the N refinements as "
                        "lists, so the nodes after it run once per variant: render each, judge each, and keep "
                        "the best with Pick Best Video.",
            inputs=[
                *_refine_inputs("The scene to render, in your own words."),
                io.Int.Input("variants", default=4, min=1, max=64,
                             tooltip="How many refinements (N). They differ only with temperature above 0."),
            ],
            outputs=_refine_outputs(is_list=True),
        )

    @classmethod
    def execute(cls, refiner, prompt, target, seed, temperature, max_new_tokens, variants) -> io.NodeOutput:
        return _list_outputs(_run(refiner, [prompt] * variants, target, seed, temperature, max_new_tokens))
