"""Load Physics Refiner, Physics Refiner (API), Physics Refine, Physics Refine (List) and (Variants)."""

from __future__ import annotations

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..phyprompt.infra.devices import DTYPES
from ..phyprompt.infra.endpoint import (
    DEFAULT_API_KEY_ENV,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_TIMEOUT,
    EndpointError,
    chat_completions_url,
    check_env_name,
    parse_keep_alive,
)
from ..phyprompt.language.targets import TARGET_NAMES, TARGETS
from ..phyprompt.refiners.builtin import INSTALL, is_builtin, smollm2_gguf
from ..phyprompt.refiners.loading import QUANTIZATIONS
from . import model_folders
from .memory import Managed, manage, progress_bar
from .schema import REFINE, REFINE_ALIASES, node_schema

RefinerType = io.Custom("PHYPROMPT_REFINER")
NO_ADAPTER = "none"
KEEP_LOADED, UNLOAD = "keep loaded", "unload"
MAX_NEW_TOKENS = 4096
MAX_SEED = 0xFFFFFFFFFFFFFFFF

_TARGET_HELP = "; ".join(f"{t.name}: {t.label}, {t.token_limit} tokens" for t in TARGETS.values())


class LoadPhysicsRefiner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptLoadRefiner",
            search_aliases=(*REFINE_ALIASES, "load LLM", "refiner", "Qwen", "GGUF", "SmolLM"),
            display_name="Load Physics Refiner",
            category=REFINE,
            description="Loads an LLM that rewrites prompts with explicit physics: the built-in SmolLM2-135M "
                        "demo (works offline; learned the format, not good physics), or a Hugging Face folder or "
                        "GGUF file under models/LLM, e.g. Qwen2.5-Instruct or a trained PhyPrompt model.",
            inputs=[
                io.Combo.Input("model", options=list(model_folders.refiner_models()),
                               tooltip="builtin: SmolLM2-135M with the project's demo adapter, no model-hub "
                                       f"download (needs {INSTALL}); a demonstration: it learned the answer "
                                       "format, not good physics. "
                                       "Or a folder under models/LLM (or an LLM path in extra_model_paths.yaml) "
                                       "holding config.json, the tokenizer and the weights, or a .gguf file "
                                       "(llama.cpp, Ollama; needs pip install gguf). GGUF weights are "
                                       "dequantised to float: they take the memory of the full-precision model."),
                io.Combo.Input("adapter", options=[NO_ADAPTER, *model_folders.refiner_adapters()], default=NO_ADAPTER,
                               tooltip="Optional PEFT LoRA adapter folder (holds adapter_config.json)."),
                io.Boolean.Input("merge_adapter", default=False,
                                 tooltip="Merge the adapter into the weights: faster generation, same output."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="auto: bf16 (or fp16) on GPU, fp32 on CPU."),
                io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's GPU, offloaded when a video model needs the memory."),
                io.Combo.Input("quantization", options=list(QUANTIZATIONS), default="none",
                               tooltip="4/8-bit weights through bitsandbytes (CUDA only; not for GGUF files); "
                                       "the model is then always unloaded after each run."),
                # optional, and last: workflows saved before it existed (API format without it, or six
                # widget values) load with its default
                io.Combo.Input("after_run", options=[KEEP_LOADED, UNLOAD], default=KEEP_LOADED, optional=True,
                               tooltip="keep loaded: ready for the next run; ComfyUI offloads it when a video "
                                       "model needs the memory. unload: its weights are freed (RAM and VRAM) "
                                       "right after each refine and read from disk again on the next run."),
            ],
            outputs=[RefinerType.Output(display_name="refiner")],
        )

    @classmethod
    def validate_inputs(cls, model, adapter) -> bool | str:
        # checked at queue time, before anything runs: a workflow shared from another machine names
        # folders this one may not have (older cores do not check combo values themselves)
        # (a value linked from another node's output arrives here as None: execute checks it when it is known)
        try:
            if model is not None and is_builtin(model_folders.resolve(model, model_folders.refiner_models(),
                                                                      "refiner model")):
                smollm2_gguf()  # the built-in refiner's base weights come from a pip package
            if adapter not in (None, NO_ADAPTER):
                model_folders.resolve(adapter, model_folders.refiner_adapters(), "adapter")
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, model, adapter, merge_adapter, dtype, device, quantization,
                after_run=KEEP_LOADED) -> io.NodeOutput:
        from ..phyprompt.refiners import refiner_class

        path = model_folders.resolve(model, model_folders.refiner_models(), "refiner model")
        adapter_path = None if adapter == NO_ADAPTER else model_folders.resolve(
            adapter, model_folders.refiner_adapters(), "adapter")
        load_device = mm.get_torch_device() if device == "auto" else torch.device("cpu")
        offload_device = mm.text_encoder_offload_device() if device == "auto" else load_device
        refiner = refiner_class("local").load(
            path, adapter_path, merge_adapter=merge_adapter, dtype=dtype, device=str(load_device),
            load_on=str(offload_device), quantization=quantization,
        )
        # quantized (bitsandbytes) weights cannot be moved, so ComfyUI could not offload them: freed after each run
        unload = after_run == UNLOAD or quantization != "none"
        return io.NodeOutput(manage(refiner, load_device, offload_device, unload_after_run=unload))


