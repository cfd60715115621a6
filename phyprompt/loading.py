"""Where refiner loading lived in 0.1; kept so scripts written for it still run. It now lives in
`phyprompt.refiners.loading`."""

import warnings

from .refiners.loading import (DEFAULT_MODEL, QUANTIZATIONS, LoadSpec, RefinerLoadError, check_model_folder,
                               load_model_and_tokenizer)

__all__ = ["DEFAULT_MODEL", "QUANTIZATIONS", "LoadSpec", "RefinerLoadError", "check_model_folder",
           "load_model_and_tokenizer"]

warnings.warn("phyprompt.loading moved to phyprompt.refiners.loading", DeprecationWarning, stacklevel=2)
