"""The LaVie backend: loads `lavie_base.pt` (or its safetensors conversion) with a Stable Diffusion 1.4
folder and samples as the original's `base/` stage does (facts in the package docstring)."""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

from ...infra.devices import resolve_device, resolve_dtype
from ...infra.progress import OptionalProgress
from ...language.budget import TokenizerCounter
from ..backend import (BackendInfo, Component, DiffusersFolder, LoadOption, SampleRequest, Setting, SingleFile, Video,
                       VideoBackend, VideoModelError, VideoSettingsError)
from ..writer import EightBit
from .loading import SD_EXAMPLE, SD_PIPELINE, check_sd_folder

if TYPE_CHECKING:  # torch and diffusers are imported when a model is loaded, not when INFO is read
    import torch

TOKENIZER_DESCRIPTION = "the CLIP ViT-L/14 tokenizer"
SIZE_MULTIPLE = 8  # the original pipeline's check on width and height

# The official settings (base/configs/sample.yaml): 16 frames at 512x320, DDPM with 50 steps, guidance 7.5,
# saved at 8 fps; fp16 on the GPU.
INFO = BackendInfo(
    name="lavie",
    display_name="LaVie",
    node_name="LaVie",
    target="lavie",
    summary="LaVie base text-to-video (lavie_base.pt on Stable Diffusion 1.4)",
    weights=SingleFile(
        suffixes=(".pt", ".safetensors"),
        folder_kinds=("LaVie",),
        components=(Component("sd_folder", DiffusersFolder(SD_PIPELINE, folder_kinds=("diffusers",),
                                                           example=SD_EXAMPLE),
                              help=f"The Stable Diffusion 1.4 diffusers folder ({SD_EXAMPLE}): LaVie's VAE, "
                                   "CLIP text encoder, tokenizer and UNet config."),),
        example="YaohuiW/LaVie lavie_base.pt",
    ),
    settings=(
        Setting("steps", 50, 1, 1000, help="DDPM denoising steps (official: 50)."),
        Setting("guidance", 7.5, 0.0, 30.0, step=0.1, help="Classifier-free guidance (official: 7.5; 1 or less: off)."),
        Setting("frames", 16, 1, 128, help="Frames (official: 16, 2 s at 8 fps)."),
        Setting("width", 512, SIZE_MULTIPLE, 2048, step=SIZE_MULTIPLE),
        Setting("height", 320, SIZE_MULTIPLE, 2048, step=SIZE_MULTIPLE),
    ),
    schedulers=("ddpm",),
    fps=8.0,
    load_options=(
        LoadOption("ema", True, help="Use the checkpoint's EMA weights when it has them, as the original does; "
                                     "off: its plain weights."),
    ),
    converter="lavie.loading:convert",
    # The original's decode_latents (base/pipelines/pipeline_videogen.py): ((x / 2 + 0.5) * 255).add_(0.5)
    # .clamp_(0, 255).to(torch.uint8), all in the model's type (fp16 in base/sample.py): rounding half up.
    # `sampling.decode` computes (x / 2 + 0.5).clamp(0, 1) in float32, where x / 2 + 0.5 is exact for a float16
    # or bfloat16 x, so the writer's rounding of it to the model's type is the model-type sum; clamping first
    # gives the same levels (the steps after it only grow with it, and make 0 of 0 and 255 of 1). The writer
    # does the rest in the model's type. Exact: the same decoder output gives the same pixels (checked for
    # every float16 and bfloat16 value).
    eight_bit=EightBit("half_up", "model"),
)


