"""LaVie's files: `lavie_base.pt` (the whole UNet, plain or under `ema`) or its safetensors conversion, and
the Stable Diffusion 1.4 diffusers folder that supplies the VAE, the CLIP ViT-L/14 text encoder, its tokenizer
and the UNet's config. Every check here runs before a weight is read, and every failure is one line naming
the file and the fix.
"""

from __future__ import annotations

import os
import pathlib
from typing import TYPE_CHECKING

from ...infra.checkpoints import CheckpointError, check_weights_folder, load_into, load_state_dict, read_folder_json
from ...infra.devices import torch_dtype
from ...infra.files import atomic_path
from ..backend import VideoModelError

if TYPE_CHECKING:
    import torch

    from .unet import LaVieUNet

SD_PIPELINE = "StableDiffusionPipeline"
SD_EXAMPLE = "CompVis/stable-diffusion-v1-4"
EMA_KEY = "ema"
TEMPORAL_MARKER = ".attn_temp."  # every LaVie transformer block has one; Stable Diffusion's have none
# where an image UNet's tensors start: diffusers' names (LaVie's spatial layers keep them) or an LDM file's
IMAGE_UNET_PREFIXES = ("down_blocks.", "model.diffusion_model.")


def check_sd_folder(folder: str) -> None:
    """A Stable Diffusion 1.x diffusers folder with what LaVie reads from it, or one VideoModelError."""
    if not folder:
        raise VideoModelError(f"LaVie needs a Stable Diffusion 1.4 folder ({SD_EXAMPLE}) beside lavie_base.pt for "
                              "its VAE, text encoder and tokenizer: pass sd_folder (--sd-folder DIR)")
    index = read_folder_json(folder, "model_index.json", "Stable Diffusion", "a diffusers pipeline folder",
                             VideoModelError)
    kind = index.get("_class_name")
    if kind != SD_PIPELINE:
        raise VideoModelError(f"{folder} holds a {kind}, not a {SD_PIPELINE}; LaVie needs {SD_EXAMPLE}")
    for component in ("vae", "text_encoder"):
        check_weights_folder(os.path.join(folder, component), f"Stable Diffusion {component}", VideoModelError)
    if not os.path.isdir(os.path.join(folder, "tokenizer")):
        raise VideoModelError(f"{folder} is incomplete: the tokenizer/ folder is missing")


def read_unet_weights(path: str, ema: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The UNet's tensors and which ones they are ("ema" or "plain"). With `ema`, the file's `ema` entry when
    it has one, as the original's find_model does; else (and always without `ema`) the plain weights."""
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise VideoModelError(f"LaVie checkpoint not found: {path}")
    if ema and not path.endswith(".safetensors"):  # safetensors files are flat: a conversion holds one set
        try:
            return _checked(load_state_dict(path, key=EMA_KEY), name), EMA_KEY
        except CheckpointError as exc:
            if f"no {EMA_KEY!r} entry" not in str(exc):  # a damaged or unsafe file, not a plain one
                raise
    try:
        return _checked(load_state_dict(path), name), "plain"
    except CheckpointError as exc:
        if ema or "holds no tensors" not in str(exc):
            raise
        raise VideoModelError(f"{name} has no plain weights at its top level ({exc}); load it with the EMA "
                              "option on") from exc


def _checked(state_dict: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """The state dict if it is LaVie's; else one VideoModelError saying what the file is, as far as its names
    tell (VideoCrafter2's own checkpoint test decides that case, so the two backends never disagree)."""
    if any(TEMPORAL_MARKER in key for key in state_dict):
        return state_dict
    from ..videocrafter2.keys import is_videocrafter2  # here: it imports torch, which the CLI's parser must not

    if is_videocrafter2(state_dict):
        raise VideoModelError(f"{name} is a VideoCrafter2 checkpoint (text-to-video, with an OpenCLIP text encoder), "
                              "not LaVie's lavie_base.pt (YaohuiW/LaVie): load it with the videocrafter2 backend")
    what = "not LaVie's lavie_base.pt (YaohuiW/LaVie)"
    if any(key.startswith(IMAGE_UNET_PREFIXES) for key in state_dict):
        raise VideoModelError(f"{name} has no temporal attention layers (attn_temp): it is a Stable Diffusion image "
                              f"checkpoint, {what}; pass the Stable Diffusion folder as sd_folder instead")
    raise VideoModelError(f"{name} has no temporal attention layers (attn_temp), so it is {what}")


def load_unet_weights(unet: LaVieUNet, path: str, ema: bool, sd_folder: str) -> str:
    """Strictly load the checkpoint into `unet` (built on the meta device: the file's tensors are adopted,
    not copied); returns which weights were used."""
    state_dict, which = read_unet_weights(path, ema)
    load_into(unet, state_dict, assign=True, source=os.path.basename(path),
              target=f"the LaVie UNet built from {os.path.join(sd_folder, 'unet', 'config.json')} (is it "
                     f"Stable Diffusion 1.4?)")
    return which


def convert(source: str | os.PathLike, out: str | os.PathLike, *, dtype: str | torch.dtype | None = None
            ) -> pathlib.Path:
    """`lavie_base.pt` -> a safetensors file `load` reads without unpickling: the EMA weights when the file has
    them (what the original samples with), else the plain ones, optionally cast to `dtype` (fp16, bf16, fp32).
    `out` is a .safetensors path, or a folder to write `<source name>.safetensors` into."""
    from safetensors.torch import save_file

    source, out = pathlib.Path(source), pathlib.Path(out)
    if out.suffix != ".safetensors":
        out = out / f"{source.stem}.safetensors"
    cast = torch_dtype(dtype) if isinstance(dtype, str) else dtype
    state_dict, _ = read_unet_weights(os.fspath(source), ema=True)
    seen: set[int] = set()
    tensors = {}
    for key, tensor in state_dict.items():
        tensor = tensor.to(cast) if cast is not None else tensor
        # the original shares one rotary module between all blocks; safetensors stores no shared storage
        pointer = tensor.untyped_storage().data_ptr()
        tensors[key] = tensor.clone() if pointer in seen else tensor.contiguous()
        seen.add(pointer)
    with atomic_path(out) as partial:
        save_file(tensors, os.fspath(partial), metadata={"format": "pt", "source": source.name})
    return out
