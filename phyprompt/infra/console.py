"""What every command line shares, phyprompt's and train's: one-line messages on stderr (errors, warnings),
argument types, progress bars, and quieting the libraries' own bars and known notices."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from .progress import TqdmProgress

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


def first_line(exc: BaseException) -> str:
    """An exception's first line, or its type's name when it says nothing: for one-line reports."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def quiet_libraries(video: bool = True) -> None:
    """Turn off the loading bars transformers and (with `video`, for the commands that run video models)
    diffusers draw themselves: a command line's normal run; `--verbose` keeps them. `refine` leaves
    diffusers out: importing it only to quiet it would add two seconds to every refine."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    if not video:
        return
    try:
        from diffusers.utils import logging as diffusers_logging
    except ImportError:
        return
    diffusers_logging.disable_progress_bar()
