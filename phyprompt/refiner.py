"""Where the refiner lived in 0.1; kept so scripts written for it still run. The refiner now lives in
`phyprompt.refiners` (the protocol and `Refinement`) and `phyprompt.refiners.local` (`LocalRefiner`)."""

import warnings

from .refiners.base import DEFAULT_MAX_NEW_TOKENS, Refinement
from .refiners.local import LocalRefiner as Refiner

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "Refinement", "Refiner"]

warnings.warn("phyprompt.refiner moved: use phyprompt.refiners (Refinement) and phyprompt.refiners.local "
              "(LocalRefiner)", DeprecationWarning, stacklevel=2)
