"""Opening what a command line names (shared by the phyprompt commands only; what train's command lines share
with them is in `infra.console`)."""

from __future__ import annotations

import os
import sys


def kind_options(args, names: tuple[str, ...]) -> dict:
    """The options of a refiner or judge kind a command line was given, by the names its parser recorded
    (`cli._add_kind_options`): a flag left out is None, the kind's own default; paths with ~ expanded."""
    return {name: os.path.expanduser(value) if isinstance(value, str) and value.startswith("~") else value
            for name in names if (value := getattr(args, name)) is not None}


def open_refiner(args, source: str | None):
    """The refiner a command line names, its spec built here only: of --refiner-kind, else on a server with
    --endpoint (--endpoint-model, --api-key-env, --keep-alive), else from `source` (None: the default refiner),
    of the kind that recognises it or the local one (a folder, .gguf file or hub id, with --adapter), on
    --device in --dtype, with the kind's options. A local path that does not exist, and a hub id that cannot be
    downloaded now, fail in one line that names the next step; an option the kind does not take is an
    OptionError (bad arguments)."""
    from ..infra.kinds import OptionError
    from ..refiners import REFINERS, RefinerLoadError, RefinerSpec
    from ..refiners.builtin import DISCLAIMER, is_builtin
    from ..refiners.hub import HubUnavailableError
    from ..refiners.loading import DEFAULT_MODEL, is_hub_id

    source = os.path.expanduser(source) if source else DEFAULT_MODEL  # also `--model=~/…`, which no shell expands
    kind = args.refiner_kind or ("api" if args.endpoint else RefinerSpec.kind_of(source))
    options = kind_options(args, args.refiner_options)
    if REFINERS.get(kind).info.on_server:
        if not args.endpoint:
            raise OptionError(f"the {kind} refiner is on a server: give --endpoint URL and --endpoint-model NAME")
        return RefinerSpec.of_kind(kind, args.endpoint, model=args.endpoint_model, **options).open()
    if args.endpoint:
        raise OptionError(f"--endpoint refines on a server, and the {kind} refiner is not on one")
    flag = "--model" if args.command == "refine" else "--refiner"
    if kind != "local":
        return RefinerSpec.of_kind(kind, source, **options).open()
    builtin = f"the built-in refiner ({'leave out --model' if flag == '--model' else '--refiner builtin'})"
    if not (is_builtin(source) or is_hub_id(source) or os.path.exists(source)):
        raise RefinerLoadError(_not_found(source, flag, builtin))
    if is_builtin(source) and not args.quiet:
        print(f"phyprompt: note: {DISCLAIMER}", file=sys.stderr)
        _say_if_preparing()
    try:
        # the command line downloads a hub id when the hub answers (ComfyUI never does)
        return RefinerSpec.of_kind(kind, source, allow_download=True, **options).open()
    except HubUnavailableError as error:
        then = ("unset HF_HUB_OFFLINE to download it" if error.offline else
                f"download it where the hub answers (hf download {error.model}) and run with HF_HUB_OFFLINE=1")
        raise RefinerLoadError(f"{error}; use {flag} DIR (a local folder or .gguf file) or {builtin}, or "
                               f"{then}") from error


def _say_if_preparing() -> None:
    """The first run of the built-in refiner prepares it (refiners/prepared.py): say so before the wait."""
    from ..refiners.loading import LoadSpec, resolve_builtin
    from ..refiners.prepared import is_prepared, prepared_folder

    try:
        spec = resolve_builtin(LoadSpec(model="builtin"))
    except ValueError:
        return  # not installed: loading it says how to install it
    if not is_prepared(spec):
        print(f"phyprompt: note: preparing the built-in refiner once (de-quantising SmolLM2, merging its adapter; "
              f"about 15 s), into {prepared_folder(spec)[0]}; later runs load it from there", file=sys.stderr)


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
