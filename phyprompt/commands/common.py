"""What every command line shares (phyprompt's and train's): messages on stderr, argument types,
progress bars, quieting the libraries."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ..progress import TqdmProgress


def fail(message: str, prog: str = "phyprompt") -> int:
    """One `<prog>: error: …` line on stderr; the exit code for a failure the user can fix."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return 1


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
    --api-key-env, --keep-alive), or the local `model` (a folder or hub id; None: the default refiner)
    with --adapter on --device in --dtype, loaded with `local_options`."""
    from ..refiners import refiner_class

    if args.endpoint:
        return refiner_class("api").load(args.endpoint, args.endpoint_model, api_key_env=args.api_key_env,
                                         keep_alive=args.keep_alive)
    from ..refiners.loading import DEFAULT_MODEL

    return refiner_class("local").load(model or DEFAULT_MODEL, args.adapter, dtype=args.dtype, device=args.device,
                                       allow_download=True, **local_options)


def quiet_libraries() -> None:
    """Turn off the loading bars transformers and diffusers draw themselves (--quiet)."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    try:
        from diffusers.utils import logging as diffusers_logging
    except ImportError:
        return
    diffusers_logging.disable_progress_bar()
