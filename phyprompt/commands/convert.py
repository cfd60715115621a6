"""`phyprompt convert BACKEND SOURCE OUT [--dtype fp16]`: a backend's original release converted into what the
backend loads fastest and without unpickling (`BackendInfo.converter`). Which backends have a converter, and
what each reads, comes from their descriptions; this command only finds and runs it."""

from __future__ import annotations

import importlib

from ..video.backend import backend_info


def converter(name: str):
    """The `function(source, out, *, dtype=None) -> pathlib.Path` a backend names, or ValueError."""
    info = backend_info(name)
    if not info.converter:
        raise ValueError(f"the {name} backend loads its release as it is; it has nothing to convert")
    module, function = info.converter.split(":")
    return getattr(importlib.import_module(f"phyprompt.video.{module}"), function)


def run(args) -> int:
    out = converter(args.backend)(args.source, args.out, dtype=args.dtype)
    print(out, flush=True)
    return 0