class LaVieBackend(VideoBackend):
    info = INFO

    def __init__(self, unet, vae, text_encoder, tokenizer, weights: str = "plain"):
        self.unet = unet
        self.vae = vae
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.weights = weights  # "ema" or "plain": which of the checkpoint's weight sets was loaded
        self.counter = TokenizerCounter(tokenizer, TOKENIZER_DESCRIPTION)

    @classmethod
    def load(cls, path: str, *, dtype: str = "auto", device: str = "auto", load_on: str | None = None,
             ema: bool = True, sd_folder: str | None = None) -> "LaVieBackend":
        import torch

        check_sd_folder(sd_folder)  # before reading gigabytes of weights
        from .config import UNetConfig
        from .loading import load_unet_weights
        from .unet import LaVieUNet

        config = UNetConfig.read(sd_folder)
        run_on = resolve_device(device, VideoModelError)
        torch_dtype = resolve_dtype(dtype, run_on, VideoModelError, gpu_default=torch.float16)
        load_device = resolve_device(load_on or run_on, VideoModelError)
        tokenizer = _load_tokenizer(sd_folder)
        with torch.device("meta"):
            unet = LaVieUNet(config)
        weights = load_unet_weights(unet, path, ema, sd_folder)
        from diffusers import AutoencoderKL
        from transformers import CLIPTextModel

        try:
            # diffusers >= 0.32 knows `torch_dtype`, transformers >= 4.56 `dtype`
            vae = AutoencoderKL.from_pretrained(os.path.join(sd_folder, "vae"), local_files_only=True,
                                                torch_dtype=torch_dtype)
            text_encoder = CLIPTextModel.from_pretrained(os.path.join(sd_folder, "text_encoder"),
                                                         local_files_only=True, dtype=torch_dtype)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VideoModelError(f"could not load Stable Diffusion's VAE or text encoder from {sd_folder}: "
                                  f"{reason}") from exc
        if text_encoder.config.hidden_size != config.cross_attention_dim:
            raise VideoModelError(f"{sd_folder}'s text encoder gives {text_encoder.config.hidden_size} channels and "
                                  f"its UNet reads {config.cross_attention_dim}: not a Stable Diffusion 1.x folder")
        unet = unet.to(load_device, torch_dtype)
        return cls(unet.eval(), vae.to(load_device).eval(), text_encoder.to(load_device).eval(), tokenizer, weights)

    @classmethod
    def load_token_counter(cls, path: str, sd_folder: str | None = None) -> TokenizerCounter:
        """The tokenizer lives in the Stable Diffusion folder, not in lavie_base.pt."""
        check_sd_folder(sd_folder)
        return TokenizerCounter(_load_tokenizer(sd_folder), TOKENIZER_DESCRIPTION)

    # --- what the rest of the project asks of a backend --------------------------------------------

    @property
    def token_limit(self) -> int:
        return int(self.tokenizer.model_max_length)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet, "vae": self.vae, "text_encoder": self.text_encoder}

    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def frames_dtype(self) -> str:
        return str(self.vae.dtype).removeprefix("torch.")  # the VAE decodes the frames

    @classmethod
    def check_settings(cls, settings: dict) -> None:
        _check_size(settings, SIZE_MULTIPLE)

    def check(self, settings: dict) -> None:
        _check_size(settings, max(SIZE_MULTIPLE, self.vae_scale))

    def sample(self, request: SampleRequest, progress: OptionalProgress = None) -> Video:
        import torch

        from .sampling import LATENT_CHANNELS, decode, denoise, encode_prompts

        settings = self.settings(request)
        guided = settings["guidance"] > 1.0
        prompts = [request.negative_prompt, request.prompt] if guided else [request.prompt]
        context = encode_prompts(self.tokenizer, self.text_encoder, prompts)
        # drawn on the CPU: the same seed gives the same video on every device
        generator = torch.Generator(device="cpu").manual_seed(request.seed % 2**64)
        scale = self.vae_scale
        shape = (1, LATENT_CHANNELS, settings["frames"], settings["height"] // scale, settings["width"] // scale)
        latents = torch.randn(shape, generator=generator, dtype=context.dtype).to(context.device)
        latents = denoise(self.unet, context, latents, steps=settings["steps"], guidance=settings["guidance"],
                          generator=generator, progress=progress)
        return Video(frames=decode(self.vae, latents), fps=self.info.fps)


def _check_size(settings: dict, multiple: int) -> None:
    for label in ("width", "height"):
        value = settings[label]
        if value % multiple:
            raise VideoSettingsError(f"{label} {value} is not a multiple of {multiple}; try "
                                     f"{math.ceil(value / multiple) * multiple}")


def _load_tokenizer(sd_folder: str):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(os.path.join(sd_folder, "tokenizer"), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VideoModelError(f"could not load the CLIP tokenizer from {sd_folder}/tokenizer: {reason}") from exc
