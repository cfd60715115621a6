"""VideoCrafter2 as one torch module, loaded from the original checkpoint or from this project's conversion.

    model = load_model("model.ckpt")           # or a converted folder; model.yaml beside the .ckpt is read,
                                               # or the YAML given: load_model("model.ckpt", config="my.yaml")
    tokens = model.tokenize(["a cat jumps"])   # (1, 77) OpenCLIP ids
    context = model.encode(tokens)             # (1, 77, 1024)
    eps = model.unet(latents, timesteps, context, fps)   # latents (b, 4, t, 40, 64)
    latents = model.sample(context, model.encode(model.tokenize([""])), shape=(1, 4, 16, 40, 64),
                           generator=torch.Generator().manual_seed(0))
    video = model.decode(latents)              # (b, 3, t, 320, 512) in about -1..1

What is read (all files on the CPU, then moved): a `.ckpt`/`.pt`/`.pth` pickle only through
`torch.load(weights_only=True)`, or a `.safetensors` file, in the original layout (`state_dict` or DeepSpeed
`module` wrapping is unwrapped); the architecture from the original inference YAML given as `config`, else
`<name>.yaml` beside the checkpoint (e.g. a copy of inference_t2v_512_v2.0.yaml), else the official 512 v2.0
settings, and the text tower's tensors are checked against the one that config names. A converted
folder holds `config.json` (`_class_name` VideoCrafter2) and `model.safetensors` in this module's own names.
Loading is strict (keys.py says which original tensors are left out, and why): a tensor missing, left over or
misshapen is a CheckpointMismatchError naming the first few, never a layer silently left random.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import torch
from torch import nn

from ...infra.checkpoints import CheckpointError, load_into, load_state_dict
from ..backend import VideoModelError
from . import keys, sampler, text, vae
from .config import CLASS_NAME, ConfigError, TextConfig, VideoCrafter2Config, read_yaml
from .schedule import Schedule
from .unet import UNet3D

CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".safetensors")
FORMAT_VERSION = 1


class VideoCrafter2(nn.Module):
    def __init__(self, config: VideoCrafter2Config, text_config: TextConfig):
        super().__init__()
        self.config = config
        self.text_config = text_config
        self.unet = UNet3D(config.unet)
        self.text_encoder = text.build_text_encoder(text_config)
        self.vae = vae.build_vae(config.vae)
        self.schedule = Schedule(config.diffusion)
        self.tokenizer = text.load_tokenizer(text_config.context_length)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return text.tokenize(self.tokenizer, prompts, self.text_config.context_length)

    @torch.no_grad()
    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        return text.encode(self.text_encoder, tokens.to(self.text_encoder.device))

    @torch.no_grad()
    def sample(self, context: torch.Tensor, uncond_context: torch.Tensor | None, *, shape: tuple[int, ...],
               steps: int = 50, guidance: float = 12.0, eta: float = 1.0, fps: int = 28,
               latents: torch.Tensor | None = None, generator: torch.Generator | None = None,
               progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """The DDIM sampler (sampler.sample) with this model's UNet and schedule."""
        return sampler.sample(self.unet, self.schedule, context, uncond_context, shape=shape, steps=steps,
                              guidance=guidance, eta=eta, fps=fps, latents=latents, generator=generator,
                              progress=progress)

    def float_schedule(self) -> "VideoCrafter2":
        """The schedule back in float32 after a dtype change: the original samples with float32 alphas."""
        self.schedule.float()
        return self

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return vae.decode(self.vae, latents, self.config.diffusion.scale_factor)


def is_converted_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG_FILE))


def yaml_beside(checkpoint: str) -> str | None:
    """`<name>.yaml` next to `<name>.ckpt`: where ComfyUI and A1111 users keep a checkpoint's config."""
    path = os.path.splitext(checkpoint)[0] + ".yaml"
    return path if os.path.isfile(path) else None


def read_original(path: str, config: str | None = None) -> tuple[dict[str, torch.Tensor], VideoCrafter2Config,
                                                                 TextConfig]:
    """The original checkpoint's tensors in this port's names, and the architecture they belong to: the YAML
    `config`, else the one beside the checkpoint, else the official release's."""
    if not path.lower().endswith(CHECKPOINT_SUFFIXES):
        raise VideoModelError(f"{os.path.basename(path)} is not a VideoCrafter2 checkpoint "
                              f"({', '.join(CHECKPOINT_SUFFIXES)}) or converted folder")
    if config is not None and not os.path.isfile(config):
        raise ConfigError(f"VideoCrafter2 config not found: {config}")
    config_path = config or yaml_beside(path)
    # read before the weights: a config the port cannot build fails in a moment, not after gigabytes
    model_config, text_config = read_yaml(config_path) if config_path else (VideoCrafter2Config(), TextConfig())
    original = keys.original_tensors(load_state_dict(path))
    text_config.check_weights(original, keys.TEXT, os.path.basename(config_path) if config_path else
                              f"the built-in config (the official release's, OpenCLIP {text_config.arch})")
    return keys.to_port(original, len(model_config.vae.ch_mult), text_config.used_layers), model_config, text_config


