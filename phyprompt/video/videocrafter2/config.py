"""VideoCrafter2's architecture and diffusion settings: built-in defaults (the official
`configs/inference_t2v_512_v2.0.yaml`), read from an original YAML, or from a converted folder's config.json.

The YAML is read with `yaml.safe_load` and only its numbers and flags are used (its `target:` class paths are
never imported). Keys the original constructors require must be there; the others take the original code's
defaults. Flags for variants this port does not implement (relative temporal positions, causal temporal
attention, scale-shift norm, image cross-attention, ...) are refused by name instead of being ignored.

The text tower is what the original builds: the OpenCLIP architecture `cond_stage_config.params.arch` names
(default ViT-H-14), looked up in OpenCLIP's own model configs (`OPENCLIP_TEXT`). Its head count and activation
are read from there because the weights cannot tell them (the tensors' shapes are the same for any head count),
and the checkpoint's tensors are then checked against its width, depth, context and vocabulary
(`TextConfig.check_weights`). An architecture OpenCLIP does not ship (one registered with
`open_clip.add_model_config`) is described beside the params by what its model config says, in OpenCLIP's
names: `cond_stage_config.text_cfg: {width, heads, layers[, context_length, vocab_size]}` and
`cond_stage_config.quick_gelu`. lvdm reads only `target` and `params`, so such a YAML still runs the original.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from ..backend import VideoModelError

#: the `_class_name` in a converted folder's config.json (what the model pickers look for)
CLASS_NAME = "VideoCrafter2"
#: the text encoder's tokenizer, for token reports
TOKENIZER_DESCRIPTION = "the OpenCLIP tokenizer"

COND_STAGE = "model.params.cond_stage_config"  # the text encoder's section of the YAML
DEFAULT_ARCH = "ViT-H-14"  # FrozenOpenCLIPEmbedder's default `arch`, the release's
# The text towers of OpenCLIP's model configs (open_clip/model_configs/<arch>.json: text_cfg width, heads, layers,
# and the model's quick_gelu), all with context 77 and the 49,408-token vocabulary. lvdm builds the arch it names
# without pretrained weights (`create_model_and_transforms(arch)`; its `version` is never read) and loads the
# checkpoint's tensors into it.
OPENCLIP_TEXT = {
    "ViT-B-32": (512, 8, 12, False), "ViT-B-16": (512, 8, 12, False),
    "ViT-L-14": (768, 12, 12, False), "ViT-L-14-336": (768, 12, 12, False),
    "ViT-H-14": (1024, 16, 24, False), "ViT-H-16": (1024, 16, 24, False), "ViT-g-14": (1024, 16, 24, False),
    "ViT-bigG-14": (1280, 20, 32, False),
    "ViT-B-32-quickgelu": (512, 8, 12, True), "ViT-B-16-quickgelu": (512, 8, 12, True),
    "ViT-L-14-quickgelu": (768, 12, 12, True), "ViT-L-14-336-quickgelu": (768, 12, 12, True),
    "ViT-H-14-quickgelu": (1024, 16, 24, True),
}
# the text_cfg keys this port reads (OpenCLIP's CLIPTextCfg names); the others change the tower in ways it
# does not implement
_TEXT_CFG_KEYS = ("width", "heads", "layers", "context_length", "vocab_size")


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
    """The OpenCLIP text tower: the sizes and activation of the architecture the config names."""

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 1024
    heads: int = 16
    layers: int = 24  # in the checkpoint; "penultimate" runs all but the last
    layer: str = "penultimate"
    activation: str = "gelu"  # transformers' name: "gelu" (OpenCLIP's nn.GELU) or "quick_gelu" (its QuickGELU)
    arch: str = DEFAULT_ARCH  # the OpenCLIP architecture named, for messages and the record

    @property
    def used_layers(self) -> int:
        return self.layers - (1 if self.layer == "penultimate" else 0)

    def check_weights(self, state_dict, prefix: str, source: str) -> None:
        """Raise ConfigError unless the OpenCLIP tensors under `prefix` are this tower's, naming where `source`
        (the config) says otherwise. The head count has no tensor of its own: this is all that can be checked."""
        try:
            vocab_size, width = state_dict[prefix + "token_embedding.weight"].shape
            context_length = state_dict[prefix + "positional_embedding"].shape[0]
        except KeyError as exc:
            raise ConfigError(f"the checkpoint has no OpenCLIP text tower ({exc.args[0]} is missing)") from None
        layers = len({k[len(prefix):].split(".")[2] for k in state_dict
                      if k.startswith(prefix + "transformer.resblocks.")})
        found = dict(width=width, layers=layers, context_length=context_length, vocab_size=vocab_size)
        wrong = [f"{name} {getattr(self, name)} (the checkpoint's: {value})" for name, value in found.items()
                 if getattr(self, name) != value]
        if wrong:
            described = (f"{COND_STAGE}.params.arch {self.arch}" if self.arch in OPENCLIP_TEXT
                         else f"{COND_STAGE}.text_cfg")
            raise ConfigError(f"{source}: the text tower {described} describes is not the checkpoint's: "
                              f"{', '.join(wrong)}; give the checkpoint's own YAML as its config (--config, the "
                              "loader's config input) or put it beside it as <checkpoint name>.yaml")

    @classmethod
    def from_cond_stage(cls, cond_stage: dict, name: str) -> "TextConfig":
        """The tower lvdm's FrozenOpenCLIPEmbedder builds from `cond_stage_config` (see the module docstring)."""
        params = cond_stage.get("params") or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{name}: {COND_STAGE}.params must be a mapping (arch, layer, ...)")
        layer = params.get("layer", "last")
        if layer not in ("last", "penultimate"):
            raise ConfigError(f"{name}: {COND_STAGE}.params.layer must be last or penultimate, not {layer!r}")
        arch = params.get("arch", DEFAULT_ARCH)
        if not isinstance(arch, str):
            raise ConfigError(f"{name}: {COND_STAGE}.params.arch must be an OpenCLIP architecture name, not {arch!r}")
        described = _described_tower(cond_stage, name)
        if arch in OPENCLIP_TEXT:
            width, heads, layers, quick_gelu = OPENCLIP_TEXT[arch]
            values = dict(width=width, heads=heads, layers=layers, context_length=77, vocab_size=49408,
                          quick_gelu=quick_gelu)
            for key, value in described.items():  # the original builds the named arch, whatever is beside it
                if value != values[key]:
                    raise ConfigError(f"{name}: {_field(key)} is {value}, but {COND_STAGE}.params.arch {arch} has "
                                      f"{values[key]}, and the original builds {arch}; name your own "
                                      f"architecture in {COND_STAGE}.params.arch")
        else:
            values = dict(context_length=77, vocab_size=49408, quick_gelu=False) | described  # CLIPTextCfg defaults
            missing = [key for key in ("width", "heads", "layers") if key not in values]
            if missing:
                raise ConfigError(
                    f"{name}: {COND_STAGE}.params.arch {arch!r} is not an OpenCLIP architecture this port knows "
                    f"({', '.join(OPENCLIP_TEXT)}); for another, describe its text tower beside the params as its "
                    f"OpenCLIP model config does: {COND_STAGE}.text_cfg with {', '.join(missing)} (and "
                    f"{COND_STAGE}.quick_gelu: true if it uses QuickGELU)")
        if values["width"] % values["heads"]:
            raise ConfigError(f"{name}: {_field('heads')} {values['heads']} does not divide the width "
                              f"{values['width']}")
        activation = "quick_gelu" if values.pop("quick_gelu") else "gelu"
        return cls(**values, layer=layer, activation=activation, arch=arch)


