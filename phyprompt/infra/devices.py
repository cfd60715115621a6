"""Choosing the device and dtype a model runs in, the same way for refiners and video models.

Importing this module does not import torch (the CLI's help and argument checks read `DTYPES`); the
functions do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

PRECISIONS = ("bf16", "fp16", "fp32")
DTYPES = ("auto", *PRECISIONS)


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of one of PRECISIONS (KeyError for anything else)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


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
            return torch_dtype(dtype)
        except KeyError:
            raise error(f"unknown dtype {dtype!r}; choose one of: {', '.join(DTYPES)}") from None
    if device.type == "cuda":
        if gpu_default is not None and (gpu_default != torch.bfloat16 or torch.cuda.is_bf16_supported()):
            return gpu_default
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32
