"""Refiners behind one protocol (`base.Refiner`), picked by kind from a registry (`REFINERS`) and opened from a
`RefinerSpec`.

Importing this package is cheap: a refiner's module (and transformers) is imported when it is opened.
"""

from __future__ import annotations

from .base import DEFAULT_MAX_NEW_TOKENS, REFINERS, Refinement, Refiner, RefinerLoadError, check_request
from .spec import RefinerSpec

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "REFINERS", "Refinement", "Refiner", "RefinerLoadError", "RefinerSpec",
           "check_request", "refiner_class"]


def refiner_class(kind: str) -> type:
    return REFINERS.get(kind)
