"""Choosing the device and dtype a model runs in, the same way for refiners and video models.

Importing this module does not import torch (the CLI's help and argument checks read `DTYPES`); the
functions do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DTYPES = ("auto", "bf16", "fp16", "fp32")


def __getattr__(name: str):
    if name == "DTYPE_BY_NAME":  # {"bf16": torch.bfloat16, ...}, built when first asked for
        return _dtype_by_name()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _dtype_by_name() -> dict[str, torch.dtype]:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def resolve_device(device: str | torch.device = "auto", error: type[Exception] = ValueError) -> torch.device:
    import torch

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
    import torch

    if dtype != "auto":
        try:
            return _dtype_by_name()[dtype]
        except KeyError:
            raise error(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}") from None
    if device.type == "cuda":
        if gpu_default is not None and (gpu_default != torch.bfloat16 or torch.cuda.is_bf16_supported()):
            return gpu_default
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32
