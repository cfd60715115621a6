"""Choosing the device and dtype a model runs in, the same way for refiners and video models."""

from __future__ import annotations

import torch

DTYPES = ("auto", "bf16", "fp16", "fp32")
DTYPE_BY_NAME = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(device: str | torch.device = "auto", error: type[Exception] = ValueError) -> torch.device:
    if str(device) != "auto":
        try:
            return torch.device(device)
        except RuntimeError as exc:
            raise error(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps") from exc
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str, device: torch.device, error: type[Exception] = ValueError,
                  gpu_default: torch.dtype | None = None) -> torch.dtype:
    """`auto` is fp32 on CPU (half precision is slow there); on a GPU, `gpu_default` when the model has
    a preferred precision, else bf16 where the GPU has it and fp16 otherwise."""
    if dtype != "auto":
        try:
            return DTYPE_BY_NAME[dtype]
        except KeyError:
            raise error(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}") from None
    if device.type == "cuda":
        if gpu_default is not None and (gpu_default != torch.bfloat16 or torch.cuda.is_bf16_supported()):
            return gpu_default
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32
