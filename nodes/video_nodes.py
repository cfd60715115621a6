"""Load CogVideoX and CogVideoX Sampler: a video model socket shared by every backend, and a sampler
that returns ComfyUI's IMAGE batch plus an fps for core CreateVideo → SaveVideo."""

from __future__ import annotations

import logging

import comfy.model_management as mm
import torch
from comfy_api.latest import io

from ..phyprompt.devices import DTYPES
from ..phyprompt.video.backend import OFFLOAD_MODES, SampleRequest
from . import model_folders
from .memory import Managed, managed, progress_bar
from .refiner_nodes import CATEGORY, MAX_SEED

log = logging.getLogger(__name__)
VideoModelType = io.Custom("PHYPROMPT_VIDEO_MODEL")
# CogVideoXBackend's own values; not imported from it, so registering the nodes never imports a backend module
COGVIDEOX_PIPELINE = "CogVideoXPipeline"
COGVIDEOX_SCHEDULERS = ("dpm", "ddim")


class LoadCogVideoX(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PhyPromptLoadCogVideoX",
            display_name="Load CogVideoX",
            category=CATEGORY,
            description="Loads CogVideoX 2B or 5B from a diffusers folder (e.g. THUDM/CogVideoX-2b) under "
                        "models/diffusers or models/CogVideo.",
            inputs=[
                io.Combo.Input("model", options=list(model_folders.video_models(COGVIDEOX_PIPELINE)),
                               tooltip="A diffusers CogVideoXPipeline folder (model_index.json, transformer/, "
                                       "vae/, text_encoder/, tokenizer/, scheduler/)."),
                io.Combo.Input("dtype", options=list(DTYPES), default="auto",
                               tooltip="auto: the checkpoint's own precision on GPU (2B fp16, 5B bf16), fp32 on CPU."),
                io.Combo.Input("device", options=["auto", "cpu"], default="auto",
                               tooltip="auto: ComfyUI's GPU, offloaded when another model needs the memory."),
                io.Combo.Input("offload", options=list(OFFLOAD_MODES), default="none",
                               tooltip="none: ComfyUI manages the memory. model / sequential: diffusers' CPU "
                                       "offload for small GPUs (slower; sequential is the slowest and smallest)."),
                io.Boolean.Input("vae_tiling", default=True, tooltip="Decode in tiles: much less VRAM."),
            ],
            outputs=[VideoModelType.Output(display_name="video_model")],
        )

    @classmethod
    def validate_inputs(cls, model) -> bool | str:
        if model is None:  # linked to another node's output: not known before the graph runs; execute checks it
            return True
        try:
            model_folders.resolve(model, model_folders.video_models(COGVIDEOX_PIPELINE), "CogVideoX model",
                                  model_folders.VIDEO_KINDS)
        except ValueError as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, model, dtype, device, offload, vae_tiling) -> io.NodeOutput:
        from ..phyprompt.video import load_backend

        folder = model_folders.resolve(model, model_folders.video_models(COGVIDEOX_PIPELINE), "CogVideoX model",
                                       model_folders.VIDEO_KINDS)
        load_device = mm.get_torch_device() if device == "auto" else torch.device("cpu")
        offload_device = mm.unet_offload_device() if device == "auto" else load_device
        backend = load_backend("cogvideox", folder, dtype=dtype, device=str(load_device), offload=offload,
                               load_on=str(offload_device), vae_tiling=vae_tiling)
        pipeline = backend.pipeline
        modules = None if offload != "none" else {
            "transformer": pipeline.transformer, "vae": pipeline.vae, "text_encoder": pipeline.text_encoder}
        return io.NodeOutput(managed(backend, modules, load_device, offload_device))


class CogVideoXSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="PhyPromptCogVideoXSampler",
            display_name="CogVideoX Sampler",
            category=CATEGORY,
            description="Renders a video from a prompt with CogVideoX. Wire Physics Refine's `refined` into "
                        "`positive`; save with CreateVideo → SaveVideo.",
            inputs=[
                VideoModelType.Input("video_model"),
                io.String.Input("positive", multiline=True, default="",
                                tooltip="The prompt (e.g. Physics Refine's refined output)."),
                io.String.Input("negative", multiline=True, default="", tooltip="What to avoid (optional)."),
                io.Int.Input("seed", default=0, min=0, max=MAX_SEED, control_after_generate=True),
                io.Int.Input("steps", default=50, min=1, max=500, tooltip="Denoising steps (official: 50)."),
                io.Float.Input("guidance", default=6.0, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance (official: 6)."),
                io.Int.Input("frames", default=49, min=1, max=1025, step=8,
                             tooltip="1 + 8·k frames (official: 49, about 6 s at 8 fps)."),
                io.Int.Input("width", default=720, min=16, max=2048, step=16),
                io.Int.Input("height", default=480, min=16, max=2048, step=16),
                io.Combo.Input("scheduler", options=list(COGVIDEOX_SCHEDULERS), default="dpm",
                               tooltip="dpm with dynamic CFG (the official demo) or ddim."),
            ],
            outputs=[
                io.Image.Output("images", display_name="images", tooltip="The frames, for CreateVideo."),
                io.Float.Output("fps", display_name="fps", tooltip="The rate the model was trained for."),
                io.String.Output("report", display_name="report",
                                 tooltip="The prompt's tokens / the text encoder's limit; a warning if it is cut."),
            ],
        )

    @classmethod
    def execute(cls, video_model: Managed, positive, negative, seed, steps, guidance, frames, width, height,
                scheduler) -> io.NodeOutput:
        request = SampleRequest(prompt=positive, negative_prompt=negative, seed=seed, steps=steps, guidance=guidance,
                                frames=frames, width=width, height=height, scheduler=scheduler)
        video_model.model.settings(request)  # bad settings fail before the weights move to the GPU
        try:
            backend = video_model.ready()
            report = token_report(backend, positive)
            video = backend.sample(request, progress=progress_bar(steps))
        finally:
            video_model.done()
        return io.NodeOutput(video.frames, video.fps, report)


def token_report(backend, prompt: str) -> str:
    """Tokens used / the limit; over the limit, a warning that is also logged (the encoder will cut it)."""
    tokens, limit = backend.count(prompt), backend.token_limit
    report = f"{tokens}/{limit} tokens ({backend.description})"
    if tokens > limit:
        report = f"WARNING: the prompt has {tokens} tokens, the text encoder reads {limit}; the rest is cut off"
        log.warning("PhyPrompt: %s", report)
    return report
