"""VideoCrafter2's architecture and diffusion settings: built-in defaults (the official
`configs/inference_t2v_512_v2.0.yaml`), read from an original YAML, or from a converted folder's config.json.

The YAML is read with `yaml.safe_load` and only its numbers and flags are used (its `target:` class paths are
never imported). Keys the original constructors require must be there; the others take the original code's
defaults. Flags for variants this port does not implement (relative temporal positions, causal temporal
attention, scale-shift norm, image cross-attention, ...) are refused by name instead of being ignored.

The text tower's sizes are not in the YAML (it names an OpenCLIP architecture); they are read from the
checkpoint's own tensors (`TextConfig.from_weights`), with OpenCLIP's 64 channels per head.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from ..backend import VideoModelError

#: the `_class_name` in a converted folder's config.json (what the model pickers look for)
CLASS_NAME = "VideoCrafter2"
#: the text encoder's tokenizer, for token reports
TOKENIZER_DESCRIPTION = "the OpenCLIP tokenizer"

CLIP_HEAD_CHANNELS = 64  # every OpenCLIP text tower (ViT-B/L/H/bigG) uses 64 channels per attention head


class ConfigError(VideoModelError):
    """A VideoCrafter2 YAML or config.json that is unreadable, incomplete or describes another model."""


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    transformer_depth: int = 1
    temporal_transformer_depth: int = 1
    context_dim: int = 1024
    use_linear: bool = True  # linear (not 1x1 conv) projections in and out of the transformers
    temporal_conv: bool = True  # the 4-layer temporal Conv3d block at the end of every ResBlock
    temporal_attention: bool = True
    addition_attention: bool = True  # `init_attn`, a temporal transformer right after conv_in
    fps_cond: bool = True
    temporal_length: int = 16


@dataclass(frozen=True)
class VAEConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    in_channels: int = 3
    out_ch: int = 3
    z_channels: int = 4
    embed_dim: int = 4


@dataclass(frozen=True)
class TextConfig:
    vocab_size: int = 49408
    context_length: int = 77
    width: int = 1024
    heads: int = 16
    layers: int = 24  # in the checkpoint; "penultimate" runs all but the last
    layer: str = "penultimate"

    @property
    def used_layers(self) -> int:
        return self.layers - (1 if self.layer == "penultimate" else 0)

    @classmethod
    def from_weights(cls, state_dict, prefix: str, layer: str) -> "TextConfig":
        """Sizes from an OpenCLIP text tower's tensors (`prefix` + token_embedding.weight, ...)."""
        try:
            vocab_size, width = state_dict[prefix + "token_embedding.weight"].shape
            context_length = state_dict[prefix + "positional_embedding"].shape[0]
        except KeyError as exc:
            raise ConfigError(f"the checkpoint has no OpenCLIP text tower ({exc.args[0]} is missing)") from None
        blocks = {k[len(prefix):].split(".")[2] for k in state_dict if k.startswith(prefix + "transformer.resblocks.")}
        return cls(vocab_size=vocab_size, context_length=context_length, width=width,
                   heads=max(1, width // CLIP_HEAD_CHANNELS), layers=len(blocks), layer=layer)


@dataclass(frozen=True)
class DiffusionConfig:
    timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012
    scale_factor: float = 0.18215  # latents are the VAE's times this
    channels: int = 4
    image_size: tuple[int, int] = (40, 64)  # latent height, width: 320x512 pixels
    use_scale: bool = True  # scale_b's per-timestep rescaling of pred_x0
    scale_a: float = 1.0
    scale_b: float = 0.7
    mid_step: int = 400
    fix_scale_bug: bool = False  # False (as trained): the scale array is mid_step + timesteps long


@dataclass(frozen=True)
class VideoCrafter2Config:
    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    text_layer: str = "penultimate"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config.json") -> "VideoCrafter2Config":
        try:
            return cls(unet=_build(UNetConfig, data["unet"]), vae=_build(VAEConfig, data["vae"]),
                       diffusion=_build(DiffusionConfig, data["diffusion"]), text_layer=data["text_layer"])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"{source} is not a VideoCrafter2 config ({exc}); convert the checkpoint again") from None


def _build(kind, values: dict):
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise TypeError(f"unknown {kind.__name__} keys: {', '.join(unknown)}")
    return kind(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# --- the original YAML --------------------------------------------------------------------------

# YAML flags of lvdm variants this port does not implement, with the value it implements
_FIXED_UNET = {"use_scale_shift_norm": False, "resblock_updown": False, "tempspatial_aware": False,
               "temporal_selfatt_only": True, "use_relative_position": False, "use_causal_attention": False,
               "use_image_attention": False, "conv_resample": True, "dims": 2}
_REQUIRED_UNET = ("in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions",
                  "num_head_channels", "context_dim", "temporal_length")
# lvdm UNetModel's own defaults, for the optional keys
_UNET_CODE_DEFAULTS = {"channel_mult": (1, 2, 4, 8), "transformer_depth": 1, "temporal_transformer_depth": 1,
                       "use_linear": False, "temporal_conv": False, "temporal_attention": True,
                       "addition_attention": False, "fps_cond": False}
_REQUIRED_VAE = ("ch", "out_ch", "num_res_blocks", "attn_resolutions", "in_channels", "z_channels")


def read_yaml(path: str | os.PathLike) -> VideoCrafter2Config:
    """The architecture an original VideoCrafter YAML (e.g. inference_t2v_512_v2.0.yaml) describes."""
    import yaml

    name = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read {name}: {str(exc).splitlines()[0]}") from None
    model = _section(document, "model.params", name)
    unet = _section(model, "unet_config.params", name, "model.params.")
    ddconfig = _section(model, "first_stage_config.params.ddconfig", name, "model.params.")
    first_stage = _section(model, "first_stage_config.params", name, "model.params.")
    cond_stage = _section(model, "cond_stage_config", name, "model.params.")
    missing = ([f"model.params.unet_config.params.{k}" for k in _REQUIRED_UNET if k not in unet]
               + [f"model.params.first_stage_config.params.ddconfig.{k}" for k in _REQUIRED_VAE if k not in ddconfig]
               + ["model.params.first_stage_config.params.embed_dim"] * ("embed_dim" not in first_stage))
    if missing:
        raise ConfigError(f"{name} lacks {len(missing)} required key{'s' * (len(missing) > 1)}: {', '.join(missing)}")
    if not str(cond_stage.get("target", "")).endswith("FrozenOpenCLIPEmbedder"):
        raise ConfigError(f"{name} describes a model with a {cond_stage.get('target')} text encoder; this is the "
                          "VideoCrafter2 text-to-video port (FrozenOpenCLIPEmbedder)")
    if unet.get("num_head_channels", -1) == -1:
        raise ConfigError(f"{name}: only num_head_channels (channels per head) is supported, not num_heads")
    unsupported = [f"{k}: {unet[k]}" for k, value in _FIXED_UNET.items() if k in unet and unet[k] != value]
    if ddconfig["attn_resolutions"] or not ddconfig.get("double_z", True):
        unsupported.append("a VAE with attention outside its middle block or without double_z")
    if model.get("parameterization", "eps") != "eps" or model.get("conditioning_key", "crossattn") != "crossattn":
        unsupported.append("a model other than eps-prediction with cross-attention conditioning")
    if unsupported:
        raise ConfigError(f"{name} describes a variant this port does not implement: {'; '.join(unsupported)}")
    layer = cond_stage.get("params", {}).get("layer", "last")
    if layer not in ("last", "penultimate"):
        raise ConfigError(f"{name}: the text encoder's layer must be last or penultimate, not {layer!r}")
    # what the YAML leaves out takes the original code's defaults (lvdm UNetModel, DDPM, LatentDiffusion)
    unet_values = {f.name: unet.get(f.name, _UNET_CODE_DEFAULTS.get(f.name)) for f in fields(UNetConfig)}
    image_size = model.get("image_size", 256)
    try:
        return VideoCrafter2Config(
            unet=_build(UNetConfig, unet_values),
            vae=_build(VAEConfig, {"ch": ddconfig["ch"], "ch_mult": ddconfig.get("ch_mult", (1, 2, 4, 8)),
                                   "num_res_blocks": ddconfig["num_res_blocks"], "in_channels": ddconfig["in_channels"],
                                   "out_ch": ddconfig["out_ch"], "z_channels": ddconfig["z_channels"],
                                   "embed_dim": first_stage["embed_dim"]}),
            diffusion=DiffusionConfig(
                timesteps=int(model.get("timesteps", 1000)), linear_start=float(model.get("linear_start", 1e-4)),
                linear_end=float(model.get("linear_end", 2e-2)), scale_factor=float(model.get("scale_factor", 1.0)),
                channels=int(model.get("channels", 3)),
                image_size=tuple(image_size) if isinstance(image_size, list) else (image_size, image_size),
                use_scale=bool(model.get("use_scale", False)), scale_a=float(model.get("scale_a", 1)),
                scale_b=float(model.get("scale_b", 0.3)), mid_step=int(model.get("mid_step", 400)),
                fix_scale_bug=bool(model.get("fix_scale_bug", False)),
            ),
            text_layer=layer,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} has a value of the wrong kind: {exc}") from None


def _section(document, dotted: str, name: str, above: str = "") -> dict:
    node = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            raise ConfigError(f"{name} has no {above}{dotted} section; is it a VideoCrafter inference YAML?")
        node = node[part]
    return node
