"""The one registry mechanism of every family (refiners, video backends, judges, training rewards).

A family names its built-in members as `name -> "module:attribute"` (relative to its package) and an
entry-point group where other installed packages add theirs (`name = "package.module:attribute"`). Nothing
is imported until a member is asked for: listing names (the CLI's help, the nodes) imports no model code,
and a plugin that fails to import is left out with a warning instead of taking the built-ins down with it.
"""

from __future__ import annotations

import importlib
import logging
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any

log = logging.getLogger(__name__)


class Registry:
    """Members of one family by name: the built-ins first, then the entry points of `group`."""

    def __init__(self, noun: str, package: str, builtins: dict[str, str], group: str):
        self.noun = noun  # for messages: "unknown <noun> 'x'; choose one of: …"
        self.group = group
        self._builtins = {name: f"{package}.{target}" for name, target in builtins.items()}

    @cached_property
    def _targets(self) -> dict[str, str]:
        found = dict(self._builtins)
        for point in entry_points(group=self.group):
            if point.name in found:  # a plugin never replaces a member of the same name
                continue
            try:
                point.load()
            except Exception as exc:  # a broken third-party package; the interrupt is not raised here
                log.warning("PhyPrompt: skipping %s %r from %s: %s", self.noun, point.name, point.value, exc)
                continue
            found[point.name] = point.value
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(self._targets)

    def builtin_names(self) -> tuple[str, ...]:
        return tuple(self._builtins)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def get(self, name: str) -> Any:
        """The member's class (or factory), imported now."""
        try:
            module_name, attribute = self._targets[name].split(":")
        except KeyError:
            raise ValueError(f"unknown {self.noun} {name!r}; choose one of: {', '.join(self.names())}") from None
        return getattr(importlib.import_module(module_name), attribute)