def _field(key: str) -> str:
    return f"{COND_STAGE}.{key}" if key == "quick_gelu" else f"{COND_STAGE}.text_cfg.{key}"


def _described_tower(cond_stage: dict, name: str) -> dict:
    """What the YAML says about the tower beside `params` (text_cfg's sizes, quick_gelu), each checked."""
    text_cfg = cond_stage.get("text_cfg", {})
    if not isinstance(text_cfg, dict):
        raise ConfigError(f"{name}: {COND_STAGE}.text_cfg must be a mapping ({', '.join(_TEXT_CFG_KEYS)})")
    for key, value in text_cfg.items():
        if key not in _TEXT_CFG_KEYS:
            raise ConfigError(f"{name}: {_field(key)} is not implemented by this port; it builds OpenCLIP's "
                              f"standard text transformer from {', '.join(_TEXT_CFG_KEYS)}")
        if type(value) is not int or value < 1:
            raise ConfigError(f"{name}: {_field(key)} must be a positive whole number, not {value!r}")
    described = dict(text_cfg)
    if "quick_gelu" in cond_stage:
        if not isinstance(cond_stage["quick_gelu"], bool):
            raise ConfigError(f"{name}: {_field('quick_gelu')} must be true or false, not {cond_stage['quick_gelu']!r}")
        described["quick_gelu"] = cond_stage["quick_gelu"]
    return described


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config.json") -> "VideoCrafter2Config":
        try:
            return cls(unet=_build(UNetConfig, data["unet"]), vae=_build(VAEConfig, data["vae"]),
                       diffusion=_build(DiffusionConfig, data["diffusion"]))
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
# the same for the autoencoder (lvdm Encoder/Decoder): give_pre_end and tanh_out change the decoded pixels with
# no tensor to show it; the others change its layers
_FIXED_VAE = {"give_pre_end": False, "tanh_out": False, "use_linear_attn": False, "attn_type": "vanilla",
              "resamp_with_conv": True}
