"""Refiners behind one protocol (`base.Refiner`), picked by kind from a registry.

Importing this package is cheap: a refiner's module (and transformers) is imported when it is opened.
"""

from __future__ import annotations

import importlib

from .base import DEFAULT_MAX_NEW_TOKENS, Refinement, Refiner, check_request

# kind -> "module:Class", relative to this package; each class has `load(...)`
_REGISTRY = {
    "local": "local:LocalRefiner",
    "api": "api:APIRefiner",
}
REFINER_KINDS = tuple(_REGISTRY)

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "REFINER_KINDS", "Refinement", "Refiner", "check_request", "refiner_class"]


def refiner_class(kind: str) -> type:
    try:
        module_name, class_name = _REGISTRY[kind].split(":")
    except KeyError:
        raise ValueError(f"unknown refiner kind {kind!r}; choose one of: {', '.join(REFINER_KINDS)}") from None
    return getattr(importlib.import_module(f".{module_name}", __package__), class_name)
