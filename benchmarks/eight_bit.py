#!/usr/bin/env python
"""Float frames to 8-bit, per backend: the original's save path against the writer, on the same decoder output.

For each backend and each precision its original runs in, draws random decoder outputs (a 16×320×512 clip,
values a little past -1..1 as decoders give them) in that precision, and computes the 8-bit frames three
ways: the original's own arithmetic (copied below from its save path), the backend's float frames through
the writer's default conversion (rounding to the nearest level in float32, which the writer applied to every
backend before the backends described theirs) and through the backend's described conversion
(`VideoBackend.eight_bit`). Prints how many values and pixels each differs from the original in, and the
largest difference; then the same for every finite float16 and bfloat16 value at once. Target: 0 for the
described conversion everywhere.

    python benchmarks/eight_bit.py
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from phyprompt.video import EightBit, backend_info  # noqa: E402
from phyprompt.video.writer import to_uint8  # noqa: E402

SHAPE = (16, 320, 512, 3)  # the official LaVie and VideoCrafter2 clip, frames last as the writer takes them


# --- each original's save path, on the decoder's output x (frames [T, H, W, 3], in the model's type) -------

def videocrafter2_original(x):  # VideoCrafter scripts/evaluation/funcs.py save_videos
    video = torch.clamp(x.float(), -1., 1.)
    video = (video + 1.0) / 2.0
    return (video * 255).to(torch.uint8).numpy()


def lavie_original(x):  # LaVie base/pipelines/pipeline_videogen.py decode_latents
    return ((x / 2 + 0.5) * 255).add_(0.5).clamp_(0, 255).to(dtype=torch.uint8).numpy()


def cogvideox_original(x):  # diffusers' VaeImageProcessor: denormalize, pt_to_numpy, numpy_to_pil
    images = (x * 0.5 + 0.5).clamp(0, 1).float().numpy()
    return (images * 255).round().astype("uint8")


# --- the backends' float frames from the same x (their `sample` and the pipeline's output_type "np") ------

def videocrafter2_frames(x):  # VideoCrafter2Backend.sample
    return (x.float().clamp(-1.0, 1.0) + 1.0) / 2.0


def lavie_frames(x):  # lavie.sampling.decode
    return (x.float() / 2 + 0.5).clamp(0, 1)


def cogvideox_frames(x):  # diffusers with output_type "np", then CogVideoXBackend._render
    return torch.from_numpy((x * 0.5 + 0.5).clamp(0, 1).float().numpy()).float().clamp_(0.0, 1.0)


BACKENDS = {  # name -> (original, frames, the precisions its original runs in)
    "cogvideox": (cogvideox_original, cogvideox_frames, (torch.bfloat16, torch.float16)),  # 5B, 2B
    "videocrafter2": (videocrafter2_original, videocrafter2_frames, (torch.float16, torch.float32)),
    "lavie": (lavie_original, lavie_frames, (torch.float16, torch.float32, torch.bfloat16)),
}


def described(name: str, dtype: torch.dtype) -> EightBit:
    """`VideoBackend.eight_bit` of a model loaded in `dtype`: "model" is the type its VAE decodes in."""
    mode = backend_info(name).eight_bit
    return EightBit(mode.rounding, str(dtype).removeprefix("torch.")) if mode.dtype == "model" else mode


def every_value(dtype: torch.dtype) -> torch.Tensor:
    """Every finite value of a 16-bit float type, as one row of RGB pixels."""
    values = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    values = values[torch.isfinite(values)]
    return values.reshape(1, 1, -1, 1).expand(-1, -1, -1, 3).contiguous()


def row(label: str, original: np.ndarray, ours: np.ndarray) -> str:
    values = ours != original
    pixels = values.any(-1)
    largest = int(np.abs(ours.astype(int) - original.astype(int)).max())
    return (f"{label:>10} {int(values.sum()):>9} ({values.mean():6.2%}) {int(pixels.sum()):>8} "
            f"({pixels.mean():6.2%}) {largest:>3}")


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    print(f"random decoder outputs, {np.prod(SHAPE[:3])} pixels ({np.prod(SHAPE)} values) per row")
    print(f"{'backend':14} {'precision':9} {'writer':>10} {'values differing':>19} {'pixels differing':>18} max")
    for name, (original, frames, precisions) in BACKENDS.items():
        for dtype in precisions:
            x = (torch.rand(SHAPE, generator=generator) * 2.1 - 1.05).to(dtype)
            saved = original(x)
            lead = f"{name:14} {str(dtype).removeprefix('torch.'):9}"
            print(lead, row("rounding", saved, to_uint8(frames(x))))
            print(" " * len(lead), row("described", saved, to_uint8(frames(x), described(name, dtype))))
    print("\nevery finite float16 / bfloat16 decoder value: values differing with the described conversion")
    for name, (original, frames, _) in BACKENDS.items():
        counts = [int((to_uint8(frames(x), described(name, x.dtype)) != original(x)).sum())
                  for x in map(every_value, (torch.float16, torch.bfloat16))]
        print(f"{name:14} float16 {counts[0]}, bfloat16 {counts[1]}")


if __name__ == "__main__":
    main()