_REQUIRED_UNET = ("in_channels", "out_channels", "model_channels", "num_res_blocks", "attention_resolutions",
                  "num_head_channels", "context_dim", "temporal_length")
# lvdm UNetModel's own defaults, for the optional keys
_UNET_CODE_DEFAULTS = {"channel_mult": (1, 2, 4, 8), "transformer_depth": 1, "temporal_transformer_depth": 1,
                       "use_linear": False, "temporal_conv": False, "temporal_attention": True,
                       "addition_attention": False, "fps_cond": False, "use_relative_position": True}
_REQUIRED_VAE = ("ch", "out_ch", "num_res_blocks", "attn_resolutions", "in_channels", "z_channels")


def read_yaml(path: str | os.PathLike) -> tuple[VideoCrafter2Config, TextConfig]:
    """The architecture an original VideoCrafter YAML (e.g. inference_t2v_512_v2.0.yaml) describes: the model's
    and its text tower's."""
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
    unsupported = []
    for section, fixed, defaults in ((unet, _FIXED_UNET, _UNET_CODE_DEFAULTS), (ddconfig, _FIXED_VAE, {})):
        for key, implemented in fixed.items():
            # a flag the YAML leaves out takes lvdm's default, which is not always the one implemented
            value = section.get(key, defaults.get(key, implemented))
            if value != implemented:
                unsupported.append(f"{key}: {value}" + ("" if key in section else " (lvdm's default when left out)"))
    if ddconfig["attn_resolutions"] or not ddconfig.get("double_z", True):
        unsupported.append("a VAE with attention outside its middle block or without double_z")
    if model.get("parameterization", "eps") != "eps" or model.get("conditioning_key", "crossattn") != "crossattn":
        unsupported.append("a model other than eps-prediction with cross-attention conditioning")
    if unsupported:
        raise ConfigError(f"{name} describes a variant this port does not implement: {'; '.join(unsupported)}")
    text = TextConfig.from_cond_stage(cond_stage, name)
    # what the YAML leaves out takes the original code's defaults (lvdm UNetModel, DDPM, LatentDiffusion)
    unet_values = {f.name: unet.get(f.name, _UNET_CODE_DEFAULTS.get(f.name)) for f in fields(UNetConfig)}
    image_size = model.get("image_size", 256)
    try:
        config = VideoCrafter2Config(
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
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} has a value of the wrong kind: {exc}") from None
    return config, text


def _section(document, dotted: str, name: str, above: str = "") -> dict:
    node = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            raise ConfigError(f"{name} has no {above}{dotted} section; is it a VideoCrafter inference YAML?")
        node = node[part]
    return node
