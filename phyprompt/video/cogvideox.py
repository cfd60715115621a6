"""CogVideoX 2B / 5B text-to-video on diffusers' `CogVideoXPipeline`, from a local diffusers folder."""

from __future__ import annotations

import json
import math
import os

import torch

from ..budget import TokenizerCounter
from ..checkpoints import check_weights_folder, read_folder_json
from ..devices import resolve_device, resolve_dtype
from ..progress import OptionalProgress
from .backend import OFFLOAD_MODES, SampleDefaults, SampleRequest, Video, VideoModelError, VideoSettingsError

PIPELINE_CLASS = "CogVideoXPipeline"
TOKENIZER_DESCRIPTION = "the T5 tokenizer"
_WEIGHTED_COMPONENTS = ("text_encoder", "transformer", "vae")
# The official settings (THUDM's model cards and demo): 480x720, 49 frames, 50 steps, guidance 6,
# saved at 8 fps, the DPM scheduler with dynamic CFG.
_OFFICIAL = SampleDefaults(steps=50, guidance=6.0, frames=49, width=720, height=480, fps=8.0, scheduler="dpm")


def _safetensors_dtype(folder: str) -> torch.dtype | None:
    """The dtype the weights were published in (the 2B checkpoint is fp16, the 5B one bf16)."""
    names = {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with open(os.path.join(folder, name), "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
            for key, tensor in header.items():
                if key != "__metadata__":
                    return names.get(tensor["dtype"])
    return None


def check_folder(folder: str) -> None:
    """A complete CogVideoX diffusers folder, or one VideoModelError saying what is wrong."""
    index = read_folder_json(folder, "model_index.json", "CogVideoX", "a diffusers pipeline folder", VideoModelError)
    kind = index.get("_class_name")
    if kind != PIPELINE_CLASS:
        raise VideoModelError(f"{folder} holds a {kind}, not a {PIPELINE_CLASS} (text-to-video CogVideoX 2B/5B)")
    for component in _WEIGHTED_COMPONENTS:
        check_weights_folder(os.path.join(folder, component), f"CogVideoX {component}", VideoModelError)
    if not os.path.isfile(os.path.join(folder, "scheduler", "scheduler_config.json")):
        raise VideoModelError(f"{folder} is incomplete: scheduler/scheduler_config.json is missing")
    if not os.path.isdir(os.path.join(folder, "tokenizer")):
        raise VideoModelError(f"{folder} is incomplete: the tokenizer/ folder is missing")


def _dtype_argument(dtype: torch.dtype) -> dict:
    """Recent diffusers take `dtype=` and deprecate `torch_dtype=`; older ones only know the latter."""
    from diffusers.pipelines import pipeline_utils

    return {"dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype": dtype}


class CogVideoXBackend:
    name = "cogvideox"
    schedulers = ("dpm", "ddim")

    def __init__(self, pipeline, folder: str = ""):
        self.pipeline = pipeline
        self.folder = folder
        self._counter = TokenizerCounter(pipeline.tokenizer, TOKENIZER_DESCRIPTION)
        self._schedulers = {}

    @classmethod
    def load(cls, folder: str, *, dtype: str = "auto", device: str = "auto", load_on: str | None = None,
             offload: str = "none", vae_slicing: bool = True, vae_tiling: bool = True) -> "CogVideoXBackend":
        """`device` is where it runs (it decides `auto` dtype); `load_on` where the weights are put at
        load time when that differs (ComfyUI loads onto its offload device and moves them itself)."""
        check_folder(folder)  # these checks come before importing diffusers (seconds): fail fast
        if offload not in OFFLOAD_MODES:
            raise VideoSettingsError(f"unknown offload {offload!r}; choose one of: {', '.join(OFFLOAD_MODES)}")
        run_on = resolve_device(device, VideoModelError)
        if offload != "none" and run_on.type != "cuda":
            raise VideoSettingsError(
                f"{offload} CPU offload moves weights between the CPU and a CUDA GPU, and this run is on "
                f"{run_on.type}; choose offload none"
            )
        torch_dtype = resolve_dtype(dtype, run_on, VideoModelError,
                                    gpu_default=_safetensors_dtype(os.path.join(folder, "transformer")))
        from diffusers import CogVideoXPipeline

        try:
            pipeline = CogVideoXPipeline.from_pretrained(folder, local_files_only=True, **_dtype_argument(torch_dtype))
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VideoModelError(f"could not load CogVideoX from {folder}: {reason}") from exc
        pipeline.set_progress_bar_config(disable=True)  # progress goes through our callback
        if vae_slicing:
            pipeline.vae.enable_slicing()
        if vae_tiling:
            pipeline.vae.enable_tiling()
        if offload == "model":
            pipeline.enable_model_cpu_offload(device=run_on)
        elif offload == "sequential":
            pipeline.enable_sequential_cpu_offload(device=run_on)
        else:
            pipeline.to(resolve_device(load_on or run_on, VideoModelError))
        return cls(pipeline, folder)

    @classmethod
    def load_token_counter(cls, folder: str) -> TokenizerCounter:
        from transformers import AutoTokenizer

        check_folder(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(os.path.join(folder, "tokenizer"), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VideoModelError(f"could not load CogVideoX's tokenizer from {folder}: {reason}") from exc
        return TokenizerCounter(tokenizer, TOKENIZER_DESCRIPTION)

    # --- what the rest of the project asks of a backend --------------------------------------------

    @property
    def transformer_config(self):
        return self.pipeline.transformer.config

    @property
    def token_limit(self) -> int:
        # the transformer was trained on exactly this many text positions; T5's output is cut/padded to it
        return int(self.transformer_config.max_text_seq_length)

    @property
    def description(self) -> str:
        return self._counter.description

    def count(self, text: str) -> int:
        return self._counter.count(text)

    @property
    def defaults(self) -> SampleDefaults:
        """The official settings, scaled to this transformer's own sample size (equal for 2B and 5B)."""
        spatial = self.pipeline.vae_scale_factor_spatial
        config = self.transformer_config
        return SampleDefaults(
            steps=_OFFICIAL.steps, guidance=_OFFICIAL.guidance, fps=_OFFICIAL.fps, scheduler=_OFFICIAL.scheduler,
            frames=int(config.sample_frames), width=int(config.sample_width) * spatial,
            height=int(config.sample_height) * spatial,
        )

    def _scheduler(self, name: str):
        from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

        if name not in self._schedulers:
            kind = CogVideoXDPMScheduler if name == "dpm" else CogVideoXDDIMScheduler
            self._schedulers[name] = kind.from_config(self.pipeline.scheduler.config)
        return self._schedulers[name]

    def settings(self, request: SampleRequest) -> dict:
        """The request with defaults filled in, checked against what this model can do (cheap: callers
        check before moving weights to the GPU)."""
        if not request.prompt or not request.prompt.strip():
            raise VideoSettingsError("the prompt is empty: describe the scene you want to see")
        d = self.defaults
        scheduler = request.scheduler or d.scheduler
        if scheduler not in self.schedulers:
            raise VideoSettingsError(f"unknown scheduler {scheduler!r}; choose one of: {', '.join(self.schedulers)}")
        steps = d.steps if request.steps is None else request.steps
        guidance = d.guidance if request.guidance is None else request.guidance
        frames = d.frames if request.frames is None else request.frames
        width = d.width if request.width is None else request.width
        height = d.height if request.height is None else request.height
        if steps < 1:
            raise VideoSettingsError(f"steps must be at least 1, not {steps} (CogVideoX is made for 50)")
        if guidance < 0:
            raise VideoSettingsError(f"guidance must be 0 or more, not {guidance} (CogVideoX is made for 6)")
        multiple = self.pipeline.vae_scale_factor_spatial * self.transformer_config.patch_size
        for label, value in (("width", width), ("height", height)):
            if value < multiple or value % multiple:
                nearest = max(multiple, math.ceil(value / multiple) * multiple)
                raise VideoSettingsError(
                    f"{label} {value} is not a multiple of {multiple} (the VAE and patch size); try {nearest}")
        # The VAE compresses 4 frames into one latent frame and decodes latent frames in pairs after the
        # first, so only 1 + 8k frames come out as asked (49 = 1 + 8*6); other counts come out different.
        step = self.pipeline.vae_scale_factor_temporal * 2
        if frames < 1 or (frames - 1) % step:
            nearest = max(0, math.ceil((frames - 1) / step)) * step + 1
            raise VideoSettingsError(f"CogVideoX makes 1 + {step}·k frames (e.g. 49), not {frames}; try {nearest}")
        if self.transformer_config.use_learned_positional_embeddings and (width, height) != (d.width, d.height):
            raise VideoSettingsError(f"this CogVideoX only renders {d.width}x{d.height}")
        return dict(num_inference_steps=steps, guidance_scale=guidance, num_frames=frames, width=width, height=height,
                    scheduler=scheduler)

    def sample(self, request: SampleRequest, progress: OptionalProgress = None) -> Video:
        settings = self.settings(request)
        scheduler = settings.pop("scheduler")
        self.pipeline.scheduler = self._scheduler(scheduler)
        steps = settings["num_inference_steps"]

        def on_step_end(pipeline, step, timestep, tensors):
            if progress is not None:
                progress(step + 1, steps)
            return tensors

        output = self.pipeline(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            use_dynamic_cfg=scheduler == "dpm",
            generator=torch.Generator(device="cpu").manual_seed(request.seed % 2**64),
            output_type="np",
            max_sequence_length=self.token_limit,
            callback_on_step_end=on_step_end,
            **settings,
        )
        frames = torch.from_numpy(output.frames[0]).float().clamp_(0.0, 1.0)
        return Video(frames=frames, fps=self.defaults.fps)
