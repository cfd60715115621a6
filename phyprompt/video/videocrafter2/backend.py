"""VideoCrafter2 behind the video backend interface: the glue between the port (model.py) and the project
(settings, token budget, progress, frames). The model code is in the sibling modules."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ...infra.devices import resolve_device, resolve_dtype
from ...infra.progress import OptionalProgress
from ...language.budget import TokenizerCounter
from ..backend import (BackendInfo, LoadOption, SampleDefaults, SampleRequest, Setting, SingleFile, Video, VideoBackend,
                       VideoModelError, VideoSettingsError)
from ..writer import EightBit
from .config import CLASS_NAME, TOKENIZER_DESCRIPTION

if TYPE_CHECKING:  # the model (and torch) is imported when a model loads: the CLI's help reads INFO without it
    import torch

    from .model import VideoCrafter2

FPS_CONDITION = 28  # the frame rate the UNet is told (the official run_text2video.sh); the video plays at 10
ETA = 1.0
# The autoencoder of every VideoCrafter config (Stable Diffusion's) makes latents 8x smaller; the UNet's
# levels halve them further, by as much as the loaded config says (`check`: 64 pixels for the release).
VAE_SCALE = 8

# The official settings (scripts/run_text2video.sh with inference_t2v_512_v2.0.yaml): 320x512, 16 frames,
# 50 DDIM steps, eta 1, guidance 12 against the empty prompt, fps condition 28, saved at 10 fps.
INFO = BackendInfo(
    name="videocrafter2",
    display_name="VideoCrafter2",
    node_name="VideoCrafter2",
    target="videocrafter2",
    summary="VideoCrafter2 text-to-video (512 v2.0), a port that loads the original model.ckpt",
    weights=SingleFile(suffixes=(".ckpt", ".safetensors"), folder_kinds=("videocrafter",), folder_class=CLASS_NAME,
                       example="VideoCrafter/VideoCrafter2 model.ckpt"),
    settings=(
        Setting("steps", 50, 1, 1000, help="DDIM steps (official: 50)."),
        Setting("guidance", 12.0, 0.0, 30.0, step=0.1, help="Classifier-free guidance (official: 12)."),
        Setting("frames", 16, 1, 128, help="Frames (official: 16, 1.6 s at 10 fps)."),
        Setting("width", 512, 64, 2048, step=64, help="Width, a multiple of 64 (official: 512)."),
        Setting("height", 320, 64, 2048, step=64, help="Height, a multiple of 64 (official: 320)."),
    ),
    schedulers=("ddim",),
    fps=10.0,
    load_options=(
        # ComfyUI keeps checkpoints' YAMLs in models/configs; users also put them beside the checkpoint
        # optional in the loader node: workflows saved before it existed load as they did, with "auto"
        LoadOption("config", None, suffixes=(".yaml", ".yml"), folder_kinds=("configs", "videocrafter"),
                   unset="auto", optional=True,
                   help="The checkpoint's original inference YAML (e.g. inference_t2v_512_v2.0.yaml): the "
                        "architecture, text tower included. Default: <checkpoint name>.yaml beside the checkpoint, "
                        "else the official release's settings. Not for a converted folder (it carries its own)."),
    ),
    converter="videocrafter2.convert:convert",
    # The original's save_videos (scripts/evaluation/funcs.py): clamp(x.float(), -1, 1), (x + 1) / 2, × 255, then
    # .to(torch.uint8), which cuts toward zero, all in float32; `sample` computes the first two steps exactly so.
    # Exact: the same decoder output gives the same pixels.
    eight_bit=EightBit("truncate", "float32"),
)


class VideoCrafter2Backend(VideoBackend):
    info = INFO

    def __init__(self, model: VideoCrafter2):
        self.model = model
        self.counter = TokenizerCounter(model.tokenizer, TOKENIZER_DESCRIPTION)

    @classmethod
    def load(cls, path: str, *, dtype: str = "auto", device: str = "auto", load_on: str | None = None,
             config: str | None = None) -> "VideoCrafter2Backend":
        import torch

        from .model import load_model

        run_on = resolve_device(device, VideoModelError)
        torch_dtype = resolve_dtype(dtype, run_on, VideoModelError, gpu_default=torch.float16)
        return cls(load_model(path, config=config, dtype=torch_dtype,
                              device=resolve_device(load_on or run_on, VideoModelError)))

    @classmethod
    def load_token_counter(cls, path: str) -> TokenizerCounter:
        if not os.path.exists(path):
            raise VideoModelError(f"VideoCrafter2 checkpoint not found: {path}")
        from .text import load_tokenizer

        return TokenizerCounter(load_tokenizer(), TOKENIZER_DESCRIPTION)  # the same for every VideoCrafter2 checkpoint

    @property
    def token_limit(self) -> int:
        return self.model.text_config.context_length

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.model.config.vae.ch_mult) - 1)

    @property
    def defaults(self) -> SampleDefaults:
        """The official settings, sized by this checkpoint's own training size (320x512x16 for the release)."""
        official = super().defaults
        height, width = self.model.config.diffusion.image_size
        return SampleDefaults(steps=official.steps, guidance=official.guidance, fps=official.fps,
                              scheduler=official.scheduler, frames=self.model.config.unet.temporal_length,
                              width=width * self.vae_scale, height=height * self.vae_scale)

    def modules(self) -> dict[str, torch.nn.Module]:
        model = self.model
        return {"unet": model.unet, "text_encoder": model.text_encoder, "vae": model.vae}

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        _check_size(settings, VAE_SCALE, "the VAE")

    def check(self, settings: dict) -> None:
        # the VAE shrinks by vae_scale and the UNet halves the latents once per level after the first
        multiple = self.vae_scale * 2 ** (len(self.model.config.unet.channel_mult) - 1)
        _check_size(settings, multiple, "the VAE and the UNet's levels")
        timesteps = self.model.config.diffusion.timesteps
        if settings["steps"] > timesteps:
            raise VideoSettingsError(f"steps must be at most {timesteps}, the model's timesteps")

    def sample(self, request: SampleRequest, progress: OptionalProgress = None) -> Video:
        import torch

        settings = self.settings(request)
        model = self.model
        context = model.encode(model.tokenize([request.prompt]))
        uncond = model.encode(model.tokenize([request.negative_prompt]))  # "" unless a negative prompt is given
        scale = self.vae_scale
        shape = (1, model.config.diffusion.channels, settings["frames"], settings["height"] // scale,
                 settings["width"] // scale)
        latents = model.sample(context, uncond, shape=shape, steps=settings["steps"], guidance=settings["guidance"],
                               eta=ETA, fps=FPS_CONDITION, generator=torch.Generator().manual_seed(request.seed % 2**64),
                               progress=progress)
        pixels = model.decode(latents)[0]  # (3, t, H, W) in about -1..1, float32
        # in the original's order and type, so that the writer's truncation (INFO.eight_bit) ends as it does
        frames = ((pixels.clamp(-1.0, 1.0) + 1.0) / 2.0).permute(1, 2, 3, 0).contiguous().cpu()
        return Video(frames=frames, fps=self.defaults.fps)


def _check_size(settings: dict, multiple: int, why: str) -> None:
    for label in ("width", "height"):
        value = settings[label]
        if value % multiple:
            nearest = max(multiple, round(value / multiple) * multiple)
            raise VideoSettingsError(f"{label} {value} is not a multiple of {multiple} ({why}); try {nearest}")
