"""Opening what a command line names (shared by the phyprompt commands only; what train's command lines share
with them is in `infra.console`)."""

from __future__ import annotations

import os
import sys


def open_refiner(args, model: str | None, **local_options):
    """The refiner a command line names, chosen here only: a server (--endpoint, --endpoint-model,
    --api-key-env, --keep-alive), or the local `model` (a folder, .gguf file or hub id; None: the default
    refiner) with --adapter on --device in --dtype, loaded with `local_options`. A path that does not exist,
    and a hub id that cannot be downloaded now, fail in one line that names the next step."""
    from ..refiners import refiner_class

    if args.endpoint:
        return refiner_class("api").load(args.endpoint, args.endpoint_model, api_key_env=args.api_key_env,
                                         keep_alive=args.keep_alive)
    from ..refiners import RefinerLoadError
    from ..refiners.builtin import DISCLAIMER, is_builtin
    from ..refiners.hub import HubUnavailableError
    from ..refiners.loading import DEFAULT_MODEL, is_hub_id

    flag = "--model" if args.command == "refine" else "--refiner"
    builtin = f"the built-in refiner ({'leave out --model' if flag == '--model' else '--refiner builtin'})"
    model = os.path.expanduser(model) if model else DEFAULT_MODEL  # also `--model=~/…`, which no shell expands
    if not (is_builtin(model) or is_hub_id(model) or os.path.exists(model)):
        raise RefinerLoadError(_not_found(model, flag, builtin))
    if is_builtin(model) and not args.quiet:
        print(f"phyprompt: note: {DISCLAIMER}", file=sys.stderr)
    try:
        return refiner_class("local").load(model, args.adapter and os.path.expanduser(args.adapter),
                                           dtype=args.dtype, device=args.device, allow_download=True,
                                           **local_options)
    except HubUnavailableError as error:
        then = ("unset HF_HUB_OFFLINE to download it" if error.offline else
                f"download it where the hub answers (hf download {error.model}) and run with HF_HUB_OFFLINE=1")
        raise RefinerLoadError(f"{error}; use {flag} DIR (a local folder or .gguf file) or {builtin}, or "
                               f"{then}") from error


def _not_found(model: str, flag: str, builtin: str) -> str:
    """A refiner path that does not exist, said as such: it is never looked for on the hub."""
    from ..refiners.loading import is_gguf, local_first_part

    what, kind = ("GGUF file", "file") if is_gguf(model) else ("refiner folder", "folder")
    why = f"no such {kind}"
    first = local_first_part(model)
    if model.count("/") == 1 and first and first[0].isalnum():
        why += f"; {first}/ is a folder here, so it is read as a path, not as a Hugging Face hub id"
    return (f"{what} not found: {model} ({why}); give {flag} an existing folder or .gguf file, a hub id such as "
            f"Qwen/Qwen2.5-1.5B-Instruct, or use {builtin}")
