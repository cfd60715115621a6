"""`phyprompt convert BACKEND SOURCE OUT [--dtype fp16] [--config PATH]`: a backend's original release converted
into what the backend loads fastest and without unpickling (`BackendInfo.converter`). Which backends have a
converter, what each reads and which files it takes besides (its file load options, e.g. VideoCrafter2's YAML),
comes from their descriptions; this command only finds and runs it."""

from __future__ import annotations

import importlib

from ..video.backend import backend_info


def converter(name: str):
    """The `function(source, out, *, dtype=None, **file options) -> pathlib.Path` a backend names, or ValueError."""
    info = backend_info(name)
    if not info.converter:
        raise ValueError(f"the {name} backend loads its release as it is; it has nothing to convert")
    module, function = info.converter.split(":")
    return getattr(importlib.import_module(f"phyprompt.video.{module}"), function)


def run(args) -> int:
    files = {o.name: getattr(args, o.name) for o in backend_info(args.backend).load_options
             if o.suffixes and getattr(args, o.name) is not None}  # e.g. VideoCrafter2's --config
    out = converter(args.backend)(args.source, args.out, dtype=args.dtype, **files)
    print(out, flush=True)
    return 0