def read_converted(folder: str) -> tuple[dict[str, torch.Tensor], VideoCrafter2Config, TextConfig]:
    config_path = os.path.join(folder, CONFIG_FILE)
    try:
        with open(config_path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {config_path}: {exc}") from None
    if not isinstance(data, dict) or data.get("_class_name") != CLASS_NAME:
        raise ConfigError(f"{config_path} is not a converted VideoCrafter2 folder (its _class_name is "
                          f"{data.get('_class_name') if isinstance(data, dict) else None!r})")
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{folder} was converted by another PhyPrompt version (format "
                          f"{data.get('format_version')}); convert the original checkpoint again")
    weights = os.path.join(folder, WEIGHTS_FILE)
    if not os.path.isfile(weights):
        raise VideoModelError(f"{folder} is incomplete: {WEIGHTS_FILE} is missing; convert the checkpoint again")
    config = VideoCrafter2Config.from_dict(data["config"], config_path)
    try:
        text_config = TextConfig(**data["text"])
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{config_path} has no valid text encoder config ({exc})") from None
    return load_state_dict(weights), config, text_config


def read(path: str, config: str | None = None) -> tuple[dict[str, torch.Tensor], VideoCrafter2Config, TextConfig]:
    """Tensors (this port's names), architecture and text tower of a checkpoint file (with its YAML `config`)
    or converted folder."""
    if not os.path.exists(path):
        raise VideoModelError(f"VideoCrafter2 checkpoint not found: {path}")
    if not os.path.isdir(path):
        return read_original(path, config)
    if config is not None:  # the folder's config.json was written from the YAML at conversion
        raise ConfigError(f"{os.path.basename(os.path.normpath(path))} is a converted folder, which carries its own "
                          "config; a YAML config goes with an original checkpoint file (or with `convert`)")
    return read_converted(path)


def build(state_dict: dict[str, torch.Tensor], config: VideoCrafter2Config, text_config: TextConfig,
          source: str) -> VideoCrafter2:
    """The module with `state_dict`'s tensors, strictly. Built on the meta device (no random init of 1.4 B
    weights to throw away), then given the file's tensors."""
    with torch.device("meta"):
        model = VideoCrafter2(config, text_config)
    nested = "text_encoder." + _text_prefix(model)
    if nested != "text_encoder.":
        state_dict = {nested + k[len("text_encoder."):] if k.startswith("text_encoder.") else k: v
                      for k, v in state_dict.items()}
    load_into(model, state_dict, assign=True, source=source, target="VideoCrafter2")
    # the one tensor the file does not carry: CLIP's position ids (a non-persistent buffer)
    embeddings = text.transformer(model.text_encoder).embeddings
    embeddings.register_buffer("position_ids", torch.arange(text_config.context_length).expand(1, -1),
                               persistent=False)
    return model.eval().requires_grad_(False)


def port_state_dict(model: VideoCrafter2) -> dict[str, torch.Tensor]:
    """The model's tensors under the port's own names (the same whichever transformers version runs)."""
    nested = "text_encoder." + _text_prefix(model)
    return {"text_encoder." + k[len(nested):] if k.startswith(nested) else k: v
            for k, v in model.state_dict().items()}


def _text_prefix(model: VideoCrafter2) -> str:
    return "text_model." if text.transformer(model.text_encoder) is not model.text_encoder else ""


def load_model(path: str, *, config: str | None = None, dtype: torch.dtype | None = None,
               device: str | torch.device = "cpu") -> VideoCrafter2:
    """VideoCrafter2 from a checkpoint file (with its original YAML `config` if not beside it) or converted
    folder (module docstring). Every failure is a VideoModelError with a one-line reason (ConfigError is one;
    a CheckpointError is re-raised as one)."""
    try:
        state_dict, model_config, text_config = read(path, config)
        model = build(state_dict, model_config, text_config, os.path.basename(os.path.normpath(path)))
    except CheckpointError as exc:  # damaged, unsafe or not fitting: one line, as every load error
        raise VideoModelError(str(exc)) from exc
    model.to(device=device, dtype=dtype)
    return model.float_schedule()
