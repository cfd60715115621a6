"""What every command line shares (phyprompt's and train's): messages on stderr, argument types,
progress bars, quieting the libraries."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from ..progress import TqdmProgress


# Notices the libraries give about their use of each other, which nothing a user types can change, printed
# before every training run and error and every `refine --adapter`: transformers 5 renamed gradient
# checkpointing to activation checkpointing (the old names warn until v6), and trl (whose configs default to
# gradient_checkpointing=True, and which toggles it around generation) and peft (which asks every model it
# wraps for is_gradient_checkpointing) still use the old names, so renaming our recipes' key would not help.
# Matched by message and module: every other warning, other FutureWarnings of these modules included, shows.
KNOWN_WARNINGS = (
    (r"`(is_)?gradient_checkpointing(_kwargs|_enable|_disable)?` is deprecated and will be removed in v6\.",
     FutureWarning, r"transformers\.(training_args|modeling_utils)$"),
)


def silence_known_warnings() -> None:
    """Hide `KNOWN_WARNINGS` for the rest of the process; the first thing each command line's `main` does
    (the CLI's edge only: a library user, ComfyUI included, keeps them)."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def fail(message: str, *, prog: str, status: int = 1) -> int:
    """One `<prog>: error: …` line on stderr; returns `status`, the exit code (1: a load, input or run-time
    failure the user can fix; 2: bad arguments, as argparse's own errors). `prog` is the command as the user
    typed it, `phyprompt <command>` (the form argparse gives its own errors of that command) or
    `train.<module>`, whatever the exit status, so every error of one command reads the same."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return status


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


positive_int.__name__ = "whole number"  # argparse says "invalid whole number value: 'abc'"


def warn(message: str) -> None:
    print(f"phyprompt: warning: {one_line(message)}", file=sys.stderr)


def one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


@contextmanager
def progress_bar(quiet: bool, description: str, unit: str) -> Iterator[TqdmProgress | None]:
    """A tqdm bar on stderr as a progress callback, or None under --quiet; closed on the way out."""
    if quiet:
        yield None
        return
    with TqdmProgress(description, unit) as bar:
        yield bar


def open_refiner(args, model: str | None, **local_options):
    """The refiner a command line names, chosen here only: a server (--endpoint, --endpoint-model,
    --api-key-env, --keep-alive), or the local `model` (a folder, .gguf file or hub id; None: the default
    refiner) with --adapter on --device in --dtype, loaded with `local_options`. A path that does not exist,
    and a hub id that cannot be downloaded now, fail in one line that names the next step."""
    from ..refiners import refiner_class

    if args.endpoint:
        return refiner_class("api").load(args.endpoint, args.endpoint_model, api_key_env=args.api_key_env,
                                         keep_alive=args.keep_alive)
    from ..refiners.builtin import DISCLAIMER, is_builtin
    from ..refiners.hub import HubUnavailableError
    from ..refiners.loading import DEFAULT_MODEL, RefinerLoadError, is_hub_id

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


def quiet_libraries() -> None:
    """Turn off the loading bars transformers and diffusers draw themselves (--quiet)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        from diffusers.utils import logging as diffusers_logging
    except ImportError:
        return
    diffusers_logging.disable_progress_bar()
