"""CogVideoX 2B / 5B text-to-video on diffusers' `CogVideoXPipeline`, from a local diffusers folder."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..infra.checkpoints import check_weights_folder, read_folder_json
from ..infra.devices import resolve_device, resolve_dtype
from ..infra.progress import OptionalProgress
from ..language.budget import TokenizerCounter
from .backend import (BackendInfo, DiffusersFolder, LoadOption, SampleDefaults, SampleRequest, Setting, Video,
                      VideoBackend, VideoModelError, VideoSettingsError)
from .writer import EightBit

if TYPE_CHECKING:  # torch (like diffusers) is imported when a model is loaded, not when INFO is read
    import torch

PIPELINE_CLASS = "CogVideoXPipeline"
TOKENIZER_DESCRIPTION = "the T5 tokenizer"
_WEIGHTED_COMPONENTS = ("text_encoder", "transformer", "vae")
# Memory options (diffusers' CPU offload; model and sequential need a CUDA GPU)
OFFLOAD_MODES = ("none", "model", "sequential")
# Every CogVideoX (2B, 5B): the VAE makes latents 8x smaller and 4 frames into one latent frame, and the
# transformer reads 2x2 patches of them. A loaded folder's own config is checked again (`check`).
VAE_SCALE, VAE_FRAMES, PATCH = 8, 4, 2

# The official settings (THUDM's model cards and demo): 480x720, 49 frames, 50 steps, guidance 6,
# saved at 8 fps, the DPM scheduler with dynamic CFG.
INFO = BackendInfo(
    name="cogvideox",
    display_name="CogVideoX",
    node_name="CogVideoX",
    target="cogvideox",
    summary="CogVideoX 2B or 5B text-to-video on diffusers",
    weights=DiffusersFolder(PIPELINE_CLASS, folder_kinds=("diffusers", "CogVideo"), example="THUDM/CogVideoX-2b"),
    settings=(
        Setting("steps", 50, 1, 500, help="Denoising steps (official: 50)."),
        Setting("guidance", 6.0, 0.0, 30.0, step=0.1, help="Classifier-free guidance (official: 6)."),
        Setting("frames", 49, 1, 1025, step=VAE_FRAMES * 2, help="1 + 8·k frames (official: 49, about 6 s at 8 fps)."),
        Setting("width", 720, VAE_SCALE * PATCH, 2048, step=VAE_SCALE * PATCH),
        Setting("height", 480, VAE_SCALE * PATCH, 2048, step=VAE_SCALE * PATCH),
    ),
    schedulers=("dpm", "ddim"),
    fps=8.0,
    load_options=(
        LoadOption("offload", "none", OFFLOAD_MODES,
                   help="none: the host manages the memory. model / sequential: diffusers' CPU offload for small "
                        "GPUs (slower; sequential is the slowest and smallest; CUDA only)."),
        LoadOption("vae_tiling", True, help="Decode in tiles: much less VRAM."),
    ),
    # THUDM's demo saves the pipeline's PIL frames: diffusers' numpy_to_pil, (x * 255).round() on the float32
    # frames, the frames this backend returns (output_type "np" stops just before that step). Exact: the same
    # floats give the same pixels.
    eight_bit=EightBit("nearest"),
)


def _safetensors_dtype(folder: str) -> torch.dtype | None:
    """The dtype the weights were published in (the 2B checkpoint is fp16, the 5B one bf16)."""
    import torch

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


def _check_grid(settings: dict, multiple: int, vae_frames: int) -> None:
    """Sizes the VAE and the patches divide (`multiple`) and frame counts the VAE makes as asked."""
    for label in ("width", "height"):
        value = settings[label]
        if value < multiple or value % multiple:
            nearest = max(multiple, math.ceil(value / multiple) * multiple)
            raise VideoSettingsError(
                f"{label} {value} is not a multiple of {multiple} (the VAE and patch size); try {nearest}")
    # The VAE compresses `vae_frames` frames into one latent frame and decodes latent frames in pairs after the
    # first, so only 1 + 8k frames come out as asked (49 = 1 + 8*6); other counts come out different.
    step, frames = vae_frames * 2, settings["frames"]
    if frames < 1 or (frames - 1) % step:
        nearest = max(0, math.ceil((frames - 1) / step)) * step + 1
        raise VideoSettingsError(f"CogVideoX makes 1 + {step}·k frames (e.g. 49), not {frames}; try {nearest}")


def _dtype_argument(dtype: torch.dtype) -> dict:
    """Recent diffusers take `dtype=` and deprecate `torch_dtype=`; older ones only know the latter."""
    from diffusers.pipelines import pipeline_utils

    return {"dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype": dtype}


class CogVideoXBackend(VideoBackend):
    info = INFO

    def __init__(self, pipeline, folder: str = "", offload: str = "none"):
        self.pipeline = pipeline
        self.folder = folder
        self.offload = offload
        self.counter = TokenizerCounter(pipeline.tokenizer, TOKENIZER_DESCRIPTION)
        self._schedulers = {}

    @classmethod
    def load(cls, folder: str, *, dtype: str = "auto", device: str = "auto", load_on: str | None = None,
             offload: str = "none", vae_slicing: bool = True, vae_tiling: bool = True) -> "CogVideoXBackend":
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
        return cls(pipeline, folder, offload)

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
    def defaults(self) -> SampleDefaults:
        """The official settings, scaled to this transformer's own sample size (equal for 2B and 5B)."""
        spatial = self.pipeline.vae_scale_factor_spatial
        config = self.transformer_config
        official = super().defaults
        return SampleDefaults(
            steps=official.steps, guidance=official.guidance, fps=official.fps, scheduler=official.scheduler,
            frames=int(config.sample_frames), width=int(config.sample_width) * spatial,
            height=int(config.sample_height) * spatial,
        )

    def modules(self) -> dict[str, torch.nn.Module] | None:
        if self.offload != "none":  # diffusers' offload hooks move the weights themselves
            return None
        pipeline = self.pipeline
        return {"transformer": pipeline.transformer, "vae": pipeline.vae, "text_encoder": pipeline.text_encoder}

    def _scheduler(self, name: str):
        from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

        if name not in self._schedulers:
            kind = CogVideoXDPMScheduler if name == "dpm" else CogVideoXDDIMScheduler
            self._schedulers[name] = kind.from_config(self.pipeline.scheduler.config)
        return self._schedulers[name]

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        _check_grid(settings, VAE_SCALE * PATCH, VAE_FRAMES)

    def check(self, settings: dict) -> None:
        _check_grid(settings, self.pipeline.vae_scale_factor_spatial * self.transformer_config.patch_size,
                    self.pipeline.vae_scale_factor_temporal)
        d = self.defaults
        if (self.transformer_config.use_learned_positional_embeddings
                and (settings["width"], settings["height"]) != (d.width, d.height)):
            raise VideoSettingsError(f"this CogVideoX only renders {d.width}x{d.height}")

    def sample(self, request: SampleRequest, progress: OptionalProgress = None) -> Video:
        return self._render([request], self.settings(request), progress)[0]

    def sample_batch(self, requests: Sequence[SampleRequest], progress: OptionalProgress = None) -> list[Video]:
        """Requests of equal settings in one pipeline call, each with its own generator: diffusers draws
        each video's noise from its own, so each is the video it would be alone (up to float rounding)."""
        settings = [self.settings(request) for request in requests]
        if len(requests) < 2 or any(s != settings[0] for s in settings):
            return super().sample_batch(requests, progress)
        return self._render(requests, settings[0], progress)

    def _render(self, requests: Sequence[SampleRequest], settings: dict, progress: OptionalProgress) -> list[Video]:
        import torch

        scheduler = settings["scheduler"]
        self.pipeline.scheduler = self._scheduler(scheduler)
        steps = settings["steps"]

        def on_step_end(pipeline, step, timestep, tensors):
            if progress is not None:
                progress(step + 1, steps)
            return tensors

        output = self.pipeline(
            prompt=[request.prompt for request in requests],
            negative_prompt=[request.negative_prompt for request in requests],  # "" is the pipeline's default
            use_dynamic_cfg=scheduler == "dpm",
            generator=[torch.Generator(device="cpu").manual_seed(request.seed % 2**64) for request in requests],
            output_type="np",
            max_sequence_length=self.token_limit,
            callback_on_step_end=on_step_end,
            num_inference_steps=steps,
            guidance_scale=settings["guidance"],
            num_frames=settings["frames"],
            width=settings["width"],
            height=settings["height"],
        )
        return [Video(frames=torch.from_numpy(frames).float().clamp_(0.0, 1.0), fps=self.defaults.fps)
                for frames in output.frames]
