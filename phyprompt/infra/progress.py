"""The one progress protocol for long loops (generated tokens, denoising steps, judge batches).

A loop calls `progress(done, total)` after each unit of work. The callback may raise to cancel: the
exception travels out of the loop unchanged (ComfyUI's interrupt does exactly this), and the loop
leaves nothing half-done behind. `Cancelled` is the exception for callers that have none of their own.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Callable, Optional

Progress = Callable[[int, int], None]
OptionalProgress = Optional[Progress]


class Cancelled(Exception):
    """Raised by a progress callback to stop a long loop."""


class TqdmProgress:
    """A progress callback that draws a tqdm bar on stderr (the CLI's)."""

    def __init__(self, description: str, unit: str):
        self.description = description
        self.unit = unit
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.description, unit=self.unit, leave=False, dynamic_ncols=True)
        elif self._bar.total != total:  # the work left was less (or more) than said: the same bar, corrected
            self._bar.total = total
        self._bar.update(done - self._bar.n)

    @contextmanager
    def cleared(self) -> Iterator[None]:
        """Print lines (on stdout or stderr) inside this: the bar is wiped first and drawn again after, so
        a line never starts at the end of the bar (they share the terminal)."""
        if self._bar is None:
            yield
            return
        with self._bar.external_write_mode(file=sys.stderr):
            yield

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
