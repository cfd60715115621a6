"""The LaVie UNet's architecture, read from the Stable Diffusion 1.x folder's `unet/config.json` as the
original does (`UNet3DConditionModel.from_pretrained_2d`): the same widths, depths and heads, each 2-D block
type turned into its 3-D counterpart. Options SD1.x never sets, and that this port does not implement, are
refused by name instead of being ignored: a config that sets them is not Stable Diffusion 1.x.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from ..backend import VideoModelError

CROSS_ATTENTION_DOWN, PLAIN_DOWN = "CrossAttnDownBlock2D", "DownBlock2D"
MIRROR = {CROSS_ATTENTION_DOWN: "CrossAttnUpBlock2D", PLAIN_DOWN: "UpBlock2D"}
MID_BLOCK = "UNetMidBlock2DCrossAttn"
# key: the only value this port implements (SD1.x's, the diffusers default when the key is absent)
FIXED = {
    "act_fn": "silu", "center_input_sample": False, "downsample_padding": 1, "use_linear_projection": False,
    "only_cross_attention": False, "upcast_attention": False, "dual_cross_attention": False,
    "class_embed_type": None, "num_class_embeds": None, "addition_embed_type": None,
    "resnet_time_scale_shift": "default", "num_attention_heads": None, "transformer_layers_per_block": 1,
    "mid_block_type": MID_BLOCK, "time_embedding_type": "positional", "encoder_hid_dim": None,
}


@dataclass(frozen=True)
class UNetConfig:
    block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280)
    cross_attention: tuple[bool, ...] = (True, True, True, False)  # per level, down and (mirrored) up
    heads: tuple[int, ...] = (8, 8, 8, 8)  # per level; SD1.x's `attention_head_dim` is really a head count
    layers_per_block: int = 2
    in_channels: int = 4
    out_channels: int = 4
    cross_attention_dim: int = 768
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: int = 0
    mid_block_scale_factor: float = 1.0

    @classmethod
    def from_sd(cls, config: dict, source: str = "unet/config.json") -> "UNetConfig":
        def refuse(reason: str) -> VideoModelError:
            return VideoModelError(f"{source} is not a Stable Diffusion 1.x UNet config ({reason}); "
                                   "LaVie needs the CompVis/stable-diffusion-v1-4 folder")

        for key, value in FIXED.items():
            if config.get(key, value) != value:
                raise refuse(f"{key} is {config[key]!r}, SD1.x has {value!r}")
        try:
            down = list(config["down_block_types"])
            up = list(config["up_block_types"])
            channels = tuple(int(c) for c in config["block_out_channels"])
            heads = config.get("attention_head_dim", 8)
            heads = (int(heads),) * len(channels) if isinstance(heads, int) else tuple(int(h) for h in heads)
            made = cls(
                block_out_channels=channels,
                cross_attention=tuple(kind == CROSS_ATTENTION_DOWN for kind in down),
                heads=heads,
                layers_per_block=int(config.get("layers_per_block", 2)),
                in_channels=int(config.get("in_channels", 4)),
                out_channels=int(config.get("out_channels", 4)),
                cross_attention_dim=int(config.get("cross_attention_dim", 768)),
                norm_num_groups=int(config.get("norm_num_groups", 32)),
                norm_eps=float(config.get("norm_eps", 1e-5)),
                flip_sin_to_cos=bool(config.get("flip_sin_to_cos", True)),
                freq_shift=int(config.get("freq_shift", 0)),
                mid_block_scale_factor=float(config.get("mid_block_scale_factor", 1.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise refuse(f"unreadable {exc}") from exc
        if unknown := sorted(set(down) - set(MIRROR)):
            raise refuse(f"block types {', '.join(unknown)}")
        if up != [MIRROR[kind] for kind in reversed(down)]:
            raise refuse("up_block_types do not mirror down_block_types")
        if not len(down) == len(channels) == len(heads):
            raise refuse("block_out_channels, attention_head_dim and the block types differ in length")
        return made

    @classmethod
    def read(cls, sd_folder: str) -> "UNetConfig":
        path = os.path.join(sd_folder, "unet", "config.json")
        try:
            with open(path, encoding="utf-8") as f:
                config = json.load(f)
        except FileNotFoundError:
            raise VideoModelError(f"{sd_folder} has no unet/config.json; LaVie builds its UNet from it") from None
        except ValueError as exc:
            raise VideoModelError(f"{path} is not valid JSON ({exc}); download it again") from exc
        return cls.from_sd(config, path)