class LoadAPIRefiner(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return node_schema(
            node_id="PhyPromptLoadAPIRefiner",
            search_aliases=(*REFINE_ALIASES, "API", "Ollama", "OpenAI", "LM Studio", "vLLM", "llama.cpp"),
            display_name="Physics Refiner (API)",
            category=REFINE,
            description="Refines on an OpenAI-compatible server (Ollama, LM Studio, llama.cpp server, vLLM, "
                        "OpenAI) instead of loading an LLM into ComfyUI. The model lives in the server's memory, "
                        "which ComfyUI does not manage: keep_alive is applied through Ollama's native API after "
                        "the prompts are written, and 0 frees it then, so the video model gets the VRAM.",
            inputs=[
                io.String.Input("url", default="http://127.0.0.1:11434/v1",
                                tooltip="The server's API base (Ollama: http://127.0.0.1:11434/v1, LM Studio: "
                                        "http://127.0.0.1:1234/v1, llama.cpp: http://127.0.0.1:8080/v1) or its "
                                        "full /chat/completions address."),
                io.String.Input("model", default="qwen2.5:7b",
                                tooltip="The model name the server knows (Ollama: as in `ollama list`)."),
                io.String.Input("api_key_env", default=DEFAULT_API_KEY_ENV,
                                tooltip="The NAME of the environment variable that holds the API key, set before "
                                        "ComfyUI starts; not set: no key is sent (local servers need none). The "
                                        "key itself never goes in a widget: widgets are saved in every workflow "
                                        "and PNG."),
                io.Int.Input("timeout", default=int(DEFAULT_TIMEOUT), min=1, max=3600,
                             tooltip="Seconds to wait for one answer (a model loading on the server counts "
                                     "too); timeouts, 429 and 5xx answers are retried a few times."),
                io.String.Input("keep_alive", default="0",
                                tooltip="Ollama only: how long the server keeps the model in memory, applied "
                                        "through Ollama's native API after the prompts are written. 0 frees it "
                                        "then for the video model, -1 keeps it loaded, 5m keeps it five minutes. "
                                        "Empty: not sent (other servers)."),
                io.Int.Input("max_concurrency", default=DEFAULT_MAX_CONCURRENCY, min=1, max=64,
                             tooltip="How many prompts of a list are sent at once."),
            ],
            outputs=[RefinerType.Output(display_name="refiner")],
        )

    @classmethod
    def validate_inputs(cls, url, model, api_key_env, keep_alive) -> bool | str:
        error = server_settings_error(url, model, api_key_env, "qwen2.5:7b")
        if error is None and keep_alive is not None:
            try:
                parse_keep_alive(keep_alive)
            except EndpointError as exc:
                error = str(exc)
        return error or True

    @classmethod
    def execute(cls, url, model, api_key_env, timeout, keep_alive, max_concurrency) -> io.NodeOutput:
        from ..phyprompt.refiners import refiner_class

        refiner = refiner_class("api").load(url, model, api_key_env=api_key_env, timeout=timeout, keep_alive=keep_alive,
                                  max_concurrency=max_concurrency)
        return io.NodeOutput(manage(refiner))


def server_settings_error(url: str | None, model: str | None, api_key_env: str | None, example: str) -> str | None:
    """What is wrong with a server node's settings, checked at queue time so a typo is reported before
    anything runs (a value linked from another node arrives as None and is checked when the node runs)."""
    try:
        if url is not None:
            chat_completions_url(url)
        if api_key_env is not None:
            check_env_name(api_key_env)
    except EndpointError as exc:
        return str(exc)
    if model is not None and not model.strip():
        return f"model is empty: give the model name the server knows, e.g. {example}"
    return None


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
